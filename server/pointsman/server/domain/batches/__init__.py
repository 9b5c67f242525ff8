"""Batch jobs, one room: the records and the in-process runner (runner.py),
the queue and item-runner ports (ports.py) and the worker that runs queued
items (worker.py). The Redis Streams queue is in backends/shared/batch_queue.py,
the RPCs and the stored messages in transport/batches.py; app/worker.py wires
them. See docs/batches.md."""
