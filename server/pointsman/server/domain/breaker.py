"""Circuit breakers and observed latency, one per deployment.

A breaker opens on a run of consecutive failures or on a failure rate over a
sliding window, stays open for a cool-down, then lets a limited number of
probe calls through (half-open): the first probe to succeed closes it, a
failed probe reopens it. State changes are reported to listeners, so health
and ListModels follow them."""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .ports.breaker_state import SharedOpenState


class CircuitState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    consecutive_failures: int = 5
    # Opens when at least `min_calls` calls in the window failed at this rate or more.
    failure_rate: float = 0.5
    window_seconds: float = 30.0
    min_calls: int = 20
    cooldown_seconds: float = 30.0
    half_open_probes: int = 1


Clock = Callable[[], float]
StateListener = Callable[[str, CircuitState], None]


class CircuitBreaker:
    def __init__(self, name: str, policy: BreakerPolicy, clock: Clock = time.monotonic) -> None:
        self.name = name
        self._policy = policy
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._opened_at = 0.0
        self._probes_in_flight = 0
        self.consecutive_failures = 0
        # One [second, calls, failures] bucket per second of the window.
        self._buckets: deque[list[int]] = deque()
        self._listeners: list[StateListener] = []
        # True while reporting an open that another replica decided (`hold_open`).
        self.opened_elsewhere = False

    def subscribe(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    @property
    def state(self) -> CircuitState:
        if self._state is CircuitState.OPEN and self.retry_after() == 0.0:
            self._set(CircuitState.HALF_OPEN)
        return self._state

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a probe through; 0 when not open."""
        if self._state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._policy.cooldown_seconds - self._clock())

    def try_acquire(self) -> bool:
        """May a call go to this deployment now? A True from a half-open breaker
        takes a probe slot, given back by the call's record_* or release."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.HALF_OPEN and self._probes_in_flight < self._policy.half_open_probes:
            self._probes_in_flight += 1
            return True
        return False

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self._count(failed=False)
        if self._state is CircuitState.HALF_OPEN:
            self._probes_in_flight = 0
            self._buckets.clear()
            self._set(CircuitState.CLOSED)

    def record_failure(self) -> None:
        self.consecutive_failures += 1
        self._count(failed=True)
        if self._state is CircuitState.HALF_OPEN:
            self._open()
        elif self._state is CircuitState.CLOSED and self._tripped():
            self._open()

    def hold_open(self, seconds: float) -> None:
        """Opens the breaker for `seconds` because another replica opened its
        own; after that it probes like any open breaker."""
        if seconds <= 0 or (self._state is CircuitState.OPEN and self.retry_after() >= seconds):
            return
        self._opened_at = self._clock() - self._policy.cooldown_seconds + seconds
        self._probes_in_flight = 0
        self.opened_elsewhere = True
        try:
            if self._state is CircuitState.OPEN:
                return  # already open: only the cool-down is longer
            self._set(CircuitState.OPEN)
        finally:
            self.opened_elsewhere = False

    def release(self) -> None:
        """The call ended without telling anything about the deployment
        (the client cancelled, or the request itself was invalid)."""
        if self._state is CircuitState.HALF_OPEN and self._probes_in_flight > 0:
            self._probes_in_flight -= 1

    def _tripped(self) -> bool:
        if self.consecutive_failures >= self._policy.consecutive_failures:
            return True
        calls = sum(b[1] for b in self._buckets)
        failures = sum(b[2] for b in self._buckets)
        return calls >= self._policy.min_calls and failures >= self._policy.failure_rate * calls

    def _count(self, *, failed: bool) -> None:
        second = int(self._clock())
        horizon = second - self._policy.window_seconds
        while self._buckets and self._buckets[0][0] <= horizon:
            self._buckets.popleft()
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
        bucket = self._buckets[-1]
        bucket[1] += 1
        bucket[2] += failed

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._probes_in_flight = 0
        self._set(CircuitState.OPEN)

    def _set(self, state: CircuitState) -> None:
        if state is self._state:
            return
        self._state = state
        for listener in self._listeners:
            listener(self.name, state)


class LatencyTracker:
    """Exponentially weighted moving average of time to first event."""

    SMOOTHING = 0.3

    def __init__(self) -> None:
        self.seconds: float | None = None

    def observe(self, seconds: float) -> None:
        if self.seconds is None:
            self.seconds = seconds
        else:
            self.seconds += self.SMOOTHING * (seconds - self.seconds)


@dataclass(slots=True)
class DeploymentMonitor:
    breaker: CircuitBreaker
    latency: LatencyTracker


def share_opens(breaker: CircuitBreaker, shared: SharedOpenState, cooldown_seconds: float) -> None:
    """Announces the breaker's opens, using only its public listener hook.
    The read side (refusing calls while another replica holds the deployment
    open) needs the breaker or the router to consult `shared.is_open`."""

    def on_change(name: str, state: CircuitState) -> None:
        if state is CircuitState.OPEN and not breaker.opened_elsewhere:
            shared.announce_open(name, time.time() + cooldown_seconds)

    breaker.subscribe(on_change)
