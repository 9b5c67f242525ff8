"""Chat, Complete, Converse, Compare, batches and ListModels on the built-in model."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.providers.builtin import BUILTIN_PREAMBLE
from pointsman.type.v1 import chat_pb2

from helpers_pb import chat_request, event_kinds, text_of, user
from server_fixtures import collect, raises


async def test_chat_streams_start_deltas_usage_finish(start_server: Any) -> None:
    # No output hold-back, so each upstream delta is its own event.
    server = await start_server(FIREWALL_OUTPUT_HOLDBACK_CHARS=0)
    async with AsyncClient(server.address, timeout=10) as client:
        events = await collect(client.orchestrator.Chat(chat_request("hello brave new world")))
    kinds = event_kinds(events)
    assert kinds[0] == "start"
    assert kinds[-2:] == ["usage", "finish"]
    assert set(kinds[1:-2]) == {"text_delta"} and len(kinds[1:-2]) > 3
    assert text_of(events) == BUILTIN_PREAMBLE + "hello brave new world"
    start = events[0].start
    assert start.model == "builtin" and start.deployment.provider == orch.PROVIDER_BUILTIN
    assert start.request_id
    finish = events[-1].finish
    assert finish.reason == orch.FINISH_REASON_STOP
    assert finish.timings.total.ToNanoseconds() >= finish.timings.time_to_first_token.ToNanoseconds() > 0
    assert events[-2].usage.total_tokens == events[-2].usage.input_tokens + events[-2].usage.output_tokens


async def test_request_id_is_accepted_and_echoed(server: Any) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = channel.unary_stream(
            "/pointsman.orchestrator.v1.OrchestratorService/Chat",
            request_serializer=orch.ChatRequest.SerializeToString,
            response_deserializer=orch.ChatResponse.FromString,
        )(chat_request("hi"), metadata=(("x-request-id", "my-trace-42"),), timeout=5)
        first = await call.read()
        assert ("x-request-id", "my-trace-42") in tuple(await call.initial_metadata())
        assert first.start.request_id == "my-trace-42"
        call.cancel()


async def test_unary_calls_echo_the_request_id_in_trailers(server: Any) -> None:
    # A unary call's answer and status go in one batch; the id rides with the status.
    async with grpc.aio.insecure_channel(server.address) as channel:
        complete = channel.unary_unary(
            "/pointsman.orchestrator.v1.OrchestratorService/Complete",
            request_serializer=orch.CompleteRequest.SerializeToString,
            response_deserializer=orch.CompleteResponse.FromString,
        )
        call = complete(
            orch.CompleteRequest(model="builtin", messages=[user("hi")]),
            metadata=(("x-request-id", "my-trace-43"),),
            timeout=5,
        )
        response = await call
        assert response.start.request_id == "my-trace-43"
        assert ("x-request-id", "my-trace-43") in tuple(await call.trailing_metadata())

        failing = complete(
            orch.CompleteRequest(model="no-such-model", messages=[user("hi")]),
            metadata=(("x-request-id", "my-trace-44"),),
            timeout=5,
        )
        try:
            await failing
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND
            trailers = tuple(error.trailing_metadata())
            assert ("x-request-id", "my-trace-44") in trailers
            # The rich status details are still there beside it.
            assert any(key == "grpc-status-details-bin" for key, _ in trailers)
        else:
            raise AssertionError("an unknown model must fail the call")


async def test_complete_returns_whole_answer(client: AsyncClient) -> None:
    response = await client.orchestrator.Complete(orch.CompleteRequest(model="builtin", messages=[user("one two")]))
    assert response.message.role == chat_pb2.ROLE_ASSISTANT
    assert response.message.content == BUILTIN_PREAMBLE + "one two"
    assert response.finish.reason == orch.FINISH_REASON_STOP
    assert response.usage.output_tokens > 0


async def test_max_tokens_and_stop_sequences(client: AsyncClient) -> None:
    events = await collect(client.orchestrator.Chat(chat_request("a b c d", max_tokens=3)))
    assert events[-1].finish.reason == orch.FINISH_REASON_LENGTH
    assert events[-2].usage.output_tokens == 3
    events = await collect(client.orchestrator.Chat(chat_request("alpha STOP beta", stop=["STOP"])))
    assert text_of(events).endswith("alpha ")
    assert "beta" not in text_of(events)


async def test_tool_calls_stream_as_deltas(client: AsyncClient) -> None:
    tool = chat_pb2.Tool(name="lookup", description="finds things")
    events = await collect(client.orchestrator.Chat(chat_request("find cats", tools=[tool])))
    deltas = [e.tool_call_delta for e in events if e.WhichOneof("event") == "tool_call_delta"]
    assert deltas[0].name == "lookup" and deltas[0].id
    assert "".join(d.arguments_delta for d in deltas) == '{"input": "find cats"}'
    assert events[-1].finish.reason == orch.FINISH_REASON_TOOL_CALLS


async def converse_requests(queue: asyncio.Queue[orch.ConverseRequest | None]) -> Any:
    while (item := await queue.get()) is not None:
        yield item


async def test_converse_keeps_history_and_can_resume(client: AsyncClient) -> None:
    queue: asyncio.Queue[orch.ConverseRequest | None] = asyncio.Queue()
    await queue.put(orch.ConverseRequest(setup=orch.ConversationSetup(model="builtin", system_prompt="be brief")))
    await queue.put(orch.ConverseRequest(turn=orch.UserTurn(turn_id="t1", content="first question")))
    await queue.put(orch.ConverseRequest(turn=orch.UserTurn(turn_id="t2", content="second question")))
    await queue.put(None)  # half-close: the server answers queued turns, then ends
    events = await collect(client.orchestrator.Converse(converse_requests(queue)))
    assert events[0].WhichOneof("event") == "started"
    assert events[0].started.history_length == 1  # the system prompt
    conversation = events[0].started.conversation
    by_turn = {t: [e for e in events if e.turn_id == t] for t in ("t1", "t2")}
    assert text_of(by_turn["t1"]).endswith("first question")
    assert text_of(by_turn["t2"]).endswith("second question")
    assert by_turn["t1"][-1].WhichOneof("event") == "finish"

    queue = asyncio.Queue()
    await queue.put(orch.ConverseRequest(setup=orch.ConversationSetup(model="builtin", conversation=conversation)))
    await queue.put(None)
    resumed = await collect(client.orchestrator.Converse(converse_requests(queue)))
    assert resumed[0].started.history_length == 5  # system + two user/assistant pairs

    # The history can be read, and forgotten.
    kept = await client.orchestrator.GetConversation(orch.GetConversationRequest(name=conversation))
    assert kept.name == conversation
    assert [(m.role, m.content) for m in kept.messages[:2]] == [
        (chat_pb2.ROLE_SYSTEM, "be brief"),
        (chat_pb2.ROLE_USER, "first question"),
    ]
    assert kept.messages[2].role == chat_pb2.ROLE_ASSISTANT and kept.messages[2].content.endswith("first question")
    assert len(kept.messages) == 5
    await client.orchestrator.DeleteConversation(orch.DeleteConversationRequest(name=conversation))
    for gone in (
        client.orchestrator.GetConversation(orch.GetConversationRequest(name=conversation)),
        client.orchestrator.DeleteConversation(orch.DeleteConversationRequest(name=conversation)),
    ):
        error = await raises(gone)
        assert error.code == grpc.StatusCode.NOT_FOUND and error.reason == "CONVERSATION_NOT_FOUND"
    queue = asyncio.Queue()
    await queue.put(orch.ConverseRequest(setup=orch.ConversationSetup(model="builtin", conversation=conversation)))
    await queue.put(None)
    error = await raises(collect(client.orchestrator.Converse(converse_requests(queue))))
    assert error.code == grpc.StatusCode.NOT_FOUND
    malformed = await raises(client.orchestrator.GetConversation(orch.GetConversationRequest(name="c/1")))
    assert malformed.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_converse_bad_turn_reports_error_and_session_goes_on(client: AsyncClient) -> None:
    queue: asyncio.Queue[orch.ConverseRequest | None] = asyncio.Queue()
    await queue.put(orch.ConverseRequest(setup=orch.ConversationSetup(model="builtin")))
    await queue.put(orch.ConverseRequest(turn=orch.UserTurn(turn_id="empty", content="")))
    await queue.put(orch.ConverseRequest(turn=orch.UserTurn(turn_id="ok", content="fine")))
    await queue.put(None)
    events = await collect(client.orchestrator.Converse(converse_requests(queue)))
    error = next(e.error for e in events if e.turn_id == "empty")
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [e.WhichOneof("event") for e in events if e.turn_id == "ok"][-1] == "finish"


async def test_compare_tags_events_by_model_and_judges(start_server: Any) -> None:
    server = await start_server(USE_MOCK=True, OPENAI_MODELS=["model-a", "model-b"])
    async with AsyncClient(server.address) as client:
        request = orch.CompareRequest(
            models=["model-a", "model-b"], messages=[user("compare me")], judge_model="builtin"
        )
        events = await collect(client.orchestrator.Compare(request))
    for model in ("model-a", "model-b"):
        mine = [e for e in events if e.model == model and not e.synthesis]
        assert mine[0].WhichOneof("event") == "start"
        assert mine[-1].WhichOneof("event") == "finish"
        assert text_of(mine).endswith("compare me")
    synthesis = [e for e in events if e.synthesis]
    assert synthesis and synthesis[-1].WhichOneof("event") == "finish"
    assert "### model-a" in text_of(synthesis)  # the judge saw both answers


async def test_batch_streams_each_result_and_keeps_failures_apart(client: AsyncClient) -> None:
    items = [orch.BatchItem(custom_id=f"item-{i}", model="builtin", messages=[user(f"question {i}")]) for i in range(5)]
    items.append(
        orch.BatchItem(
            custom_id="too-long",
            model="builtin",
            messages=[user("x " * 10)],
            config=chat_pb2.GenerationConfig(max_tokens=1),
        )
    )
    created = await client.orchestrator.CreateBatch(orch.CreateBatchRequest(items=items, max_concurrency=2))
    assert created.batch.total_items == 6
    events = await collect(client.orchestrator.WatchBatch(orch.WatchBatchRequest(name=created.batch.name)))
    results = {e.result.custom_id: e.result for e in events if e.WhichOneof("event") == "result"}
    assert len(results) == 6
    assert results["item-3"].response.message.content.endswith("question 3")
    assert results["too-long"].response.finish.reason == orch.FINISH_REASON_LENGTH
    assert events[-1].done.state == orch.BATCH_STATE_DONE
    assert events[-1].done.succeeded_items == 6
    got = await client.orchestrator.GetBatch(orch.GetBatchRequest(name=created.batch.name))
    assert got.batch.state == orch.BATCH_STATE_DONE


async def test_list_models_pages(start_server: Any) -> None:
    server = await start_server(USE_MOCK=True, OPENAI_MODELS=["m1", "m2", "m3"])
    async with AsyncClient(server.address) as client:
        first = await client.orchestrator.ListModels(orch.ListModelsRequest(page_size=3))
        second = await client.orchestrator.ListModels(
            orch.ListModelsRequest(page_size=3, page_token=first.next_page_token)
        )
    aliases = [m.alias for m in [*first.models, *second.models]]
    assert aliases == ["builtin", "builtin-embedding", "m1", "m2", "m3"]
    assert second.next_page_token == ""
    assert all(m.builtin for m in first.models)
