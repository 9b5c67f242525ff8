"""The audit trail (request log and decisions) against a real PostgreSQL, when
callers send what PostgreSQL cannot store: names and custom ids with control
characters are refused with INVALID_ARGUMENT naming the field, the refused
call is still logged (its model made safe), and later calls of every
organisation keep being written."""

from __future__ import annotations

from typing import Any

import grpc
from state_fixtures import PostgresDatabase

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch

from helpers_pb import user
from server_fixtures import collect, eventually, raises


def complete(model: str, text: str = "hello") -> orch.CompleteRequest:
    return orch.CompleteRequest(model=model, messages=[user(text)])


async def _rows(database: PostgresDatabase, sql: str) -> Any:
    return await database.fetchval(sql)


async def test_a_nul_in_the_model_is_refused_and_the_audit_trail_goes_on(
    postgres_database: PostgresDatabase, start_server: Any
) -> None:
    server = await start_server(DATABASE_URL=postgres_database.url)
    async with AsyncClient(server.address, timeout=10) as client:
        error = await raises(client.orchestrator.Complete(complete("builtin\x00x")))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in error.field_violations] == ["model"]
        await client.orchestrator.Complete(complete("builtin", "after the bad one"))

    async def both_logged() -> bool:
        return await _rows(postgres_database, "SELECT count(*) FROM request_log") == 2

    await eventually(both_logged)
    refused = await _rows(postgres_database, "SELECT model FROM request_log WHERE status_code = 'INVALID_ARGUMENT'")
    assert refused == "builtin\ufffdx"
    assert await _rows(postgres_database, "SELECT count(*) FROM decisions") == 2  # the good call's prompt and answer
    buffers = server.state.buffers()
    assert all(buffer.healthy and buffer.rejected == 0 for buffer in buffers)


async def test_a_nul_in_a_batch_custom_id_is_refused_naming_the_item(
    postgres_database: PostgresDatabase, start_server: Any
) -> None:
    server = await start_server(DATABASE_URL=postgres_database.url)
    items = [
        orch.BatchItem(custom_id="fine", model="builtin", messages=[user("a")]),
        orch.BatchItem(custom_id="bad\x00id", model="builtin", messages=[user("b")]),
        orch.BatchItem(custom_id="forged\nline", model="builtin", messages=[user("c")]),
    ]
    async with AsyncClient(server.address, timeout=10) as client:
        error = await raises(client.orchestrator.CreateBatch(orch.CreateBatchRequest(items=items)))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in error.field_violations] == ["items[1].custom_id", "items[2].custom_id"]
        await client.orchestrator.Complete(complete("builtin"))

    async def logged() -> bool:
        return await _rows(postgres_database, "SELECT count(*) FROM request_log") == 1

    await eventually(logged)
    assert all(buffer.rejected == 0 for buffer in server.state.buffers())


async def test_compare_refuses_model_names_with_control_characters(
    postgres_database: PostgresDatabase, start_server: Any
) -> None:
    server = await start_server(DATABASE_URL=postgres_database.url)
    request = orch.CompareRequest(models=["builtin", "builtin\x00x"], messages=[user("hi")], judge_model="j\r\nx")
    async with AsyncClient(server.address, timeout=10) as client:
        error = await raises(collect(client.orchestrator.Compare(request)))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == ["models[1]", "judge_model"]
