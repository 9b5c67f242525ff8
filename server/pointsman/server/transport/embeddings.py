"""Embed's wire side: the domain's result as an EmbedResponse, and model kinds."""

from __future__ import annotations

from pointsman.orchestrator.v1 import orchestrator_pb2 as orch

from ..domain.embedding import ModelKind
from ..domain.embeddings import EmbedResult
from .convert import deployment_to_proto, usage_to_proto

MODEL_KINDS = {ModelKind.CHAT: orch.MODEL_KIND_CHAT, ModelKind.EMBEDDING: orch.MODEL_KIND_EMBEDDING}


def embed_response(result: EmbedResult) -> orch.EmbedResponse:
    response = orch.EmbedResponse(model=result.model, usage=usage_to_proto(result.usage))
    response.deployment.CopyFrom(deployment_to_proto(result.deployment))
    add = response.embeddings.add
    for index, values in enumerate(result.vectors.vectors):
        add(index=index, values=values)
    return response
