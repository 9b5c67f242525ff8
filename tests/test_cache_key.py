"""The response-cache key cannot forget a field: every field of the ChatRequest
contract, walked from its descriptor, either changes the key or is on the
explicit list of fields that do not change the answer; and through a real
server, requests that differ in any answer-changing field never share a cached
answer."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import descriptor, struct_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message as ProtoMessage

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.domain import chat
from pointsman.server.domain.cache_key import ANSWER_NEUTRAL_FIELDS, cache_key
from pointsman.server.domain.errors import ViolationCollector
from pointsman.server.transport import convert
from pointsman.type.v1 import chat_pb2

# Messages a request holds whole, as values: changed as a leaf, not walked into.
WHOLE_VALUES = {struct_pb2.Struct.DESCRIPTOR.full_name, Duration.DESCRIPTOR.full_name}


def base_request() -> orch.ChatRequest:
    """A request with every field of the contract set."""
    parameters = struct_pb2.Struct()
    parameters.update({"type": "object", "properties": {"city": {"type": "string"}}})
    # Options changed by the walk as any Struct is (a "required" key added):
    # the key must change even though the allow-list would refuse that name.
    options = struct_pb2.Struct()
    options.update({"service_tier": "auto"})
    return orch.ChatRequest(
        model="builtin",
        messages=[
            chat_pb2.ChatMessage(
                role=chat_pb2.ROLE_USER,
                content="Capital of France?",
                name="alice",
                tool_call_id="call_0",
                tool_calls=[chat_pb2.ToolCall(id="call_1", name="lookup", arguments_json='{"city": "Paris"}')],
                parts=[
                    chat_pb2.ContentPart(
                        image=chat_pb2.ImagePart(
                            data=b"\x89PNG\r\n\x1a\n", mime_type="image/png", detail=chat_pb2.IMAGE_DETAIL_LOW
                        )
                    )
                ],
            )
        ],
        config=chat_pb2.GenerationConfig(
            temperature=0.5,
            top_p=0.5,
            max_tokens=100,
            stop=["END"],
            seed=7,
            tools=[chat_pb2.Tool(name="lookup", description="Find a city", parameters=parameters)],
            response_format=chat_pb2.ResponseFormat(
                type=chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, schema_name="city", schema=parameters, strict=True
            ),
            # REQUIRED, not TOOL: the walk renames the tool, which TOOL would refuse.
            tool_choice=chat_pb2.ToolChoice(mode=chat_pb2.TOOL_CHOICE_MODE_REQUIRED, tool_name="lookup"),
            parallel_tool_calls=True,
            reasoning=chat_pb2.Reasoning(effort=chat_pb2.REASONING_EFFORT_MEDIUM, budget_tokens=2048),
        ),
        cache=orch.CacheControl(bypass=False, ttl=Duration(seconds=60)),
        metadata=orch.RequestMetadata(end_user_id="user-1", tags={"team": "search"}),
        provider_options=orch.ProviderOptions(openai=options, anthropic=options),
    )


def leaf_paths(message: descriptor.Descriptor, prefix: str = "") -> Iterator[str]:
    """Every field of the message, walking into nested messages (the first
    element of a repeated one)."""
    for field in message.fields:
        path = f"{prefix}{field.name}"
        nested = field.message_type
        if nested is not None and nested.full_name not in WHOLE_VALUES and not nested.GetOptions().map_entry:
            yield from leaf_paths(nested, f"{path}.")
        else:
            yield path


def changed(request: orch.ChatRequest, path: str) -> orch.ChatRequest:
    """A copy of the request with the field at `path` set to another valid value."""
    copy = orch.ChatRequest()
    copy.CopyFrom(request)
    *parents, name = path.split(".")
    holder: ProtoMessage = copy
    for parent in parents:
        value = getattr(holder, parent)
        holder = value[0] if holder.DESCRIPTOR.fields_by_name[parent].is_repeated else value
    field = holder.DESCRIPTOR.fields_by_name[name]
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        getattr(holder, name)["other"] = "x"
        return copy
    repeated = field.is_repeated
    current = getattr(holder, name)[0] if repeated else getattr(holder, name)
    if field.message_type is not None and field.message_type.full_name == struct_pb2.Struct.DESCRIPTOR.full_name:
        current["required"] = ["city"]
        return copy
    if field.message_type is not None and field.message_type.full_name == Duration.DESCRIPTOR.full_name:
        current.seconds += 1
        return copy
    new = another_value(field, current)
    if repeated:
        getattr(holder, name)[0] = new
    else:
        setattr(holder, name, new)
    return copy


def another_value(field: descriptor.FieldDescriptor, current: Any) -> Any:
    kind = field.type
    if kind == descriptor.FieldDescriptor.TYPE_STRING:
        return f"{current}x"
    if kind == descriptor.FieldDescriptor.TYPE_BYTES:
        return current + b"x"
    if kind == descriptor.FieldDescriptor.TYPE_BOOL:
        return not current
    if kind in {descriptor.FieldDescriptor.TYPE_INT32, descriptor.FieldDescriptor.TYPE_INT64}:
        return current + 1
    if kind == descriptor.FieldDescriptor.TYPE_DOUBLE:
        return current / 2
    if kind == descriptor.FieldDescriptor.TYPE_ENUM:
        numbers = [v.number for v in field.enum_type.values if v.number not in {0, current}]
        return numbers[0]
    pytest.fail(f"{field.full_name}: teach this test how to change a field of type {kind}")


def domain(request: orch.ChatRequest) -> chat.ChatRequest:
    errors = ViolationCollector()
    converted = convert.chat_request_from_proto(request, errors)
    errors.raise_if_any()
    return converted


def differing_fields(a: Any, b: Any, owner: str = "") -> set[str]:
    """The domain fields, as "Class.field", in which two values differ."""
    if dataclasses.is_dataclass(a) and type(a) is type(b):
        out: set[str] = set()
        for f in dataclasses.fields(a):
            left, right = getattr(a, f.name), getattr(b, f.name)
            if left != right:
                inner = differing_fields(left, right, f"{type(a).__name__}.{f.name}")
                out |= inner or {f"{type(a).__name__}.{f.name}"}
        return out
    if isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
        return set().union(*(differing_fields(x, y, owner) for x, y in zip(a, b, strict=True)))
    return {owner} if owner and a != b else set()


PATHS = list(leaf_paths(orch.ChatRequest.DESCRIPTOR))


def test_the_walk_reaches_every_part_of_the_contract() -> None:
    # Guards the walk itself: a field it skipped could not be checked.
    assert {"model", "messages.role", "messages.tool_calls.arguments_json", "config.tools.parameters"} <= set(PATHS)
    assert {"cache.bypass", "cache.ttl"} <= set(PATHS)


@pytest.mark.parametrize("path", PATHS)
def test_every_field_is_in_the_key_or_listed_as_not_changing_the_answer(path: str) -> None:
    before = domain(base_request())
    after = domain(changed(base_request(), path))
    if cache_key(after) != cache_key(before):
        return
    differences = differing_fields(before, after)
    assert differences, f"{path} reaches neither the domain request nor the cache key"
    assert differences <= ANSWER_NEUTRAL_FIELDS, (
        f"{path} changes {sorted(differences)} but not the cache key: put it in the key,"
        " or on ANSWER_NEUTRAL_FIELDS if it cannot change the answer"
    )


def test_the_list_names_only_real_fields() -> None:
    kinds = (
        chat.ChatRequest,
        chat.Message,
        chat.ToolCall,
        chat.GenerationConfig,
        chat.Tool,
        chat.ResponseFormat,
        chat.ToolChoice,
        chat.RequestMetadata,
    )
    classes = {c.__name__: c for c in kinds}
    for entry in ANSWER_NEUTRAL_FIELDS:
        owner, name = entry.split(".")
        assert name in {f.name for f in dataclasses.fields(classes[owner])}, entry


# Image parts are left to tests/test_images.py, against a model that takes
# images (the built-in model used here refuses them); provider options need an
# OpenAI or Anthropic deployment (the walk above covers them), and metadata
# does not change the answer.
ANSWER_CHANGING = [
    p for p in PATHS if not p.startswith(("cache.", "messages.parts.", "metadata.", "provider_options."))
]


def text_only_request() -> orch.ChatRequest:
    request = base_request()
    del request.messages[0].parts[:]
    return request


async def test_requests_differing_in_any_answer_changing_field_do_not_share_an_answer(
    start_server: Any, tmp_path: Path
) -> None:
    # Two aliases, so that changing the model names one that is served.
    local = {"endpoint": "local", "model": "echo"}
    routes = {
        "endpoints": {"local": {"provider": "builtin"}},
        "models": {"builtin": {"deployments": [local]}, "builtinx": {"deployments": [local]}},
    }
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes))
    server = await start_server(POINTSMAN_ROUTES_FILE=str(tmp_path / "routes.yaml"))
    async with AsyncClient(server.address, timeout=10) as client:
        await answers_are_not_shared(client)


async def answers_are_not_shared(client: AsyncClient) -> None:
    complete = client.orchestrator.Complete
    first = await complete(orch.CompleteRequest(**as_complete(text_only_request())))
    again = await complete(orch.CompleteRequest(**as_complete(text_only_request())))
    assert not first.start.cached and again.start.cached  # the cache is on for these requests
    for path in ANSWER_CHANGING:
        answer = await complete(orch.CompleteRequest(**as_complete(changed(text_only_request(), path))))
        assert not answer.start.cached, f"a request differing in {path} was answered from the cache"


def as_complete(request: orch.ChatRequest) -> dict[str, Any]:
    return {"model": request.model, "messages": request.messages, "config": request.config, "cache": request.cache}


def test_the_end_user_and_tags_do_not_change_the_key() -> None:
    plain = base_request()
    plain.ClearField("metadata")
    assert cache_key(domain(plain)) == cache_key(domain(base_request()))
