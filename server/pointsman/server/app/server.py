"""Builds the gRPC server from settings and runs it until SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import signal
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from pointsman.agent.v1 import agent_pb2, agent_pb2_grpc
from pointsman.auth.v1 import auth_pb2, auth_pb2_grpc
from pointsman.firewall.v1 import firewall_pb2, firewall_pb2_grpc
from pointsman.orchestrator.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from pointsman.registry.v1 import registry_pb2, registry_pb2_grpc

from .. import __version__
from ..auth import Accounts, Authenticator
from ..domain.errors import AlreadyExists, NotFound
from ..domain.firewall.rules import MatchType, Rule, RuleKind, RuleLimits
from ..domain.history import HistoryWindow
from ..domain.registry import Registry
from ..domain.stats import Stats
from ..http import HttpDoor
from ..metrics import MetricsEndpoint
from ..settings import Settings
from ..tracing import Tracing
from ..transport.agent_servicer import AgentServicer
from ..transport.auth_servicer import AuthServicer
from ..transport.calls import CallContext, CallInterceptor
from ..transport.dependency_health import DependencyHealth
from ..transport.drain import Drain
from ..transport.firewall_servicer import SNAPSHOT_PART_BYTES, FirewallServicer
from ..transport.health import HealthService
from ..transport.model_health import ModelHealth
from ..transport.orchestrator_servicer import OrchestratorServicer
from ..transport.reflection import ReflectionService
from ..transport.registry_servicer import RegistryServicer
from .agents import build_agents
from .registration import SelfRegistration
from .retention import Retention
from .routes import load_routes_file
from .stack import build_orchestrator
from .state import State, open_state
from .state_metrics import state_metrics
from .tls import registry_credentials, server_credentials
from .worker import build_batches

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name,
    firewall_pb2.DESCRIPTOR.services_by_name["FirewallService"].full_name,
    registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name,
    agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
)


def _is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name, or 0.0.0.0 / [::]: reachable from elsewhere


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
        # Keep idle streams (watches, heartbeats) alive through proxies, and
        # let clients ping us as often as every 10 s.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        # gRPC shares a port that is already in use (SO_REUSEPORT) unless told
        # not to: a second server would silently take half the traffic. Only
        # the processes of one `POINTSMAN_PROCESSES` server share it.
        ("grpc.so_reuseport", 1 if settings.processes > 1 else 0),
    ]


class _GenericHandlersOnly:
    """What the generated `add_*Servicer_to_server` functions see of the
    server: each service becomes one generic handler, and its methods are not
    also pre-registered. grpc.aio keeps a pending request for every
    registered method and, for every call it accepts, waits on all of them
    at once (`asyncio.wait` over 40-odd futures: a callback added and removed
    on each), which cost more per call than looking the method up in the
    services' tables does. The calls, handlers and interceptor are the same."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: tuple[grpc.GenericRpcHandler, ...]) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        pass  # served by the generic handler added just before


class PointsmanServer:
    """One server process: all three services on one port, plus health and
    reflection. `start()`, then `stop()`; nothing happens at construction
    beyond building objects and binding the port."""

    def __init__(self, settings: Settings, state: State) -> None:
        self.settings = settings
        self.state = state
        self.stores = state.stores
        self.bus = state.bus
        stack = build_orchestrator(settings, state)
        self.catalog, self.router, self.rules = stack.catalog, stack.router, stack.rules
        self.orchestrator = stack.orchestrator
        self.embeddings = stack.embeddings
        self.agents = build_agents(settings, self.orchestrator, self.catalog, state.stores.tool_calls)
        self.firewall = stack.orchestrator.firewall
        self.decisions = state.decisions
        self.conversations = state.conversations
        self.batches = build_batches(settings, state, self.orchestrator)
        self.registry = Registry(state.stores.instances, state.bus)
        self.health = HealthService()
        routers = self.orchestrator.classes.specs if self.orchestrator.classes is not None else []
        self.model_health = ModelHealth(self.health, self.catalog, self.router, routers)
        self.dependency_health = DependencyHealth(self.health, state.stores.ping, state.redis_probe())
        self.self_registration: SelfRegistration | None = None
        self.retention = Retention(state.stores, settings.retention_days) if settings.retention_days else None

        self.authenticator = Authenticator(settings, state.stores.users, state.bus)
        self.accounts = Accounts(state.stores.users, self.authenticator, settings.org_id)
        calls = CallContext()
        self.tracing = Tracing(settings.otlp_endpoint, settings.otel_service_name) if settings.otlp_endpoint else None
        tracer = self.tracing.tracer if self.tracing is not None else None
        self.drain = Drain()
        self.server = grpc.aio.server(
            interceptors=[CallInterceptor(self.authenticator, state.metrics, tracer, self.drain)],
            options=grpc_options(settings),
            maximum_concurrent_rpcs=settings.max_concurrent_calls or None,
        )
        services = _GenericHandlersOnly(self.server)
        self.metrics_endpoint: MetricsEndpoint | None = None
        if state.metrics is not None and settings.metrics_address:
            state.metrics.collect_state(state_metrics(state, self.router, self.dependency_health))
            self.metrics_endpoint = MetricsEndpoint(state.metrics, settings.metrics_address)
        # The OpenAI-compatible door: the same orchestrator and credentials, no gRPC hop.
        self.http_door: HttpDoor | None = None
        if settings.http_address:
            self.http_door = HttpDoor(
                self.orchestrator,
                self.embeddings,
                self.authenticator,
                settings.http_address,
                max_body_bytes=settings.http_max_body_bytes,
                reuse_port=settings.processes > 1,
                metrics=state.metrics,
            )
        orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(
            OrchestratorServicer(
                self.orchestrator,
                self.conversations,
                self.batches,
                calls,
                Stats(state.stores.requests, state.request_log.flushed, state.decisions, self.conversations),
                HistoryWindow(
                    min(settings.conversation_max_messages, settings.max_messages),
                    settings.conversation_max_tokens,
                    settings.max_input_chars,
                ),
                self.embeddings,
                state.metrics,
            ),
            services,
        )
        firewall_pb2_grpc.add_FirewallServiceServicer_to_server(
            FirewallServicer(
                self.firewall,
                self.rules,
                self.decisions,
                calls,
                settings.max_input_chars,
                RuleLimits(settings.firewall_max_rules, settings.firewall_max_rule_chars),
                # Each part of a WatchRules snapshot stays well inside one message.
                snapshot_bytes=min(SNAPSHOT_PART_BYTES, settings.max_message_bytes // 2),
            ),
            services,
        )
        registry_pb2_grpc.add_RegistryServiceServicer_to_server(RegistryServicer(self.registry, calls), services)
        auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(self.accounts, calls), services)
        agent_pb2_grpc.add_AgentServiceServicer_to_server(
            AgentServicer(
                self.agents.definitions,
                self.agents.toolbox,
                self.agents.loop,
                state.stores.tool_calls,
                calls,
                self.agents.workflows,
                self.agents.default_workflow,
            ),
            services,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, services)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            ReflectionService(
                (
                    *SERVICE_NAMES,
                    auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    reflection.SERVICE_NAME,
                )
            ),
            services,
        )
        # Read now, so that an unusable file stops start-up with its name.
        self._registry_credentials = registry_credentials(settings) if settings.registry_addr else None
        self.port = self._bind(settings)

    def _bind(self, settings: Settings) -> int:
        credentials = server_credentials(settings)
        try:
            if credentials is not None:
                port: int = self.server.add_secure_port(settings.address, credentials)
            else:
                port = self.server.add_insecure_port(settings.address)
        except RuntimeError:  # gRPC's only word for it: "Failed to bind"
            port = 0
        if port == 0:
            raise OSError(
                f"could not listen on {settings.address}: the address is in use (is another server running?),"
                " or not this machine's"
            )
        if credentials is None and not settings.dev_mode and not _is_loopback(settings.address):
            log.warning(
                "serving plain gRPC on %s: credentials and prompts cross the network unencrypted;"
                " set POINTSMAN_TLS_CERT_FILE and POINTSMAN_TLS_KEY_FILE, or put a TLS proxy in front",
                settings.address,
            )
        return port

    @property
    def address(self) -> str:
        host = self.settings.address.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    async def start(self) -> None:
        await self.listen()
        await self.become_ready()

    async def listen(self) -> None:
        """Accepts calls; health says NOT_SERVING until `become_ready`."""
        await self.state.start()
        await self.rules.start()
        await self.authenticator.revocations.start()
        await self.authenticator.token_revocations.start()
        await self.batches.start()
        if self.orchestrator.semantic is not None:
            self.orchestrator.semantic.start()  # hears the entries other replicas share
        self.agents.start()
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.metrics_endpoint is not None:
            try:
                await self.metrics_endpoint.start()
            except OSError as error:
                raise OSError(f"could not serve metrics on {self.settings.metrics_address}: {error.strerror}") from None
        await self.server.start()
        if self.http_door is not None:
            await self.http_door.start()

    @property
    def http_address(self) -> str | None:
        """host:port of the HTTP door; None without one."""
        if self.http_door is None or self.settings.http_address is None:
            return None
        host = self.settings.http_address.rsplit(":", 1)[0]
        return f"{host}:{self.http_door.port}"

    async def become_ready(self) -> None:
        await self.accounts.seed_dev_users()
        self.registry.start()
        await self._seed_allowlist_topics()
        if self.settings.registry_addr:
            self.self_registration = SelfRegistration(
                self.settings.registry_addr,
                self._instance(),
                self.settings.registry_lease_seconds,
                token=self.settings.registry_token,
                credentials=self._registry_credentials,
            )
            self.self_registration.start()
        # Every dependency of the embedded default is in-process and ready now.
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        await self.model_health.start()
        await self.dependency_health.start()
        if self.retention is not None:
            self.retention.start()
        # What start-up built (modules, detector tables, ~200k objects) lives
        # as long as the process: out of the collector's sight, a full
        # collection under load takes about 3 ms instead of 110 ms.
        gc.freeze()
        log.info(
            "serving on %s; models: %s",
            self.address,
            ", ".join(r.alias for r in self.catalog.routes()),
        )

    async def stop(self, grace: float | None = None) -> None:
        """Health NOT_SERVING (health watches end), refuse new calls while
        health still answers, let calls in flight finish within the grace
        period, cut the rest with UNAVAILABLE, then close upstream clients."""
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        deadline = time.monotonic() + grace
        await self.health.enter_graceful_shutdown()
        self.drain.refuse_new_calls()
        if self.http_door is not None:
            self.http_door.refuse_new_calls()
        await self.model_health.stop()
        await self.dependency_health.stop()
        if self.retention is not None:
            await self.retention.aclose()
        # Watches never end by themselves; end them so they do not hold the grace period.
        self.rules.changes.close()
        self.registry.changes.close()
        if self.self_registration is not None:
            await self.self_registration.aclose()
        await self.drain.drain(max(0.0, deadline - time.monotonic()))
        if self.http_door is not None:
            await self.http_door.drain(max(0.0, deadline - time.monotonic()))
        cut = await self.drain.cut()
        if self.http_door is not None:
            cut += await self.http_door.stop()
        if cut:
            log.warning("shutdown: %d call(s) still running at the end of the grace period were cut", cut)
        await self.health.watches_ended(min(1.0, max(0.0, deadline - time.monotonic())))
        await self.server.stop(0)  # only health and reflection calls can be left
        await self.batches.aclose()
        await self.agents.aclose()  # tool servers: stdio subprocesses end here
        await self.registry.aclose()
        await self.rules.aclose()
        await self.authenticator.revocations.aclose()
        await self.authenticator.token_revocations.aclose()
        await self.catalog.aclose()
        if self.orchestrator.semantic is not None:
            await self.orchestrator.semantic.aclose()
        # Last: flushes the decisions and request log written by the calls above.
        await self.state.aclose()
        if self.metrics_endpoint is not None:
            await self.metrics_endpoint.stop()  # scrapes saw the drain until here
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)  # the last spans, exported
        log.info("stopped")

    def _instance(self) -> registry_pb2.Instance:
        return registry_pb2.Instance(
            instance_id=self.settings.orchestrator_id,
            address=self.settings.advertise_address or self.address,
            version=__version__,
            models=[r.alias for r in self.catalog.routes()],
        )

    async def _seed_allowlist_topics(self) -> None:
        """FIREWALL_ALLOWLIST_TOPICS: one allow rule for the listed topics, so
        only prompts about them pass."""
        topics = self.settings.firewall_allowlist_topics
        examples = tuple(self.settings.firewall_allowlist_topic_examples)
        if not topics and not examples:
            return
        wanted = Rule(
            id="allowlist-topics",
            organisation=self.settings.org_id,
            kind=RuleKind.ALLOW,
            match_type=MatchType.TOPIC,
            keywords=tuple(topics),
            examples=examples,
            threshold=self.settings.firewall_allowlist_topics_threshold if examples else 0.0,
            description="from FIREWALL_ALLOWLIST_TOPICS",
        )
        # Idempotent: replicas (and restarts) share the rule.
        try:
            current = await self.rules.get_rule(wanted.organisation, wanted.id)
        except NotFound:
            try:
                await self.rules.create_rule(wanted)
            except AlreadyExists:
                pass  # another replica created it just now
            return
        same = (current.keywords, current.examples, current.threshold) == (
            wanted.keywords,
            wanted.examples,
            wanted.threshold,
        )
        if not same or not current.enabled:
            await self.rules.update_rule(wanted.with_changes(create_time=current.create_time))


async def open_server(settings: Settings) -> PointsmanServer:
    """Opens the state (database, Redis) the settings name, then builds the
    server on it; `start()` it next."""
    if settings.routes_file is not None:
        load_routes_file(settings.routes_file)  # a mistake in it stops us before any database is touched
    state = await open_state(settings)
    try:
        return PointsmanServer(settings, state)
    except BaseException:
        await state.aclose()
        raise


async def serve(settings: Settings) -> None:
    """Runs until SIGTERM or SIGINT, then shuts down gracefully."""
    started = time.perf_counter()
    server = await open_server(settings)
    try:
        await server.start()
    except BaseException:
        # A port taken, say: close what was opened, so the process can end.
        await server.stop(grace=0)
        raise
    log.info("ready in %.0f ms", (time.perf_counter() - started) * 1000)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.agents.reloader.reload)
    await stop.wait()
    log.info("shutting down (grace %.1fs)", settings.shutdown_grace_seconds)
    await server.stop()
