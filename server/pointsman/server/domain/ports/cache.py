"""The response cache and the single-flight lock, as the orchestrator uses
them: whole answers under an exact key (domain/cache_key.py), partitioned by
organisation. In-process and Redis implementations are in backends/shared/."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ..chat import (
    MAX_DELTA_CHARS,
    Finish,
    FinishReason,
    ProviderEvent,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    split_delta,
)


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """Everything needed to replay an answer: which deployment gave it, the
    text, tool calls, usage, why it finished, and the model's reasoning (as
    the output firewall released it)."""

    deployment: str
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage | None = None
    finish_reason: FinishReason = FinishReason.STOP
    reasoning: str = ""

    def replay(self, chunk_chars: int = MAX_DELTA_CHARS) -> Iterator[ProviderEvent]:
        """The answer as provider events: the reasoning, then the text (each
        in chunks of `chunk_chars` if positive, else in one delta), each tool
        call (in pieces of at most MAX_DELTA_CHARS), usage, finish. The
        orchestrator frames them with Start and its own timings."""
        if self.reasoning:
            step = chunk_chars if chunk_chars > 0 else len(self.reasoning)
            for start in range(0, len(self.reasoning), step):
                yield ReasoningDelta(self.reasoning[start : start + step])
        if self.text:
            if chunk_chars > 0:
                for start in range(0, len(self.text), chunk_chars):
                    yield TextDelta(self.text[start : start + chunk_chars])
            else:
                yield TextDelta(self.text)
        for index, call in enumerate(self.tool_calls):
            yield from split_delta(ToolCallDelta(index, call.id, call.name, call.arguments_json))
        if self.usage is not None:
            yield self.usage
        yield Finish(self.finish_reason)

    def approximate_size(self) -> int:
        """Bytes the entry holds, roughly (characters plus a fixed overhead):
        what the in-process cache's byte bound counts."""
        calls = sum(len(c.id) + len(c.name) + len(c.arguments_json) + 64 for c in self.tool_calls)
        return 256 + len(self.deployment) + len(self.text) + len(self.reasoning) + calls


class CacheHit(NamedTuple):
    answer: CachedAnswer
    ttl_seconds: float  # left before the entry expires


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    puts: int = 0
    errors: int = 0  # Redis calls that failed (a get answered as a miss, a put dropped)
    skipped: int = 0  # Redis calls not made because Redis was known to be down
    corrupt: int = 0  # stored values that could not be read (answered as a miss)
    evictions: int = 0  # entries pushed out by the entry or byte bound


class ResponseCache(Protocol):
    stats: CacheStats

    @property
    def healthy(self) -> bool:
        """False while a backing service is unreachable (the cache then misses)."""
        ...

    async def get(self, organisation: str, key: str) -> CachedAnswer | None: ...

    async def lookup(self, organisation: str, key: str) -> CacheHit | None:
        """Like `get`, with the time the entry has left."""
        ...

    async def put(self, organisation: str, key: str, answer: CachedAnswer, ttl_seconds: float) -> None:
        """Stores for `ttl_seconds` (nothing when it is not positive)."""
        ...

    async def aclose(self) -> None: ...


# What `FlightLock.acquire` returns when Redis cannot say: lead, unlocked.
UNLOCKED = ""


class FlightLock(Protocol):
    async def acquire(self, organisation: str, key: str, ttl_seconds: float) -> str | None:
        """A token if this caller may lead (`UNLOCKED` when the lock service
        is unreachable), None while another holder has it."""
        ...

    async def held(self, organisation: str, key: str) -> bool: ...
    async def release(self, organisation: str, key: str, token: str) -> None: ...
