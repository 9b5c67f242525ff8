"""Workflows run by the gateway (RunWorkflow): the built-in comparative
analysis over the configured models, and a file's graph of classify, branch,
chat and agent steps, against the built-in model, the fake OpenAI upstream
and the SDK-written MCP test server."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
import yaml

from pointsman.agent.v1 import agent_pb2 as pb
from pointsman.agent.v1 import agent_pb2_grpc
from pointsman.server.app.agents_config import AgentsFileError

from fakes.openai_upstream import FakeOpenAI
from server_fixtures import ServerFactory, eventually

TOOL_SERVER = str(Path(__file__).resolve().parent / "mcp_tools_server.py")
STDIO = {"command": sys.executable, "args": [TOOL_SERVER], "call_timeout_seconds": 5}

TRIAGE = {
    "description": "maths to the agent, the rest to a chat",
    "steps": [
        {"name": "kind", "kind": "classify", "rules": {"math": ["calc__", "add"]}, "default": "other"},
        {"name": "route", "kind": "branch", "source": "kind", "branches": {"math": "solve", "other": "talk"}},
        {"name": "solve", "kind": "agent", "agent": "helper", "next": "end"},
        {"name": "talk", "kind": "chat", "model": "builtin", "prompt": "Summarise ({steps.kind}): {input}"},
    ],
}


def write_files(tmp_path: Path, workflows: dict[str, Any], routes: dict[str, Any] | None = None) -> dict[str, str]:
    (tmp_path / "tools.yaml").write_text(yaml.safe_dump({"servers": {"calc": STDIO}}))
    agents = {"helper": {"model": "builtin", "tools": ["calc__*"], "max_steps": 4}}
    (tmp_path / "agents.yaml").write_text(yaml.safe_dump({"agents": agents, "workflows": workflows}))
    env = {"POINTSMAN_TOOLS_FILE": str(tmp_path / "tools.yaml"), "POINTSMAN_AGENTS_FILE": str(tmp_path / "agents.yaml")}
    if routes is not None:
        (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes))
        env |= {"POINTSMAN_ROUTES_FILE": str(tmp_path / "routes.yaml"), "OPENAI_API_KEY": "sk-test"}
    return env


def fake_routes(base_url: str) -> dict[str, Any]:
    endpoint = {"fake": {"provider": "openai", "base_url": base_url}}
    return {
        "endpoints": endpoint,
        "models": {
            "alpha": {"deployments": [{"endpoint": "fake", "model": "gpt-a"}]},
            "beta": {"deployments": [{"endpoint": "fake", "model": "long-3"}]},
            "slow": {"deployments": [{"endpoint": "fake", "model": "long-40+slow-50"}]},
            "broken": {"deployments": [{"endpoint": "fake", "model": "fault-400"}]},
        },
    }


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest_asyncio.fixture
async def stub(start_server: ServerFactory, tmp_path: Path, upstream: FakeOpenAI) -> AsyncIterator[Any]:
    workflows = {
        "triage": TRIAGE,
        "pair": {"steps": [{"name": "both", "kind": "compare", "models": ["alpha", "beta"], "judge": "builtin"}]},
        "forever": {"max_steps": 3, "steps": [{"name": "again", "kind": "chat", "model": "builtin", "next": "again"}]},
        "patient": {"timeout_seconds": 0.5, "steps": [{"name": "wait", "kind": "chat", "model": "slow"}]},
        "slowly": {"steps": [{"name": "wait", "kind": "chat", "model": "slow"}]},
        "failing": {"steps": [{"name": "ask", "kind": "chat", "model": "broken"}]},
        "shaky": {"steps": [{"name": "both", "kind": "compare", "models": ["alpha", "broken"], "judge": "builtin"}]},
    }
    server = await start_server(**write_files(tmp_path, workflows, fake_routes(upstream.base_url)))
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield agent_pb2_grpc.AgentServiceStub(channel)


async def run(stub: Any, name: str, text: str) -> list[pb.RunWorkflowResponse]:
    workflow = f"workflows/{name}" if name else ""
    return [e async for e in stub.RunWorkflow(pb.RunWorkflowRequest(workflow=workflow, input=text))]


def finish(events: list[pb.RunWorkflowResponse]) -> pb.WorkflowFinish:
    assert events[-1].WhichOneof("event") == "finish"
    return events[-1].finish


def outputs(events: list[pb.RunWorkflowResponse]) -> dict[str, str]:
    return {e.step: e.step_finished.output for e in events if e.WhichOneof("event") == "step_finished"}


async def test_list_workflows_names_the_files_and_the_builtin_comparative(stub: Any) -> None:
    listing = await stub.ListWorkflows(pb.ListWorkflowsRequest())
    names = [w.name for w in listing.workflows]
    expected = ("comparative", "failing", "forever", "pair", "patient", "shaky", "slowly", "triage")
    assert names == [f"workflows/{n}" for n in expected]
    assert listing.default_workflow == "workflows/comparative"
    comparative = listing.workflows[0]
    assert comparative.builtin and [s.kind for s in comparative.steps] == ["compare"]
    triage = listing.workflows[-1]
    assert [s.kind for s in triage.steps] == ["classify", "branch", "agent", "chat"]
    assert dict(triage.steps[1].branches) == {"math": "solve", "other": "talk"}


async def test_an_empty_name_runs_the_default_comparative_analysis_over_every_model(stub: Any) -> None:
    events = await run(stub, "", "why is the sky blue")
    assert events[0].start.workflow == "workflows/comparative"
    deltas = [e for e in events if e.WhichOneof("event") == "text_delta"]
    assert all(e.step == "compare" for e in deltas)
    answered = {e.text_delta.source for e in deltas if not e.text_delta.synthesis}
    assert {"alpha", "beta", "builtin"} <= answered
    # The judge (the first chat model) read every answer: the built-in judge echoes them.
    done = finish(events)
    assert done.reason == pb.STOP_REASON_ANSWERED and done.steps == 1
    assert "### alpha\nEcho: why is the sky blue" in done.answer
    assert "### beta\nword1 word2 word3" in done.answer
    assert done.answer == "".join(e.text_delta.text for e in deltas if e.text_delta.synthesis)
    assert done.total_usage.output_tokens > 0


async def test_a_compare_step_fans_out_to_its_models_and_the_judge_synthesises(stub: Any) -> None:
    events = await run(stub, "pair", "hello")
    sources = {e.text_delta.source for e in events if e.WhichOneof("event") == "text_delta"}
    assert sources == {"alpha", "beta", "builtin"}
    assert "### alpha\nEcho: hello" in finish(events).answer


async def test_classify_branches_to_the_agent_for_maths(stub: Any) -> None:
    events = await run(stub, "triage", 'call tool calc__add {"a": 2, "b": 40}')
    kinds = [(e.step, e.WhichOneof("event")) for e in events if e.WhichOneof("event") != "text_delta"]
    assert kinds == [
        ("", "start"),
        ("kind", "step_started"),
        ("kind", "step_finished"),
        ("route", "step_started"),
        ("route", "step_finished"),
        ("solve", "step_started"),
        ("solve", "step_finished"),
        ("", "finish"),
    ]
    assert outputs(events) == {"kind": "math", "route": "solve", "solve": "The tools said: 42"}
    solved = next(e.step_finished for e in events if e.step == "solve" and e.WhichOneof("event") == "step_finished")
    assert solved.duration.ToNanoseconds() > 0 and solved.usage.output_tokens > 0
    done = finish(events)
    assert (done.reason, done.answer, done.steps) == (pb.STOP_REASON_ANSWERED, "The tools said: 42", 3)


async def test_classify_branches_to_a_templated_chat_for_the_rest(stub: Any) -> None:
    events = await run(stub, "triage", "tell me about {braces} and owls")
    assert outputs(events)["kind"] == "other"
    assert finish(events).answer.endswith("You said: Summarise (other): tell me about {braces} and owls")
    assert {e.step for e in events if e.WhichOneof("event") == "text_delta"} == {"talk"}


async def test_a_workflow_that_loops_stops_at_max_steps(stub: Any) -> None:
    done = finish(await run(stub, "forever", "hi"))
    assert (done.reason, done.steps) == (pb.STOP_REASON_MAX_STEPS, 3)


async def test_a_workflow_past_its_timeout_stops_and_the_model_call_ends(stub: Any, upstream: FakeOpenAI) -> None:
    done = finish(await run(stub, "patient", "hi"))
    assert done.reason == pb.STOP_REASON_TIMEOUT
    await eventually(lambda: upstream.streams_open == 0)


async def test_a_client_cancel_stops_the_run_and_its_model_call(stub: Any, upstream: FakeOpenAI) -> None:
    call = stub.RunWorkflow(pb.RunWorkflowRequest(workflow="workflows/slowly", input="hi"))
    async for event in call:
        if event.WhichOneof("event") == "text_delta":
            break
    call.cancel()
    await eventually(lambda: upstream.streams_open == 0)
    assert upstream.streams_completed == 0


async def test_a_failed_model_turn_ends_the_run_with_its_error(stub: Any) -> None:
    events = await run(stub, "failing", "hi")
    done = finish(events)
    assert done.reason == pb.STOP_REASON_ERROR and done.steps == 1
    assert done.error_code == "INVALID_ARGUMENT" and done.error_reason
    assert "step_finished" not in [e.WhichOneof("event") for e in events]


async def test_a_model_failing_in_a_compare_is_told_to_the_judge_and_the_rest_go_on(stub: Any) -> None:
    done = finish(await run(stub, "shaky", "hi"))
    assert done.reason == pb.STOP_REASON_ANSWERED
    assert "### alpha\nEcho: hi" in done.answer and "### broken\n(failed: " in done.answer


async def test_bad_requests_name_the_field(stub: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await run(stub, "missing", "hi")
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await run(stub, "triage", "  ")
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "input" in (caught.value.details() or "")


@pytest.mark.parametrize(
    ("steps", "said"),
    [
        ([{"name": "a", "kind": "chat", "model": "nope"}], "workflows.bad.steps[0].model: 'nope' is not a model alias"),
        ([{"name": "a", "kind": "chat", "model": "builtin", "next": "b"}], "workflows.bad.steps[0].next: 'b'"),
        ([{"name": "a", "kind": "agent", "agent": "ghost"}], "workflows.bad.steps[0].agent: 'ghost'"),
        ([{"name": "a", "kind": "chat", "model": "builtin", "prompt": "{steps.z}"}], "steps[0].prompt: {steps.z}"),
        ([{"name": "a", "kind": "branch", "source": "a", "branches": {"x": "a"}}], "steps[0].source"),
        ([{"name": "a", "kind": "dance"}], "workflows.bad.steps.0.kind"),
    ],
)
async def test_a_mistake_in_a_workflow_stops_the_server_naming_the_place(
    start_server: ServerFactory, tmp_path: Path, steps: list[Any], said: str
) -> None:
    with pytest.raises(AgentsFileError) as caught:
        await start_server(**write_files(tmp_path, {"bad": {"steps": steps}}))
    assert said in str(caught.value) and str(tmp_path) in str(caught.value)


async def test_an_unknown_default_analysis_stops_the_server(start_server: ServerFactory) -> None:
    with pytest.raises(AgentsFileError) as caught:
        await start_server(ORCHESTRATOR_DEFAULT_ANALYSIS="nothing")
    assert "ORCHESTRATOR_DEFAULT_ANALYSIS" in str(caught.value)


async def test_a_reload_takes_new_workflows_and_the_default_may_name_one(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    env = write_files(tmp_path, {"triage": TRIAGE})
    server = await start_server(**env, POINTSMAN_AGENTS_RELOAD_SECONDS=0.05, ORCHESTRATOR_DEFAULT_ANALYSIS="triage")
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        assert finish(await run(stub, "", "owls")).answer.endswith("Summarise (other): owls")
        await asyncio.sleep(0.01)  # a new mtime
        write_files(
            tmp_path, {"triage": TRIAGE, "echo": {"steps": [{"name": "a", "kind": "chat", "model": "builtin"}]}}
        )

        async def listed() -> bool:
            listing = await stub.ListWorkflows(pb.ListWorkflowsRequest())
            return "workflows/echo" in [w.name for w in listing.workflows]

        await eventually(listed)
