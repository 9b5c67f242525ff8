"""Graceful shutdown of calls: which are in flight, refusing new ones while
they drain (health and reflection still answer), and cutting those left at
the end of the grace period with a status that says what happened."""

from __future__ import annotations

import asyncio

from ..domain.errors import Unavailable

# A stream cut after some of its answer was sent says so, as the contract's
# `incomplete` metadata does for every other stream that ends early.
INCOMPLETE_METADATA = {"incomplete": "true"}


class Drain:
    def __init__(self) -> None:
        self._calls: set[asyncio.Task[object]] = set()
        self._draining = False
        self._cutting = False
        self._idle = asyncio.Event()

    @property
    def cutting(self) -> bool:
        """True once the grace period is over and calls in flight are being cut."""
        return self._cutting

    def enter(self) -> None:
        """A call begins; refused (UNAVAILABLE, retryable elsewhere) while draining."""
        if self._draining:
            raise Unavailable(
                "the server is shutting down; retry, another replica will answer",
                reason="SERVER_SHUTTING_DOWN",
                retry_after_seconds=1.0,
            )
        task = asyncio.current_task()
        if task is not None:
            self._calls.add(task)

    def leave(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._calls.discard(task)
        if self._draining and not self._calls:
            self._idle.set()

    def refuse_new_calls(self) -> None:
        self._draining = True

    async def drain(self, timeout: float) -> None:
        """Refuses new calls from now on; returns when the calls in flight
        have ended, or after `timeout` seconds."""
        self._draining = True
        if not self._calls:
            return
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            pass

    async def cut(self, timeout: float = 2.0) -> int:
        """Cancels the calls still in flight; each ends with `cut_error`.
        Returns how many there were."""
        self._cutting = True
        calls = list(self._calls)
        for task in calls:
            task.cancel()
        if calls:
            await asyncio.wait(calls, timeout=timeout)
        return len(calls)

    @staticmethod
    def cut_error(*, incomplete: bool) -> Unavailable:
        return Unavailable(
            "the server shut down before the call finished; retry, another replica will answer",
            reason="SERVER_SHUTTING_DOWN",
            retry_after_seconds=1.0,
            metadata=dict(INCOMPLETE_METADATA) if incomplete else None,
        )
