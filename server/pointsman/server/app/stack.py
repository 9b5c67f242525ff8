"""The chat pipeline built from settings and opened state: routing (with
breaker opens shared between replicas), the firewall on the replicated rules,
the request log and rate limits. The server and the batch worker build it
the same way, here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ..backends.replicated_rules import ReplicatedRules
from ..backends.request_log import RequestLogger
from ..backends.shared.semantic_entries import LocalSemanticEntries, RedisSemanticEntries
from ..domain.budgets import DailyBudget
from ..domain.caller import Caller
from ..domain.catalog import ModelCatalog
from ..domain.classify import ClassRouters
from ..domain.embeddings import Embeddings, EmbedLimits
from ..domain.firewall.engine import build_firewall
from ..domain.images import ImageLimits
from ..domain.orchestrator import Orchestrator
from ..domain.ports.semantic_entries import SemanticEntries
from ..domain.router import Router
from ..domain.semantic.cache import SemanticCache, SemanticLimits
from ..domain.validation import ChatLimits
from ..providers.builtin_embeddings import BuiltinEmbedder
from ..settings import Settings
from ..transport.errors import status_name
from .routes import build_routing, routes_config
from .state import State


@dataclass
class OrchestratorStack:
    catalog: ModelCatalog
    router: Router
    rules: ReplicatedRules
    orchestrator: Orchestrator
    embeddings: Embeddings

    async def aclose(self) -> None:
        await self.rules.aclose()
        await self.catalog.aclose()


def _all_of(checks: Sequence[Callable[[Caller], Awaitable[None]]]) -> Callable[[Caller], Awaitable[None]] | None:
    """One admission check out of several (rate limits, then the budget)."""
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]

    async def admit(caller: Caller) -> None:
        for check in checks:
            await check(caller)

    return admit


def build_orchestrator(settings: Settings, state: State) -> OrchestratorStack:
    """The orchestrator and what it is built on; `rules.start()` before use,
    `aclose()` after."""
    config = routes_config(settings)
    # One built-in embedding model (loaded on first use, ~62 MiB) for everything
    # that reads meaning: the Embed RPC, router classes, topic rules, the semantic cache.
    embedder = BuiltinEmbedder()
    catalog, router = build_routing(settings, config, embedder)
    if state.shared:
        router.share_breakers(state.breaker_opens, router.breaker_policy.cooldown_seconds)
    rules = ReplicatedRules(state.stores.rules, state.bus)
    budgets = [
        DailyBudget(
            state.stores.requests, limit, per_principal=per_principal, refresh_seconds=settings.budget_refresh_seconds
        )
        for limit, per_principal in (
            (settings.budget_principal_usd_per_day, True),
            (settings.budget_organisation_usd_per_day, False),
        )
        if limit > 0
    ]
    admissions = [
        *([state.rate_limits.admit] if state.rate_limits.enabled else []),
        *(budget.admit for budget in budgets),
    ]
    classes = ClassRouters(config.router_specs(), embedder) if config.routers else None

    def serves(alias: str) -> bool:  # metric labels: model and router aliases
        return catalog.serves(alias) or (classes is not None and alias in classes)

    on_call_end = RequestLogger(
        state.stores.requests, state.request_log, state.metrics, budgets, serves, status_name=status_name
    )
    orchestrator = Orchestrator(
        catalog,
        router,
        build_firewall(rules, state.decisions, settings, embedder),
        ChatLimits(
            settings.max_messages,
            settings.max_input_chars,
            ImageLimits(settings.image_max_bytes, settings.image_max_request_bytes, settings.image_max_per_request),
        ),
        output_holdback=settings.firewall_output_holdback_chars,
        flights=state.flights,
        on_call_end=on_call_end,
        admit=_all_of(admissions),
        semantic=_semantic_cache(settings, state, catalog, embedder),
        default_model=settings.default_model,
        classes=classes,
    )
    embeddings = Embeddings(
        catalog,
        router,
        EmbedLimits(settings.embed_max_inputs, settings.embed_max_input_chars),
        on_call_end=on_call_end,
        admit=_all_of(admissions),
    )
    return OrchestratorStack(catalog, router, rules, orchestrator, embeddings)


def _semantic_cache(
    settings: Settings, state: State, catalog: ModelCatalog, embedder: BuiltinEmbedder
) -> SemanticCache | None:
    """The semantic cache, when a route turns it on: the built-in embeddings,
    entries shared through Redis when replicas share state."""
    if not any(route.semantic_ttl_seconds > 0 for route in catalog.routes()):
        return None
    limits = SemanticLimits(
        max_entries=settings.semantic_cache_max_entries,
        max_entries_per_organisation=settings.semantic_cache_max_entries_per_organisation,
        max_entry_bytes=settings.semantic_cache_max_entry_bytes,
    )
    entries: SemanticEntries = (
        RedisSemanticEntries(state.redis, prefix=settings.redis_prefix, max_entries=limits.max_entries)
        if state.redis is not None
        else LocalSemanticEntries()
    )
    embedder.embed(["warm up"])  # loads the model now (~0.3 s), not on the first call
    return SemanticCache(embedder, entries, limits=limits)
