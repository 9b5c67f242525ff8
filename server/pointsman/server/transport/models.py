"""ListModels' entries: every model alias with its deployments' live state,
and every router alias with its classes, merged in alias order."""

from __future__ import annotations

from pointsman.orchestrator.v1 import orchestrator_pb2 as pb

from ..domain.catalog import ModelCatalog, ModelRoute
from ..domain.classify import RouterSpec
from ..domain.embedding import ModelKind
from ..domain.router import Router
from . import convert
from .embeddings import MODEL_KINDS


def model_entries(catalog: ModelCatalog, router: Router, routers: list[RouterSpec]) -> list[pb.Model]:
    """Every alias as ListModels shows it, in alias order. All are converted,
    not only a page's: a deployment has a few dozen aliases at most."""
    entries: list[tuple[str, ModelRoute | RouterSpec]] = [(r.alias, r) for r in catalog.routes()]
    entries += [(spec.alias, spec) for spec in routers]
    entries.sort(key=lambda entry: entry[0])
    return [
        _router_model(spec, catalog, router) if isinstance(spec, RouterSpec) else _model(spec, router)
        for _, spec in entries
    ]


def _model(route: ModelRoute, router: Router) -> pb.Model:
    return pb.Model(
        name=f"models/{route.alias}",
        alias=route.alias,
        deployments=[convert.deployment_status(d, router.monitor(d)) for d in route.deployments],
        builtin=route.builtin,
        strategy=convert.STRATEGIES[route.strategy],
        available=router.available(route),
        kind=MODEL_KINDS[route.kind],
        dimensions=route.dimensions,
    )


def _router_model(spec: RouterSpec, catalog: ModelCatalog, router: Router) -> pb.Model:
    # A router can answer while any alias it sends calls to can.
    return pb.Model(
        name=f"models/{spec.alias}",
        alias=spec.alias,
        available=any(router.available(catalog.resolve(alias)) for alias in spec.targets),
        kind=MODEL_KINDS[ModelKind.CHAT],
        router=pb.ModelRouter(
            default_model=spec.default,
            classes=[pb.RouterClass(name=cls.name, model=cls.alias) for cls in spec.classes],
            classifier_model=spec.classifier.model if spec.classifier is not None else "",
        ),
    )
