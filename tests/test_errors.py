"""Bad input gets INVALID_ARGUMENT (or NOT_FOUND) with AIP-193 details the
client decodes; never INTERNAL, never a stack trace."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from pointsman.client import AsyncClient, PointsmanError
from pointsman.firewall.v1 import firewall_pb2 as fw
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.registry.v1 import registry_pb2 as reg
from pointsman.type.v1 import chat_pb2

from helpers_pb import chat_request, user
from server_fixtures import collect, raises


def fields(error: PointsmanError) -> set[str]:
    return {v.field for v in error.field_violations}


def assert_clean(error: PointsmanError) -> None:
    assert error.domain == "pointsman.dev"
    assert error.request_id
    assert "Traceback" not in error.message and 'File "' not in error.message


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (orch.ChatRequest(model="builtin"), "messages"),
        (orch.ChatRequest(model="builtin", messages=[user("")]), "messages[0].content"),
        (orch.ChatRequest(messages=[user("hi")]), "model"),
        (orch.ChatRequest(model="builtin", messages=[chat_pb2.ChatMessage(role=99, content="x")]), "messages[0].role"),
        (orch.ChatRequest(model="builtin", messages=[chat_pb2.ChatMessage(content="x")]), "messages[0].role"),
        (chat_request("hi", temperature=7.0), "config.temperature"),
        (chat_request("hi", max_tokens=0), "config.max_tokens"),
    ],
)
async def test_invalid_chat_requests_name_the_field(
    client: AsyncClient, request_: orch.ChatRequest, field: str
) -> None:
    error = await raises(collect(client.orchestrator.Chat(request_)))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_REQUEST"
    assert field in fields(error)
    assert_clean(error)


async def test_unknown_model_is_not_found(client: AsyncClient) -> None:
    error = await raises(client.orchestrator.Complete(orch.CompleteRequest(model="gpt-99", messages=[user("hi")])))
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.reason == "MODEL_NOT_FOUND"
    assert error.metadata["model"] == "gpt-99"
    assert_clean(error)


async def test_oversized_prompt_is_invalid_argument(start_server: Any) -> None:
    server = await start_server(POINTSMAN_MAX_INPUT_CHARS=100)
    async with AsyncClient(server.address) as client:
        error = await raises(collect(client.orchestrator.Chat(chat_request("x" * 101))))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "messages" in fields(error)


async def test_message_above_transport_limit_is_refused(start_server: Any) -> None:
    server = await start_server(POINTSMAN_MAX_MESSAGE_BYTES=64 * 1024)
    async with AsyncClient(server.address) as client:
        error = await raises(collect(client.orchestrator.Chat(chat_request("x" * 100_000))))
        # gRPC refuses the message before any handler runs; the server lives on.
        assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert await client.orchestrator.Complete(orch.CompleteRequest(model="builtin", messages=[user("ok")]))


async def test_malformed_regex_rule_is_rejected(client: AsyncClient) -> None:
    rule = fw.Rule(kind=fw.RULE_KIND_BLOCK, match_type=fw.MATCH_TYPE_REGEX, pattern="([unclosed", enabled=True)
    error = await raises(client.firewall.CreateRule(fw.CreateRuleRequest(rule=rule)))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert fields(error) == {"rule.pattern"}
    assert "regular expression" in error.field_violations[0].description


async def test_rule_missing_required_fields(client: AsyncClient) -> None:
    error = await raises(client.firewall.CreateRule(fw.CreateRuleRequest(rule=fw.Rule(pattern="x"))))
    assert {"rule.kind", "rule.match_type"} <= fields(error)
    error = await raises(client.firewall.CreateRule(fw.CreateRuleRequest()))
    assert fields(error) == {"rule"}
    error = await raises(
        client.firewall.CreateRule(
            fw.CreateRuleRequest(rule=fw.Rule(kind=5, match_type=fw.MATCH_TYPE_SUBSTRING, pattern="x"))
        )
    )
    assert "rule.kind" in fields(error)


async def test_bad_names_and_tokens(client: AsyncClient) -> None:
    error = await raises(client.firewall.GetRule(fw.GetRuleRequest(name="not-a-rule-name")))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and fields(error) == {"name"}
    error = await raises(client.firewall.GetRule(fw.GetRuleRequest(name="rules/missing")))
    assert error.code == grpc.StatusCode.NOT_FOUND and error.reason == "RULE_NOT_FOUND"
    error = await raises(client.firewall.ListRules(fw.ListRulesRequest(page_token="%%%")))
    assert fields(error) == {"page_token"}
    error = await raises(client.firewall.ListRules(fw.ListRulesRequest(page_size=-1)))
    assert fields(error) == {"page_size"}
    error = await raises(client.registry.GetInstance(reg.GetInstanceRequest(name="instances/ghost")))
    assert error.code == grpc.StatusCode.NOT_FOUND


async def test_unknown_enum_in_filters_and_scans(client: AsyncClient) -> None:
    error = await raises(client.firewall.ListDecisions(fw.ListDecisionsRequest(action=42)))
    assert fields(error) == {"action"}
    error = await raises(client.firewall.Scan(fw.ScanRequest(text="x", direction=9)))
    assert fields(error) == {"direction"}
    error = await raises(client.firewall.Scan(fw.ScanRequest(text="")))
    assert fields(error) == {"text"}


async def test_update_rule_rejects_unknown_mask_paths(client: AsyncClient) -> None:
    rule = fw.Rule(kind=fw.RULE_KIND_BLOCK, match_type=fw.MATCH_TYPE_SUBSTRING, pattern="x", enabled=True)
    created = (await client.firewall.CreateRule(fw.CreateRuleRequest(rule=rule))).rule
    request = fw.UpdateRuleRequest(rule=created)
    request.update_mask.paths.append("create_time")
    error = await raises(client.firewall.UpdateRule(request))
    assert fields(error) == {"update_mask"}
    error = await raises(client.firewall.UpdateRule(fw.UpdateRuleRequest(rule=created)))
    assert fields(error) == {"update_mask"}


async def test_compare_and_batch_validation(client: AsyncClient) -> None:
    error = await raises(
        collect(client.orchestrator.Compare(orch.CompareRequest(models=["builtin"], messages=[user("x")])))
    )
    assert "models" in fields(error)
    error = await raises(client.orchestrator.CreateBatch(orch.CreateBatchRequest()))
    assert "items" in fields(error)
    item = orch.BatchItem(custom_id="a", model="builtin")
    error = await raises(client.orchestrator.CreateBatch(orch.CreateBatchRequest(items=[item, item])))
    assert {"items[0].messages", "items[1].custom_id"} <= fields(error)


async def test_converse_must_start_with_setup(client: AsyncClient) -> None:
    async def only_a_turn() -> Any:
        yield orch.ConverseRequest(turn=orch.UserTurn(turn_id="t", content="hi"))

    error = await raises(collect(client.orchestrator.Converse(only_a_turn())))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and fields(error) == {"setup"}


# ScanRequest with field 1 (text) holding bytes that are not UTF-8.
NOT_UTF8_SCAN = b"\x0a\x03\xff\xfe\xfd"


async def test_a_string_that_is_not_utf8_is_invalid_argument(client: AsyncClient) -> None:
    scan = client.channel.unary_unary("/pointsman.firewall.v1.FirewallService/Scan")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await scan(NOT_UTF8_SCAN, timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "UTF-8" in (caught.value.details() or "")

    stream = client.channel.stream_stream("/pointsman.firewall.v1.FirewallService/ScanStream")
    call = stream(iter([NOT_UTF8_SCAN]), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call:
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The server carries on.
    assert (await client.firewall.Scan(fw.ScanRequest(text="fine"))).verdict.decision
