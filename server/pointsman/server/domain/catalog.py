"""Model aliases and the deployments that serve them."""

from __future__ import annotations

from dataclasses import dataclass, field

from .chat import Deployment, ProviderKind
from .embedding import ModelKind
from .errors import InvalidArgument, NotFound
from .ports.providers import ChatProvider, EmbeddingProvider
from .routing import RetryPolicy, RoutingStrategy

BUILTIN_ALIAS = "builtin"
BUILTIN_EMBEDDING_ALIAS = "builtin-embedding"


@dataclass(frozen=True, slots=True)
class ModelRoute:
    alias: str
    deployments: tuple[Deployment, ...]
    strategy: RoutingStrategy = RoutingStrategy.PRIORITY
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # How long answers are kept in the response cache; 0: not cached.
    cache_ttl_seconds: float = 0.0
    kind: ModelKind = ModelKind.CHAT
    # Width of an embedding model's vectors; 0: not known.
    dimensions: int = 0

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
        self._embedders: dict[str, EmbeddingProvider] = {}

    def add(
        self,
        alias: str,
        deployments: list[tuple[Deployment, ChatProvider]],
        strategy: RoutingStrategy = RoutingStrategy.PRIORITY,
        retry: RetryPolicy | None = None,
        cache_ttl_seconds: float = 0.0,
    ) -> None:
        for deployment, provider in deployments:
            self._providers[deployment.name] = provider
            self._deployments[deployment.name] = deployment
        self._routes[alias] = ModelRoute(
            alias, tuple(d for d, _ in deployments), strategy, retry or RetryPolicy(), cache_ttl_seconds
        )

    def add_embedding(
        self,
        alias: str,
        deployments: list[tuple[Deployment, EmbeddingProvider]],
        strategy: RoutingStrategy = RoutingStrategy.PRIORITY,
        retry: RetryPolicy | None = None,
        dimensions: int = 0,
    ) -> None:
        """An embedding alias: its deployments share breakers and latency
        tracking with chat's (one router), but only `Embed` may name it."""
        for deployment, provider in deployments:
            self._embedders[deployment.name] = provider
            self._deployments[deployment.name] = deployment
        self._routes[alias] = ModelRoute(
            alias,
            tuple(d for d, _ in deployments),
            strategy,
            retry or RetryPolicy(),
            kind=ModelKind.EMBEDDING,
            dimensions=dimensions,
        )

    def serves(self, alias: str) -> bool:
        return alias in self._routes

    def resolve(self, alias: str, kind: ModelKind | None = None, path: str = "model") -> ModelRoute:
        """The alias's route; with `kind`, an alias of the other kind is an
        invalid argument at `path` (a chat model named where an embedding
        model is needed, or the reverse)."""
        route = self._routes.get(alias)
        if route is None:
            raise NotFound(
                f"model '{alias}' is not served here; ListModels shows the models that are",
                reason="MODEL_NOT_FOUND",
                metadata={"model": alias[:256]},
            )
        if kind is not None and route.kind is not kind:
            needed = "Embed needs an embedding model" if kind is ModelKind.EMBEDDING else "chat needs a chat model"
            article = "an" if route.kind is ModelKind.EMBEDDING else "a"
            error = InvalidArgument.one(
                path, f"'{alias}' is {article} {route.kind.value} model; {needed} (ListModels shows each model's kind)"
            )
            error.reason = "MODEL_KIND_MISMATCH"
            error.metadata = {"model": alias, "kind": route.kind.value}
            raise error
        return route

    def provider(self, deployment: Deployment) -> ChatProvider:
        return self._providers[deployment.name]

    def embedder(self, deployment: Deployment) -> EmbeddingProvider:
        return self._embedders[deployment.name]

    def deployments(self) -> list[Deployment]:
        """Every deployment once, however many aliases use it."""
        return list(self._deployments.values())

    def deployment(self, name: str) -> Deployment | None:
        return self._deployments.get(name)

    def routes(self) -> list[ModelRoute]:
        return sorted(self._routes.values(), key=lambda r: r.alias)

    async def aclose(self) -> None:
        providers: list[ChatProvider | EmbeddingProvider] = [*self._providers.values(), *self._embedders.values()]
        for provider in {id(p): p for p in providers}.values():
            await provider.aclose()
