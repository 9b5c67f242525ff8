"""Rules (CRUD, smart mode, watch), scans, decisions, and the input firewall in
front of the model."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from pointsman.client import AsyncClient
from pointsman.firewall.v1 import firewall_pb2 as fw
from pointsman.type.v1 import firewall_pb2 as types

from helpers_pb import chat_request
from server_fixtures import collect, eventually, raises


def rule(
    kind: int, match_type: int, pattern: str = "", keywords: tuple[str, ...] = (), **extra: Any
) -> fw.CreateRuleRequest:
    return fw.CreateRuleRequest(
        rule=fw.Rule(kind=kind, match_type=match_type, pattern=pattern, keywords=keywords, enabled=True, **extra)
    )


async def scan(client: AsyncClient, text: str, direction: int = types.DIRECTION_INPUT) -> types.Verdict:
    return (await client.firewall.Scan(fw.ScanRequest(text=text, direction=direction))).verdict


async def test_rule_crud_round_trip(client: AsyncClient) -> None:
    created = (
        await client.firewall.CreateRule(
            rule(fw.RULE_KIND_BLOCK, fw.MATCH_TYPE_SUBSTRING, "Project X", description="leak")
        )
    ).rule
    assert created.name.startswith("rules/") and created.create_time.seconds > 0
    got = (await client.firewall.GetRule(fw.GetRuleRequest(name=created.name))).rule
    assert got == created
    update = fw.UpdateRuleRequest(rule=fw.Rule(name=created.name, pattern="Project Y", description="ignored"))
    update.update_mask.paths.append("pattern")
    updated = (await client.firewall.UpdateRule(update)).rule
    assert updated.pattern == "Project Y" and updated.description == "leak"
    assert updated.create_time == created.create_time
    listed = (await client.firewall.ListRules(fw.ListRulesRequest())).rules
    assert [r.name for r in listed] == [created.name]
    await client.firewall.DeleteRule(fw.DeleteRuleRequest(name=created.name))
    error = await raises(client.firewall.GetRule(fw.GetRuleRequest(name=created.name)))
    assert error.code == grpc.StatusCode.NOT_FOUND


async def test_smart_mode_blocklist_then_allowlist(client: AsyncClient) -> None:
    assert (await scan(client, "anything at all")).action == types.ACTION_ALLOW
    await client.firewall.CreateRule(
        rule(
            fw.RULE_KIND_BLOCK,
            fw.MATCH_TYPE_REGEX,
            r"\bpassword\s*=",
        )
    )
    assert (await scan(client, "my PASSWORD = hunter2")).action == types.ACTION_BLOCK
    assert (await scan(client, "the weather today")).action == types.ACTION_ALLOW
    # The first allow rule switches to allowlist mode: only matching content passes.
    await client.firewall.CreateRule(rule(fw.RULE_KIND_ALLOW, fw.MATCH_TYPE_TOPIC, keywords=("weather", "forecast")))
    assert (await scan(client, "the weather today")).action == types.ACTION_ALLOW
    verdict = await scan(client, "tell me a joke")
    assert verdict.action == types.ACTION_BLOCK
    assert [f.category for f in verdict.findings] == [types.CATEGORY_NOT_ALLOWED]
    # Block rules still win over allow rules.
    verdict = await scan(client, "weather password = 1")
    assert verdict.action == types.ACTION_BLOCK
    assert verdict.findings[0].category == types.CATEGORY_BLOCK_RULE
    # Topics match whole words only.
    assert (await scan(client, "weathering heights")).action == types.ACTION_BLOCK


async def test_rule_scope_applies_to_its_direction(client: AsyncClient) -> None:
    await client.firewall.CreateRule(
        rule(fw.RULE_KIND_BLOCK, fw.MATCH_TYPE_SUBSTRING, "internal", scope=fw.RULE_SCOPE_OUTPUT)
    )
    assert (await scan(client, "internal memo")).action == types.ACTION_ALLOW
    assert (await scan(client, "internal memo", types.DIRECTION_OUTPUT)).action == types.ACTION_BLOCK


async def test_blocked_chat_fails_with_content_blocked_and_is_recorded(client: AsyncClient) -> None:
    created = (await client.firewall.CreateRule(rule(fw.RULE_KIND_BLOCK, fw.MATCH_TYPE_SUBSTRING, "forbidden"))).rule
    error = await raises(collect(client.orchestrator.Chat(chat_request("this is forbidden text"))))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    assert error.reason == "CONTENT_BLOCKED"
    assert error.metadata["rules"] == created.name
    assert error.metadata["categories"] == "block_rule"
    assert "forbidden" not in error.message  # never echo the text
    decisions = (await client.firewall.ListDecisions(fw.ListDecisionsRequest(action=types.ACTION_BLOCK))).decisions
    assert len(decisions) == 1
    decision = decisions[0]
    assert decision.name == error.metadata["decision"]
    assert decision.request_id == error.request_id
    assert decision.direction == types.DIRECTION_INPUT
    assert decision.findings[0].rule == created.name
    assert len(decision.content_sha256) == 64


async def test_rule_change_applies_to_the_next_request(client: AsyncClient) -> None:
    assert await collect(client.orchestrator.Chat(chat_request("about cats")))
    created = (await client.firewall.CreateRule(rule(fw.RULE_KIND_BLOCK, fw.MATCH_TYPE_SUBSTRING, "cats"))).rule
    await raises(collect(client.orchestrator.Chat(chat_request("about cats"))))
    update = fw.UpdateRuleRequest(rule=fw.Rule(name=created.name, enabled=False))
    update.update_mask.paths.append("enabled")
    await client.firewall.UpdateRule(update)
    assert await collect(client.orchestrator.Chat(chat_request("about cats")))


async def test_decisions_page_newest_first_with_filters(client: AsyncClient) -> None:
    await client.firewall.CreateRule(rule(fw.RULE_KIND_BLOCK, fw.MATCH_TYPE_SUBSTRING, "bad", scope=fw.RULE_SCOPE_BOTH))
    for i in range(5):
        await scan(client, f"good {i}")
    await scan(client, "bad one", types.DIRECTION_OUTPUT)
    first = await client.firewall.ListDecisions(fw.ListDecisionsRequest(page_size=4))
    second = await client.firewall.ListDecisions(fw.ListDecisionsRequest(page_size=4, page_token=first.next_page_token))
    names = [d.name for d in [*first.decisions, *second.decisions]]
    assert len(names) == 6 == len(set(names)) and not second.next_page_token
    assert first.decisions[0].action == types.ACTION_BLOCK  # newest first
    only_output = await client.firewall.ListDecisions(fw.ListDecisionsRequest(direction=types.DIRECTION_OUTPUT))
    assert [d.action for d in only_output.decisions] == [types.ACTION_BLOCK]
    by_category = await client.firewall.ListDecisions(fw.ListDecisionsRequest(category=types.CATEGORY_BLOCK_RULE))
    assert len(by_category.decisions) == 1
    later = fw.ListDecisionsRequest()
    later.start_time.GetCurrentTime()
    later.start_time.seconds += 60
    assert not (await client.firewall.ListDecisions(later)).decisions


async def test_watch_rules_sends_snapshot_then_changes(client: AsyncClient) -> None:
    existing = (await client.firewall.CreateRule(rule(fw.RULE_KIND_BLOCK, fw.MATCH_TYPE_SUBSTRING, "one"))).rule
    events: list[fw.WatchRulesResponse] = []

    async def watch() -> None:
        async for event in client.firewall.WatchRules(fw.WatchRulesRequest()):
            events.append(event)

    watcher = asyncio.create_task(watch())
    await eventually(lambda: len(events) == 1)
    assert [r.name for r in events[0].snapshot.rules] == [existing.name]
    created = (await client.firewall.CreateRule(rule(fw.RULE_KIND_ALLOW, fw.MATCH_TYPE_SUBSTRING, "two"))).rule
    await client.firewall.DeleteRule(fw.DeleteRuleRequest(name=existing.name))
    await eventually(lambda: len(events) == 3)
    assert (events[1].change.change_type, events[1].change.rule.name) == (fw.CHANGE_TYPE_CREATED, created.name)
    assert (events[2].change.change_type, events[2].change.rule.name) == (fw.CHANGE_TYPE_DELETED, existing.name)
    watcher.cancel()


async def test_scan_stream_answers_each_item_in_order(client: AsyncClient) -> None:
    await client.firewall.CreateRule(rule(fw.RULE_KIND_BLOCK, fw.MATCH_TYPE_SUBSTRING, "nope"))

    async def items() -> Any:
        for i, text in enumerate(["fine", "nope here", "also fine"]):
            yield fw.ScanStreamRequest(item_id=str(i), text=text)

    responses = await collect(client.firewall.ScanStream(items()))
    assert [(r.item_id, r.verdict.action) for r in responses] == [
        ("0", types.ACTION_ALLOW),
        ("1", types.ACTION_BLOCK),
        ("2", types.ACTION_ALLOW),
    ]


async def test_allowlist_topics_from_settings(start_server: Any) -> None:
    server = await start_server(FIREWALL_ALLOWLIST_TOPICS=["billing", "refunds"])
    async with AsyncClient(server.address) as client:
        assert await collect(client.orchestrator.Chat(chat_request("a question about billing")))
        error = await raises(collect(client.orchestrator.Chat(chat_request("write me a poem"))))
        assert error.reason == "CONTENT_BLOCKED" and error.metadata["categories"] == "not_allowed"


async def test_log_only_when_block_on_violation_is_off(start_server: Any) -> None:
    server = await start_server(FIREWALL_BLOCK_ON_VIOLATION=False)
    async with AsyncClient(server.address) as client:
        await client.firewall.CreateRule(rule(fw.RULE_KIND_BLOCK, fw.MATCH_TYPE_SUBSTRING, "flagged"))
        events = await collect(client.orchestrator.Chat(chat_request("flagged words")))
        notice = next(e.firewall_notice for e in events if e.WhichOneof("event") == "firewall_notice")
        assert notice.verdict.action == types.ACTION_LOG
        logged = await client.firewall.ListDecisions(fw.ListDecisionsRequest(action=types.ACTION_LOG))
        assert len(logged.decisions) == 1


async def test_firewall_disabled_lets_everything_through(start_server: Any) -> None:
    server = await start_server(FIREWALL_ENABLED=False)
    async with AsyncClient(server.address) as client:
        await client.firewall.CreateRule(rule(fw.RULE_KIND_BLOCK, fw.MATCH_TYPE_SUBSTRING, "x"))
        assert (await scan(client, "x")).action == types.ACTION_ALLOW
