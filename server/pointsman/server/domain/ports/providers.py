"""The interfaces model providers implement: chat, and embeddings."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from ..chat import ChatRequest, Deployment, ProviderEvent
from ..embedding import Vectors


class ChatProvider(Protocol):
    """Streams one answer from one deployment. Implementations must stop the
    upstream call when the iterator is closed or cancelled, and raise only
    `DomainError`s (mapping their SDK's exceptions through `upstream_errors`).

    With `incremental=False` the caller wants the whole answer at once
    (`Complete`): a provider may then make one non-streaming upstream call,
    which costs less, and yield the same events from it."""

    def stream(
        self, deployment: Deployment, request: ChatRequest, *, incremental: bool = True
    ) -> AsyncGenerator[ProviderEvent, None]: ...

    async def aclose(self) -> None: ...


class EmbeddingProvider(Protocol):
    """Embeds a batch of texts on one deployment. Raises only `DomainError`s
    (upstream failures through `upstream_errors`), so the router retries,
    falls back and counts failures as it does for chat."""

    async def embed(self, deployment: Deployment, inputs: list[str], dimensions: int | None) -> Vectors: ...

    async def aclose(self) -> None: ...
