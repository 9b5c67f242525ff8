"""Requests with images go only to the deployments that can take them."""

from __future__ import annotations

from dataclasses import replace

from .catalog import ModelRoute
from .chat import ChatRequest, ImagePart
from .errors import FailedPrecondition


def has_images(request: ChatRequest) -> bool:
    # On every chat call: a plain loop, and most messages have no parts.
    for message in request.messages:
        if message.parts and any(type(p) is ImagePart for p in message.parts):
            return True
    return False


def route_for_images(route: ModelRoute) -> ModelRoute:
    """The route with only the deployments that can take images (the routes
    file's `vision`): a request with images never falls back to one that
    cannot. None can: FAILED_PRECONDITION, before any upstream call."""
    able = tuple(d for d in route.deployments if d.vision)
    if not able:
        raise FailedPrecondition(
            f"model '{route.alias}' cannot take images: none of its deployments has vision "
            "(the routes file's `vision: true`)",
            reason="IMAGES_NOT_SUPPORTED",
            metadata={"model": route.alias},
        )
    return route if len(able) == len(route.deployments) else replace(route, deployments=able)
