"""Circuit-breaker opens shared between replicas: when one replica's breaker
opens, the others hold the deployment open too (backends/shared/breaker_state.py:
in-process, or Redis)."""

from __future__ import annotations

from typing import Protocol


class SharedOpenState(Protocol):
    def opened_until(self, deployment: str) -> float:
        """Wall-clock time (time.time()) until which some replica holds the
        deployment's breaker open; 0.0 if none is known to."""
        ...

    def is_open(self, deployment: str) -> bool: ...

    def announce_open(self, deployment: str, until: float) -> None:
        """For synchronous callers (the breaker): publishes in the background."""
        ...

    async def publish_open(self, deployment: str, until: float) -> None: ...
    async def start(self) -> None: ...
    async def aclose(self) -> None: ...
