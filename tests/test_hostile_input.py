"""Requests the fuzzer (test_fuzz.py) first found ending INTERNAL, or
UNAVAILABLE for a permanent error, on PostgreSQL: each is INVALID_ARGUMENT
naming the field now."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest
import pytest_asyncio
from google.protobuf import struct_pb2, timestamp_pb2
from state_fixtures import PostgresDatabase

from pointsman.auth.v1 import auth_pb2 as auth
from pointsman.client import AsyncClient
from pointsman.firewall.v1 import firewall_pb2 as fw
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.registry.v1 import registry_pb2 as reg
from pointsman.server.backends.stores.outages import is_database_outage, is_refused_value
from pointsman.type.v1 import chat_pb2

from helpers_pb import user
from server_fixtures import collect, raises


def token(cursor: str) -> str:
    return base64.urlsafe_b64encode(cursor.encode()).decode()


FAR = timestamp_pb2.Timestamp(seconds=2**62)
NEGATIVE_NANOS = timestamp_pb2.Timestamp(seconds=1, nanos=-1)


def rule(**fields: Any) -> fw.Rule:
    values: dict[str, Any] = {"kind": fw.RULE_KIND_BLOCK, "match_type": fw.MATCH_TYPE_SUBSTRING, "pattern": "x"}
    values.update(fields)
    return fw.Rule(**values)


def instance(**fields: Any) -> reg.Instance:
    values: dict[str, Any] = {"instance_id": "inst-1", "address": "127.0.0.1:9"}
    values.update(fields)
    return reg.Instance(**values)


def tool_with(number: float) -> chat_pb2.GenerationConfig:
    parameters = struct_pb2.Struct()
    parameters["maximum"] = number
    return chat_pb2.GenerationConfig(tools=[chat_pb2.Tool(name="t", parameters=parameters)])


def inst(**fields: Any) -> reg.RegisterInstanceRequest:
    return reg.RegisterInstanceRequest(instance=instance(**fields))


def create_rule(**fields: Any) -> fw.CreateRuleRequest:
    return fw.CreateRuleRequest(rule=rule(**fields))


def decisions(**fields: Any) -> fw.ListDecisionsRequest:
    return fw.ListDecisionsRequest(**fields)


def calls(**fields: Any) -> orch.ListCallsRequest:
    return orch.ListCallsRequest(**fields)


LONG = token("9" * 5000)
ARABIC = token("١٢:ab")
TOPIC = {"match_type": fw.MATCH_TYPE_TOPIC, "pattern": ""}
INFINITE_TOOL = orch.ChatRequest(model="builtin", messages=[user("hi")], config=tool_with(float("inf")))

# (what, service, method, request, the field named)
CASES: list[tuple[str, str, str, Any, str]] = [
    ("superscript digit token", "firewall", "ListRules", fw.ListRulesRequest(page_token=token("²")), "page_token"),
    ("5,000-digit token", "orchestrator", "ListModels", orch.ListModelsRequest(page_token=LONG), "page_token"),
    ("Arabic digits", "orchestrator", "ListBatches", orch.ListBatchesRequest(page_token=ARABIC), "page_token"),
    ("decision token with NUL", "firewall", "ListDecisions", decisions(page_token=token("\x00" * 24)), "page_token"),
    ("decisions from 2^62 s", "firewall", "ListDecisions", decisions(start_time=FAR), "start_time"),
    ("decisions to negative nanos", "firewall", "ListDecisions", decisions(end_time=NEGATIVE_NANOS), "end_time"),
    ("calls from 2^62 s", "orchestrator", "ListCalls", calls(start_time=FAR), "start_time"),
    ("calls by a model with NUL", "orchestrator", "ListCalls", calls(model="a\x00"), "model"),
    ("calls by a principal with NUL", "orchestrator", "ListCalls", calls(principal="\x00"), "principal"),
    ("key expiring at 2^62 s", "auth", "CreateApiKey", auth.CreateApiKeyRequest(expire_time=FAR), "expire_time"),
    ("key named with NUL", "auth", "CreateApiKey", auth.CreateApiKeyRequest(display_name="ci\x00"), "display_name"),
    ("rule pattern with NUL", "firewall", "CreateRule", create_rule(pattern="a\x00"), "rule.pattern"),
    ("rule description with NUL", "firewall", "CreateRule", create_rule(description="\x00"), "rule.description"),
    ("keyword with NUL", "firewall", "CreateRule", create_rule(keywords=["ok", "b\x00"], **TOPIC), "rule.keywords[1]"),
    ("rule name with NUL", "firewall", "GetRule", fw.GetRuleRequest(name="rules/\x00"), "name"),
    ("instance version with NUL", "registry", "RegisterInstance", inst(version="1\x00"), "instance.version"),
    ("instance model with NUL", "registry", "RegisterInstance", inst(models=["m\x00"]), "instance.models[0]"),
    ("instance label with NUL", "registry", "RegisterInstance", inst(labels={"a": "\x00"}), "instance.labels['a']"),
    ("login email with NUL", "auth", "Login", auth.LoginRequest(email="a\x00@b"), "email"),
    ("tool schema with infinity", "orchestrator", "Chat", INFINITE_TOOL, "config.tools[0].parameters"),
]  # fmt: skip


@pytest_asyncio.fixture
async def pg_client(postgres_database: PostgresDatabase, start_server: Any) -> AsyncIterator[AsyncClient]:
    server = await start_server(DATABASE_URL=postgres_database.url)
    async with AsyncClient(server.address, timeout=10) as client:
        yield client


@pytest.mark.parametrize(("service", "method", "request_", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_hostile_values_are_invalid_arguments_naming_the_field(
    pg_client: AsyncClient, service: str, method: str, request_: Any, field: str
) -> None:
    answer = getattr(getattr(pg_client, service), method)(request_)
    error = await raises(collect(answer) if method == "Chat" else answer)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    assert field in {v.field for v in error.field_violations}, error.field_violations


async def test_a_value_the_database_refuses_is_the_callers_not_an_outage(postgres_database: PostgresDatabase) -> None:
    # The last resort behind validation: what PostgreSQL says of a NUL byte
    # is classed as refused input (INVALID_ARGUMENT), not as an outage.
    connection = await asyncpg.connect(postgres_database.url)
    try:
        with pytest.raises(asyncpg.PostgresError) as caught:
            await connection.fetchval("SELECT $1::text", "a\x00b")
    finally:
        await connection.close()
    assert is_refused_value(caught.value) and not is_database_outage(caught.value)
