"""What tracing costs a call: the two spans one `Complete` makes (the call's
server span, continuing the caller's trace, and the upstream request's client
span with its traceparent header), recorded by the SDK with a batch processor
whose exporter discards, in this process.

    .venv/bin/python bench/tracing_cost.py [--n 50000]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from pointsman.server.tracing import caller_context, outgoing_headers


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    args = parser.parse_args()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=100_000))
    tracer = provider.get_tracer("bench")
    carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}

    def one_call() -> None:
        server = tracer.start_span(
            "/pointsman.orchestrator.v1.OrchestratorService/Complete",
            context=caller_context(carrier),
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.method": "Complete", "pointsman.request_id": "abc"},
        )
        client = tracer.start_span(
            "chat gpt-4o-mini",
            context=trace.set_span_in_context(server),
            kind=SpanKind.CLIENT,
            attributes={"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini"},
        )
        outgoing_headers(client)
        client.set_attribute("gen_ai.usage.input_tokens", 12)
        client.set_attribute("gen_ai.usage.output_tokens", 30)
        client.end()
        server.set_attribute("rpc.grpc.status_code", "OK")
        server.end()

    for _ in range(1000):
        one_call()
    started = time.perf_counter()
    for _ in range(args.n):
        one_call()
    per_call = (time.perf_counter() - started) / args.n * 1e6
    provider.shutdown()
    print(json.dumps({"tracing_per_complete_us": round(per_call, 1)}, indent=2))


if __name__ == "__main__":
    main()
