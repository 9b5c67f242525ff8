"""`pointsman embed`: vectors for texts from an embedding model, as JSON lines."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .arguments import command
from .connection import connect

FIRST_VALUES = 4


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = command(sub, "embed", cmd_embed, "embed texts; '-' reads one text per line from stdin", [common])
    p.add_argument("texts", nargs="+", metavar="TEXT")
    p.add_argument(
        "-m",
        "--model",
        default=os.environ.get("POINTSMAN_EMBED_MODEL", "builtin-embedding"),
        help="embedding model alias (env POINTSMAN_EMBED_MODEL; default %(default)s)",
    )
    p.add_argument("--dimensions", type=int, default=0, help="shorter vectors, for models that give them")
    p.add_argument("--summary", action="store_true", help="one line: model, deployment, count, width, tokens")


def _texts(given: list[str]) -> list[str]:
    texts: list[str] = []
    for text in given:
        if text == "-":
            texts.extend(line.rstrip("\n") for line in sys.stdin if line.strip())
        else:
            texts.append(text)
    return texts


def cmd_embed(args: argparse.Namespace) -> int:
    """Prints one JSON line per text (its index, width and first values; all
    of them with --json), or with --summary one line for the whole call."""
    texts = _texts(args.texts)
    with connect(args) as client:
        response = client.embed(texts, model=args.model, dimensions=args.dimensions)
    if args.summary:
        width = len(response.embeddings[0].values) if response.embeddings else 0
        summary = {
            "model": response.model,
            "deployment": response.deployment.name,
            "embeddings": len(response.embeddings),
            "dimensions": width,
            "input_tokens": response.usage.input_tokens,
        }
        print(json.dumps(summary))
        return 0
    for embedding in response.embeddings:
        values = list(embedding.values)
        line: dict[str, Any] = {"index": embedding.index, "dimensions": len(values)}
        line["values" if args.json else "first_values"] = [
            round(v, 6) for v in values[: None if args.json else FIRST_VALUES]
        ]
        print(json.dumps(line), flush=True)
    return 0
