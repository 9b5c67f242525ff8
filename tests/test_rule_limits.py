"""A rule cannot hurt the server: patterns run on RE2 (linear time, so a
catastrophic pattern cannot stall any organisation), patterns RE2 cannot run
are refused naming the field, and an organisation's rules are bounded in count
and size. At scale one matcher serves all of an organisation's rules, and the
WatchRules snapshot is paged so no message exceeds the size limit."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from test_tenancy import orgs, upstream  # noqa: F401  (the two-organisation server)

from pointsman.client import AsyncClient
from pointsman.firewall.v1 import firewall_pb2 as fw
from pointsman.server.domain.firewall.engine import evaluate_rules
from pointsman.server.domain.firewall.rules import MatchType, Rule, RuleKind, RuleSet
from pointsman.server.domain.firewall.verdict import Category, Direction
from pointsman.type.v1 import firewall_pb2 as types

from server_fixtures import raises


def regex_rule(pattern: str) -> fw.CreateRuleRequest:
    return fw.CreateRuleRequest(
        rule=fw.Rule(kind=fw.RULE_KIND_BLOCK, match_type=fw.MATCH_TYPE_REGEX, pattern=pattern, enabled=True)
    )


async def scan(client: AsyncClient, text: str) -> types.Verdict:
    return (await client.firewall.Scan(fw.ScanRequest(text=text))).verdict


async def test_a_catastrophic_pattern_cannot_stall_its_own_or_another_organisation(
    orgs: tuple[AsyncClient, AsyncClient],  # noqa: F811
) -> None:
    a, b = orgs
    # `(a+)+$` backtracks exponentially in a backtracking engine: 30 a's and a
    # '!' took Python's re minutes, with every call of every organisation
    # waiting (the clients' 10 s deadline fails the test). RE2 accepts it and
    # matches in linear time.
    await a.firewall.CreateRule(regex_rule("(a+)+$"))
    evil = "a" * 30 + "!"
    a_verdict, b_verdict = await asyncio.gather(scan(a, evil), scan(b, "an ordinary prompt"))
    assert a_verdict.action == types.ACTION_ALLOW and b_verdict.action == types.ACTION_ALLOW
    # The rule still works, on a long input too.
    long_verdict, b_verdict = await asyncio.gather(scan(a, "a" * 10_000), scan(b, "another prompt"))
    assert long_verdict.action == types.ACTION_BLOCK and b_verdict.action == types.ACTION_ALLOW
    assert (await scan(a, "a" * 10_000 + "!")).action == types.ACTION_ALLOW


async def test_patterns_re2_cannot_run_are_refused_naming_the_field(client: AsyncClient) -> None:
    for pattern in (r"(a)\1", "secret(?=word)", "(?<!x)key", "(x{500}){500}"):
        error = await raises(client.firewall.CreateRule(regex_rule(pattern)))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT, pattern
        [violation] = error.field_violations
        assert violation.field == "rule.pattern" and "RE2" in violation.description, pattern
    assert not (await client.firewall.ListRules(fw.ListRulesRequest())).rules


async def test_rule_count_and_size_are_limited_per_organisation(start_server: Any) -> None:
    server = await start_server(FIREWALL_MAX_RULES="2", FIREWALL_MAX_RULE_CHARS="20")
    async with AsyncClient(server.address, timeout=10) as client:
        error = await raises(client.firewall.CreateRule(regex_rule("x" * 21)))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in error.field_violations] == ["rule.pattern"]
        topic = fw.CreateRuleRequest(
            rule=fw.Rule(kind=fw.RULE_KIND_BLOCK, match_type=fw.MATCH_TYPE_TOPIC, keywords=["a" * 10, "b" * 11])
        )
        error = await raises(client.firewall.CreateRule(topic))
        assert [v.field for v in error.field_violations] == ["rule.keywords"]
        await client.firewall.CreateRule(regex_rule("one"))
        await client.firewall.CreateRule(regex_rule("two"))
        error = await raises(client.firewall.CreateRule(regex_rule("three")))
        assert error.code == grpc.StatusCode.FAILED_PRECONDITION
        assert error.reason == "RULE_LIMIT_REACHED" and error.metadata["max_rules"] == "2"
        assert len((await client.firewall.ListRules(fw.ListRulesRequest())).rules) == 2


async def test_a_large_watch_snapshot_is_paged_under_the_message_limit(start_server: Any) -> None:
    # A 64 KiB message limit and 300 rules of about 700 bytes each: one
    # snapshot message would be 200 KiB, over the limit (the watch failed).
    server = await start_server(POINTSMAN_MAX_MESSAGE_BYTES=str(64 * 1024))
    async with AsyncClient(server.address, timeout=30) as client:
        created = []
        for i in range(300):
            request = regex_rule(f"codename-{i:03d}")
            request.rule.description = f"rule {i}: " + "a reason worth keeping " * 30
            created.append((await client.firewall.CreateRule(request)).rule.name)
        watch = client.firewall.WatchRules(fw.WatchRulesRequest())
        parts = []
        async for event in watch:
            parts.append(event.snapshot)
            if not event.snapshot.has_more:
                break
        await watch.aclose()
    assert len(parts) > 1 and all(p.ByteSize() < 32 * 1024 for p in parts)
    assert [r.name for p in parts for r in p.rules] == created


def test_ten_thousand_rules_report_which_rules_matched() -> None:
    rules = [
        Rule(str(i), "org", RuleKind.BLOCK, MatchType.SUBSTRING, pattern=f"token{i:05d}") for i in range(0, 10_000, 3)
    ]
    rules += [
        Rule(str(i), "org", RuleKind.BLOCK, MatchType.REGEX, pattern=rf"re{i:05d}-\d+") for i in range(1, 10_000, 3)
    ]
    rules += [
        Rule(str(i), "org", RuleKind.BLOCK, MatchType.TOPIC, keywords=(f"topic{i:05d}", f"théme{i:05d}"))
        for i in range(2, 10_000, 3)
    ]
    ruleset = RuleSet(rules)
    filler = "nothing to see here, ordinary words only. " * 700
    text = "TOKEN00003 " + filler + " re09997-42 " + filler + " théme05000, topic05000x"
    findings = evaluate_rules(ruleset, text, Direction.INPUT)
    assert {f.rule for f in findings} == {"rules/3", "rules/9997", "rules/5000"}
    assert all(f.category is Category.BLOCK_RULE for f in findings)
    theme = next(f for f in findings if f.rule == "rules/5000")
    assert text[theme.start : theme.end] == "théme05000"  # the keyword, a whole word; not topic05000x
