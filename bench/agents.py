"""Agents in figures, on loopback with the built-in model and the test MCP
server (tests/mcp_tools_server.py, the official SDK):

- one agent step (a model turn that calls a tool, the tool call over MCP
  stdio, the model turn that answers) run by the gateway (RunAgent), against
  the same steps driven by a client (Chat, its own MCP session, Chat);
- one tool call through the gateway's MCP client, over stdio and over
  streamable HTTP (McpToolRunner.call_tool, the connection already open);
- memory per connected tool server: the gateway's RSS before and after
  connecting N stdio servers, and each server process's own RSS.

    .venv/bin/python bench/agents.py [--n 50] [--servers 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import mcp
import yaml

from pointsman.agent.v1 import agent_pb2, agent_pb2_grpc
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.orchestrator.v1 import orchestrator_pb2_grpc
from pointsman.server.app.server import open_server
from pointsman.server.domain.ports.tools import ToolServer
from pointsman.server.providers.mcp_tools import McpToolRunner
from pointsman.server.settings import Settings
from pointsman.type.v1 import chat_pb2

TOOL_SERVER = str(Path(__file__).resolve().parent.parent / "tests" / "mcp_tools_server.py")
PROMPT = 'call tool calc__echo {"text": "hello"}'


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(ordered[len(ordered) // 2] * 1e3, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1e3, 3),
    }


def rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children() -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(os.getpid())], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


async def agent_step(n: int) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp())
    (directory / "tools.yaml").write_text(
        yaml.safe_dump({"servers": {"calc": {"command": sys.executable, "args": [TOOL_SERVER]}}})
    )
    (directory / "agents.yaml").write_text(
        yaml.safe_dump({"agents": {"helper": {"model": "builtin", "tools": ["calc__*"]}}})
    )
    server = await open_server(
        Settings(
            POINTSMAN_ADDRESS="127.0.0.1:0",
            USE_MOCK=True,
            DATABASE_URL="sqlite://:memory:",
            REDIS_URL=None,
            REGISTRY_ADDR=None,
            POINTSMAN_DEV_MODE=True,
            POINTSMAN_TOOLS_FILE=str(directory / "tools.yaml"),
            POINTSMAN_AGENTS_FILE=str(directory / "agents.yaml"),
        )
    )
    await server.start()
    gateway: list[float] = []
    client_driven: list[float] = []
    params = mcp.StdioServerParameters(command=sys.executable, args=[TOOL_SERVER])
    try:
        async with (
            grpc.aio.insecure_channel(server.address) as channel,
            mcp.stdio_client(params) as (read, write),
            mcp.ClientSession(read, write) as session,
        ):
            await session.initialize()
            agents = agent_pb2_grpc.AgentServiceStub(channel)
            chat = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
            listed = await session.list_tools()
            echo = next(t for t in listed.tools if t.name == "echo")
            tool = chat_pb2.Tool(name="calc__echo", description=echo.description or "")
            tool.parameters.update(echo.input_schema)
            config = chat_pb2.GenerationConfig(tools=[tool])

            async def by_gateway() -> None:
                async for _ in agents.RunAgent(agent_pb2.RunAgentRequest(agent="agents/helper", prompt=PROMPT)):
                    pass

            async def by_client() -> None:
                user = chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=PROMPT)
                calls: dict[int, chat_pb2.ToolCall] = {}
                async for event in chat.Chat(orch.ChatRequest(model="builtin", messages=[user], config=config)):
                    if event.WhichOneof("event") == "tool_call_delta":
                        d = event.tool_call_delta
                        call = calls.setdefault(d.index, chat_pb2.ToolCall())
                        call.id = call.id or d.id
                        call.name = call.name or d.name
                        call.arguments_json += d.arguments_delta
                (call,) = calls.values()
                result = await session.call_tool(call.name.split("__", 1)[1], json.loads(call.arguments_json))
                text = "\n".join(b.text for b in result.content if isinstance(b, mcp.types.TextContent))
                messages = [
                    user,
                    chat_pb2.ChatMessage(role=chat_pb2.ROLE_ASSISTANT, tool_calls=[call]),
                    chat_pb2.ChatMessage(role=chat_pb2.ROLE_TOOL, tool_call_id=call.id, content=text),
                ]
                async for _ in chat.Chat(orch.ChatRequest(model="builtin", messages=messages, config=config)):
                    pass

            for i in range(10 + n):  # the first 10 warm up connections and caches
                for run, samples in ((by_gateway, gateway), (by_client, client_driven)):
                    started = time.perf_counter()
                    await run()
                    if i >= 10:
                        samples.append(time.perf_counter() - started)
    finally:
        await server.stop(grace=0)
    g, c = summary(gateway), summary(client_driven)
    return {
        "RunAgent (gateway runs the loop)": g,
        "client-driven (Chat, MCP call, Chat)": c,
        "gateway minus client, p50_ms": round(g["p50_ms"] - c["p50_ms"], 3),
    }


async def tool_calls(n: int) -> dict[str, Any]:
    http = subprocess.Popen(
        [sys.executable, TOOL_SERVER, "--http"], stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL
    )
    assert http.stdout is not None
    port = int(http.stdout.readline())
    runner = McpToolRunner()
    servers = {
        "stdio": ToolServer("calc", command=sys.executable, args=(TOOL_SERVER,)),
        "streamable HTTP": ToolServer("web", url=f"http://127.0.0.1:{port}/mcp"),
    }
    out: dict[str, Any] = {}
    try:
        for label, server in servers.items():
            await runner.list_tools(server)
            samples = []
            for i in range(10 + n):
                started = time.perf_counter()
                await runner.call_tool(server, "echo", {"text": "hello"})
                if i >= 10:
                    samples.append(time.perf_counter() - started)
            out[label] = summary(samples)
    finally:
        await runner.aclose()
        http.kill()
        http.wait()
    return out


async def memory(count: int) -> dict[str, Any]:
    runner = McpToolRunner()
    before = rss_kib()
    existing = set(children())
    try:
        for i in range(count):
            await runner.list_tools(ToolServer(f"s{i}", command=sys.executable, args=(TOOL_SERVER,)))
        after = rss_kib()
        started = [pid for pid in children() if pid not in existing]
        per_child = [rss_kib(pid) for pid in started]
    finally:
        await runner.aclose()
    return {
        "servers": count,
        "gateway RSS per server, KiB": round((after - before) / count),
        "tool server process RSS, KiB (each, the SDK's Python server)": round(statistics.fmean(per_child))
        if per_child
        else 0,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--servers", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    results = {
        "agent step (2 model turns + 1 MCP stdio tool call)": await agent_step(args.n),
        "one tool call through the gateway's MCP client": await tool_calls(args.n),
        "memory per connected stdio tool server": await memory(args.servers),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
