"""Client-side tools in Converse: the model asks for a tool call, the client
runs it and sends the result in the next turn, the model answers with it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.type.v1 import chat_pb2

from server_fixtures import ServerFactory


async def from_queue(queue: asyncio.Queue[Any]) -> AsyncIterator[Any]:
    while (item := await queue.get()) is not None:
        yield item


def until(events: AsyncIterator[orch.ConverseResponse], turn_id: str) -> Any:
    """The events up to the end (finish or error) of `turn_id`."""

    async def read() -> list[orch.ConverseResponse]:
        seen = []
        async for event in events:
            seen.append(event)
            if event.turn_id == turn_id and event.WhichOneof("event") in ("finish", "error"):
                return seen
        return seen

    return read()


async def test_a_turn_carries_the_result_of_the_models_tool_call(start_server: ServerFactory) -> None:
    server = await start_server()
    async with AsyncClient(server.address, timeout=20) as client:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stream = aiter(client.orchestrator.Converse(from_queue(queue)))
        await queue.put(orch.ConverseRequest(setup=orch.ConversationSetup(model="builtin")))
        await queue.put(
            orch.ConverseRequest(turn=orch.UserTurn(turn_id="ask", content='call tool weather {"city": "Oslo"}'))
        )
        first = await until(stream, "ask")
        deltas = [e.tool_call_delta for e in first if e.WhichOneof("event") == "tool_call_delta"]
        call_id = next(d.id for d in deltas if d.id)
        assert next(d.name for d in deltas if d.name) == "weather"
        assert json.loads("".join(d.arguments_delta for d in deltas)) == {"city": "Oslo"}

        # A result for a call the model did not make is refused, naming the field.
        await queue.put(
            orch.ConverseRequest(
                turn=orch.UserTurn(turn_id="wrong", tool_results=[orch.ToolResult(tool_call_id="nope", content="x")])
            )
        )
        wrong = await until(stream, "wrong")
        assert wrong[-1].WhichOneof("event") == "error"
        assert wrong[-1].error.code == 3 and "turn.tool_results[0].tool_call_id" in wrong[-1].error.message

        await queue.put(
            orch.ConverseRequest(
                turn=orch.UserTurn(
                    turn_id="result", tool_results=[orch.ToolResult(tool_call_id=call_id, content="sunny, 21 C")]
                )
            )
        )
        second = await until(stream, "result")
        text = "".join(e.text_delta.text for e in second if e.WhichOneof("event") == "text_delta")
        assert second[-1].WhichOneof("event") == "finish"
        assert text == "The tools said: sunny, 21 C"
        await queue.put(None)
        async for _ in stream:
            pass

        # The history holds the call, its result and the answer, in order.
        conversation = first[0].started.conversation
        kept = await client.orchestrator.GetConversation(orch.GetConversationRequest(name=conversation))
        roles = [m.role for m in kept.messages]
        assert roles == [
            chat_pb2.ROLE_USER,
            chat_pb2.ROLE_ASSISTANT,
            chat_pb2.ROLE_TOOL,
            chat_pb2.ROLE_ASSISTANT,
        ]
        assert kept.messages[1].tool_calls[0].id == call_id
        assert (kept.messages[2].tool_call_id, kept.messages[2].content) == (call_id, "sunny, 21 C")


async def test_every_call_of_the_answer_must_be_answered(start_server: ServerFactory) -> None:
    server = await start_server()
    async with AsyncClient(server.address, timeout=20) as client:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stream = aiter(client.orchestrator.Converse(from_queue(queue)))
        await queue.put(orch.ConverseRequest(setup=orch.ConversationSetup(model="builtin")))
        ask = 'call tool a {"n": 1} call tool b {"n": 2}'
        await queue.put(orch.ConverseRequest(turn=orch.UserTurn(turn_id="ask", content=ask)))
        first = await until(stream, "ask")
        deltas = [e.tool_call_delta for e in first if e.WhichOneof("event") == "tool_call_delta"]
        ids = [d.id for d in deltas if d.id]
        assert len(ids) == 2

        one = [orch.ToolResult(tool_call_id=ids[0], content="one")]
        await queue.put(orch.ConverseRequest(turn=orch.UserTurn(turn_id="half", tool_results=one)))
        half = await until(stream, "half")
        assert half[-1].error.code == 3 and f"missing: {ids[1]}" in half[-1].error.message

        both = [orch.ToolResult(tool_call_id=i, content=c) for i, c in zip(ids, ("one", "two"), strict=True)]
        await queue.put(orch.ConverseRequest(turn=orch.UserTurn(turn_id="both", tool_results=both)))
        done = await until(stream, "both")
        assert "".join(e.text_delta.text for e in done if e.WhichOneof("event") == "text_delta") == (
            "The tools said: one | two"
        )
        await queue.put(None)
        async for _ in stream:
            pass
