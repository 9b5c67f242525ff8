"""Embedding records: what an `Embed` call asks for and what a provider gives
back, and the two kinds of model alias (chat, embedding)."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass


class ModelKind(enum.Enum):
    CHAT = "chat"
    EMBEDDING = "embedding"


@dataclass(frozen=True, slots=True)
class EmbedRequest:
    model: str
    inputs: list[str]
    # Shorter vectors, for models that can give them; None: the model's own width.
    dimensions: int | None = None


@dataclass(frozen=True, slots=True)
class Vectors:
    """A provider's answer: one vector per input, in order, and the tokens it read."""

    vectors: Sequence[Sequence[float]]
    input_tokens: int
    # The upstream sent no count and the gateway estimated it.
    estimated: bool = False
