"""Model aliases, their deployments and the router, from the routes file or,
without one, from the environment (one deployment per alias).

The routes file (YAML, `POINTSMAN_ROUTES_FILE`) names endpoints and maps each
alias to ordered deployments on them; see docs/routing.md. Keys never live in
the file: an endpoint names the environment variable that holds its key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..domain.breaker import BreakerPolicy
from ..domain.catalog import BUILTIN_ALIAS, BUILTIN_EMBEDDING_ALIAS, ModelCatalog
from ..domain.chat import Deployment, Price, ProviderKind
from ..domain.classify import DEFAULT_CLASS, NO_CLASS, ClassifierSpec, RouteClass, RouterSpec
from ..domain.embedding import ModelKind
from ..domain.ports.providers import ChatProvider, EmbeddingProvider
from ..domain.router import Router
from ..domain.routing import RetryBudget, RetryPolicy, RoutingStrategy
from ..providers.builtin import BUILTIN_MODEL_ID, BuiltinProvider
from ..providers.builtin_embeddings import DIMENSIONS as BUILTIN_DIMENSIONS
from ..providers.builtin_embeddings import MODEL_NAME as BUILTIN_EMBEDDING_MODEL
from ..providers.builtin_embeddings import BuiltinEmbedder, BuiltinEmbeddingProvider
from ..settings import Settings

OPENAI_DEFAULT_ENDPOINT = "https://api.openai.com/v1"
ANTHROPIC_DEFAULT_ENDPOINT = "https://api.anthropic.com"
MAX_ROUTES_FILE_BYTES = 1024 * 1024


class RoutesFileError(ValueError):
    """The routes file is missing, unreadable or invalid; the message says where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CircuitBreakerConfig(_Strict):
    consecutive_failures: int = Field(5, ge=1, le=1000)
    failure_rate: float = Field(0.5, gt=0, le=1)
    window_seconds: float = Field(30.0, gt=0, le=3600)
    min_calls: int = Field(20, ge=1)
    cooldown_seconds: float = Field(30.0, gt=0, le=3600)
    half_open_probes: int = Field(1, ge=1, le=100)


class RetryConfig(_Strict):
    retries: int = Field(1, ge=0, le=10)
    backoff_base_ms: float = Field(100, ge=0, le=60_000)
    backoff_max_ms: float = Field(2000, ge=0, le=600_000)
    max_retry_after_seconds: float = Field(10, ge=0, le=3600)

    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            self.retries, self.backoff_base_ms / 1000, self.backoff_max_ms / 1000, self.max_retry_after_seconds
        )


class Defaults(_Strict):
    retry: RetryConfig = RetryConfig()
    # Longest wait for a deployment's first event before falling back.
    timeout_seconds: float = Field(60.0, gt=0, le=3600)
    # Retries allowed, as a share of calls (plus a small reserve).
    retry_budget_ratio: float = Field(0.2, ge=0, le=10)
    # How long answers are kept in the response cache; 0: not cached.
    cache_ttl_seconds: float = Field(0, ge=0, le=30 * 24 * 3600)
    # The semantic cache for every model (POINTSMAN_SEMANTIC_CACHE when unset),
    # and how long its answers are kept (POINTSMAN_SEMANTIC_CACHE_TTL_SECONDS).
    semantic_cache: bool | None = None
    semantic_cache_ttl_seconds: float | None = Field(None, gt=0, le=30 * 24 * 3600)
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()


class EndpointConfig(_Strict):
    provider: Literal["openai", "anthropic", "builtin"]
    base_url: str | None = None
    # Or the environment variable holding the base URL: what Docker Model Runner's
    # compose `models` element injects (its `endpoint_var`).
    base_url_env: str | None = None
    # Name of the environment variable holding the key; local servers need none.
    api_key_env: str | None = None

    @model_validator(mode="after")
    def _one_base_url(self) -> EndpointConfig:
        if self.base_url is not None and self.base_url_env is not None:
            raise ValueError("give base_url or base_url_env, not both")
        return self


class PriceConfig(_Strict):
    # US dollars per million tokens, as providers list them.
    input_per_million_tokens: float = Field(0, ge=0, le=1_000_000)
    output_per_million_tokens: float = Field(0, ge=0, le=1_000_000)


class DeploymentConfig(_Strict):
    endpoint: str
    model: str = Field(min_length=1, max_length=256)
    weight: int = Field(1, ge=0, le=1_000_000)
    timeout_seconds: float | None = Field(None, gt=0, le=3600)
    price: PriceConfig | None = None
    # Whether the model takes images (docs/images.md); unset: yes on OpenAI
    # and Anthropic endpoints, no on the built-in model (which cannot).
    vision: bool | None = None


class ModelConfig(_Strict):
    # What the alias serves: chat calls, or `Embed` (docs/embeddings.md).
    kind: Literal["chat", "embedding"] = "chat"
    # Width of an embedding model's vectors, shown in ListModels and checked
    # against a request's `dimensions`; the built-in model's is known.
    dimensions: int | None = Field(None, ge=1, le=65_536)
    strategy: Literal["priority", "weighted", "latency"] = "priority"
    retry: RetryConfig | None = None
    cache_ttl_seconds: float | None = Field(None, ge=0, le=30 * 24 * 3600)
    # Answers reused for questions that mean the same (docs/semantic-cache.md).
    semantic_cache: bool | None = None
    semantic_cache_ttl_seconds: float | None = Field(None, gt=0, le=30 * 24 * 3600)
    deployments: Annotated[list[DeploymentConfig], Field(min_length=1, max_length=32)]


_Utterance = Annotated[str, Field(min_length=1, max_length=2000)]


class RouteClassConfig(_Strict):
    # The model alias this class's calls go to.
    model: str = Field(min_length=1)
    # Utterances that belong to the class: the meaning it is recognised by.
    examples: Annotated[list[_Utterance], Field(min_length=1, max_length=1000)]
    # Whole words or phrases that put an utterance in this class outright.
    keywords: list[Annotated[str, Field(min_length=1, max_length=200)]] = []
    # A line on what the class is about, for the classifier model's prompt.
    description: str = Field("", max_length=200)


class ClassifierConfig(_Strict):
    """A small chat model asked about the turns the embeddings are not sure
    of; unset thresholds are the router's own (it is asked exactly when the
    embeddings alone would send the call to the default)."""

    model: str = Field(min_length=1)
    margin: float | None = Field(None, ge=0, le=2)
    min_score: float | None = Field(None, ge=-1, le=1)
    timeout_seconds: float = Field(2.0, gt=0, le=60)
    max_tokens: int = Field(8, ge=1, le=64)


class RouterConfig(_Strict):
    """A router alias: calls to it go to the model of the class the last user
    turn is in (domain/classify.py), or to `default` when no class is clear."""

    default: str = Field(min_length=1)
    margin: float = Field(0.02, ge=0, le=1)
    min_score: float = Field(0.15, ge=-1, le=1)
    classes: Annotated[dict[str, RouteClassConfig], Field(min_length=1, max_length=64)]
    # Off by default.
    classifier: ClassifierConfig | None = None

    def classifier_spec(self) -> ClassifierSpec | None:
        model = self.classifier
        if model is None:
            return None
        return ClassifierSpec(
            model.model,
            self.margin if model.margin is None else model.margin,
            self.min_score if model.min_score is None else model.min_score,
            model.timeout_seconds,
            model.max_tokens,
        )


class RoutesConfig(_Strict):
    defaults: Defaults = Defaults()
    endpoints: dict[str, EndpointConfig] = {}
    models: Annotated[dict[str, ModelConfig], Field(min_length=1)]
    routers: dict[str, RouterConfig] = {}

    @model_validator(mode="after")
    def _routers_name_chat_models(self) -> RoutesConfig:
        for alias, router in self.routers.items():
            if alias in self.models or alias in (BUILTIN_ALIAS, BUILTIN_EMBEDDING_ALIAS):
                raise ValueError(f"routers.{alias}: '{alias}' is also a model alias")
            targets = [(f"routers.{alias}.default", router.default)]
            for name, cls in router.classes.items():
                if name.casefold() in (DEFAULT_CLASS, NO_CLASS):
                    raise ValueError(f"routers.{alias}.classes.{name}: '{name}' names the fallback, not a class")
                targets.append((f"routers.{alias}.classes.{name}.model", cls.model))
            if router.classifier is not None:
                targets.append((f"routers.{alias}.classifier.model", router.classifier.model))
            for where, target in targets:
                model = self.models.get(target)
                if model is None and target != BUILTIN_ALIAS:
                    raise ValueError(f"{where}: '{target}' is not in models")
                if model is not None and model.kind != "chat":
                    raise ValueError(f"{where}: '{target}' is an embedding model, not a chat model")
        return self

    def router_specs(self) -> list[RouterSpec]:
        return [
            RouterSpec(
                alias=alias,
                default=router.default,
                classes=tuple(
                    RouteClass(name, cls.model, tuple(cls.examples), tuple(cls.keywords), cls.description)
                    for name, cls in router.classes.items()
                ),
                margin=router.margin,
                min_score=router.min_score,
                classifier=router.classifier_spec(),
            )
            for alias, router in self.routers.items()
        ]

    @model_validator(mode="after")
    def _endpoints_exist(self) -> RoutesConfig:
        kinds: dict[tuple[str, str], str] = {}
        for alias, model in self.models.items():
            for index, deployment in enumerate(model.deployments):
                where = f"models.{alias}.deployments[{index}]"
                if deployment.endpoint not in self.endpoints:
                    raise ValueError(f"{where}.endpoint: '{deployment.endpoint}' is not in endpoints")
                if model.kind == "embedding" and self.endpoints[deployment.endpoint].provider == "anthropic":
                    raise ValueError(f"{where}.endpoint: Anthropic serves no embeddings")
                # A deployment is named endpoint/model: one name, one kind.
                kind = kinds.setdefault((deployment.endpoint, deployment.model), model.kind)
                if kind != model.kind:
                    raise ValueError(f"{where}: '{deployment.endpoint}/{deployment.model}' is also a {kind} deployment")
        return self

    @model_validator(mode="after")
    def _one_price_per_deployment(self) -> RoutesConfig:
        """A deployment is one upstream model: it has one price, whichever
        alias lists it. A price stated once holds for every alias listing it
        (see `deployment_prices`); two different prices are a mistake."""
        stated: dict[str, tuple[str, PriceConfig]] = {}
        for alias, model in self.models.items():
            for index, deployment in enumerate(model.deployments):
                if deployment.price is None:
                    continue
                name = f"{deployment.endpoint}/{deployment.model}"
                first = stated.setdefault(name, (alias, deployment.price))
                if first[1] != deployment.price:
                    raise ValueError(
                        f"models.{alias}.deployments[{index}].price: deployment '{name}' is priced differently "
                        f"in models.{first[0]}; one deployment has one price (state it once or the same everywhere)"
                    )
        return self

    def deployment_prices(self) -> dict[str, PriceConfig]:
        """The price of each deployment that any alias states one for."""
        prices: dict[str, PriceConfig] = {}
        for model in self.models.values():
            for deployment in model.deployments:
                if deployment.price is not None:
                    prices.setdefault(f"{deployment.endpoint}/{deployment.model}", deployment.price)
        return prices


def load_routes_file(path: Path) -> RoutesConfig:
    try:
        if path.stat().st_size > MAX_ROUTES_FILE_BYTES:
            raise RoutesFileError(f"routes file {path} is larger than {MAX_ROUTES_FILE_BYTES} bytes")
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise RoutesFileError(f"cannot read routes file {path}: {error.strerror}") from error
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise RoutesFileError(f"routes file {path} is not valid YAML: {error}") from error
    try:
        return RoutesConfig.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in error.errors())
        raise RoutesFileError(f"routes file {path} is invalid: {problems}") from error


def routes_config(settings: Settings) -> RoutesConfig:
    """The routes file, checked, or the routes the environment describes."""
    if settings.routes_file is not None:
        return load_routes_file(settings.routes_file)
    return _config_from_environment(settings)


def build_routing(
    settings: Settings, config: RoutesConfig | None = None, embedder: BuiltinEmbedder | None = None
) -> tuple[ModelCatalog, Router]:
    """The catalog of aliases and the router over it."""
    config = config or routes_config(settings)
    catalog = _build_catalog(config, settings, embedder)
    _check_default_model(catalog, settings.default_model)
    breaker = config.defaults.circuit_breaker
    router = Router(
        catalog,
        BreakerPolicy(
            breaker.consecutive_failures,
            breaker.failure_rate,
            breaker.window_seconds,
            breaker.min_calls,
            breaker.cooldown_seconds,
            breaker.half_open_probes,
        ),
        RetryBudget(config.defaults.retry_budget_ratio),
    )
    return catalog, router


def _check_default_model(catalog: ModelCatalog, alias: str) -> None:
    """A default model must be a chat alias served here: found out at start,
    not by every caller that names no model."""
    if not alias:
        return
    if not catalog.serves(alias):
        raise RoutesFileError(f"POINTSMAN_DEFAULT_MODEL names '{alias}', which is not a model alias served here")
    if catalog.resolve(alias).kind is not ModelKind.CHAT:
        raise RoutesFileError(f"POINTSMAN_DEFAULT_MODEL names '{alias}', which is not a chat model")


def _config_from_environment(settings: Settings) -> RoutesConfig:
    """Without a routes file: each alias in OPENAI_MODELS / ANTHROPIC_MODELS is
    one deployment of that model on the configured endpoint."""
    endpoints: dict[str, EndpointConfig] = {}
    models: dict[str, ModelConfig] = {}
    if settings.openai_configured:
        endpoints["openai"] = EndpointConfig(
            provider="openai", base_url=settings.openai_base_url, api_key_env="OPENAI_API_KEY"
        )
        for alias in settings.openai_models:
            models[alias] = ModelConfig(deployments=[DeploymentConfig(endpoint="openai", model=alias)])
    if settings.anthropic_configured:
        endpoints["anthropic"] = EndpointConfig(
            provider="anthropic", base_url=settings.anthropic_base_url, api_key_env="ANTHROPIC_API_KEY"
        )
        for alias in settings.anthropic_models:
            models.setdefault(alias, ModelConfig(deployments=[DeploymentConfig(endpoint="anthropic", model=alias)]))
    retry = RetryConfig(retries=settings.upstream_retries)
    defaults = Defaults(
        retry=retry, timeout_seconds=settings.upstream_timeout_seconds, cache_ttl_seconds=settings.cache_ttl_seconds
    )
    if not models:
        return RoutesConfig.model_construct(defaults=defaults, endpoints={}, models={})
    return RoutesConfig(defaults=defaults, endpoints=endpoints, models=models)


def _build_catalog(config: RoutesConfig, settings: Settings, embedder: BuiltinEmbedder | None) -> ModelCatalog:
    catalog = ModelCatalog()
    builtin = BuiltinProvider()
    builtin_deployment = Deployment("builtin", ProviderKind.BUILTIN, BUILTIN_MODEL_ID)
    default_ttl = config.defaults.cache_ttl_seconds
    default_semantic = _semantic_ttl(config, settings, None)
    catalog.add(
        BUILTIN_ALIAS,
        [(builtin_deployment, builtin)],
        cache_ttl_seconds=default_ttl,
        semantic_ttl_seconds=default_semantic,
    )
    # One built-in embedding model per process, however many aliases use it:
    # it loads on first use and then holds its matrix in memory.
    builtin_embedder = BuiltinEmbeddingProvider(embedder)
    builtin_embedding = Deployment(BUILTIN_EMBEDDING_ALIAS, ProviderKind.BUILTIN, BUILTIN_EMBEDDING_MODEL)
    catalog.add_embedding(
        BUILTIN_EMBEDDING_ALIAS, [(builtin_embedding, builtin_embedder)], dimensions=BUILTIN_DIMENSIONS
    )
    if settings.use_mock:
        # USE_MOCK: every alias answers from the built-in models.
        anthropic_models = settings.anthropic_models if settings.anthropic_configured else []
        aliases = [*config.models, *settings.openai_models, *anthropic_models]
        for alias in dict.fromkeys(aliases):
            model_config = config.models.get(alias)
            if model_config is not None and model_config.kind == "embedding":
                catalog.add_embedding(alias, [(builtin_embedding, builtin_embedder)], dimensions=BUILTIN_DIMENSIONS)
            else:
                semantic = _semantic_ttl(config, settings, model_config)
                catalog.add(
                    alias, [(builtin_deployment, builtin)], cache_ttl_seconds=default_ttl, semantic_ttl_seconds=semantic
                )
        return catalog

    providers: dict[str, ChatProvider] = {}
    embedders: dict[str, EmbeddingProvider] = {}
    prices = config.deployment_prices()
    for alias, model in config.models.items():
        if model.kind == "embedding":
            _add_embedding_model(catalog, alias, model, config, settings, embedders, builtin_embedder)
            continue
        deployments: list[tuple[Deployment, ChatProvider]] = []
        for entry in model.deployments:
            endpoint = _resolved(entry.endpoint, config.endpoints[entry.endpoint])
            if entry.endpoint not in providers:
                providers[entry.endpoint] = _provider(endpoint, settings)
            kind = ProviderKind(endpoint.provider)
            if kind is ProviderKind.BUILTIN and entry.vision:
                raise RoutesFileError(
                    f"models.{alias}.deployments: vision: the built-in model cannot take images (endpoint "
                    f"'{entry.endpoint}')"
                )
            name = f"{entry.endpoint}/{entry.model}"
            price = prices.get(name)
            deployment = Deployment(
                name=name,
                provider=kind,
                model=BUILTIN_MODEL_ID if kind is ProviderKind.BUILTIN else entry.model,
                endpoint=_base_url(endpoint),
                weight=entry.weight,
                timeout_seconds=entry.timeout_seconds or config.defaults.timeout_seconds,
                price=None if price is None else Price(price.input_per_million_tokens, price.output_per_million_tokens),
                vision=entry.vision if entry.vision is not None else kind is not ProviderKind.BUILTIN,
            )
            deployments.append((deployment, providers[entry.endpoint]))
        retry = (model.retry or config.defaults.retry).policy()
        ttl = model.cache_ttl_seconds if model.cache_ttl_seconds is not None else config.defaults.cache_ttl_seconds
        semantic = _semantic_ttl(config, settings, model)
        catalog.add(alias, deployments, RoutingStrategy(model.strategy), retry, ttl, semantic)
    return catalog


def _add_embedding_model(
    catalog: ModelCatalog,
    alias: str,
    model: ModelConfig,
    config: RoutesConfig,
    settings: Settings,
    embedders: dict[str, EmbeddingProvider],
    builtin: BuiltinEmbeddingProvider,
) -> None:
    deployments: list[tuple[Deployment, EmbeddingProvider]] = []
    builtin_only = all(config.endpoints[e.endpoint].provider == "builtin" for e in model.deployments)
    dimensions = model.dimensions or (BUILTIN_DIMENSIONS if builtin_only else 0)
    for entry in model.deployments:
        endpoint = _resolved(entry.endpoint, config.endpoints[entry.endpoint])
        kind = ProviderKind(endpoint.provider)
        if kind is ProviderKind.BUILTIN:
            provider: EmbeddingProvider = builtin
        else:
            if entry.endpoint not in embedders:
                embedders[entry.endpoint] = _embedding_provider(endpoint, settings)
            provider = embedders[entry.endpoint]
        deployment = Deployment(
            name=f"{entry.endpoint}/{entry.model}",
            provider=kind,
            model=BUILTIN_EMBEDDING_MODEL if kind is ProviderKind.BUILTIN else entry.model,
            endpoint=_base_url(endpoint),
            weight=entry.weight,
            timeout_seconds=entry.timeout_seconds or config.defaults.timeout_seconds,
            price=None if entry.price is None else Price(entry.price.input_per_million_tokens, 0.0),
        )
        deployments.append((deployment, provider))
    retry = (model.retry or config.defaults.retry).policy()
    catalog.add_embedding(alias, deployments, RoutingStrategy(model.strategy), retry, dimensions)


def _resolved(name: str, endpoint: EndpointConfig) -> EndpointConfig:
    """The endpoint with `base_url_env` read from the environment, at start."""
    if endpoint.base_url_env is None:
        return endpoint
    value = os.environ.get(endpoint.base_url_env, "").strip()
    if not value:
        raise RoutesFileError(
            f"endpoints.{name}.base_url_env: the environment variable {endpoint.base_url_env} is not set"
        )
    return endpoint.model_copy(update={"base_url": value, "base_url_env": None})


def _semantic_ttl(config: RoutesConfig, settings: Settings, model: ModelConfig | None) -> float:
    """How long a model's answers stay in the semantic cache; 0 when it is off
    (the model's word, else the defaults', else POINTSMAN_SEMANTIC_CACHE)."""
    defaults = config.defaults
    enabled = model.semantic_cache if model is not None and model.semantic_cache is not None else None
    if enabled is None:
        enabled = defaults.semantic_cache if defaults.semantic_cache is not None else settings.semantic_cache
    if not enabled:
        return 0.0
    if model is not None and model.semantic_cache_ttl_seconds is not None:
        return model.semantic_cache_ttl_seconds
    return defaults.semantic_cache_ttl_seconds or settings.semantic_cache_ttl_seconds


def _base_url(endpoint: EndpointConfig) -> str:
    if endpoint.provider == "openai":
        return endpoint.base_url or OPENAI_DEFAULT_ENDPOINT
    if endpoint.provider == "anthropic":
        return endpoint.base_url or ANTHROPIC_DEFAULT_ENDPOINT
    return ""


def _api_key(endpoint: EndpointConfig, settings: Settings) -> str:
    # The two well-known keys come from the settings (which read the environment
    # once, and which tests isolate); any other variable is read here.
    secret = {"OPENAI_API_KEY": settings.openai_api_key, "ANTHROPIC_API_KEY": settings.anthropic_api_key}
    if endpoint.api_key_env in secret:
        value = secret[endpoint.api_key_env]
        key = value.get_secret_value() if value is not None else None
    else:
        key = os.environ.get(endpoint.api_key_env) if endpoint.api_key_env else None
    # Local servers (Ollama, llama.cpp, ...) ignore the key, but the SDKs want one.
    return key or "not-needed"


def _embedding_provider(endpoint: EndpointConfig, settings: Settings) -> EmbeddingProvider:
    from ..providers.openai_embeddings import OpenAIEmbeddingsProvider

    return OpenAIEmbeddingsProvider(
        api_key=_api_key(endpoint, settings),
        base_url=_base_url(endpoint),
        timeout_seconds=settings.upstream_timeout_seconds,
    )


def _provider(endpoint: EndpointConfig, settings: Settings) -> ChatProvider:
    if endpoint.provider == "builtin":
        return BuiltinProvider()
    key = _api_key(endpoint, settings)
    timeout = settings.upstream_timeout_seconds
    # SDKs are imported only when used: each takes most of a second to import,
    # which a server that does not use it should not pay at start-up.
    if endpoint.provider == "openai":
        from ..providers.openai_compatible import OpenAICompatibleProvider

        return OpenAICompatibleProvider(api_key=key, base_url=_base_url(endpoint), timeout_seconds=timeout)
    from ..providers.anthropic import AnthropicProvider

    return AnthropicProvider(api_key=key, base_url=_base_url(endpoint), timeout_seconds=timeout)
