"""What generic gRPC tools rely on: reflection that carries the contract's
comments (what `grpcurl describe` prints), health List, and a port that a
second server cannot silently share."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from pointsman.server.app.processes import refuse_a_taken_port
from pointsman.server.app.server import SERVICE_NAMES, open_server

from server_fixtures import settings


async def reflect(address: str, request: reflection_pb2.ServerReflectionRequest) -> list[Any]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield request

        return [r async for r in stub.ServerReflectionInfo(ask(), timeout=5)]


def comments(files: list[descriptor_pb2.FileDescriptorProto]) -> str:
    return "\n".join(location.leading_comments for file in files for location in file.source_code_info.location)


async def test_reflection_serves_the_contract_with_its_comments(server: Any) -> None:
    # As grpcurl describe asks: the file that defines a symbol, and its imports.
    symbol = "pointsman.orchestrator.v1.OrchestratorService"
    [response] = await reflect(server.address, reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol))
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in response.file_descriptor_response.file_descriptor_proto
    ]
    names = {file.name for file in files}
    assert {"pointsman/orchestrator/v1/orchestrator.proto", "pointsman/type/v1/chat.proto"} <= names
    documented = comments(files)
    assert "Converse is a multi-turn session." in documented  # a method's comment
    assert "Sampling temperature, 0 to 2." in documented  # a field's, from an imported file

    # By file name too, and the health service's own file still resolves.
    [by_name] = await reflect(
        server.address, reflection_pb2.ServerReflectionRequest(file_by_filename="pointsman/firewall/v1/firewall.proto")
    )
    firewall = descriptor_pb2.FileDescriptorProto.FromString(by_name.file_descriptor_response.file_descriptor_proto[0])
    assert firewall.source_code_info.location
    [health] = await reflect(
        server.address, reflection_pb2.ServerReflectionRequest(file_containing_symbol="grpc.health.v1.Health")
    )
    assert health.file_descriptor_response.file_descriptor_proto
    [missing] = await reflect(server.address, reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.Such"))
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


async def test_health_list_reports_every_service(server: Any) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        listed = await health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest(), timeout=5)
    statuses = {name: response.status for name, response in listed.statuses.items()}
    for name in ("", *SERVICE_NAMES):
        assert statuses[name] == health_pb2.HealthCheckResponse.SERVING
    assert "models/builtin" in statuses  # per-model health is listed too


async def test_a_second_server_on_a_port_in_use_is_refused(server: Any) -> None:
    taken = server.address
    with pytest.raises(OSError, match="in use"):
        await open_server(settings(POINTSMAN_ADDRESS=taken))
    with pytest.raises(OSError, match="another server"):
        refuse_a_taken_port(taken)  # what `POINTSMAN_PROCESSES` > 1 checks before starting its processes


async def test_pointsman_serve_on_a_port_in_use_exits_with_a_clear_error(server: Any) -> None:
    env = {
        **os.environ,
        "POINTSMAN_ADDRESS": server.address,
        "POINTSMAN_DEV_MODE": "true",
        "DATABASE_URL": "sqlite://:memory:",
    }
    for processes in ("1", "2"):
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pointsman.cli.main",
            "serve",
            env={**env, "POINTSMAN_PROCESSES": processes},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(child.communicate(), timeout=120)
        assert child.returncode != 0, stderr
        assert f"could not listen on {server.address}" in stderr.decode()


async def test_the_processes_of_one_server_still_share_its_port() -> None:
    first = await open_server(settings(POINTSMAN_ADDRESS="127.0.0.1:0", POINTSMAN_PROCESSES=2))
    try:
        second = await open_server(settings(POINTSMAN_ADDRESS=first.address, POINTSMAN_PROCESSES=2))
        await second.stop(grace=0)
    finally:
        await first.stop(grace=0)
