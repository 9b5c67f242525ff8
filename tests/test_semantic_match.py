"""The semantic matcher on its own: what makes two questions share an answer.
Vectors come from the built-in embeddings, as in the server."""

from __future__ import annotations

import pytest

from pointsman.server.domain.semantic.matcher import MatchPolicy, features, judge
from pointsman.server.providers.builtin_embeddings import BuiltinEmbedder

EMBEDDER = BuiltinEmbedder()


def verdict(a: str, b: str) -> tuple[bool, str]:
    vectors = EMBEDDER.embed([a, b])
    result = judge(features(a), features(b), float(vectors[0] @ vectors[1]), MatchPolicy())
    return result.same, result.reason


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Who is the prime minister of Spain?", "Who currently leads the Spanish government as prime minister?"),
        ("How far is 50 km in miles?", "What is 50 kilometres expressed in miles?"),
        ("How do I enable dark mode in VS Code?", "How can I turn on dark mode in VS Code?"),
        ("What does HTTP status 404 mean?", "What is the meaning of a 404 HTTP status code?"),
        ("How do I sort a list in Python in ascending order?", "How do I sort a Python list from smallest to largest?"),
        ("How do I delete a branch in git?", "What's the command to remove a git branch?"),
    ],
)
def test_paraphrases_share_an_answer(a: str, b: str) -> None:
    assert verdict(a, b) == (True, verdict(a, b)[1])
    assert verdict(a, b)[0]


@pytest.mark.parametrize(
    ("a", "b", "reason"),
    [
        ("Who is the prime minister of Spain?", "Who is the prime minister of Italy?", "critical"),
        ("How far is 50 km in miles?", "How far is 50 miles in km?", "direction"),
        ("Set the timeout to 30 seconds.", "Set the timeout to 30 minutes.", "critical"),
        ("What is 12 times 12?", "What is 12 times 13?", "critical"),
        ("How do I enable dark mode in VS Code?", "How do I disable dark mode in VS Code?", "antonym"),
        ("Sort the list in ascending order.", "Sort the list in descending order.", "antonym"),
        ("Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?", "negation"),
        ("How do I upgrade to React 18?", "How do I upgrade to React 17?", "critical"),
        ("What does os.path.join do in Python?", "What does os.path.split do in Python?", "critical"),
        ("How do I use the --force flag with git push?", "How do I use the --tags flag with git push?", "critical"),
        ("How do I format a date as YYYY-MM-DD?", "How do I format a date as DD-MM-YYYY?", "critical"),
        ("How do I convert JSON to YAML?", "How do I convert YAML to JSON?", "direction"),
        ("How do I convert a list to a set in Python?", "How do I convert a set to a list in Python?", "direction"),
        (
            "How do I sort a dictionary by value in Python?",
            "How do I sort a dictionary by key in Python?",
            "words swapped",
        ),
        ("What is the speed of sound?", "What is the speed of sound in water?", "qualifier added"),
        ("Translate good morning into French.", "Translate good morning into German.", "critical"),
    ],
)
def test_near_neighbours_do_not(a: str, b: str, reason: str) -> None:
    assert verdict(a, b) == (False, reason)


def test_features_normalise_numbers_units_names_and_synonyms() -> None:
    one = features("What is fifty kilometres in miles, in Spanish?")
    other = features("What's 50 km in mi in spain?")
    assert one.critical == other.critical == ("e:spain", "n:50", "u:km", "u:mile")
    assert features("How do I remove it?").content == features("How do I delete it?").content
    assert features("Don't sort it").negations == 1
    # A common word is a name only when capitalised; a capitalised one always.
    assert "e:go" not in features("How do I go through a file?").critical
    assert "e:go" in features("How do I write a loop in Go?").critical


def test_a_low_cosine_is_refused_whatever_the_words() -> None:
    a, b = features("What is the capital of France?"), features("What is the capital of France?")
    assert judge(a, b, 0.2, MatchPolicy()).reason == "cosine"
    assert judge(a, b, 0.99, MatchPolicy()).same


def test_near_identical_questions_do_not_pile_into_one_long_list() -> None:
    """Questions from one template (other numbers) sit close together; the
    index splits any list that grows past its cap, and still finds each one."""
    from pointsman.server.domain.semantic import index as index_module
    from pointsman.server.domain.semantic.index import Entry, VectorIndex

    questions = [f"How do I sort {n} items in Python?" for n in range(6000)]
    vectors = EMBEDDER.embed(questions)
    index = VectorIndex(EMBEDDER.dimensions, max_entries=10_000, max_entries_per_organisation=10_000)
    for n, (question, vector) in enumerate(zip(questions, vectors, strict=True)):
        index.add(Entry(str(n), "org", "s", question, features(question), vector, n, float("inf"), 1))
    scope = index._scopes[("org", "s")]
    assert max(len(lst.entries) - len(lst.free) for lst in scope.lists) <= index_module._MAX_LIST
    for n in (0, 1234, 5999):
        # Numbers with the same digits can embed alike: the question is among the best.
        found = index.search("org", "s", vectors[n], 0.99, now=0.0, limit=64)
        assert questions[n] in {entry.question for _, entry in found}


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("In what year did the Berlin Wall fall?", "When did the Berlin Wall fall?"),
        ("How many moons does Mars have?", "What is the number of moons of Mars?"),
        ("Hi! How do I empty the trash on Ubuntu?", "How can I clear the trash on Ubuntu?"),
        ("Which languages are spoken in Belgium?", "What languages do they speak in Belgium?"),
    ],
)
def test_templates_politeness_and_word_forms_are_paraphrases(a: str, b: str) -> None:
    assert verdict(a, b)[0], verdict(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("When did the Berlin Wall fall?", "When was the Berlin Wall built?"),
        ("How many moons does Mars have?", "How many moons does Jupiter have?"),
        ("How do I empty the trash on Ubuntu?", "How do I restore the trash on Ubuntu?"),
        ("What is the first element of a list?", "What is the final element of a list?"),
    ],
)
def test_the_new_word_lists_keep_near_neighbours_apart(a: str, b: str) -> None:
    assert not verdict(a, b)[0], verdict(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I check the git log?", "How do I view the git log?"),
        ("How do I list all branches in git?", "How can I display every git branch?"),
        ("How do I write a function in Go?", "How do I define a function in Go?"),
        ("How do I create a class in Python?", "How do I define a class in Python?"),
        ("How do I change the colour of a button in CSS?", "How do I change the color of a button in CSS?"),
        ("How do I send a GET request in Go?", "How do I send an HTTP GET request in Go?"),
    ],
)
def test_look_up_verbs_code_verbs_spellings_and_implied_names_are_paraphrases(a: str, b: str) -> None:
    assert verdict(a, b)[0]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I check my Python version?", "How do I change my Python version?"),
        ("How do I list all branches in git?", "How do I delete all branches in git?"),
        ("How do I write a function in Go?", "How do I call a function in Go?"),
        ("How do I install numpy with pip?", "How do I install numpy with conda?"),
        ("What does the list command show in pdb?", "What does the where command show in pdb?"),
        ("What is the best way to learn touch typing?", "What is the fastest way to learn touch typing?"),
        ("What time is it in Tokyo when it is noon in London?", "What time is it in London when it is noon in Tokyo?"),
    ],
)
def test_the_round_4_rules_keep_near_neighbours_apart(a: str, b: str) -> None:
    assert not verdict(a, b)[0]
