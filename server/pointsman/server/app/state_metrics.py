"""The metrics read from a process's state at each scrape: write buffers,
circuit breakers and dependencies. Reading them costs the calls nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import Metric

from ..domain.breaker import CircuitState
from ..domain.router import Router
from ..metrics import counter, gauge
from ..transport.dependency_health import DependencyHealth
from .state import State


def state_metrics(
    state: State, router: Router, dependencies: DependencyHealth | None = None
) -> Callable[[], Iterator[Metric]]:
    def read() -> Iterator[Metric]:
        buffers = [(buffer.name.replace(" ", "_"), buffer) for buffer in state.buffers()]
        yield gauge(
            "pointsman_write_buffer_pending",
            "Records waiting in a write buffer for the database",
            ["buffer"],
            (([name], buffer.pending) for name, buffer in buffers),
        )
        yield counter(
            "pointsman_write_buffer_written",
            "Records a write buffer has written to the database",
            ["buffer"],
            (([name], buffer.written) for name, buffer in buffers),
        )
        yield counter(
            "pointsman_write_buffer_dropped",
            "Records dropped because a write buffer was full (the database was down or slow for long)",
            ["buffer"],
            (([name], buffer.dropped) for name, buffer in buffers),
        )
        yield counter(
            "pointsman_write_buffer_rejected",
            "Records the database refused on their own (written around, not retried)",
            ["buffer"],
            (([name], buffer.rejected) for name, buffer in buffers),
        )
        yield gauge(
            "pointsman_circuit_state",
            "1 for the state each deployment's circuit breaker is in, 0 for the others",
            ["deployment", "state"],
            (
                ([name, circuit.value], 1.0 if monitor.breaker.state is circuit else 0.0)
                for name, monitor in sorted(router.monitors.items())
                for circuit in CircuitState
            ),
        )
        if dependencies is not None:
            yield gauge(
                "pointsman_dependency_up",
                "1 when a dependency (database, redis) answered its last probe",
                ["dependency"],
                (([name.removeprefix("dependencies/")], float(up)) for name, up in dependencies.status().items()),
            )

    return read
