"""The embedding pipeline: admit, validate, resolve an embedding alias, route
(retries, fallback and breakers as for chat), price, and tell the request log."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .caller import Caller
from .catalog import ModelCatalog
from .chat import Deployment, Finish, FinishReason, Start, Usage
from .embedding import EmbedRequest, ModelKind, Vectors
from .errors import Unavailable, ViolationCollector
from .orchestrator import CallObserver, CallOutcome
from .router import Router
from .validation import check_model

# Past this many problems a request is refused without listing the rest.
_MAX_VIOLATIONS = 100


@dataclass(frozen=True, slots=True)
class EmbedLimits:
    """Size limits on an `Embed` call, from settings."""

    max_inputs: int = 256
    max_input_chars: int = 32_000


@dataclass(frozen=True, slots=True)
class EmbedResult:
    model: str
    deployment: Deployment
    vectors: Vectors
    usage: Usage


class Embeddings:
    def __init__(
        self,
        catalog: ModelCatalog,
        router: Router,
        limits: EmbedLimits,
        *,
        on_call_end: CallObserver | None = None,
        admit: Callable[[Caller], Awaitable[None]] | None = None,
    ) -> None:
        self.catalog = catalog
        self.router = router
        self.limits = limits
        # Told of every call when it ends (the request log), as chat calls are.
        self.on_call_end = on_call_end
        # Raises when the caller may not make another call now (rate limits, budgets).
        self.admit = admit

    def check(self, request: EmbedRequest, errors: ViolationCollector) -> None:
        check_model(request.model, errors)
        inputs = request.inputs
        if not inputs:
            errors.add("inputs", "at least one input is required")
        elif len(inputs) > self.limits.max_inputs:
            errors.add("inputs", f"{len(inputs)} inputs; at most {self.limits.max_inputs} are allowed per call")
        for index, text in enumerate(inputs):
            if len(errors.violations) >= _MAX_VIOLATIONS:
                break
            if not text:
                errors.add(f"inputs[{index}]", "must not be empty")
            elif len(text) > self.limits.max_input_chars:
                errors.add(f"inputs[{index}]", f"is {len(text)} characters; the limit is {self.limits.max_input_chars}")
        if request.dimensions is not None and request.dimensions < 1:
            errors.add("dimensions", "must be positive, or 0 for the model's own width")

    async def embed(
        self, request: EmbedRequest, caller: Caller, errors: ViolationCollector | None = None
    ) -> EmbedResult:
        """One vector per input, from the first deployment of the alias that
        gives them. `errors` may hold problems the caller already found."""
        received = time.perf_counter()
        outcome = CallOutcome(request.model)
        try:
            result = await self._embed(request, caller, outcome)
        except BaseException as error:
            outcome.error = error
            raise
        finally:
            outcome.latency_seconds = time.perf_counter() - received
            if self.on_call_end is not None:
                self.on_call_end(caller, outcome)
        return result

    async def _embed(self, request: EmbedRequest, caller: Caller, outcome: CallOutcome) -> EmbedResult:
        if self.admit is not None:
            await self.admit(caller)
        errors = ViolationCollector()
        self.check(request, errors)
        errors.raise_if_any()
        route = self.catalog.resolve(request.model, ModelKind.EMBEDDING)
        if request.dimensions is not None and route.dimensions and request.dimensions > route.dimensions:
            errors.add("dimensions", f"model '{route.alias}' gives at most {route.dimensions}")
            errors.raise_if_any()

        async def attempt(deployment: Deployment) -> Vectors:
            vectors = await self.catalog.embedder(deployment).embed(deployment, request.inputs, request.dimensions)
            if len(vectors.vectors) != len(request.inputs):
                raise Unavailable(
                    "the upstream model sent a vector count unlike the inputs'", reason="UPSTREAM_MALFORMED"
                )
            return vectors

        deployment, vectors = await self.router.call(route, attempt, caller)
        price = deployment.price
        cost = price.cost(vectors.input_tokens, 0) if price is not None else 0.0
        usage = Usage(vectors.input_tokens, 0, estimated=vectors.estimated, cost_usd=cost)
        outcome.start = Start(caller.request_id, request.model, deployment)
        outcome.usage = usage
        outcome.finish = Finish(FinishReason.STOP)
        return EmbedResult(request.model, deployment, vectors, usage)
