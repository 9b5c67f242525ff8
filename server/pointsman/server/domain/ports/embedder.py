"""Text to vectors, as the domain needs it (the semantic cache, later routing
by meaning). The built-in WordLlama model implements it in providers/."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt


class Embedder(Protocol):
    name: str
    dimensions: int

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """One unit-length float32 row per text (a zero row for an empty one).
        Synchronous and cheap: called on the request path."""
        ...
