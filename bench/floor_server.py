"""The floor a gateway is measured against: a bare grpc.aio server that speaks
Pointsman's contract for `Complete` and `Chat` and forwards each call to an
OpenAI-compatible upstream over one pooled aiohttp session. Nothing else: no
firewall, no routing, no logging, no request log, no SDK.

    .venv/bin/python bench/floor_server.py --address 127.0.0.1:50070 --upstream http://127.0.0.1:8000/v1

Also the standard health service, so a load generator can wait for SERVING."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.orchestrator.v1 import orchestrator_pb2_grpc
from pointsman.type.v1 import chat_pb2

_ROLES = {chat_pb2.ROLE_SYSTEM: "system", chat_pb2.ROLE_USER: "user", chat_pb2.ROLE_ASSISTANT: "assistant"}


def _body(model: str, messages: Any, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": _ROLES.get(m.role, "user"), "content": m.content} for m in messages],
    }
    if stream:
        body["stream"] = True
    return body


class Floor(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    def __init__(self, upstream: str) -> None:
        self._url = upstream.rstrip("/") + "/chat/completions"
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._http

    async def Complete(self, request: orch.CompleteRequest, context: object) -> orch.CompleteResponse:
        async with self._session().post(self._url, json=_body(request.model, request.messages, False)) as response:
            answer = json.loads(await response.read())
        choice = answer["choices"][0]
        return orch.CompleteResponse(
            start=orch.ChatStart(model=request.model),
            message=chat_pb2.ChatMessage(role=chat_pb2.ROLE_ASSISTANT, content=choice["message"]["content"] or ""),
            finish=orch.ChatFinish(reason=orch.FINISH_REASON_STOP),
        )

    async def Chat(  # type: ignore[override]
        self, request: orch.ChatRequest, context: object
    ) -> AsyncIterator[orch.ChatResponse]:
        yield orch.ChatResponse(start=orch.ChatStart(model=request.model))
        async with self._session().post(self._url, json=_body(request.model, request.messages, True)) as response:
            async for line in response.content:
                if not line.startswith(b"data: {"):
                    continue
                chunk = json.loads(line[6:])
                choices = chunk.get("choices") or ()
                if choices:
                    text = (choices[0].get("delta") or {}).get("content")
                    if text:
                        yield orch.ChatResponse(text_delta=orch.TextDelta(text=text))
        yield orch.ChatResponse(finish=orch.ChatFinish(reason=orch.FINISH_REASON_STOP))


async def serve(address: str, upstream: str) -> None:
    server = grpc.aio.server()
    orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(Floor(upstream), server)
    checks = health.aio.HealthServicer()
    await checks.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    server.add_insecure_port(address)
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's base URL, ending in /v1")
    args = parser.parse_args()
    asyncio.run(serve(args.address, args.upstream))


if __name__ == "__main__":
    main()
