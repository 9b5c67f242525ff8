"""The seeds' remaining details through real servers on port 0: scans that
run only the named detectors, seed 003's service statistics (GetStats and
/metrics), and a default model for callers that name none."""

from __future__ import annotations

import asyncio
import random
import string
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from test_metrics import scrape, value

from pointsman.client import AsyncClient
from pointsman.firewall.v1 import firewall_pb2 as fw
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.type.v1 import firewall_pb2 as types

from helpers_pb import user
from server_fixtures import collect, raises

EMAIL = "kim.lee@example.org"
TOKEN = "ghp_" + "".join(random.Random(3).choice(string.ascii_letters + string.digits) for _ in range(36))
ABUSE = "You are a stupid fucking idiot."
MIXED = f"Mail {EMAIL} the token {TOKEN}, about Bern. {ABUSE}"
POINTSMAN = str(Path(sys.executable).with_name("pointsman"))


def categories(verdict: types.Verdict) -> set[int]:
    return {f.category for f in verdict.findings}


async def scan(client: AsyncClient, text: str, *detectors: int) -> types.Verdict:
    return (await client.firewall.Scan(fw.ScanRequest(text=text, detectors=list(detectors)))).verdict


# Per-detector scans -------------------------------------------------------------


async def test_a_scan_runs_only_the_named_detectors(client: AsyncClient) -> None:
    await client.firewall.CreateRule(
        fw.CreateRuleRequest(
            rule=fw.Rule(kind=fw.RULE_KIND_BLOCK, match_type=fw.MATCH_TYPE_SUBSTRING, pattern="bern", enabled=True)
        )
    )
    pii = await scan(client, MIXED, fw.SCAN_DETECTOR_PII)
    # Only PII ran, so the verdict is decided on PII alone: redact, not block.
    assert categories(pii) == {types.CATEGORY_PII} and pii.action == types.ACTION_REDACT
    assert EMAIL not in pii.redacted_text and TOKEN in pii.redacted_text

    secrets = await scan(client, MIXED, fw.SCAN_DETECTOR_SECRETS)
    assert categories(secrets) == {types.CATEGORY_SECRET} and secrets.action == types.ACTION_BLOCK
    toxicity = await scan(client, MIXED, fw.SCAN_DETECTOR_TOXICITY)
    assert categories(toxicity) == {types.CATEGORY_TOXICITY}
    rules = await scan(client, MIXED, fw.SCAN_DETECTOR_RULES)
    assert categories(rules) == {types.CATEGORY_BLOCK_RULE}
    two = await scan(client, MIXED, fw.SCAN_DETECTOR_PII, fw.SCAN_DETECTOR_TOXICITY)
    assert categories(two) == {types.CATEGORY_PII, types.CATEGORY_TOXICITY}

    # The partial scans above did not stand in for a full one in the findings
    # cache: the same text scanned with everything finds everything.
    everything = {types.CATEGORY_PII, types.CATEGORY_SECRET, types.CATEGORY_TOXICITY, types.CATEGORY_BLOCK_RULE}
    assert categories(await scan(client, MIXED)) == everything
    # ... and a full scan cached first does not leak into a partial one.
    assert categories(await scan(client, MIXED, fw.SCAN_DETECTOR_SECRETS)) == {types.CATEGORY_SECRET}

    # Each scan is recorded as a decision with what it found.
    page = await client.firewall.ListDecisions(fw.ListDecisionsRequest(page_size=100))
    assert len(page.decisions) == 7


async def test_scan_stream_takes_detectors_too(client: AsyncClient) -> None:
    async def requests() -> AsyncIterator[fw.ScanStreamRequest]:
        yield fw.ScanStreamRequest(item_id="a", text=MIXED, detectors=[fw.SCAN_DETECTOR_SECRETS])
        yield fw.ScanStreamRequest(item_id="b", text=MIXED)

    first, second = await collect(client.firewall.ScanStream(requests()))
    assert categories(first.verdict) == {types.CATEGORY_SECRET}
    assert {types.CATEGORY_PII, types.CATEGORY_SECRET, types.CATEGORY_TOXICITY} <= categories(second.verdict)


async def test_an_unknown_detector_is_an_invalid_argument_naming_the_field(client: AsyncClient) -> None:
    for bad in (99, fw.SCAN_DETECTOR_UNSPECIFIED):
        error = await raises(client.firewall.Scan(fw.ScanRequest(text="hi", detectors=[fw.SCAN_DETECTOR_PII, bad])))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in error.field_violations] == ["detectors[1]"]


async def test_cli_scan_with_detector(server: Any) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [POINTSMAN, "scan", MIXED, *args, "--address", server.address]
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    only_pii = await asyncio.to_thread(run, "--detector", "pii")
    assert only_pii.returncode == 0, only_pii.stderr
    assert only_pii.stdout.splitlines()[0] == "redact" and "secret" not in only_pii.stdout
    two = await asyncio.to_thread(run, "--detector", "secrets", "--detector", "toxicity")
    assert two.stdout.splitlines()[0] == "block" and "secret" in two.stdout and "toxicity" in two.stdout
    assert "pii" not in two.stdout
    bad = await asyncio.to_thread(run, "--detector", "nope")
    assert bad.returncode != 0 and "invalid choice" in bad.stderr


# Seed 003's service statistics -------------------------------------------------------


def complete(text: str, model: str = "builtin") -> orch.CompleteRequest:
    return orch.CompleteRequest(model=model, messages=[user(text)])


async def test_service_statistics_in_get_stats_and_metrics(start_server: Any) -> None:
    server = await start_server(POINTSMAN_CACHE_TTL_SECONDS=60, POINTSMAN_METRICS_ADDRESS="127.0.0.1:0")
    async with AsyncClient(server.address, timeout=10) as client:
        empty = await client.orchestrator.GetStats(orch.GetStatsRequest())
        assert (empty.messages_processed, empty.llm_calls, empty.llm_calls_skipped) == (0, 0, 0)
        assert empty.average_response_time_ms == 0.0
        await client.orchestrator.Complete(complete("one two"))
        await client.orchestrator.Complete(complete("three four"))
        cached = await client.orchestrator.Complete(complete("one two"))
        assert cached.start.cached
        blocked = await raises(client.orchestrator.Complete(complete(f"deploy with {TOKEN}")))
        assert blocked.code == grpc.StatusCode.PERMISSION_DENIED

        stats = await client.orchestrator.GetStats(orch.GetStatsRequest())
        # Four messages: two sent upstream, one skipped (the cache), one refused before any upstream.
        assert stats.messages_processed == stats.requests == 4
        assert stats.llm_calls == 2
        assert stats.llm_calls_skipped == stats.cache_hits == 1
        assert stats.average_response_time_ms > 0

        command = [POINTSMAN, "stats", "--address", server.address]
        printed = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=30)
        assert "messages processed\t4\tLLM calls 2\tskipped (cache) 1\taverage " in printed.stdout, printed.stderr

        samples = await scrape(server.metrics_endpoint.port)
        assert value(samples, "pointsman_messages_processed_total") == 4
        assert value(samples, "pointsman_llm_calls_total") == 2
        assert value(samples, "pointsman_llm_calls_skipped_total") == 1
        saved = cached.usage.input_tokens + cached.usage.output_tokens
        assert value(samples, "pointsman_tokens_saved_total") == stats.tokens_saved == saved > 0
        assert value(samples, "pointsman_chat_response_seconds_count") == 4
        assert value(samples, "pointsman_chat_response_seconds_sum") > 0
        assert value(samples, "pointsman_active_conversations") == 0

        # A Converse session counts as active while it is open.
        turns: asyncio.Queue[orch.ConverseRequest | None] = asyncio.Queue()
        await turns.put(orch.ConverseRequest(setup=orch.ConversationSetup(model="builtin")))

        async def requests() -> AsyncIterator[orch.ConverseRequest]:
            while (item := await turns.get()) is not None:
                yield item

        stream = client.orchestrator.Converse(requests())
        first = await anext(aiter(stream))
        assert first.WhichOneof("event") == "started"
        assert value(await scrape(server.metrics_endpoint.port), "pointsman_active_conversations") == 1
        await turns.put(None)
        assert [r async for r in stream] == []
        assert value(await scrape(server.metrics_endpoint.port), "pointsman_active_conversations") == 0


# A default model -------------------------------------------------------------------


async def test_the_default_model_answers_requests_that_name_none(start_server: Any) -> None:
    server = await start_server(POINTSMAN_DEFAULT_MODEL="builtin")
    async with AsyncClient(server.address, timeout=10) as client:
        answer = await client.orchestrator.Complete(complete("hello", model=""))
        assert answer.start.model == "builtin" and answer.message.content
        events = await collect(client.orchestrator.Chat(orch.ChatRequest(messages=[user("hello")])))
        assert events[0].start.model == "builtin" and events[-1].WhichOneof("event") == "finish"
        # A named model still wins over the default.
        error = await raises(client.orchestrator.Complete(complete("hello", model="no-such-model")))
        assert error.code == grpc.StatusCode.NOT_FOUND

        async def requests() -> AsyncIterator[orch.ConverseRequest]:
            yield orch.ConverseRequest(setup=orch.ConversationSetup())
            yield orch.ConverseRequest(turn=orch.UserTurn(turn_id="t1", content="hi"))

        converse = await collect(client.orchestrator.Converse(requests()))
        assert converse[0].WhichOneof("event") == "started" and converse[-1].WhichOneof("event") == "finish"

        items = [orch.BatchItem(custom_id="a", messages=[user("about a")])]
        batch = (await client.orchestrator.CreateBatch(orch.CreateBatchRequest(items=items))).batch
        events = await collect(client.orchestrator.WatchBatch(orch.WatchBatchRequest(name=batch.name)))
        [result] = [e.result for e in events if e.WhichOneof("event") == "result"]
        assert result.custom_id == "a" and result.response.start.model == "builtin"


async def test_without_a_default_an_empty_model_is_invalid(client: AsyncClient) -> None:
    error = await raises(client.orchestrator.Complete(complete("hello", model="")))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == ["model"]


@pytest.mark.parametrize("alias", ["no-such-model", "builtin-embedding"])
def test_a_default_model_that_is_not_a_chat_alias_stops_the_server(alias: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pointsman.cli.main", "serve", "--address", "127.0.0.1:0"],
        env={"POINTSMAN_DEFAULT_MODEL": alias, "PATH": "/usr/bin:/bin", "DATABASE_URL": "sqlite://:memory:"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "POINTSMAN_DEFAULT_MODEL" in result.stderr and alias in result.stderr
    assert "Traceback" not in result.stderr
