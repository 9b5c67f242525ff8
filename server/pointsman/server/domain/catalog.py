"""Model aliases and the deployments that serve them."""

from __future__ import annotations

from dataclasses import dataclass, field

from .chat import Deployment, ProviderKind
from .errors import NotFound
from .ports.providers import ChatProvider
from .routing import RetryPolicy, RoutingStrategy

BUILTIN_ALIAS = "builtin"


@dataclass(frozen=True, slots=True)
class ModelRoute:
    alias: str
    deployments: tuple[Deployment, ...]
    strategy: RoutingStrategy = RoutingStrategy.PRIORITY
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # How long answers are kept in the response cache; 0: not cached.
    cache_ttl_seconds: float = 0.0
    # How long answers are kept in the semantic cache; 0: not cached by meaning.
    semantic_ttl_seconds: float = 0.0

    @property
    def builtin(self) -> bool:
        return all(d.provider is ProviderKind.BUILTIN for d in self.deployments)


class ModelCatalog:
    """Resolves aliases to routes and deployments to the provider clients that
    call them. Provider clients are shared per endpoint (one connection pool)."""

    def __init__(self) -> None:
        self._routes: dict[str, ModelRoute] = {}
        self._providers: dict[str, ChatProvider] = {}
        self._deployments: dict[str, Deployment] = {}

    def add(
        self,
        alias: str,
        deployments: list[tuple[Deployment, ChatProvider]],
        strategy: RoutingStrategy = RoutingStrategy.PRIORITY,
        retry: RetryPolicy | None = None,
        cache_ttl_seconds: float = 0.0,
        semantic_ttl_seconds: float = 0.0,
    ) -> None:
        for deployment, provider in deployments:
            self._providers[deployment.name] = provider
            self._deployments[deployment.name] = deployment
        self._routes[alias] = ModelRoute(
            alias,
            tuple(d for d, _ in deployments),
            strategy,
            retry or RetryPolicy(),
            cache_ttl_seconds,
            semantic_ttl_seconds,
        )

    def serves(self, alias: str) -> bool:
        return alias in self._routes

    def resolve(self, alias: str) -> ModelRoute:
        route = self._routes.get(alias)
        if route is None:
            raise NotFound(
                f"model '{alias}' is not served here; ListModels shows the models that are",
                reason="MODEL_NOT_FOUND",
                metadata={"model": alias[:256]},
            )
        return route

    def provider(self, deployment: Deployment) -> ChatProvider:
        return self._providers[deployment.name]

    def deployments(self) -> list[Deployment]:
        """Every deployment once, however many aliases use it."""
        return list(self._deployments.values())

    def deployment(self, name: str) -> Deployment | None:
        return self._deployments.get(name)

    def routes(self) -> list[ModelRoute]:
        return sorted(self._routes.values(), key=lambda r: r.alias)

    async def aclose(self) -> None:
        for provider in {id(p): p for p in self._providers.values()}.values():
            await provider.aclose()
