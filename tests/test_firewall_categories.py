"""PII, secrets and toxicity through a real server: the action each category
takes (block, redact, log, off), redaction styles, decisions, and bad input."""

from __future__ import annotations

import hashlib
import random
import string
from typing import Any

import grpc

from pointsman.client import AsyncClient
from pointsman.firewall.v1 import firewall_pb2 as fw
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.type.v1 import chat_pb2
from pointsman.type.v1 import firewall_pb2 as types

from helpers_pb import chat_request
from server_fixtures import collect, raises

EMAIL = "kim.lee@example.org"
CARD = "4111 1111 1111 1111"
TOKEN = "ghp_" + "".join(random.Random(3).choice(string.ascii_letters + string.digits) for _ in range(36))
ABUSE = "You are a stupid fucking idiot."


async def scan(client: AsyncClient, text: str) -> types.Verdict:
    return (await client.firewall.Scan(fw.ScanRequest(text=text))).verdict


def kinds(verdict: types.Verdict) -> list[tuple[int, str]]:
    return [(f.category, f.type) for f in verdict.findings]


async def test_default_actions_redact_pii_block_secrets_and_abuse(client: AsyncClient) -> None:
    text = f"Email me at {EMAIL} about card {CARD}."
    verdict = await scan(client, text)
    assert verdict.action == types.ACTION_REDACT
    assert kinds(verdict) == [(types.CATEGORY_PII, "EMAIL_ADDRESS"), (types.CATEGORY_PII, "CREDIT_CARD")]
    assert [text[f.start : f.end] for f in verdict.findings] == [EMAIL, CARD]
    assert verdict.redacted_text == "Email me at <EMAIL_ADDRESS> about card <CREDIT_CARD>."

    secret = await scan(client, f"why does `git push` fail with {TOKEN}?")
    assert secret.action == types.ACTION_BLOCK
    assert kinds(secret) == [(types.CATEGORY_SECRET, "GITHUB_TOKEN")]
    assert TOKEN not in str(secret) and not secret.redacted_text
    assert secret.findings[0].preview == f"ghp_…{TOKEN[-4:]}"  # identifies it, reveals nothing

    abuse = await scan(client, f"Summarise this. {ABUSE}")
    assert abuse.action == types.ACTION_BLOCK
    assert kinds(abuse) == [(types.CATEGORY_TOXICITY, "PROFANITY")]

    clean = await scan(client, "What is the capital of France?")
    assert clean.action == types.ACTION_ALLOW and not clean.findings


async def test_blocked_chat_names_categories_never_the_secret(client: AsyncClient) -> None:
    error = await raises(collect(client.orchestrator.Chat(chat_request(f"deploy with token {TOKEN} please"))))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED and error.reason == "CONTENT_BLOCKED"
    assert error.metadata["categories"] == "secret"
    assert TOKEN not in error.message and TOKEN not in str(error.metadata)
    decisions = (await client.firewall.ListDecisions(fw.ListDecisionsRequest(category=types.CATEGORY_SECRET))).decisions
    assert [d.name for d in decisions] == [error.metadata["decision"]]
    assert decisions[0].findings[0].type == "GITHUB_TOKEN"
    prompt = f"deploy with token {TOKEN} please"
    assert decisions[0].content_sha256 == hashlib.sha256(prompt.encode()).hexdigest()


async def test_redacted_chat_goes_through_with_a_notice(client: AsyncClient) -> None:
    events = await collect(client.orchestrator.Chat(chat_request(f"Write to {EMAIL} and say hi")))
    notice = next(e.firewall_notice for e in events if e.WhichOneof("event") == "firewall_notice")
    assert notice.verdict.action == types.ACTION_REDACT
    assert notice.verdict.redacted_text == "Write to <EMAIL_ADDRESS> and say hi"
    assert any(e.WhichOneof("event") == "finish" for e in events)


async def test_actions_per_category_from_settings(start_server: Any) -> None:
    server = await start_server(
        FIREWALL_PII_ACTION="block",
        FIREWALL_SECRET_ACTION="redact",
        FIREWALL_TOXICITY_ACTION="log",
        FIREWALL_REDACTION_STYLE="mask",
    )
    async with AsyncClient(server.address) as client:
        error = await raises(collect(client.orchestrator.Chat(chat_request(f"my card is {CARD}"))))
        assert error.reason == "CONTENT_BLOCKED" and error.metadata["categories"] == "pii"

        secret = await scan(client, f"token {TOKEN} fails")
        assert secret.action == types.ACTION_REDACT
        assert secret.redacted_text == "token " + "*" * (len(TOKEN) - 4) + TOKEN[-4:] + " fails"

        abuse = await scan(client, ABUSE)
        assert abuse.action == types.ACTION_LOG and abuse.findings and not abuse.redacted_text
        logged = await client.firewall.ListDecisions(fw.ListDecisionsRequest(action=types.ACTION_LOG))
        assert [d.findings[0].category for d in logged.decisions] == [types.CATEGORY_TOXICITY]


async def test_category_off_is_not_scanned(start_server: Any) -> None:
    server = await start_server(FIREWALL_PII_ACTION="off", FIREWALL_TOXICITY_ACTION="off")
    async with AsyncClient(server.address) as client:
        verdict = await scan(client, f"{ABUSE} Mail {EMAIL}")
        assert verdict.action == types.ACTION_ALLOW and not verdict.findings
        assert (await scan(client, f"key {TOKEN}")).action == types.ACTION_BLOCK


async def test_hash_redaction_with_a_salt_is_stable(start_server: Any) -> None:
    server = await start_server(FIREWALL_REDACTION_STYLE="hash", FIREWALL_REDACTION_SALT="pepper-pepper-pepper")
    async with AsyncClient(server.address) as client:
        first = (await scan(client, f"mail {EMAIL}")).redacted_text
        second = (await scan(client, f"write {EMAIL}")).redacted_text
        digest = first.removeprefix("mail ")
        assert len(digest) == 64 and EMAIL not in first
        assert second == f"write {digest}"


async def test_block_on_violation_off_logs_secrets(start_server: Any) -> None:
    server = await start_server(FIREWALL_BLOCK_ON_VIOLATION=False)
    async with AsyncClient(server.address) as client:
        assert (await scan(client, f"token {TOKEN}")).action == types.ACTION_LOG
        events = await collect(client.orchestrator.Chat(chat_request(f"token {TOKEN}")))
        notice = next(e.firewall_notice for e in events if e.WhichOneof("event") == "firewall_notice")
        assert notice.verdict.action == types.ACTION_LOG


async def test_conversation_with_pii_in_an_earlier_turn_is_redacted_every_turn(client: AsyncClient) -> None:
    messages = [
        chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=f"My email is {EMAIL}"),
        chat_pb2.ChatMessage(role=chat_pb2.ROLE_ASSISTANT, content="Noted."),
        chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content="What did I tell you?"),
    ]
    events = await collect(client.orchestrator.Chat(orch.ChatRequest(model="builtin", messages=messages)))
    notice = next(e.firewall_notice for e in events if e.WhichOneof("event") == "firewall_notice")
    assert notice.verdict.redacted_text == "My email is <EMAIL_ADDRESS>\nNoted.\nWhat did I tell you?"
    assert notice.verdict.findings[0].start == len("My email is ")


# -- bad input ------------------------------------------------------------------


async def test_binary_content_is_invalid_and_the_server_carries_on(client: AsyncClient) -> None:
    for text in ["PK\x03\x04\x00\x00binary zip", "\x01\x02\x03\x04\x05\x06\x07\x08 x"]:
        error = await raises(client.firewall.Scan(fw.ScanRequest(text=text)))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in error.field_violations] == ["text"]
        assert text not in error.message
    error = await raises(collect(client.orchestrator.Chat(chat_request("hello\x00world"))))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == ["messages[0].content"]
    assert (await scan(client, "still fine")).action == types.ACTION_ALLOW


async def test_enormous_and_empty_scans_are_invalid(start_server: Any) -> None:
    server = await start_server(POINTSMAN_MAX_INPUT_CHARS=50_000)
    async with AsyncClient(server.address) as client:
        error = await raises(client.firewall.Scan(fw.ScanRequest(text="a" * 50_001)))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 50000" in error.field_violations[0].description
        error = await raises(client.firewall.Scan(fw.ScanRequest(text="")))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        # At the limit, a pathological text is scanned, off the event loop, and answered.
        verdict = await scan(client, ("1 " * 25_000)[:50_000])
        assert verdict.action in (types.ACTION_ALLOW, types.ACTION_REDACT)


async def test_invalid_rules_are_invalid_argument(client: AsyncClient) -> None:
    for bad in [
        fw.Rule(kind=fw.RULE_KIND_BLOCK, match_type=fw.MATCH_TYPE_REGEX, pattern="(unclosed", enabled=True),
        fw.Rule(kind=fw.RULE_KIND_BLOCK, match_type=fw.MATCH_TYPE_REGEX, pattern="", enabled=True),
        fw.Rule(kind=fw.RULE_KIND_BLOCK, match_type=fw.MATCH_TYPE_SUBSTRING, pattern="x" * 5000, enabled=True),
    ]:
        error = await raises(client.firewall.CreateRule(fw.CreateRuleRequest(rule=bad)))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in error.field_violations] == ["rule.pattern"]
    assert not (await client.firewall.ListRules(fw.ListRulesRequest())).rules


async def test_scan_stream_rejects_a_binary_item(client: AsyncClient) -> None:
    async def items() -> Any:
        yield fw.ScanStreamRequest(item_id="0", text=f"mail {EMAIL}")
        yield fw.ScanStreamRequest(item_id="1", text="bin\x00ary")

    responses: list[fw.ScanStreamResponse] = []

    async def read() -> None:
        async for response in client.firewall.ScanStream(items()):
            responses.append(response)

    error = await raises(read())
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [(r.item_id, r.verdict.action) for r in responses] == [("0", types.ACTION_REDACT)]
