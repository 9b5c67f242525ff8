"""A finding split across any chunk boundary is still caught.

For each kind of finding, the answer is streamed through the real server from
a paced fake upstream in two chunks, split at every index (and once a
character at a time): the client never sees the finding's text, gets exactly
what a scan of the whole answer would let through, and the decision is
recorded. Ordinary prose, on the other hand, leaves chunk for chunk."""

from __future__ import annotations

import asyncio
import random
import string
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest_asyncio

from pointsman.client import AsyncClient
from pointsman.firewall.v1 import firewall_pb2 as fw
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.app.server import PointsmanServer
from pointsman.type.v1 import firewall_pb2 as types

from fakes.openai_upstream import Answer, FakeOpenAI, Prompt, StreamPlan
from helpers_pb import chat_request, text_of
from server_fixtures import ServerFactory, collect

MODEL = "scripted"
_RANDOM = random.Random(13)


def _random(alphabet: str, length: int) -> str:
    return "".join(_RANDOM.choice(alphabet) for _ in range(length))


ALNUM = string.ascii_letters + string.digits
GITHUB = "ghp_" + _random(ALNUM, 36)
AWS = "AKIA" + _random(string.ascii_uppercase + "234567", 16)
OPENAI = "sk-proj-" + _random(ALNUM, 48)
SLACK = "xoxb-" + _random(string.digits, 12) + "-" + _random(ALNUM, 24)
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + "\n".join(_random(ALNUM + "+/", 64) for _ in range(3))
    + "\n-----END RSA PRIVATE KEY-----"
)


class ScriptedUpstream(FakeOpenAI):
    """Answers the prompt `case-N` with the chunks scripted for it, paced."""

    def __init__(self) -> None:
        super().__init__(chunk_delay_ms=2)
        self.scripts: dict[str, list[str]] = {}

    def _plan_stream(self, prompt: Prompt, answer: Answer) -> StreamPlan:
        return super()._plan_stream(prompt, Answer(self.scripts[prompt.user_text], "end"))


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    secret: str  # what the client must never see
    action: int  # the recorded decision's action
    expected: str  # what the client gets: the whole text's redaction, or what precedes a block
    # A toxic sentence is flagged whole, but its first words may leave before
    # the word that makes it toxic arrives: then the client gets at least
    # `expected` and at most the text before `secret`.
    exact: bool = True


def redacted(text: str, secret: str, placeholder: str) -> Case:
    return Case(placeholder, text, secret, types.ACTION_REDACT, text.replace(secret, f"<{placeholder}>"))


def blocked(name: str, text: str, secret: str) -> Case:
    return Case(name, text, secret, types.ACTION_BLOCK, text[: text.index(secret)])


CASES = [
    redacted("Please write to jane.doe@example.com for details.", "jane.doe@example.com", "EMAIL_ADDRESS"),
    redacted("Call me on 212-555-0187 after lunch.", "212-555-0187", "PHONE_NUMBER"),
    redacted("Paid with card 4111 1111 1111 1111 yesterday.", "4111 1111 1111 1111", "CREDIT_CARD"),
    redacted("Send it to 1BoatSLRHtKNngkdXEeobR76b53LETtpyT today.", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "CRYPTO"),
    redacted("Wire it to DE89 3704 0044 0532 0130 00 by Friday.", "DE89 3704 0044 0532 0130 00", "IBAN_CODE"),
    blocked("github", f"Your token is {GITHUB} and it works.", GITHUB),
    blocked("aws", f"Use {AWS} as the key id.", AWS),
    blocked("openai", f"export OPENAI_API_KEY={OPENAI} now", OPENAI),
    blocked("slack", f"The bot token: {SLACK} (keep it).", SLACK),
    blocked("pem", f"Here it is:\n{PEM}\nDone.", PEM),
    blocked("regex rule", "The codename is project falcon 42 as agreed.", "project falcon 42"),
    blocked("keyword rule", "We shipped bluebird today, finally.", "bluebird"),
    blocked("substring rule", "It runs the zeta protocol quietly.", "zeta protocol"),
    Case("toxicity", "That is fine. You are a fucking idiot.", "fucking", types.ACTION_BLOCK, "That is fine. ", False),
]


def splits(text: str) -> list[list[str]]:
    """The text in two chunks at every index, and one character per chunk."""
    return [[text[:i], text[i:]] for i in range(1, len(text))] + [list(text)]


@pytest_asyncio.fixture
async def scripted(start_server: ServerFactory) -> AsyncIterator[tuple[ScriptedUpstream, PointsmanServer]]:
    async with ScriptedUpstream() as upstream:
        server = await start_server(OPENAI_BASE_URL=upstream.base_url, OPENAI_API_KEY="test", OPENAI_MODELS=[MODEL])
        yield upstream, server


async def add_rules(client: AsyncClient) -> None:
    rules = [
        fw.Rule(kind=fw.RULE_KIND_BLOCK, match_type=fw.MATCH_TYPE_REGEX, pattern=r"project\s+falcon\s+\d+"),
        fw.Rule(kind=fw.RULE_KIND_BLOCK, match_type=fw.MATCH_TYPE_TOPIC, keywords=["bluebird"]),
        fw.Rule(kind=fw.RULE_KIND_BLOCK, match_type=fw.MATCH_TYPE_SUBSTRING, pattern="Zeta Protocol"),
    ]
    for rule in rules:
        rule.scope = fw.RULE_SCOPE_OUTPUT
        rule.enabled = True
        await client.firewall.CreateRule(fw.CreateRuleRequest(rule=rule))


async def test_a_finding_split_at_any_point_never_reaches_the_client(
    scripted: tuple[ScriptedUpstream, PointsmanServer],
) -> None:
    upstream, server = scripted
    async with AsyncClient(server.address, timeout=30) as client:
        await add_rules(client)
        jobs = []
        for case in CASES:
            for pieces in splits(case.text):
                key = f"case-{len(upstream.scripts)}"
                upstream.scripts[key] = pieces
                jobs.append((case, pieces, key))
        limit = asyncio.Semaphore(8)

        async def run(key: str) -> list[orch.ChatResponse]:
            async with limit:
                return await collect(client.orchestrator.Chat(chat_request(key, model=MODEL)))

        results = await asyncio.gather(*(run(key) for _, _, key in jobs))
        decisions: set[str] = set()
        for (case, pieces, _), events in zip(jobs, results, strict=True):
            where = f"{case.name} split as {[len(p) for p in pieces][:3]}"
            seen = text_of(events)
            assert case.secret not in seen, where
            if case.exact:
                assert seen == case.expected, where
            else:
                assert seen.startswith(case.expected) and case.text.startswith(seen), where
            notices = [e.firewall_notice for e in events if e.HasField("firewall_notice")]
            assert [(n.direction, n.verdict.action) for n in notices] == [(types.DIRECTION_OUTPUT, case.action)], where
            assert notices[0].verdict.decision, where
            decisions.add(notices[0].verdict.decision)
            reason = orch.FINISH_REASON_CONTENT_FILTER if case.action == types.ACTION_BLOCK else orch.FINISH_REASON_STOP
            assert events[-1].finish.reason == reason, where
        assert len(decisions) == len(jobs)  # one decision per answer
        recorded: set[str] = set()
        page = ""
        while True:
            listed = await client.firewall.ListDecisions(fw.ListDecisionsRequest(page_size=1000, page_token=page))
            recorded |= {d.name for d in listed.decisions}
            page = listed.next_page_token
            if not page:
                break
        assert decisions <= recorded


async def test_prose_leaves_delta_for_delta(scripted: tuple[ScriptedUpstream, PointsmanServer]) -> None:
    upstream, server = scripted
    words = [f"{w} " for w in "The capital of France is Paris and it sits on the Seine river in the north".split()]
    upstream.scripts["case-prose"] = words
    async with AsyncClient(server.address, timeout=30) as client:
        events = await collect(client.orchestrator.Chat(chat_request("case-prose", model=MODEL)))
    deltas = [e.text_delta.text for e in events if e.HasField("text_delta")]
    assert deltas == words
