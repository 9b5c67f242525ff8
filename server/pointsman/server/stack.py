"""The chat pipeline built from settings and opened state: routing (with
breaker opens shared between replicas), the firewall on the replicated rules,
the request log and rate limits. The server and the batch worker build it
the same way, here."""

from __future__ import annotations

from dataclasses import dataclass

from .backends.replicated_rules import ReplicatedRules
from .domain.catalog import ModelCatalog
from .domain.firewall.engine import build_firewall
from .domain.orchestrator import Orchestrator
from .domain.router import Router
from .domain.validation import ChatLimits
from .routes import build_routing
from .settings import Settings
from .state import State
from .transport.request_log import RequestLogger


@dataclass
class OrchestratorStack:
    catalog: ModelCatalog
    router: Router
    rules: ReplicatedRules
    orchestrator: Orchestrator

    async def aclose(self) -> None:
        await self.rules.aclose()
        await self.catalog.aclose()


def build_orchestrator(settings: Settings, state: State) -> OrchestratorStack:
    """The orchestrator and what it is built on; `rules.start()` before use,
    `aclose()` after."""
    catalog, router = build_routing(settings)
    if state.shared:
        router.share_breakers(state.breaker_opens, router.breaker_policy.cooldown_seconds)
    rules = ReplicatedRules(state.stores.rules, state.bus)
    orchestrator = Orchestrator(
        catalog,
        router,
        build_firewall(rules, state.decisions, settings),
        ChatLimits(settings.max_messages, settings.max_input_chars),
        output_holdback=settings.firewall_output_holdback_chars,
        flights=state.flights,
        on_call_end=RequestLogger(state.stores.requests, state.request_log, state.metrics),
        admit=state.rate_limits.admit if state.rate_limits.enabled else None,
    )
    return OrchestratorStack(catalog, router, rules, orchestrator)
