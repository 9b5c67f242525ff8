"""OrchestratorService: translates protos to domain calls and back."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator

import grpc

from pointsman.orchestrator.v1 import orchestrator_pb2 as pb
from pointsman.orchestrator.v1 import orchestrator_pb2_grpc

from ..domain import chat
from ..domain.batches.runner import (
    DEFAULT_CONCURRENCY,
    MAX_CONCURRENCY,
    MAX_ITEMS,
    BatchCursor,
    BatchItem,
    BatchProgress,
)
from ..domain.catalog import ModelRoute
from ..domain.embedding import EmbedRequest
from ..domain.embeddings import Embeddings
from ..domain.errors import DomainError, InvalidArgument, ViolationCollector
from ..domain.history import HistoryWindow
from ..domain.orchestrator import FirewallNotice, Orchestrator
from ..domain.ports.conversations import Conversations
from ..domain.provider_options import check_options_served
from ..domain.stats import Stats
from ..domain.validation import check_model, has_control_characters
from ..metrics import Metrics
from . import convert
from .batches import Batches
from .calls import CallContext
from .converse import ConverseSession
from .embeddings import embed_response
from .errors import turn_error
from .models import model_entries
from .resources import decode_offset, decode_token, encode_token, not_issued, page_size, resource_id
from .stats import get_stats, list_calls

MAX_COMPARE_MODELS = 8
# A batch page token: ASCII digits only (see resources._OFFSET) and an id.
_BATCH_CURSOR_MS = re.compile(r"[0-9]{1,15}")
_BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    def __init__(
        self,
        orchestrator: Orchestrator,
        conversations: Conversations,
        batches: Batches,
        calls: CallContext,
        stats: Stats,
        history_window: HistoryWindow,
        embeddings: Embeddings,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._orchestrator = orchestrator
        self._embeddings = embeddings
        self._history_window = history_window
        self._conversations = conversations
        self._batches = batches
        self._calls = calls
        self._stats = stats

    async def Chat(self, request: pb.ChatRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ChatResponse]:
        errors = ViolationCollector()  # conversion problems, reported with the orchestrator's checks
        domain_request = convert.chat_request_from_proto(request, errors, self._orchestrator.default_model)
        async for event in self._orchestrator.chat(domain_request, self._calls.caller(), errors=errors):
            yield pb.ChatResponse(**convert.event_fields(event))

    async def Complete(self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext) -> pb.CompleteResponse:
        errors = ViolationCollector()
        domain_request = convert.chat_request_from_proto(request, errors, self._orchestrator.default_model)
        answer = await self._orchestrator.complete(domain_request, self._calls.caller(), errors)
        return convert.complete_response(answer)

    async def Converse(
        self, request_iterator: AsyncIterator[pb.ConverseRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ConverseResponse]:
        session = ConverseSession(self._orchestrator, self._conversations, self._calls.caller(), self._history_window)
        if self._metrics is not None:
            self._metrics.conversation_opened()
        try:
            async for response in session.run(request_iterator):
                yield response
        finally:
            if self._metrics is not None:
                self._metrics.conversation_closed()

    async def GetConversation(
        self, request: pb.GetConversationRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetConversationResponse:
        conversation_id = resource_id(request.name, "conversations")
        history = await self._conversations.load(self._calls.caller().organisation, conversation_id)
        return pb.GetConversationResponse(
            name=f"conversations/{conversation_id}", messages=[convert.message_to_proto(m) for m in history]
        )

    async def DeleteConversation(
        self, request: pb.DeleteConversationRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteConversationResponse:
        conversation_id = resource_id(request.name, "conversations")
        await self._conversations.delete(self._calls.caller().organisation, conversation_id)
        return pb.DeleteConversationResponse()

    async def Compare(
        self, request: pb.CompareRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.CompareResponse]:
        errors = ViolationCollector()
        models = list(request.models)
        if not 2 <= len(models) <= MAX_COMPARE_MODELS:
            errors.add("models", f"name 2 to {MAX_COMPARE_MODELS} models")
        if len(set(models)) != len(models):
            errors.add("models", "must not repeat a model")
        messages = convert.messages_from_proto(request.messages, errors)
        config = convert.config_from_proto(request.config, errors)
        metadata = convert.metadata_from_proto(request.metadata) if request.HasField("metadata") else None
        options = None
        if request.HasField("provider_options"):
            options = convert.provider_options_from_proto(request.provider_options, errors)
        requests = [chat.ChatRequest(m, messages, config, metadata=metadata, provider_options=options) for m in models]
        if requests:
            self._orchestrator.check(requests[0], errors)  # they differ only in model
        for index, model in enumerate(models[1:], 1):
            check_model(model, errors, f"models[{index}]")
        if request.judge_model:
            check_model(request.judge_model, errors, "judge_model")
            errors.raise_if_any()
            self._orchestrator.chat_routes(request.judge_model, "judge_model")
        errors.raise_if_any()
        routes = [  # unknown models fail the call up front; a router alias is routed like a chat
            self._orchestrator.chat_routes(r.model, f"models[{index}]") for index, r in enumerate(requests)
        ]
        if options is not None:
            requests = _options_per_model(requests, routes, options)

        caller = self._calls.caller()
        answers: dict[str, list[str]] = {m: [] for m in models}
        async for model, item in self._orchestrator.compare(requests, caller):
            if isinstance(item, DomainError):
                yield pb.CompareResponse(model=model, error=turn_error(item))
                continue
            if isinstance(item, chat.TextDelta):
                answers[model].append(item.text)
            if not isinstance(item, FirewallNotice):
                yield pb.CompareResponse(model=model, **convert.event_fields(item))

        if request.judge_model:
            judge = chat.ChatRequest(request.judge_model, _judge_prompt(messages, answers), config, metadata=metadata)
            try:
                async for event in self._orchestrator.chat(judge, caller):
                    if not isinstance(event, FirewallNotice):  # CompareResponse has no notice event
                        yield pb.CompareResponse(
                            model=request.judge_model, synthesis=True, **convert.event_fields(event)
                        )
            except DomainError as error:
                yield pb.CompareResponse(model=request.judge_model, synthesis=True, error=turn_error(error))

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        size = page_size(request.page_size)
        offset = decode_offset(request.page_token)
        orchestrator = self._orchestrator
        routers = orchestrator.classes.specs if orchestrator.classes is not None else []
        models = model_entries(orchestrator.catalog, orchestrator.router, routers)
        return pb.ListModelsResponse(
            models=models[offset : offset + size],
            next_page_token=encode_token(str(offset + size)) if offset + size < len(models) else "",
        )

    async def CreateBatch(
        self, request: pb.CreateBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateBatchResponse:
        errors = ViolationCollector()
        if not 1 <= len(request.items) <= MAX_ITEMS:
            # Refused on the count alone: checking 100,000 items first would
            # hold the event loop for seconds, for every tenant.
            raise InvalidArgument.one("items", f"submit 1 to {MAX_ITEMS} items, not {len(request.items)}")
        if not 0 <= request.max_concurrency <= MAX_CONCURRENCY:
            errors.add("max_concurrency", f"must be 0 to {MAX_CONCURRENCY}")
        items: list[BatchItem] = []
        seen: set[str] = set()
        for index, item in enumerate(request.items):
            item_errors = ViolationCollector()
            domain_request = convert.chat_request_from_proto(item, item_errors, self._orchestrator.default_model)
            self._orchestrator.check(domain_request, item_errors)
            if not item.custom_id or len(item.custom_id) > 128:
                item_errors.add("custom_id", "must be 1 to 128 characters")
            elif has_control_characters(item.custom_id):  # it goes into request ids and log lines
                item_errors.add("custom_id", "must not contain control characters")
            elif item.custom_id in seen:
                item_errors.add("custom_id", "must be unique within the batch")
            seen.add(item.custom_id)
            for v in item_errors.violations:
                errors.add(f"items[{index}].{v.field}", v.description)
            items.append(BatchItem(item.custom_id, domain_request, item.SerializeToString()))
            if len(errors.violations) > 100:
                break
        errors.raise_if_any()
        batch = await self._batches.submit(items, request.max_concurrency or DEFAULT_CONCURRENCY, self._calls.caller())
        return pb.CreateBatchResponse(batch=_batch_to_proto(batch))

    async def GetBatch(self, request: pb.GetBatchRequest, context: grpc.aio.ServicerContext) -> pb.GetBatchResponse:
        batch = await self._batches.get(self._calls.caller().organisation, resource_id(request.name, "batches"))
        return pb.GetBatchResponse(batch=_batch_to_proto(batch))

    async def WatchBatch(
        self, request: pb.WatchBatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchBatchResponse]:
        organisation = self._calls.caller().organisation
        batch_id = resource_id(request.name, "batches")
        async for result in self._batches.watch(organisation, batch_id):
            yield pb.WatchBatchResponse(result=result)
        yield pb.WatchBatchResponse(done=_batch_to_proto(await self._batches.get(organisation, batch_id)))

    async def ListBatches(
        self, request: pb.ListBatchesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListBatchesResponse:
        size = page_size(request.page_size)
        before = _decode_batch_cursor(request.page_token)
        batches = await self._batches.list_batches(self._calls.caller().organisation, size + 1, before)
        page = batches[:size]
        return pb.ListBatchesResponse(
            batches=[_batch_to_proto(batch) for batch in page],
            next_page_token=_encode_batch_cursor(page[-1].cursor) if len(batches) > size else "",
        )

    async def CancelBatch(
        self, request: pb.CancelBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelBatchResponse:
        batch = await self._batches.cancel(self._calls.caller().organisation, resource_id(request.name, "batches"))
        return pb.CancelBatchResponse(batch=_batch_to_proto(batch))

    async def GetStats(self, request: pb.GetStatsRequest, context: grpc.aio.ServicerContext) -> pb.GetStatsResponse:
        return await get_stats(self._stats, request, self._calls.caller().organisation)

    async def ListCalls(self, request: pb.ListCallsRequest, context: grpc.aio.ServicerContext) -> pb.ListCallsResponse:
        return await list_calls(self._stats, request, self._calls.caller().organisation)

    async def Embed(self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext) -> pb.EmbedResponse:
        domain_request = EmbedRequest(request.model, list(request.inputs), request.dimensions or None)
        result = await self._embeddings.embed(domain_request, self._calls.caller())
        return embed_response(result)


def _encode_batch_cursor(cursor: BatchCursor) -> str:
    return encode_token(f"{cursor[0]}:{cursor[1]}")


def _decode_batch_cursor(token: str) -> BatchCursor | None:
    cursor = decode_token(token)
    if cursor is None:
        return None
    create_ms, _, batch_id = cursor.partition(":")
    if not _BATCH_CURSOR_MS.fullmatch(create_ms) or not _BATCH_ID.fullmatch(batch_id):
        raise not_issued()
    return int(create_ms), batch_id


def _batch_to_proto(batch: BatchProgress) -> pb.Batch:
    if batch.cancel_requested:
        state = pb.BATCH_STATE_CANCELLED if batch.done else pb.BATCH_STATE_CANCELLING
    else:
        state = pb.BATCH_STATE_DONE if batch.done else pb.BATCH_STATE_RUNNING
    return pb.Batch(
        name=batch.name,
        state=state,
        total_items=batch.total,
        succeeded_items=batch.succeeded,
        failed_items=batch.failed,
        cancelled_items=batch.cancelled,
        create_time=convert.timestamp(batch.create_time),
    )


def _options_per_model(
    requests: list[chat.ChatRequest], routes: list[list[ModelRoute]], options: chat.ProviderOptions
) -> list[chat.ChatRequest]:
    """Each model gets the sections of the providers it is served by (a
    router alias: those of any model it routes to); a section none of the
    models can take is refused, as for one model."""
    served: set[chat.ProviderKind] = set()
    out = []
    for request, choices in zip(requests, routes, strict=True):
        providers = {d.provider for route in choices for d in route.deployments}
        served |= providers
        own = {kind: section for kind, section in options.given().items() if kind in providers}
        mine = chat.ProviderOptions(
            openai=own.get(chat.ProviderKind.OPENAI, {}), anthropic=own.get(chat.ProviderKind.ANTHROPIC, {})
        )
        out.append(dataclasses.replace(request, provider_options=mine if own else None))
    errors = ViolationCollector()
    check_options_served(options, served, "none of the models", errors)
    errors.raise_if_any()
    return out


def _judge_prompt(messages: list[chat.Message], answers: dict[str, list[str]]) -> list[chat.Message]:
    question = "\n".join(m.text for m in messages if m.role is chat.Role.USER)
    parts = [f"### {model}\n{''.join(text) or '(no answer)'}" for model, text in answers.items()]
    return [
        chat.Message(
            chat.Role.SYSTEM,
            "You compare answers from several models. Say where they agree and differ, "
            "which is most accurate and why, then write the best combined answer.",
        ),
        chat.Message(chat.Role.USER, f"Question:\n{question}\n\nAnswers:\n" + "\n\n".join(parts)),
    ]
