"""Traces (OpenTelemetry, exported over OTLP/gRPC) when
OTEL_EXPORTER_OTLP_ENDPOINT is set: a server span per call, continuing the
caller's trace when its metadata carries a W3C `traceparent`, and a client
span per upstream request, whose `traceparent` goes to the upstream. Unset,
there is no tracer and the calls pay nothing.

Each server has a tracer provider of its own rather than the process-wide
global one, so that several servers in one process (tests) keep their spans
apart; the interceptor hands the call's tracer and span down in `current_span`."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

# The tracer and server span of the call under way; None when tracing is off.
# Kept here rather than attached as OpenTelemetry's current context: a
# stream's last step can run in another context than its first, and
# detaching there fails.
current_span: contextvars.ContextVar[tuple[trace.Tracer, trace.Span] | None] = contextvars.ContextVar(
    "call_span", default=None
)
PROPAGATOR = TraceContextTextMapPropagator()
TRACE_HEADERS = frozenset(("traceparent", "tracestate"))


class Tracing:
    def __init__(self, endpoint: str, service_name: str) -> None:
        # Imported here: the SDK and the exporter add about 25 MiB and 70 ms
        # to start-up, which a server without tracing should not pay.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("pointsman")
        log.info("tracing to %s as %s", endpoint, service_name)

    def shutdown(self) -> None:
        """Exports what is left; blocks up to the exporter's timeout."""
        self.provider.shutdown()


def caller_context(carrier: Mapping[str, str]) -> Context:
    """The caller's trace, from `traceparent`/`tracestate` metadata (none: a new trace)."""
    return PROPAGATOR.extract(carrier)


def outgoing_headers(span: trace.Span) -> dict[str, str]:
    """`traceparent` (and `tracestate`) naming `span`, for an upstream request."""
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier
