"""Agents run by the gateway, against real MCP servers written with the SDK
(tests/mcp_tools_server.py over stdio and streamable HTTP) and the built-in
model, which calls tools on `call tool NAME {json}`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
import yaml

from pointsman.agent.v1 import agent_pb2 as pb
from pointsman.agent.v1 import agent_pb2_grpc
from pointsman.server.app.agents_config import AgentsFileError
from pointsman.server.app.server import PointsmanServer

from fakes.openai_upstream import FakeOpenAI
from server_fixtures import ServerFactory, eventually

TOOL_SERVER = str(Path(__file__).resolve().parent / "mcp_tools_server.py")
STDIO = {"command": sys.executable, "args": [TOOL_SERVER], "call_timeout_seconds": 5}


def write_files(tmp_path: Path, servers: dict[str, Any], agents: dict[str, Any]) -> dict[str, str]:
    tools_file, agents_file = tmp_path / "tools.yaml", tmp_path / "agents.yaml"
    tools_file.write_text(yaml.safe_dump({"servers": servers}))
    agents_file.write_text(yaml.safe_dump({"agents": agents}))
    return {"POINTSMAN_TOOLS_FILE": str(tools_file), "POINTSMAN_AGENTS_FILE": str(agents_file)}


def agent(**fields: Any) -> dict[str, Any]:
    return {"model": "builtin", "tools": ["calc__*"], "max_steps": 4, "step_timeout_seconds": 10, **fields}


@pytest.fixture
def http_tool_server() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    process = subprocess.Popen(
        [sys.executable, TOOL_SERVER, "--http"], stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    yield f"http://127.0.0.1:{port}/mcp", process
    process.kill()
    process.wait()


@pytest_asyncio.fixture
async def agents_server(start_server: ServerFactory, tmp_path: Path) -> PointsmanServer:
    env = write_files(
        tmp_path,
        {
            "calc": STDIO,
            "tiny": {**STDIO, "max_result_chars": 100},
            "strict": {**STDIO, "max_result_chars": 100, "oversize": "refuse"},
            "quick": {**STDIO, "call_timeout_seconds": 0.5},
            "nowhere": {"url": "http://127.0.0.1:9/mcp", "connect_timeout_seconds": 2},
            "others": {**STDIO, "organisations": ["someone-else"]},
        },
        {
            "helper": agent(description="adds"),
            "wide": agent(tools=["calc__*", "tiny__*", "strict__*", "quick__*", "nowhere__*", "others__*"]),
            "looper": agent(max_steps=3),
            "thrifty": agent(max_steps=10, token_budget=40),
            "bare": agent(tools=[]),
        },
    )
    return await start_server(**env)


@pytest_asyncio.fixture
async def stub(agents_server: PointsmanServer) -> AsyncIterator[agent_pb2_grpc.AgentServiceStub]:
    async with grpc.aio.insecure_channel(agents_server.address) as channel:
        yield agent_pb2_grpc.AgentServiceStub(channel)


async def run(stub: agent_pb2_grpc.AgentServiceStub, name: str, prompt: str) -> list[pb.RunAgentResponse]:
    return [event async for event in stub.RunAgent(pb.RunAgentRequest(agent=f"agents/{name}", prompt=prompt))]


def finished(events: list[pb.RunAgentResponse]) -> list[pb.ToolCallFinished]:
    return [e.tool_call_finished for e in events if e.WhichOneof("event") == "tool_call_finished"]


def finish(events: list[pb.RunAgentResponse]) -> pb.AgentFinish:
    assert events[-1].WhichOneof("event") == "finish"
    return events[-1].finish


async def test_list_tools_names_each_tool_with_its_schema_and_the_servers_that_are_down(stub: Any) -> None:
    listing = await stub.ListTools(pb.ListToolsRequest())
    names = {t.qualified_name for t in listing.tools}
    assert {"calc__add", "calc__echo", "tiny__big"} <= names
    assert not any(n.startswith("others__") for n in names)  # another organisation's server
    assert list(listing.unavailable_servers) == ["nowhere"]
    add = next(t for t in listing.tools if t.qualified_name == "calc__add")
    assert (add.server, add.name, add.description) == ("calc", "add", "Adds two integers.")
    assert json.loads(add.input_schema_json)["required"] == ["a", "b"]

    only = await stub.ListTools(pb.ListToolsRequest(server="calc"))
    assert {t.server for t in only.tools} == {"calc"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListTools(pb.ListToolsRequest(server="missing"))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_list_agents(stub: Any) -> None:
    agents = (await stub.ListAgents(pb.ListAgentsRequest())).agents
    assert [a.name for a in agents] == [f"agents/{n}" for n in ("bare", "helper", "looper", "thrifty", "wide")]
    helper = agents[1]
    assert (helper.model, list(helper.tools), helper.max_steps, helper.description) == (
        "builtin",
        ["calc__*"],
        4,
        "adds",
    )


async def test_an_agent_answers_through_a_stdio_tool_and_every_step_is_an_event(stub: Any) -> None:
    events = await run(stub, "helper", 'call tool calc__add {"a": 2, "b": 40}')
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "start" and kinds[-1] == "finish"
    assert kinds.index("tool_call_started") < kinds.index("tool_call_finished") < kinds.index("text_delta")
    started = next(e.tool_call_started for e in events if e.WhichOneof("event") == "tool_call_started")
    assert (started.step, started.tool, json.loads(started.arguments_json)) == (1, "calc__add", {"a": 2, "b": 40})
    (call,) = finished(events)
    assert (call.outcome, call.result) == (pb.TOOL_CALL_OUTCOME_OK, "42")
    assert call.duration.ToNanoseconds() > 0
    done = finish(events)
    assert done.reason == pb.STOP_REASON_ANSWERED
    assert done.answer == "The tools said: 42"
    assert (done.steps, done.tool_calls) == (2, 1)
    steps = [e.step_usage for e in events if e.WhichOneof("event") == "step_usage"]
    assert [s.step for s in steps] == [1, 2] and all(s.deployment == "builtin" for s in steps)
    assert done.total_usage.total_tokens == sum(s.usage.total_tokens for s in steps)


async def test_the_tool_call_is_recorded_without_its_arguments(stub: Any) -> None:
    arguments = '{"a": 1, "b": 1}'
    await run(stub, "helper", f"call tool calc__add {arguments}")
    await run(stub, "bare", f"call tool calc__add {arguments}")
    records = (await stub.ListToolCalls(pb.ListToolCallsRequest())).tool_calls
    assert [(r.agent, r.tool, r.outcome) for r in records] == [
        ("agents/bare", "calc__add", pb.TOOL_CALL_OUTCOME_PERMISSION_DENIED),
        ("agents/helper", "calc__add", pb.TOOL_CALL_OUTCOME_OK),
    ]
    import hashlib

    assert records[1].arguments_sha256 == hashlib.sha256(json.dumps(json.loads(arguments)).encode()).hexdigest()
    assert records[1].principal and records[1].request_id and records[1].name.startswith("toolCalls/")
    page = await stub.ListToolCalls(pb.ListToolCallsRequest(page_size=1, agent="agents/helper"))
    assert [r.agent for r in page.tool_calls] == ["agents/helper"] and not page.next_page_token


async def test_an_agent_answers_through_a_streamable_http_tool(
    start_server: ServerFactory, tmp_path: Path, http_tool_server: tuple[str, Any]
) -> None:
    url, _ = http_tool_server
    env = write_files(tmp_path, {"calc": {"url": url}}, {"helper": agent()})
    server = await start_server(**env)
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        events = await run(stub, "helper", 'call tool calc__echo {"text": "over http"}')
    assert [(c.outcome, c.result) for c in finished(events)] == [(pb.TOOL_CALL_OUTCOME_OK, "over http")]
    assert finish(events).answer == "The tools said: over http"


async def test_an_agent_on_an_openai_upstream_that_returns_tool_calls(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    async with FakeOpenAI() as upstream:
        env = write_files(tmp_path, {"calc": STDIO}, {"gpt": agent(model="gpt-test", tools=["calc__shout"])})
        server = await start_server(
            **env,
            OPENAI_API_KEY="sk-test-0123456789abcdef0123456789abcdef",
            OPENAI_BASE_URL=upstream.base_url,
            OPENAI_MODELS=["gpt-test"],
        )
        async with grpc.aio.insecure_channel(server.address) as channel:
            events = await run(agent_pb2_grpc.AgentServiceStub(channel), "gpt", "make me loud")
    (call,) = finished(events)
    assert (call.tool, call.outcome, call.result) == ("calc__shout", pb.TOOL_CALL_OUTCOME_OK, "MAKE ME LOUD")
    done = finish(events)
    assert (done.reason, done.answer, done.steps) == (pb.STOP_REASON_ANSWERED, "Echo: tool said: MAKE ME LOUD", 2)
    steps = [e.step_usage for e in events if e.WhichOneof("event") == "step_usage"]
    assert all(s.usage.input_tokens > 0 for s in steps)


async def test_a_model_turn_past_the_step_timeout_or_failing_stops_the_run(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    async with FakeOpenAI() as upstream:
        env = write_files(
            tmp_path,
            {"calc": STDIO},
            {
                "stalled": agent(model="fault-stall", step_timeout_seconds=0.5),
                "broken": agent(model="fault-401"),
            },
        )
        server = await start_server(
            **env,
            OPENAI_API_KEY="sk-test-0123456789abcdef0123456789abcdef",
            OPENAI_BASE_URL=upstream.base_url,
            OPENAI_MODELS=["fault-stall", "fault-401"],
        )
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            stalled = finish(await run(stub, "stalled", "hello"))
            broken = finish(await run(stub, "broken", "hello"))
    assert (stalled.reason, stalled.steps) == (pb.STOP_REASON_TIMEOUT, 1)
    assert broken.reason == pb.STOP_REASON_ERROR
    assert (broken.error_code, broken.error_reason) == ("FAILED_PRECONDITION", "UPSTREAM_AUTH_FAILED")
    assert "sk-test" not in broken.error_message


async def test_a_http_tool_server_that_went_down_is_unavailable_and_the_run_goes_on(
    start_server: ServerFactory, tmp_path: Path, http_tool_server: tuple[str, Any]
) -> None:
    url, process = http_tool_server
    env = write_files(tmp_path, {"calc": {"url": url, "connect_timeout_seconds": 3}}, {"helper": agent()})
    server = await start_server(**env)
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        await run(stub, "helper", 'call tool calc__echo {"text": "up"}')
        process.kill()
        process.wait()
        events = await run(stub, "helper", 'call tool calc__echo {"text": "down"}')
    (call,) = finished(events)
    assert call.outcome in (pb.TOOL_CALL_OUTCOME_UNAVAILABLE, pb.TOOL_CALL_OUTCOME_TIMEOUT)
    assert finish(events).reason == pb.STOP_REASON_ANSWERED


async def test_several_tool_calls_of_one_turn_run_at_once(stub: Any) -> None:
    # Each takes 1 s; in parallel the step ends in far less than the 3 s in a row.
    prompt = " ".join('call tool calc__slow {"seconds": 1}' for _ in range(3)) + ' call tool calc__echo {"text": "e"}'
    events = await run(stub, "helper", prompt)
    calls = finished(events)
    assert len(calls) == 4 and all(c.outcome == pb.TOOL_CALL_OUTCOME_OK for c in calls)
    # The quick call finished first though it was asked for last.
    assert calls[0].tool == "calc__echo"
    started = [e.tool_call_started.call_id for e in events if e.WhichOneof("event") == "tool_call_started"]
    assert len(set(started)) == 4
    assert finish(events).answer == "The tools said: done | done | done | e"


async def test_a_tool_outside_the_allow_list_is_refused_and_the_model_is_told(stub: Any) -> None:
    for name, tool in (("bare", "calc__add"), ("wide", "others__add"), ("helper", "nope__add"), ("helper", "calc__x")):
        events = await run(stub, name, f'call tool {tool} {{"a": 1, "b": 2}}')
        (call,) = finished(events)
        assert call.outcome == pb.TOOL_CALL_OUTCOME_PERMISSION_DENIED, (name, tool)
        assert call.result.startswith("error: ") and tool in call.result
        assert finish(events).answer.startswith("The tools said: error:")


async def test_a_model_that_keeps_calling_tools_stops_at_max_steps(stub: Any) -> None:
    events = await run(stub, "looper", 'keep calling: call tool calc__add {"a": 1, "b": 1}')
    done = finish(events)
    assert (done.reason, done.steps, done.tool_calls) == (pb.STOP_REASON_MAX_STEPS, 3, 3)


async def test_a_run_past_its_token_budget_stops(stub: Any) -> None:
    events = await run(stub, "thrifty", 'keep calling: call tool calc__add {"a": 1, "b": 1}')
    done = finish(events)
    assert done.reason == pb.STOP_REASON_TOKEN_BUDGET
    assert done.total_usage.total_tokens >= 40 and done.steps < 10


async def test_tool_faults_each_give_an_outcome_and_the_model_is_told(stub: Any) -> None:
    cases = [
        ('quick__slow {"seconds": 5}', pb.TOOL_CALL_OUTCOME_TIMEOUT, "within 0.5s"),
        ('calc__fail {"message": "disk full"}', pb.TOOL_CALL_OUTCOME_TOOL_ERROR, "disk full"),
        ('nowhere__add {"a": 1, "b": 2}', pb.TOOL_CALL_OUTCOME_UNAVAILABLE, "nowhere"),
        ('strict__big {"size": 1000}', pb.TOOL_CALL_OUTCOME_TOO_LARGE, "over the limit of 100"),
        ('calc__add {"a": "one", "b": 2}', pb.TOOL_CALL_OUTCOME_INVALID_ARGUMENTS, "a: 'one' is not of type"),
        ('calc__add {"a": 1}', pb.TOOL_CALL_OUTCOME_INVALID_ARGUMENTS, "'b' is a required property"),
        ("calc__add {not json", pb.TOOL_CALL_OUTCOME_INVALID_ARGUMENTS, "not valid JSON"),
    ]
    for directive, outcome, said in cases:
        events = await run(stub, "wide", f"call tool {directive}")
        (call,) = finished(events)
        assert call.outcome == outcome, directive
        assert said in call.result, (directive, call.result)
        assert finish(events).reason == pb.STOP_REASON_ANSWERED


async def test_an_oversized_result_is_cut_to_the_limit_and_marked(stub: Any) -> None:
    events = await run(stub, "wide", 'call tool tiny__big {"size": 1000}')
    (call,) = finished(events)
    assert call.outcome == pb.TOOL_CALL_OUTCOME_OK and call.truncated
    assert call.result.startswith("x" * 100 + "\n[cut by the gateway: 1000 characters")


async def test_a_tool_server_that_crashes_mid_call_is_unavailable_then_restarts(stub: Any) -> None:
    events = await run(stub, "helper", "call tool calc__crash {}")
    (call,) = finished(events)
    assert call.outcome == pb.TOOL_CALL_OUTCOME_UNAVAILABLE
    again = await run(stub, "helper", 'call tool calc__add {"a": 3, "b": 4}')
    assert [c.result for c in finished(again)] == ["7"]


async def test_the_firewall_withholds_a_tool_result_carrying_a_secret(stub: Any) -> None:
    events = await run(stub, "helper", "call tool calc__leak {}")
    (call,) = finished(events)
    assert call.outcome == pb.TOOL_CALL_OUTCOME_BLOCKED
    assert "sk-proj" not in call.result and "withheld" in call.result
    assert "sk-proj" not in finish(events).answer
    assert finish(events).reason == pb.STOP_REASON_ANSWERED


async def test_cancelling_a_run_cancels_its_running_tool_calls(stub: Any) -> None:
    call = stub.RunAgent(pb.RunAgentRequest(agent="agents/helper", prompt='call tool calc__slow {"seconds": 30}'))
    async for event in call:
        if event.WhichOneof("event") == "tool_call_started":
            break
    call.cancel()

    async def recorded() -> bool:
        records = (await stub.ListToolCalls(pb.ListToolCallsRequest())).tool_calls
        return [r.outcome for r in records] == [pb.TOOL_CALL_OUTCOME_CANCELLED]

    await eventually(recorded, timeout=10)
    # The connection is still usable after the cancel.
    events = await run(stub, "helper", 'call tool calc__add {"a": 1, "b": 2}')
    assert [c.result for c in finished(events)] == ["3"]


async def test_bad_requests_name_the_field(stub: Any) -> None:
    for request, code, field in (
        (pb.RunAgentRequest(agent="agents/helper"), grpc.StatusCode.INVALID_ARGUMENT, "prompt"),
        (pb.RunAgentRequest(agent="helper", prompt="hi"), grpc.StatusCode.INVALID_ARGUMENT, "agent"),
        (pb.RunAgentRequest(agent="agents/missing", prompt="hi"), grpc.StatusCode.NOT_FOUND, "agents/missing"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await run_request(stub, request)
        assert caught.value.code() is code and field in (caught.value.details() or "")


async def run_request(stub: Any, request: pb.RunAgentRequest) -> None:
    async for _ in stub.RunAgent(request):
        pass


@pytest.mark.parametrize(
    ("servers", "agents", "said"),
    [
        ({"calc": {"command": "x", "url": "http://h/mcp"}}, {}, "servers.calc: Value error, give exactly one"),
        ({"calc": STDIO}, {"a": agent(max_steps=0)}, "agents.a.max_steps"),
        ({"calc": STDIO}, {"a": agent(model="nope")}, "agents.a.model: 'nope' is not a model alias"),
        ({"calc": STDIO}, {"a": agent(tools=["other__x"])}, "agents.a.tools[0]"),
        ({"calc": STDIO}, {"a": agent(colour="red")}, "agents.a.colour"),
    ],
)
async def test_a_mistake_in_either_file_stops_the_server_naming_the_place(
    start_server: ServerFactory, tmp_path: Path, servers: Any, agents: Any, said: str
) -> None:
    env = write_files(tmp_path, servers, agents)
    with pytest.raises(AgentsFileError) as caught:
        await start_server(**env)
    assert said in str(caught.value) and str(tmp_path) in str(caught.value)


async def test_a_reload_takes_new_agents_and_a_reload_with_a_mistake_keeps_the_old(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    env = write_files(tmp_path, {"calc": STDIO}, {"first": agent()})
    server = await start_server(**env, POINTSMAN_AGENTS_RELOAD_SECONDS=0.05)
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)

        async def names() -> list[str]:
            return [a.name for a in (await stub.ListAgents(pb.ListAgentsRequest())).agents]

        assert await names() == ["agents/first"]
        write_files(tmp_path, {"calc": STDIO}, {"first": agent(), "second": agent()})
        await eventually(lambda: _has(names, ["agents/first", "agents/second"]))
        write_files(tmp_path, {"calc": STDIO}, {"third": agent(max_steps=-1)})
        reloader = server.agents.reloader
        await eventually(lambda: "agents.third.max_steps" in reloader.last_error)
        assert await names() == ["agents/first", "agents/second"]
        events = await run(stub, "second", 'call tool calc__add {"a": 1, "b": 2}')
        assert finish(events).answer == "The tools said: 3"


async def _has(names: Any, expected: list[str]) -> bool:
    return bool(await names() == expected)
