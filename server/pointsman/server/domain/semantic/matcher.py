"""Whether two questions have the same answer: the guard behind the semantic cache.

An embedding's cosine says two questions are about the same thing; it cannot
say they ask the same thing ("prime minister of Spain" and "of Italy" score
higher than most paraphrases). So a cache candidate is served only when, on
top of a high cosine:

1. the answer-critical tokens agree, in order: numbers (words, digits,
   versions, ordinals, roman numerals), units, named things (capitalised
   words, a list of names, adjectives of place mapped to the place), code
   identifiers (`os.path.join`, `useEffect`, `--force`), quoted text;
2. negations agree (their count, odd or even);
3. no antonym axis is named with opposite poles (ascending/descending,
   enable/disable, install/uninstall, min/max, first/last, ...);
4. the content words left after stop words, stemming and synonyms agree, but
   for at most two words one side adds that are not qualifiers (a word right
   after a preposition: "in water", "for beginners"); a word swapped for
   another is refused: that is what a near neighbour looks like. Word vectors
   do not help here: WordLlama puts "average" nearer "median" (0.55) than
   "last" is to "final" (0.50).

Everything here is text processing; the vectors come from the `Embedder` port.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from . import lexicon

_TOKEN = re.compile(
    r"""
    "[^"]+" | \u201c[^\u201d]+\u201d | `[^`]+`  # quoted text or code
    | (?<![\w-])--?[a-z][\w-]*               # command-line flags (not "command-line")
    | [$€£¥]                                # currencies
    | °[cf]                                  # degrees
    | \d+(?:[.,:]\d+)*(?:st|nd|rd|th)?%?     # numbers, versions, times, ordinals
    | [a-z_][\w]*(?:\.[a-z_]\w*)+(?:\(\))?  # dotted identifiers (os.path.join)
    | [a-z_]\w*\(\)                          # calls
    | [a-z][\w+#]*(?:'[a-z]+)?               # words (c++, c#, don't)
    | %
    """,
    re.VERBOSE | re.IGNORECASE,
)
_FORMAT = re.compile(r"\b[A-Z]{1,4}(?:[-/.:][A-Z]{1,4}){1,3}\b")
_CAMEL = re.compile(r"[a-z]+[A-Z]\w*")
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
# Units that are words too ("in", "s", "am") or that a question names without
# a number ("what year"): units only right after a number.
_COUNTED_UNITS = frozenset(
    {
        "inch",
        "second",
        "minute",
        "hour",
        "day",
        "week",
        "month",
        "year",
        "litre",
        "m",
        "g",
        "am",
        "watt",
        "volt",
        "cup",
        "stone",
    }
)
# Words that give a conversion or a relation its direction (list to set).
_DIRECTIONAL = frozenset({"to", "into", "in"})
# Prepositions whose object qualifies the question ("to" is left out: "how to install";
# "of" is in: "the number of *keys*").
_PREPOSITIONS = frozenset(
    {"in", "on", "at", "for", "with", "without", "from", "into", "under", "over", "by", "during", "of"}
)
# Question words that name the kind of answer ("what"/"which" do not: "what is
# the reason" asks why). "Why is it slow?" and "How is it slow?" differ.
_ASKS = {
    "why": "why",
    "how": "how",
    "hows": "how",
    "when": "when",
    "where": "where",
    "wheres": "where",
    "who": "who",
    "whos": "who",
    "whom": "who",
    "whose": "whose",
}
# Nouns after which a word is a name ("the where command").
_NAMING = frozenset({"command", "keyword", "statement", "operator", "clause", "builtin", "directive"})
_DETERMINERS = frozenset({"a", "an", "the", "my", "your", "our", "their", "his", "her", "its", "this", "that", "some"})


@dataclass(frozen=True, slots=True)
class Features:
    """What the matcher compares of one question, worked out once (an entry
    keeps its own)."""

    critical: tuple[str, ...]  # numbers, units, names, identifiers, quotes: in order, deduplicated
    negations: int
    poles: frozenset[tuple[str, int]]
    content: frozenset[str]  # stemmed, synonyms mapped, stop words dropped
    directed: frozenset[tuple[str, str]] = frozenset()  # (x, y) of "x to y", "x in y"
    initials: str = ""  # the words' first letters, in order: "gross domestic product" -> "gdp" in it
    qualifiers: frozenset[str] = frozenset()  # content words right after a preposition, superlatives
    asks: frozenset[str] = frozenset()  # question words that say what kind of answer: why, how, when, ...


def _fold(text: str) -> str:
    # Curly apostrophes as straight ones (written as escapes for the linter).
    return unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'")


def _stem(word: str) -> str:
    """A crude stemmer: plural and verb endings, enough to make "sorting",
    "sorts" and "sort" one word."""
    if len(word) <= 3:
        return word
    for suffix, replacement in (
        ("ies", "y"),
        ("sses", "ss"),
        ("'s", ""),
        ("ing", ""),
        ("ed", ""),
        ("es", ""),
        ("s", ""),
    ):
        if suffix == "s" and word.endswith(("ss", "us", "is")):
            return word  # "class", "status", "analysis": no plural ending
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: len(word) - len(suffix)] + replacement
            if suffix == "es" and not stem.endswith(("sh", "ch", "x", "ss", "z", "o")):
                stem = word[:-1]  # "changes" -> "change", but "boxes" -> "box"
            return stem
    return word


_BRITISH = re.compile(r"(?<=[a-z]{4})(is|ys)(e|es|ed|ing|ation|ations|er|ers)$|(?<=[a-z]{3})our(s|ed|ing)?$")


def _american(word: str) -> str:
    """British spellings as American ones, so that either is one word:
    "organise"/"organize", "analyse"/"analyze", "colour"/"color", "centre"/
    "center"; a few irregular ones by name ("tyre", "grey")."""
    spelled = lexicon.SPELLINGS.get(word)
    if spelled is not None:
        return spelled
    if len(word) < 6:
        return word
    match = _BRITISH.search(word)
    if match is None:
        if word.endswith(("tre", "tres")) and len(word) >= 6:
            return word.replace("tre", "ter") if word.endswith("tre") else word[:-4] + "ters"
        return word
    if match.group(1):
        return word[: match.start()] + match.group(1)[0] + "z" + match.group(2)
    return word[: match.start()] + "or" + (match.group(3) or "")


@functools.lru_cache(maxsize=16384)
def _canonical(token: str) -> str | None:
    """A content word's one form (spelling, irregular forms, stem, synonyms),
    or None for a word that carries no meaning once stemmed ("shows" as "show")."""
    token = _american(token)
    stemmed = lexicon.LEMMAS.get(token) or _stem(token)
    if stemmed in lexicon.STOP_WORDS:
        return None
    canonical = lexicon.SYNONYMS.get(token) or lexicon.SYNONYMS.get(stemmed) or stemmed
    return None if canonical in lexicon.STOP_WORDS else canonical


@functools.lru_cache(maxsize=16384)
def _base(token: str) -> str:
    """A word's stem before synonyms ("checked" -> "check")."""
    return lexicon.LEMMAS.get(token) or _stem(token)


_NOT_SUPERLATIVE = frozenset(
    "test request interest forest honest suggest contest manifest harvest digest protest invest guest chest "
    "nest rest west quest pest arrest attest detest ingest modest unrest conquest".split()
)


def _superlative(word: str) -> bool:
    """ "fastest", "cheapest", "easiest": a word that ranks (a guess by its ending)."""
    return (len(word) >= 6 and word.endswith("est") and word not in _NOT_SUPERLATIVE and not word.endswith("iest")) or (
        word.endswith("iest") and len(word) >= 7
    )


def _verb_slot(tokens: list[str], index: int) -> bool:
    """Whether a word stands where a verb does: first, or after I/you/we/to/please."""
    return index == 0 or tokens[index - 1] in ("i", "you", "we", "to", "please", "and", "can", "should")


def _makes_code(tokens: list[str], index: int) -> bool:
    """A verb of making (write, create, define, declare, implement) whose object,
    within the next four words, is a piece of code: "write a function"."""
    return any(_base(t) in lexicon.CODE_NOUNS for t in tokens[index + 1 : index + 5])


def _number(token: str) -> str:
    """Digits as their value ("1.0" and "1" agree, "1,000" and "1000")."""
    plain = token.replace(",", "")
    try:
        value = float(plain)
    except ValueError:
        return token
    return str(int(value)) if value.is_integer() else str(value)


def features(text: str) -> Features:
    folded = _fold(text)
    lowered = folded.lower()
    rewritten = False
    for phrase, replacement in lexicon.PHRASES:
        if phrase in lowered:
            lowered = re.sub(rf"\b{re.escape(phrase)}\b", replacement, lowered)
            rewritten = True
    # Which words were capitalised (names), judged on the original text.
    capitalised = set()
    sentence_start = True
    original = list(_TOKEN.finditer(folded))
    for match in original:
        token = match.group()
        if token[0].isupper() and not sentence_start and token != "I":
            capitalised.add(token.lower())
        if _CAMEL.fullmatch(token):
            capitalised.add(token.lower())
        sentence_start = False
        end = match.end()
        if end < len(folded) and folded[end] in ".?!:" and (end + 1 == len(folded) or folded[end + 1] == " "):
            sentence_start = True

    critical: list[str] = []
    poles: set[tuple[str, int]] = set()
    content: set[str] = set()
    negations = 0
    if rewritten or len(lowered) != len(folded):
        tokens = [m.group() for m in _TOKEN.finditer(lowered)]
    else:  # the same spans (the pattern ignores case): no second pass
        tokens = [m.group().lower() for m in original]

    # The meaningful tokens in order (critical or content), with the
    # directional words between them, for `directed`.
    sequence: list[str] = []

    last_name = -2  # index of the last name token, to join runs of names for `directed`

    def add_critical(value: str, index: int = -1) -> None:
        nonlocal last_name
        if value.startswith("e:"):
            if index == last_name + 1 and sequence and sequence[-1].startswith("e:"):
                # A run of names is one name for the direction ("Eastern Time").
                sequence[-1] = sequence[-1] + "_" + value[2:]
            else:
                sequence.append(value)
            last_name = index
        else:
            sequence.append(value)
        if value not in critical:
            critical.append(value)

    # Formats written in capitals keep their order: YYYY-MM-DD is not DD-MM-YYYY.
    for match in _FORMAT.finditer(folded):
        add_critical("fmt:" + match.group().lower())
    qualifiers: set[str] = set()
    after_preposition = False
    asks: set[str] = set()
    for index, token in enumerate(tokens):
        slot, after_preposition = after_preposition, False
        if 0 < index < len(tokens) - 1 and tokens[index + 1] in _NAMING and tokens[index - 1] in ("the", "a", "an"):
            # "the where command", "the list keyword": a name, whatever the word.
            add_critical("id:" + token)
            continue
        if token in _ASKS:
            asks.add(_ASKS[token])
        if token[0] in '"“`':
            add_critical("q:" + token.strip('"“”`').strip().lower())
            continue
        if token.startswith("-") and len(token) > 1:
            add_critical("flag:" + token)
            continue
        if token[0].isdigit():
            number = _NUMBER.match(token)
            assert number is not None
            add_critical("n:" + _number(number.group()))
            if token.endswith("%"):
                add_critical("u:percent")
            continue
        if "." in token or token.endswith("()"):
            add_critical("id:" + token)
            continue
        if token.endswith("n't") or token in lexicon.NEGATIONS:
            negations += 1
            token = token[:-3] if token.endswith("n't") else token
            if token in lexicon.NEGATIONS or not token:
                continue
        if token in lexicon.NUMBER_WORDS:
            add_critical("n:" + _number(str(lexicon.NUMBER_WORDS[token])))
            continue
        if token in lexicon.ORDINALS and not (index + 1 < len(tokens) and tokens[index + 1] in ("of",)):
            add_critical("n:" + str(lexicon.ORDINALS[token]))
            continue
        if token in lexicon.ROMAN and token in capitalised:
            add_critical("n:" + str(lexicon.ROMAN[token]))
            continue
        if token in lexicon.UNITS and (lexicon.UNITS[token] not in _COUNTED_UNITS or _after_number(tokens, index)):
            add_critical("u:" + lexicon.UNITS[token])
            continue
        if token in lexicon.POLES:
            poles.add(lexicon.POLES[token])
        base = token[:-2] if token.endswith("'s") else token
        name = lexicon.DEMONYMS.get(base)
        if name is not None:
            add_critical("e:" + name, index)
            continue
        known = base in lexicon.NAMES and (base not in lexicon.AMBIGUOUS_NAMES or base in capitalised)
        if base in capitalised or known or token in capitalised:
            add_critical("e:" + lexicon.NAME_ALIASES.get(base, base), index)
            continue
        if token in _DIRECTIONAL:
            sequence.append(">")
        if token in _PREPOSITIONS:
            after_preposition = True
            continue
        if token in _DETERMINERS:
            after_preposition = slot  # "in *the* water"
            continue
        if token in lexicon.STOP_WORDS:
            continue
        canonical = _canonical(token)
        if canonical is not None:
            if slot or _superlative(token):
                # An added qualifier or superlative ("the *fastest* way") changes the answer.
                qualifiers.add(canonical)
            base = _base(token)
            if base in lexicon.LOOKUP_VERBS and (base != "list" or _verb_slot(tokens, index)):
                # Verbs of looking something up name how the answer is seen, not which
                # answer: "check", "see", "view", "display", "list" as a verb, one word.
                canonical = "lookup"
            elif base in lexicon.CODE_VERBS and _makes_code(tokens, index):
                canonical = "write-code"
            content.add(canonical)
            sequence.append(canonical)
    directed = set()
    for index in range(1, len(sequence) - 1):
        if sequence[index] == ">" and sequence[index - 1] != ">" and sequence[index + 1] != ">":
            directed.add((sequence[index - 1], sequence[index + 1]))
    words = [t for t in tokens if t[0].isalpha() and t not in ("of", "the", "a", "and")]
    initials = "".join(w[0] for w in words)
    return Features(
        tuple(sorted(critical)),
        negations,
        frozenset(poles),
        frozenset(content),
        frozenset(directed),
        initials,
        frozenset(qualifiers),
        frozenset(asks),
    )


def _after_number(tokens: list[str], index: int) -> bool:
    return index > 0 and (tokens[index - 1][0].isdigit() or tokens[index - 1] in lexicon.NUMBER_WORDS)


@dataclass(frozen=True, slots=True)
class MatchPolicy:
    """The thresholds: `cosine` for a candidate whose content words agree
    exactly; `rewrite_cosine` (higher) when they differ, which they may only
    by at most `max_added` words one side has and the other lacks (never a
    swap, never a qualifier)."""

    # Tuned on the even lines of bench/data/semantic_pairs.txt only.
    cosine: float = 0.50
    rewrite_cosine: float = 0.60
    max_added: int = 2


@dataclass(frozen=True, slots=True)
class Verdict:
    same: bool
    reason: str


def _critical_agree(a: Features, b: Features) -> bool:
    if a.critical == b.critical:
        return True
    # An acronym on one side may be spelled out on the other (GDP, CEO).
    only_a = [t for t in a.critical if t not in b.critical]
    only_b = [t for t in b.critical if t not in a.critical]
    return all(_acronym_of(t, b) or _implied(t, b) for t in only_a) and all(
        _acronym_of(t, a) or _implied(t, a) for t in only_b
    )


def _implied(token: str, other: Features) -> bool:
    """A name the other question implies by a name of its own: a GET request
    is an HTTP one, NumPy is Python's."""
    return any(token in lexicon.IMPLIES.get(t, ()) for t in other.critical)


def _acronym_of(token: str, other: Features) -> bool:
    """A name of 2 to 4 letters spelled out by a run of the other's words."""
    return token.startswith("e:") and 2 <= len(token) - 2 <= 4 and token[2:] in other.initials


def judge(a: Features, b: Features, cosine: float, policy: MatchPolicy) -> Verdict:
    """Whether a question with features `b` may be answered with the answer
    to `a`, their sentence vectors `cosine` apart."""
    if cosine < policy.cosine:
        return Verdict(False, "cosine")
    if not _critical_agree(a, b):
        return Verdict(False, "critical")
    if a.negations % 2 != b.negations % 2:
        return Verdict(False, "negation")
    if a.asks and b.asks and a.asks.isdisjoint(b.asks):
        # Both name the kind of answer and no kind is shared: why is not how, who is not where.
        return Verdict(False, "question word")
    if any((axis, -pole) in b.poles for axis, pole in a.poles):
        # A pole named alone is a content word as well: the word check below sees it.
        return Verdict(False, "antonym")
    if any((y, x) in b.directed for x, y in a.directed):
        return Verdict(False, "direction")
    if _attached_elsewhere(a, b):
        return Verdict(False, "attachment")
    only_a = a.content - b.content
    only_b = b.content - a.content
    if not only_a and not only_b:
        return Verdict(True, "same words")
    if cosine < policy.rewrite_cosine:
        return Verdict(False, "rewrite cosine")
    if only_a and only_b:
        # Forms of one word the stemmer missed ("natural", "naturally") align.
        aligned_a = {w for w in only_a if any(_same_root(w, o) for o in only_b)}
        aligned_b = {w for w in only_b if any(_same_root(w, o) for o in only_a)}
        only_a, only_b = only_a - aligned_a, only_b - aligned_b
    if only_a and only_b:
        # A word swapped for another: what a near neighbour looks like
        # (value/key, average/median); synonyms are in the lexicon.
        return Verdict(False, "words swapped")
    if len(only_a) + len(only_b) > policy.max_added:
        return Verdict(False, "words added")
    if (only_a & a.qualifiers) or (only_b & b.qualifiers):
        # An added qualifier ("speed of sound *in water*") changes the answer.
        return Verdict(False, "qualifier added")
    return Verdict(True, "words added")


def _attached_elsewhere(a: Features, b: Features) -> bool:
    """Two names swapped between the words "in"/"to" tie them to: "the time *in
    Tokyo* when it is noon *in London*" against the other way round."""
    tails = {x: y for x, y in a.directed if y.startswith("e:")}
    other = {x: y for x, y in b.directed if y.startswith("e:")}
    return any(
        x1 in other and x2 in other and other[x1] == y2 and other[x2] == y1
        for x1, y1 in tails.items()
        for x2, y2 in tails.items()
        if y1 != y2
    )


def _same_root(a: str, b: str) -> bool:
    shorter, longer = sorted((a, b), key=len)
    return len(shorter) >= 4 and longer.startswith(shorter) and len(longer) - len(shorter) <= 3
