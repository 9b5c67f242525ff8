"""Which role each RPC needs. A method missing from the table is refused to
everyone (fail closed); only health, reflection and Login are open."""

from __future__ import annotations

from typing import Literal

from ..domain.ports.stores import UserRole

OPEN: Literal["open"] = "open"  # needs no credential
CLOSED: Literal["closed"] = "closed"  # not in the table: nobody may call it
Access = UserRole | Literal["open", "closed"]

_ORCHESTRATOR = "/pointsman.orchestrator.v1.OrchestratorService/"
_FIREWALL = "/pointsman.firewall.v1.FirewallService/"
_REGISTRY = "/pointsman.registry.v1.RegistryService/"
_AUTH = "/pointsman.auth.v1.AuthService/"
_AGENT = "/pointsman.agent.v1.AgentService/"

_VIEWER = {
    _ORCHESTRATOR: ("ListModels", "GetBatch", "ListBatches", "WatchBatch", "GetStats"),
    _FIREWALL: ("GetRule", "ListRules", "WatchRules", "ListDecisions"),
    _REGISTRY: ("GetInstance", "ListInstances", "WatchInstances"),
    _AUTH: ("WhoAmI", "RevokeToken"),  # RevokeToken checks whose token it is
    _AGENT: ("ListTools", "ListAgents", "ListWorkflows"),
}
_DEVELOPER = {
    _ORCHESTRATOR: (
        "Chat",
        "Complete",
        "Embed",
        "Converse",
        "GetConversation",  # the history holds prompts: not for viewers
        "DeleteConversation",
        "Compare",
        "CreateBatch",
        "CancelBatch",
    ),
    _FIREWALL: ("Scan", "ScanStream"),
    _AGENT: ("RunAgent", "RunWorkflow"),
}
_ADMIN = {
    _ORCHESTRATOR: ("ListCalls",),  # names principals and what they spent
    _FIREWALL: ("CreateRule", "UpdateRule", "DeleteRule"),
    _REGISTRY: ("RegisterInstance", "Heartbeat", "DeregisterInstance"),
    _AUTH: ("CreateApiKey", "ListApiKeys", "RevokeApiKey"),
    _AGENT: ("ListToolCalls",),  # names principals
}

METHOD_ROLES: dict[str, UserRole] = {
    service + method: role
    for role, table in ((UserRole.VIEWER, _VIEWER), (UserRole.DEVELOPER, _DEVELOPER), (UserRole.ADMIN, _ADMIN))
    for service, methods in table.items()
    for method in methods
}

_OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
_OPEN_METHODS = {_AUTH + "Login"}


def access_for(method: str) -> Access:
    """`method` as gRPC names it: /package.Service/Method."""
    if method in _OPEN_METHODS or method.startswith(_OPEN_PREFIXES):
        return OPEN
    return METHOD_ROLES.get(method, CLOSED)
