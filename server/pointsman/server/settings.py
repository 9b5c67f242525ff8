"""Typed server settings, read once from the environment."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_instance_id() -> str:
    return "orchestrator-" + socket.gethostname().lower().replace(".", "-")[:40]


class Settings(BaseSettings):
    """Everything `pointsman serve` can be told. Names follow what users of LLM
    gateways expect (OPENAI_API_KEY, USE_MOCK, ...); Pointsman's own knobs carry
    the POINTSMAN_ prefix."""

    # Empty variables (`FOO=` in compose files) mean "unset", not "empty value".
    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True, env_ignore_empty=True)

    # Where the gRPC server listens, host:port. Port 0 picks a free port.
    address: str = Field("127.0.0.1:50051", validation_alias="POINTSMAN_ADDRESS")
    # TLS (docs/deployment.md): the server's certificate chain and private key,
    # PEM files. With a client CA, every client must present a certificate
    # that CA signed (mutual TLS). Unset: plain gRPC.
    tls_cert_file: Path | None = Field(None, validation_alias="POINTSMAN_TLS_CERT_FILE")
    tls_key_file: Path | None = Field(None, validation_alias="POINTSMAN_TLS_KEY_FILE")
    tls_client_ca_file: Path | None = Field(None, validation_alias="POINTSMAN_TLS_CLIENT_CA_FILE")
    # Prometheus metrics over HTTP at http://{address}/metrics (docs/metrics.md);
    # unset: none. With POINTSMAN_PROCESSES above 1, process i uses port + i.
    metrics_address: str | None = Field(None, validation_alias="POINTSMAN_METRICS_ADDRESS")
    # The OpenAI-compatible HTTP door (docs/http.md), host:port; unset: none.
    # Port 0 picks a free port.
    http_address: str | None = Field(None, validation_alias="POINTSMAN_HTTP_ADDRESS")
    # The largest request body the HTTP door reads; a larger one is refused with 413.
    http_max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, validation_alias="POINTSMAN_HTTP_MAX_BODY_BYTES")
    # OpenTelemetry traces over OTLP/gRPC (docs/metrics.md#traces), by the
    # standard variables; unset endpoint: no tracing.
    otlp_endpoint: str | None = Field(None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    otel_service_name: str = Field("pointsman", min_length=1, validation_alias="OTEL_SERVICE_NAME")

    # Providers.
    use_mock: bool = Field(False, validation_alias="USE_MOCK")
    openai_api_key: SecretStr | None = Field(None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(None, validation_alias="OPENAI_BASE_URL")
    openai_models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["gpt-4o-mini", "gpt-4o"], validation_alias="OPENAI_MODELS"
    )
    anthropic_api_key: SecretStr | None = Field(None, validation_alias="ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = Field(None, validation_alias="ANTHROPIC_BASE_URL")
    anthropic_models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["claude-sonnet-4-5", "claude-haiku-4-5"], validation_alias="ANTHROPIC_MODELS"
    )
    # Without a routes file: the longest wait for an upstream's first event (and
    # between two reads of its stream), and retries of a failed upstream call.
    upstream_timeout_seconds: float = Field(60.0, gt=0, validation_alias="POINTSMAN_UPSTREAM_TIMEOUT_SECONDS")
    upstream_retries: int = Field(1, ge=0, le=10, validation_alias="POINTSMAN_UPSTREAM_RETRIES")
    # Response cache: how long answers are kept without a routes file (0: not
    # cached), and the in-process cache's bounds.
    cache_ttl_seconds: float = Field(0, ge=0, le=30 * 24 * 3600, validation_alias="POINTSMAN_CACHE_TTL_SECONDS")
    cache_max_entries: int = Field(10_000, ge=1, validation_alias="POINTSMAN_CACHE_MAX_ENTRIES")
    cache_max_bytes: int = Field(64 * 1024 * 1024, ge=1024, validation_alias="POINTSMAN_CACHE_MAX_BYTES")
    # Semantic cache (docs/semantic-cache.md): on for every route (a route of
    # the routes file can say otherwise), how long answers are kept, and bounds.
    semantic_cache: bool = Field(False, validation_alias="POINTSMAN_SEMANTIC_CACHE")
    semantic_cache_ttl_seconds: float = Field(
        3600, gt=0, le=30 * 24 * 3600, validation_alias="POINTSMAN_SEMANTIC_CACHE_TTL_SECONDS"
    )
    semantic_cache_max_entries: int = Field(100_000, ge=1, validation_alias="POINTSMAN_SEMANTIC_CACHE_MAX_ENTRIES")
    semantic_cache_max_entries_per_organisation: int = Field(
        10_000, ge=1, validation_alias="POINTSMAN_SEMANTIC_CACHE_MAX_ENTRIES_PER_ORGANISATION"
    )
    semantic_cache_max_entry_bytes: int = Field(
        64 * 1024, ge=1024, validation_alias="POINTSMAN_SEMANTIC_CACHE_MAX_ENTRY_BYTES"
    )
    # YAML file of model aliases and their deployments (docs/routing.md).
    routes_file: Path | None = Field(None, validation_alias="POINTSMAN_ROUTES_FILE")
    # The chat model alias used when a request names none (seed 003's
    # LLM_PROVIDER switch); unset: a request without a model is refused.
    default_model: str = Field("", max_length=256, validation_alias="POINTSMAN_DEFAULT_MODEL")
    # Agents (docs/agents.md): MCP tool servers, the agents, and how often
    # both files are checked for changes (0: only on SIGHUP).
    tools_file: Path | None = Field(None, validation_alias="POINTSMAN_TOOLS_FILE")
    agents_file: Path | None = Field(None, validation_alias="POINTSMAN_AGENTS_FILE")
    agents_reload_seconds: float = Field(5.0, ge=0, validation_alias="POINTSMAN_AGENTS_RELOAD_SECONDS")
    # The workflow RunWorkflow runs when none is named (seed 000's name).
    default_analysis: str = Field("comparative", min_length=1, validation_alias="ORCHESTRATOR_DEFAULT_ANALYSIS")

    # Firewall.
    firewall_enabled: bool = Field(True, validation_alias="FIREWALL_ENABLED")
    firewall_block_on_violation: bool = Field(True, validation_alias="FIREWALL_BLOCK_ON_VIOLATION")
    firewall_allowlist_topics: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="FIREWALL_ALLOWLIST_TOPICS"
    )
    # The same allow rule by meaning: phrases about the topics, separated by
    # ";" (a phrase may hold commas), and the least cosine similarity to one
    # (0: the default, 0.2). See docs/firewall.md#topics-by-meaning.
    firewall_allowlist_topic_examples: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="FIREWALL_ALLOWLIST_TOPIC_EXAMPLES"
    )
    firewall_allowlist_topics_threshold: float = Field(
        0.0, ge=0, le=1, validation_alias="FIREWALL_ALLOWLIST_TOPICS_THRESHOLD"
    )
    # What each detector's findings do: block, redact, log (record only), or off (not scanned).
    firewall_pii_action: Literal["block", "redact", "log", "off"] = Field(
        "redact", validation_alias="FIREWALL_PII_ACTION"
    )
    firewall_secret_action: Literal["block", "redact", "log", "off"] = Field(
        "block", validation_alias="FIREWALL_SECRET_ACTION"
    )
    firewall_toxicity_action: Literal["block", "redact", "log", "off"] = Field(
        "block", validation_alias="FIREWALL_TOXICITY_ACTION"
    )
    # PII entity types to look for (comma-separated); empty means the default set.
    firewall_pii_entities: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="FIREWALL_PII_ENTITIES"
    )
    firewall_pii_min_score: float = Field(0.5, ge=0, le=1, validation_alias="FIREWALL_PII_MIN_SCORE")
    # An installed spaCy pipeline (package name or path) adds PERSON and LOCATION.
    firewall_spacy_model: str | None = Field(None, validation_alias="FIREWALL_SPACY_MODEL")
    firewall_toxicity_threshold: float = Field(0.8, gt=0, le=1, validation_alias="FIREWALL_TOXICITY_THRESHOLD")
    firewall_redaction_style: Literal["replace", "mask", "hash"] = Field(
        "replace", validation_alias="FIREWALL_REDACTION_STYLE"
    )
    # Salt for the hash style (at least 16 bytes); unset means a random salt per process.
    firewall_redaction_salt: SecretStr | None = Field(None, validation_alias="FIREWALL_REDACTION_SALT")
    # The most characters of a streamed answer held back while they may still
    # be part of a finding (prose is not held at all: docs/firewall.md); 0
    # sends text at once (findings are then only recorded, or cut the answer).
    firewall_output_holdback_chars: int = Field(1024, ge=0, le=4096, validation_alias="FIREWALL_OUTPUT_HOLDBACK_CHARS")
    firewall_scan_cache_size: int = Field(10_000, ge=0, validation_alias="FIREWALL_SCAN_CACHE_SIZE")
    # Per organisation: how many rules it may have, and how long one rule's
    # pattern (or a topic rule's keywords together) may be (docs/firewall.md).
    firewall_max_rules: int = Field(10_000, ge=1, le=1_000_000, validation_alias="FIREWALL_MAX_RULES")
    firewall_max_rule_chars: int = Field(1000, ge=1, le=100_000, validation_alias="FIREWALL_MAX_RULE_CHARS")

    # Identity of this instance and the registry it reports to.
    org_id: str = Field("default", validation_alias="ORG_ID")
    orchestrator_id: str = Field(default_factory=_default_instance_id, validation_alias="ORCHESTRATOR_ID")
    registry_addr: str | None = Field(None, validation_alias="REGISTRY_ADDR")
    # Address other instances use to reach this one; defaults to `address`.
    advertise_address: str | None = Field(None, validation_alias="POINTSMAN_ADVERTISE_ADDRESS")
    registry_lease_seconds: float = Field(15.0, ge=1, le=300, validation_alias="POINTSMAN_REGISTRY_LEASE_SECONDS")

    # Durable state: an SQLite file in the data directory unless DATABASE_URL
    # names PostgreSQL (postgresql://...) or another SQLite file (sqlite:///...).
    database_url: SecretStr | None = Field(None, validation_alias="DATABASE_URL")
    data_dir: Path = Field(Path("data"), validation_alias="POINTSMAN_DATA_DIR")
    # Decisions and request-log rows older than this many days are deleted
    # (every hour); 0 keeps them all.
    retention_days: int = Field(0, ge=0, le=36500, validation_alias="POINTSMAN_RETENTION_DAYS")
    # Decisions and request-log rows waiting for the database, at most.
    write_buffer_capacity: int = Field(100_000, ge=100, validation_alias="POINTSMAN_WRITE_BUFFER_CAPACITY")
    # Shared state between replicas (cache L2, conversations, bus, rate limits,
    # breaker opens, batch queue); unset keeps it all in-process.
    redis_url: SecretStr | None = Field(None, validation_alias="REDIS_URL")
    redis_prefix: str = Field("pointsman:", min_length=1, max_length=64, validation_alias="POINTSMAN_REDIS_PREFIX")
    # Batches with REDIS_URL (docs/batches.md): items queued on Redis Streams and
    # run by `pointsman worker` processes, and by the server itself unless the
    # embedded worker is off. Per worker process: items run at once; attempts
    # at a retryable failure before it is dead-lettered, and the first backoff;
    # how long a dead worker's item waits before another worker reclaims it.
    # Batches without Redis (docs/batches.md): bytes of items and results the
    # server holds for them, in total and per organisation, and how long a
    # finished batch's results are kept.
    batch_max_bytes: int = Field(256 * 1024 * 1024, ge=1, validation_alias="POINTSMAN_BATCH_MAX_BYTES")
    batch_max_bytes_per_organisation: int = Field(
        64 * 1024 * 1024, ge=1, validation_alias="POINTSMAN_BATCH_MAX_BYTES_PER_ORGANISATION"
    )
    batch_retention_seconds: float = Field(3600.0, ge=1, validation_alias="POINTSMAN_BATCH_RETENTION_SECONDS")
    batch_embedded_worker: bool = Field(True, validation_alias="POINTSMAN_BATCH_EMBEDDED_WORKER")
    batch_worker_concurrency: int = Field(16, ge=1, le=1024, validation_alias="POINTSMAN_BATCH_WORKER_CONCURRENCY")
    batch_max_attempts: int = Field(3, ge=1, le=20, validation_alias="POINTSMAN_BATCH_MAX_ATTEMPTS")
    batch_retry_backoff_seconds: float = Field(
        1.0, ge=0, le=60, validation_alias="POINTSMAN_BATCH_RETRY_BACKOFF_SECONDS"
    )
    batch_reclaim_idle_seconds: float = Field(
        30.0, ge=0.3, le=3600, validation_alias="POINTSMAN_BATCH_RECLAIM_IDLE_SECONDS"
    )

    # Auth. Outside development mode every RPC but health and reflection needs
    # a credential: a JWT signed with JWT_SECRET (HS256) or an API key.
    dev_mode: bool = Field(False, validation_alias="POINTSMAN_DEV_MODE")
    jwt_secret: SecretStr | None = Field(None, validation_alias="JWT_SECRET")
    jwt_issuer: str = Field("pointsman", validation_alias="JWT_ISSUER")
    jwt_audience: str = Field("pointsman", validation_alias="JWT_AUDIENCE")
    jwt_ttl_seconds: int = Field(3600, ge=60, le=30 * 24 * 3600, validation_alias="JWT_TTL_SECONDS")
    # Credential for this instance's own calls to the registry (REGISTRY_ADDR).
    registry_token: SecretStr | None = Field(None, validation_alias="REGISTRY_TOKEN")
    # The registry speaks TLS: trust the system's roots, or this CA (PEM; implies TLS).
    registry_tls: bool = Field(False, validation_alias="REGISTRY_TLS")
    registry_tls_ca_file: Path | None = Field(None, validation_alias="REGISTRY_TLS_CA_FILE")

    # Rate limits (token buckets) on chat calls; 0 turns a limit off.
    rate_limit_principal_per_second: float = Field(0, ge=0, validation_alias="POINTSMAN_RATE_LIMIT_PRINCIPAL_RPS")
    rate_limit_principal_burst: int = Field(0, ge=0, validation_alias="POINTSMAN_RATE_LIMIT_PRINCIPAL_BURST")
    rate_limit_organisation_per_second: float = Field(0, ge=0, validation_alias="POINTSMAN_RATE_LIMIT_ORG_RPS")
    rate_limit_organisation_burst: int = Field(0, ge=0, validation_alias="POINTSMAN_RATE_LIMIT_ORG_BURST")
    # Spending budget per organisation and UTC day, in US dollars at the routes
    # file's prices (docs/routing.md); 0 turns it off. Other replicas' spending
    # is read from the request log at most every refresh period.
    budget_organisation_usd_per_day: float = Field(0, ge=0, validation_alias="POINTSMAN_BUDGET_ORG_USD_PER_DAY")
    budget_principal_usd_per_day: float = Field(0, ge=0, validation_alias="POINTSMAN_BUDGET_PRINCIPAL_USD_PER_DAY")
    budget_refresh_seconds: float = Field(5.0, gt=0, le=3600, validation_alias="POINTSMAN_BUDGET_REFRESH_SECONDS")

    # Limits.
    # 16 MiB (the Python client's own limit): room for a request's images
    # (POINTSMAN_IMAGE_MAX_REQUEST_BYTES) and its text; must be above the former.
    max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024, validation_alias="POINTSMAN_MAX_MESSAGE_BYTES")
    # Inline images in chat messages (docs/images.md): bytes of one image, of
    # all of a request's, and how many images a request may carry.
    image_max_bytes: int = Field(5 * 1024 * 1024, ge=1, validation_alias="POINTSMAN_IMAGE_MAX_BYTES")
    image_max_request_bytes: int = Field(10 * 1024 * 1024, ge=1, validation_alias="POINTSMAN_IMAGE_MAX_REQUEST_BYTES")
    image_max_per_request: int = Field(20, ge=0, le=1000, validation_alias="POINTSMAN_IMAGE_MAX_PER_REQUEST")
    max_input_chars: int = Field(400_000, ge=1, validation_alias="POINTSMAN_MAX_INPUT_CHARS")
    max_messages: int = Field(1000, ge=1, validation_alias="POINTSMAN_MAX_MESSAGES")
    # An Embed call's inputs and the length of each (docs/embeddings.md).
    embed_max_inputs: int = Field(256, ge=1, le=100_000, validation_alias="POINTSMAN_EMBED_MAX_INPUTS")
    embed_max_input_chars: int = Field(32_000, ge=1, validation_alias="POINTSMAN_EMBED_MAX_INPUT_CHARS")
    # The window of a Converse history (docs/conversations.md): each turn sends
    # at most this many messages and (estimated) tokens, the oldest turns dropped.
    conversation_max_messages: int = Field(200, ge=2, validation_alias="POINTSMAN_CONVERSATION_MAX_MESSAGES")
    conversation_max_tokens: int = Field(32_000, ge=1, validation_alias="POINTSMAN_CONVERSATION_MAX_TOKENS")
    max_concurrent_streams: int = Field(1000, ge=1, validation_alias="POINTSMAN_MAX_CONCURRENT_STREAMS")
    # Calls one process runs at once, across every connection (watches and
    # Converse sessions included); beyond it a call is refused at once with
    # RESOURCE_EXHAUSTED rather than queued. 0: no limit.
    max_concurrent_calls: int = Field(0, ge=0, validation_alias="POINTSMAN_MAX_CONCURRENT_CALLS")

    # Operations.
    # Server processes sharing the listening port (SO_REUSEPORT), to use every
    # core; each has its own in-process caches, so replicas' state belongs in
    # PostgreSQL and Redis (REDIS_URL) when this is above 1.
    processes: int = Field(1, ge=1, le=64, validation_alias="POINTSMAN_PROCESSES")
    shutdown_grace_seconds: float = Field(10.0, ge=0, validation_alias="POINTSMAN_SHUTDOWN_GRACE_SECONDS")
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    log_format: Literal["text", "json"] = Field("text", validation_alias="LOG_FORMAT")

    @field_validator(
        "openai_models", "anthropic_models", "firewall_allowlist_topics", "firewall_pii_entities", mode="before"
    )
    @classmethod
    def _split_csv(cls, value: object) -> object:
        # Lists come from the environment as comma-separated text.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("firewall_allowlist_topic_examples", mode="before")
    @classmethod
    def _split_phrases(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(";") if part.strip()]
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # HS256 with a short secret can be brute-forced offline from one token.
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("JWT_SECRET must be at least 32 bytes")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both POINTSMAN_TLS_CERT_FILE and POINTSMAN_TLS_KEY_FILE, or neither")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("POINTSMAN_TLS_CLIENT_CA_FILE needs TLS: set POINTSMAN_TLS_CERT_FILE and _KEY_FILE")
        return self

    @model_validator(mode="after")
    def _room_for_images(self) -> Settings:
        # A request with the images the limits allow must fit in one gRPC
        # message. Defaults that do not (a smaller POINTSMAN_MAX_MESSAGE_BYTES)
        # shrink to half of it; limits set too high are an error.
        unset = "image_max_request_bytes" not in self.model_fields_set
        if unset and self.image_max_request_bytes >= self.max_message_bytes:
            self.image_max_request_bytes = self.max_message_bytes // 2
        if "image_max_bytes" not in self.model_fields_set:
            self.image_max_bytes = min(self.image_max_bytes, self.image_max_request_bytes)
        if self.image_max_bytes > self.image_max_request_bytes:
            raise ValueError("POINTSMAN_IMAGE_MAX_BYTES must be at most POINTSMAN_IMAGE_MAX_REQUEST_BYTES")
        if self.image_max_request_bytes >= self.max_message_bytes:
            raise ValueError(
                "POINTSMAN_IMAGE_MAX_REQUEST_BYTES must be below POINTSMAN_MAX_MESSAGE_BYTES: "
                "a request with that much image data must fit in one gRPC message"
            )
        return self

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def uses_builtin_model_only(self) -> bool:
        return self.use_mock or not (self.openai_configured or self.anthropic_configured)

    @property
    def openai_configured(self) -> bool:
        return self.openai_api_key is not None or self.openai_base_url is not None

    @property
    def anthropic_configured(self) -> bool:
        return self.anthropic_api_key is not None or self.anthropic_base_url is not None


def describe_invalid(error: ValidationError) -> str:
    """A settings error for people: each variable and what is wrong with it,
    never the value (it may be a secret or a URL with a password)."""
    problems = [
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}" if problem["loc"] else problem["msg"]
        for problem in error.errors(include_input=False, include_url=False)
    ]
    return "; ".join(problems)
