"""Embeddings from OpenAI and every server with an OpenAI-compatible
`/v1/embeddings` (Ollama, llama.cpp's server with `--embeddings`, vLLM): the
request as the official `openai` SDK builds it, sent by `UpstreamHttp`."""

from __future__ import annotations

from typing import Any

import openai
from openai._models import FinalRequestOptions

from ..domain.chat import Deployment
from ..domain.embedding import Vectors
from . import upstream_errors
from .upstream_http import UpstreamHttp, sdk_request_target

EMBEDDINGS_PATH = "/embeddings"


class OpenAIEmbeddingsProvider:
    """One endpoint; retries and fallback are the router's, so the SDK's are off."""

    def __init__(self, *, api_key: str, base_url: str | None, timeout_seconds: float) -> None:
        sdk = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_seconds)
        self._http = UpstreamHttp(
            lambda: sdk_request_target(sdk, FinalRequestOptions, EMBEDDINGS_PATH), timeout_seconds
        )

    async def embed(self, deployment: Deployment, inputs: list[str], dimensions: int | None) -> Vectors:
        body: dict[str, Any] = {"model": deployment.model, "input": inputs, "encoding_format": "float"}
        if dimensions:
            body["dimensions"] = dimensions
        answer = await self._http.post_json(body, deployment)
        try:
            return _vectors(answer, inputs)
        except (TypeError, KeyError, ValueError, AttributeError) as error:
            raise upstream_errors.malformed_error() from error

    async def aclose(self) -> None:
        await self._http.aclose()


def _vectors(answer: dict[str, Any], inputs: list[str]) -> Vectors:
    """The vectors in input order (the API gives each one's index; a server
    may list them out of order), and the tokens the upstream read."""
    rows: dict[int, list[float]] = {}
    for item in answer["data"]:
        index = int(item["index"])
        values = item["embedding"]
        if not 0 <= index < len(inputs) or index in rows or not isinstance(values, list) or not values:
            raise ValueError("an embedding with a bad index or no values")
        rows[index] = [float(v) for v in values]
    if len(rows) != len(inputs):
        raise ValueError("an input has no embedding")
    vectors = [rows[index] for index in range(len(inputs))]
    usage = answer.get("usage") or {}
    tokens = usage.get("prompt_tokens") or usage.get("total_tokens")
    if tokens is None:
        # A local server that sends no usage: about four characters a token.
        return Vectors(vectors, sum(-(-len(text) // 4) for text in inputs), estimated=True)
    return Vectors(vectors, int(tokens))
