"""Topic rules by meaning through a real server: an allow rule with example
phrases (and a threshold) lets prompts about its topic through and blocks the
rest, with or without keywords; FIREWALL_ALLOWLIST_TOPIC_EXAMPLES seeds one;
a bad threshold or blank example is refused naming the field; the examples
survive the store and an update."""

from __future__ import annotations

from typing import Any

import grpc

from pointsman.client import AsyncClient
from pointsman.firewall.v1 import firewall_pb2 as fw
from pointsman.type.v1 import firewall_pb2 as types

from helpers_pb import chat_request
from server_fixtures import collect, raises

COOKING = (
    "How long should I roast a whole chicken?",
    "How do I make a creamy risotto?",
    "Give me a quick vegetarian pasta recipe.",
    "What temperature should I fry tofu at?",
    "How do I caramelise onions properly?",
    "What's a good sauce for grilled salmon?",
)


def meaning_rule(**extra: Any) -> fw.CreateRuleRequest:
    return fw.CreateRuleRequest(
        rule=fw.Rule(kind=fw.RULE_KIND_ALLOW, match_type=fw.MATCH_TYPE_TOPIC, enabled=True, **extra)
    )


async def scan(client: AsyncClient, text: str) -> types.Verdict:
    return (await client.firewall.Scan(fw.ScanRequest(text=text, direction=types.DIRECTION_INPUT))).verdict


async def test_an_allow_rule_by_meaning_keeps_prompts_on_topic(client: AsyncClient) -> None:
    created = (await client.firewall.CreateRule(meaning_rule(examples=COOKING, threshold=0.2))).rule
    assert list(created.examples) == list(COOKING) and abs(created.threshold - 0.2) < 1e-6
    # On topic, in words none of the examples use: through to the model.
    assert await collect(client.orchestrator.Chat(chat_request("How do I thicken a stew that is too watery?")))
    error = await raises(collect(client.orchestrator.Chat(chat_request("How do I reverse a linked list in Python?"))))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    assert error.reason == "CONTENT_BLOCKED" and error.metadata["categories"] == "not_allowed"

    # Keywords still match beside the examples.
    update = fw.UpdateRuleRequest(rule=fw.Rule(name=created.name, keywords=["python"]))
    update.update_mask.paths.append("keywords")
    updated = (await client.firewall.UpdateRule(update)).rule
    assert list(updated.examples) == list(COOKING)
    assert (await scan(client, "How do I reverse a linked list in Python?")).action == types.ACTION_ALLOW
    assert (await scan(client, "Who won the football world cup in 2014?")).action == types.ACTION_BLOCK


async def test_allowlist_topic_examples_from_settings(start_server: Any) -> None:
    server = await start_server(FIREWALL_ALLOWLIST_TOPIC_EXAMPLES="; ".join(COOKING))
    async with AsyncClient(server.address) as client:
        assert await collect(client.orchestrator.Chat(chat_request("How do I make my pancakes fluffier?")))
        error = await raises(collect(client.orchestrator.Chat(chat_request("Explain quantum entanglement simply."))))
        assert error.reason == "CONTENT_BLOCKED" and error.metadata["categories"] == "not_allowed"


async def test_a_bad_meaning_rule_is_refused_naming_the_field(client: AsyncClient) -> None:
    error = await raises(client.firewall.CreateRule(meaning_rule(examples=COOKING, threshold=1.5)))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == ["rule.threshold"]
    error = await raises(client.firewall.CreateRule(meaning_rule(examples=["soup", "  "])))
    assert [v.field for v in error.field_violations] == ["rule.examples"]
    error = await raises(client.firewall.CreateRule(meaning_rule()))
    assert [v.field for v in error.field_violations] == ["rule.keywords"]
    substring = fw.Rule(kind=fw.RULE_KIND_BLOCK, match_type=fw.MATCH_TYPE_SUBSTRING, pattern="x", examples=["soup"])
    error = await raises(client.firewall.CreateRule(fw.CreateRuleRequest(rule=substring)))
    assert [v.field for v in error.field_violations] == ["rule.examples"]
