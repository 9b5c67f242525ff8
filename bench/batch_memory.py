"""Bytes a finished in-process batch holds per item, as tracemalloc sees
them: results kept encoded (now) beside the result objects (before).

    .venv/bin/python bench/batch_memory.py [--items 10000]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from datetime import UTC, datetime

from pointsman.server.domain.batches.runner import Batch, BatchResult
from pointsman.server.domain.chat import Finish, FinishReason, Usage
from pointsman.server.domain.orchestrator import CompletedAnswer
from pointsman.server.transport.batches import encode_result


def answer(i: int) -> CompletedAnswer:
    # A streamed answer of 20 deltas, as the orchestrator gathers it.
    return CompletedAnswer(
        text=[f"word{i}-{k} " for k in range(20)],
        usage=Usage(input_tokens=12, output_tokens=20),
        finish=Finish(FinishReason.STOP, time_to_first_token=0.01, total=0.1),
    )


def measure(items: int, encoded: bool) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    batch = Batch("b", "org", items, datetime.now(UTC))
    results = [BatchResult(f"item-{i}", answer=answer(i)) for i in range(items)]
    if encoded:
        batch.add(results, encode_result)
        del results
        kept: object = batch
    else:
        kept = results
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del kept
    return held / items


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=10_000)
    n = parser.parse_args().items
    print(f"result objects (before): {measure(n, encoded=False):.0f} bytes per item")
    print(f"encoded results (now):   {measure(n, encoded=True):.0f} bytes per item")
    sys.exit(0)
