"""Proto <-> domain translation. Unknown enum numbers and malformed fields
become field violations here, before the domain sees the request."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf import json_format, timestamp_pb2

from pointsman.firewall.v1 import firewall_pb2 as fw
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.registry.v1 import registry_pb2 as reg
from pointsman.type.v1 import chat_pb2, firewall_pb2

from ..domain import breaker, chat, registry, routing
from ..domain.errors import ViolationCollector
from ..domain.firewall import rules, verdict
from ..domain.orchestrator import CompletedAnswer, FirewallNotice
from ..domain.ports.stores import Instance

# -- enums ------------------------------------------------------------------

ROLES = {
    chat_pb2.ROLE_SYSTEM: chat.Role.SYSTEM,
    chat_pb2.ROLE_USER: chat.Role.USER,
    chat_pb2.ROLE_ASSISTANT: chat.Role.ASSISTANT,
    chat_pb2.ROLE_TOOL: chat.Role.TOOL,
}
ROLES_TO_PROTO = {v: k for k, v in ROLES.items()}
FINISH_REASONS = {
    chat.FinishReason.STOP: orch.FINISH_REASON_STOP,
    chat.FinishReason.LENGTH: orch.FINISH_REASON_LENGTH,
    chat.FinishReason.TOOL_CALLS: orch.FINISH_REASON_TOOL_CALLS,
    chat.FinishReason.CONTENT_FILTER: orch.FINISH_REASON_CONTENT_FILTER,
}
RESPONSE_FORMAT_TYPES = {
    chat_pb2.RESPONSE_FORMAT_TYPE_TEXT: chat.ResponseFormatType.TEXT,
    chat_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT: chat.ResponseFormatType.JSON_OBJECT,
    chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA: chat.ResponseFormatType.JSON_SCHEMA,
}
TOOL_CHOICE_MODES = {
    chat_pb2.TOOL_CHOICE_MODE_AUTO: chat.ToolChoiceMode.AUTO,
    chat_pb2.TOOL_CHOICE_MODE_NONE: chat.ToolChoiceMode.NONE,
    chat_pb2.TOOL_CHOICE_MODE_REQUIRED: chat.ToolChoiceMode.REQUIRED,
    chat_pb2.TOOL_CHOICE_MODE_TOOL: chat.ToolChoiceMode.TOOL,
}
REASONING_EFFORTS = {
    chat_pb2.REASONING_EFFORT_LOW: chat.ReasoningEffort.LOW,
    chat_pb2.REASONING_EFFORT_MEDIUM: chat.ReasoningEffort.MEDIUM,
    chat_pb2.REASONING_EFFORT_HIGH: chat.ReasoningEffort.HIGH,
}
IMAGE_DETAILS = {
    chat_pb2.IMAGE_DETAIL_AUTO: chat.ImageDetail.AUTO,
    chat_pb2.IMAGE_DETAIL_LOW: chat.ImageDetail.LOW,
    chat_pb2.IMAGE_DETAIL_HIGH: chat.ImageDetail.HIGH,
    chat_pb2.IMAGE_DETAIL_ORIGINAL: chat.ImageDetail.ORIGINAL,
}
IMAGE_DETAILS_TO_PROTO = {v: k for k, v in IMAGE_DETAILS.items()}
PROVIDERS = {
    chat.ProviderKind.BUILTIN: orch.PROVIDER_BUILTIN,
    chat.ProviderKind.OPENAI: orch.PROVIDER_OPENAI,
    chat.ProviderKind.ANTHROPIC: orch.PROVIDER_ANTHROPIC,
}
DIRECTIONS = {
    firewall_pb2.DIRECTION_INPUT: verdict.Direction.INPUT,
    firewall_pb2.DIRECTION_OUTPUT: verdict.Direction.OUTPUT,
}
DIRECTIONS_TO_PROTO = {v: k for k, v in DIRECTIONS.items()}
ACTIONS = {
    firewall_pb2.ACTION_ALLOW: verdict.Action.ALLOW,
    firewall_pb2.ACTION_REDACT: verdict.Action.REDACT,
    firewall_pb2.ACTION_BLOCK: verdict.Action.BLOCK,
    firewall_pb2.ACTION_LOG: verdict.Action.LOG,
}
ACTIONS_TO_PROTO = {v: k for k, v in ACTIONS.items()}
CATEGORIES = {
    firewall_pb2.CATEGORY_BLOCK_RULE: verdict.Category.BLOCK_RULE,
    firewall_pb2.CATEGORY_NOT_ALLOWED: verdict.Category.NOT_ALLOWED,
    firewall_pb2.CATEGORY_PII: verdict.Category.PII,
    firewall_pb2.CATEGORY_SECRET: verdict.Category.SECRET,
    firewall_pb2.CATEGORY_TOXICITY: verdict.Category.TOXICITY,
}
CATEGORIES_TO_PROTO = {v: k for k, v in CATEGORIES.items()}
RULE_KINDS = {fw.RULE_KIND_BLOCK: rules.RuleKind.BLOCK, fw.RULE_KIND_ALLOW: rules.RuleKind.ALLOW}
RULE_KINDS_TO_PROTO = {v: k for k, v in RULE_KINDS.items()}
MATCH_TYPES = {
    fw.MATCH_TYPE_SUBSTRING: rules.MatchType.SUBSTRING,
    fw.MATCH_TYPE_REGEX: rules.MatchType.REGEX,
    fw.MATCH_TYPE_TOPIC: rules.MatchType.TOPIC,
}
MATCH_TYPES_TO_PROTO = {v: k for k, v in MATCH_TYPES.items()}
RULE_SCOPES = {
    fw.RULE_SCOPE_UNSPECIFIED: rules.RuleScope.INPUT,
    fw.RULE_SCOPE_INPUT: rules.RuleScope.INPUT,
    fw.RULE_SCOPE_OUTPUT: rules.RuleScope.OUTPUT,
    fw.RULE_SCOPE_BOTH: rules.RuleScope.BOTH,
}
RULE_SCOPES_TO_PROTO = {
    rules.RuleScope.INPUT: fw.RULE_SCOPE_INPUT,
    rules.RuleScope.OUTPUT: fw.RULE_SCOPE_OUTPUT,
    rules.RuleScope.BOTH: fw.RULE_SCOPE_BOTH,
}
RULE_CHANGES = {"created": fw.CHANGE_TYPE_CREATED, "updated": fw.CHANGE_TYPE_UPDATED, "deleted": fw.CHANGE_TYPE_DELETED}
INSTANCE_CHANGES = {
    registry.InstanceChangeType.REGISTERED: reg.INSTANCE_CHANGE_TYPE_REGISTERED,
    registry.InstanceChangeType.UPDATED: reg.INSTANCE_CHANGE_TYPE_UPDATED,
    registry.InstanceChangeType.DEREGISTERED: reg.INSTANCE_CHANGE_TYPE_DEREGISTERED,
    registry.InstanceChangeType.EXPIRED: reg.INSTANCE_CHANGE_TYPE_EXPIRED,
}


_Proto = TypeVar("_Proto", bound=int)  # a generated enum type
_Domain = TypeVar("_Domain")


def enum_value(
    table: Mapping[_Proto, Any], value: _Proto, path: str, errors: ViolationCollector, *, required: bool = True
) -> Any:
    """Looks an enum number up; unset (0) and unknown numbers are violations.
    Returns Any, not the domain enum: None for a violation, which callers put
    into the domain object they build before `errors.raise_if_any()`."""
    found = table.get(value)
    if found is None and (required or value != 0):
        errors.add(path, "is required" if value == 0 else f"unknown value {value}")
    return found


def optional_enum(
    table: Mapping[_Proto, _Domain], value: _Proto, path: str, errors: ViolationCollector
) -> _Domain | None:
    return None if value == 0 else enum_value(table, value, path, errors)


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def from_timestamp(value: timestamp_pb2.Timestamp) -> datetime:
    return value.ToDatetime(tzinfo=UTC)


# What a Timestamp may hold (google/protobuf/timestamp.proto): 0001-01-01 to
# 9999-12-31, nanos 0 to 999,999,999; beyond that ToDatetime raises.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


def time_field(message: Any, field: str, errors: ViolationCollector, path: str | None = None) -> datetime | None:
    """`message.field` as a datetime, None when unset; a Timestamp out of its
    range is a violation naming the field."""
    if not message.HasField(field):
        return None
    value = getattr(message, field)
    if not (_MIN_SECONDS <= value.seconds <= _MAX_SECONDS and 0 <= value.nanos <= 999_999_999):
        errors.add(path or field, "must be a time from 0001-01-01 to 9999-12-31 (nanos 0 to 999,999,999)")
        return None
    return from_timestamp(value)


# -- chat -------------------------------------------------------------------


def messages_from_proto(messages: Any, errors: ViolationCollector, path: str = "messages") -> list[chat.Message]:
    out = []
    for index, m in enumerate(messages):
        role = ROLES.get(m.role)
        if role is None:
            enum_value(ROLES, m.role, f"{path}[{index}].role", errors)  # adds the violation
            role = chat.Role.USER
        calls = m.tool_calls
        tool_calls = tuple(chat.ToolCall(c.id, c.name, c.arguments_json) for c in calls) if calls else ()
        parts = _parts_from_proto(m.parts, errors, f"{path}[{index}].parts") if m.parts else ()
        out.append(chat.Message(role, m.content, m.name, m.tool_call_id, tool_calls, parts))
    return out


def _parts_from_proto(parts: Any, errors: ViolationCollector, path: str) -> tuple[chat.ContentPart, ...]:
    """Content parts; their checks (types, sizes, where images may be) are the domain's."""
    out: list[chat.ContentPart] = []
    for position, part in enumerate(parts):
        kind = part.WhichOneof("part")
        if kind == "text":
            out.append(chat.TextPart(part.text))
        elif kind == "image":
            image = part.image
            detail = optional_enum(IMAGE_DETAILS, image.detail, f"{path}[{position}].image.detail", errors)
            out.append(chat.ImagePart(image.url, image.data, image.mime_type, detail))
        else:
            errors.add(f"{path}[{position}]", "set text or image")
    return tuple(out)


def _part_to_proto(part: chat.ContentPart) -> chat_pb2.ContentPart:
    if type(part) is chat.TextPart:
        return chat_pb2.ContentPart(text=part.text)
    assert type(part) is chat.ImagePart
    image = chat_pb2.ImagePart(mime_type=part.mime_type)
    if part.url:
        image.url = part.url
    else:
        image.data = part.data
    if part.detail is not None:
        image.detail = IMAGE_DETAILS_TO_PROTO[part.detail]
    return chat_pb2.ContentPart(image=image)


def message_to_proto(message: chat.Message) -> chat_pb2.ChatMessage:
    return chat_pb2.ChatMessage(
        role=ROLES_TO_PROTO[message.role],
        content=message.content,
        name=message.name,
        tool_call_id=message.tool_call_id,
        tool_calls=[
            chat_pb2.ToolCall(id=call.id, name=call.name, arguments_json=call.arguments_json)
            for call in message.tool_calls
        ],
        parts=[_part_to_proto(part) for part in message.parts],
    )


# Most requests leave the config unset: they share this (immutable) one.
_DEFAULT_CONFIG = chat.GenerationConfig()


def config_from_proto(
    config: chat_pb2.GenerationConfig, errors: ViolationCollector | None = None, path: str = "config"
) -> chat.GenerationConfig:
    """Problems go to `errors`; without it, they raise InvalidArgument."""
    if not config.ListFields():
        return _DEFAULT_CONFIG
    collected = errors if errors is not None else ViolationCollector()
    tools = tuple(
        chat.Tool(t.name, t.description, _parameters(t.parameters, collected, f"{path}.tools[{i}].parameters"))
        for i, t in enumerate(config.tools)
    )
    response_format = None
    if config.HasField("response_format"):
        response_format = _response_format(config.response_format, collected, f"{path}.response_format")
    tool_choice = None
    if config.HasField("tool_choice"):
        mode = optional_enum(TOOL_CHOICE_MODES, config.tool_choice.mode, f"{path}.tool_choice.mode", collected)
        if mode is not None:
            tool_choice = chat.ToolChoice(mode, config.tool_choice.tool_name)
    reasoning = None
    if config.HasField("reasoning"):
        effort = optional_enum(REASONING_EFFORTS, config.reasoning.effort, f"{path}.reasoning.effort", collected)
        budget = config.reasoning.budget_tokens if config.reasoning.HasField("budget_tokens") else None
        reasoning = chat.Reasoning(effort, budget)
    if errors is None:
        collected.raise_if_any()
    return chat.GenerationConfig(
        temperature=config.temperature if config.HasField("temperature") else None,
        top_p=config.top_p if config.HasField("top_p") else None,
        max_tokens=config.max_tokens if config.HasField("max_tokens") else None,
        stop=tuple(config.stop),
        seed=config.seed if config.HasField("seed") else None,
        tools=tools,
        response_format=response_format,
        tool_choice=tool_choice,
        parallel_tool_calls=config.parallel_tool_calls if config.HasField("parallel_tool_calls") else None,
        reasoning=reasoning,
    )


def _response_format(
    response_format: chat_pb2.ResponseFormat, errors: ViolationCollector, path: str
) -> chat.ResponseFormat:
    kind = optional_enum(RESPONSE_FORMAT_TYPES, response_format.type, f"{path}.type", errors)
    return chat.ResponseFormat(
        type=kind or chat.ResponseFormatType.TEXT,
        schema_name=response_format.schema_name,
        schema=_parameters(response_format.schema, errors, f"{path}.schema"),
        strict=response_format.strict,
    )


def _parameters(parameters: Any, errors: ViolationCollector, path: str) -> dict[str, Any]:
    try:
        return dict(json_format.MessageToDict(parameters))
    except ValueError:  # a number that JSON cannot hold: NaN or infinity
        errors.add(path, "must be a JSON schema: numbers must be finite")
        return {}


MAX_CACHE_TTL_SECONDS = 30 * 24 * 3600


def chat_request_from_proto(request: Any, errors: ViolationCollector, default_model: str = "") -> chat.ChatRequest:
    """For ChatRequest, CompleteRequest and BatchItem, which share these fields
    (BatchItem has no cache control). `default_model` stands in for an empty model."""
    domain = chat.ChatRequest(
        model=request.model or default_model,
        messages=messages_from_proto(request.messages, errors),
        config=config_from_proto(request.config, errors) if request.HasField("config") else _DEFAULT_CONFIG,
    )
    if request.HasField("metadata"):
        domain.metadata = metadata_from_proto(request.metadata)
    if request.HasField("provider_options"):
        domain.provider_options = provider_options_from_proto(request.provider_options, errors)
    if hasattr(request, "cache") and request.HasField("cache"):
        domain.cache_bypass = request.cache.bypass
        if request.cache.HasField("ttl"):
            ttl = request.cache.ttl.ToNanoseconds() / 1e9
            if not 0 < ttl <= MAX_CACHE_TTL_SECONDS:
                errors.add("cache.ttl", f"must be more than 0 and at most {MAX_CACHE_TTL_SECONDS} seconds")
            domain.cache_ttl_seconds = ttl
    return domain


def metadata_from_proto(metadata: orch.RequestMetadata) -> chat.RequestMetadata:
    return chat.RequestMetadata(metadata.end_user_id, dict(metadata.tags))


def provider_options_from_proto(
    options: orch.ProviderOptions, errors: ViolationCollector, path: str = "provider_options"
) -> chat.ProviderOptions:
    """Each section as plain JSON values; the allow-lists are the domain's
    (domain/provider_options.py)."""
    return chat.ProviderOptions(
        openai=_options(options, "openai", errors, path),
        anthropic=_options(options, "anthropic", errors, path),
    )


def _options(options: orch.ProviderOptions, name: str, errors: ViolationCollector, path: str) -> dict[str, Any]:
    if not options.HasField(name):
        return {}
    try:
        return dict(json_format.MessageToDict(getattr(options, name)))
    except ValueError:  # NaN or infinity
        errors.add(f"{path}.{name}", "numbers must be finite")
        return {}


def usage_to_proto(usage: chat.Usage) -> chat_pb2.Usage:
    return chat_pb2.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        estimated=usage.estimated,
        cost_usd=usage.cost_usd,
        cached_input_tokens=usage.cached_input_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )


@functools.lru_cache(maxsize=1024)
def deployment_to_proto(deployment: chat.Deployment) -> orch.Deployment:
    """Cached: deployments are fixed at start-up, and every answer names one.
    Callers must not change the returned message."""
    out = orch.Deployment(
        name=deployment.name,
        provider=PROVIDERS[deployment.provider],
        model=deployment.model,
        endpoint=deployment.endpoint,
        weight=deployment.weight,
    )
    out.timeout.FromNanoseconds(int(deployment.timeout_seconds * 1e9))
    return out


STRATEGIES = {
    routing.RoutingStrategy.PRIORITY: orch.ROUTING_STRATEGY_PRIORITY,
    routing.RoutingStrategy.WEIGHTED: orch.ROUTING_STRATEGY_WEIGHTED,
    routing.RoutingStrategy.LATENCY: orch.ROUTING_STRATEGY_LATENCY,
}
ROUTE_DECISIONS = {
    None: orch.ROUTE_DECISION_UNSPECIFIED,
    chat.RouteDecision.KEYWORD: orch.ROUTE_DECISION_KEYWORD,
    chat.RouteDecision.EMBEDDING: orch.ROUTE_DECISION_EMBEDDING,
    chat.RouteDecision.CLASSIFIER_MODEL: orch.ROUTE_DECISION_CLASSIFIER_MODEL,
    chat.RouteDecision.CLASSIFIER_FALLBACK: orch.ROUTE_DECISION_CLASSIFIER_FALLBACK,
}
CIRCUIT_STATES = {
    breaker.CircuitState.CLOSED: orch.CIRCUIT_STATE_CLOSED,
    breaker.CircuitState.OPEN: orch.CIRCUIT_STATE_OPEN,
    breaker.CircuitState.HALF_OPEN: orch.CIRCUIT_STATE_HALF_OPEN,
}


def deployment_status(deployment: chat.Deployment, monitor: breaker.DeploymentMonitor) -> orch.Deployment:
    """A deployment with its live state, for ListModels."""
    out = orch.Deployment()
    out.CopyFrom(deployment_to_proto(deployment))
    out.state.circuit = CIRCUIT_STATES[monitor.breaker.state]
    out.state.consecutive_failures = monitor.breaker.consecutive_failures
    if monitor.latency.seconds is not None:
        out.state.latency.FromNanoseconds(int(monitor.latency.seconds * 1e9))
    return out


def start_to_proto(start: chat.Start) -> orch.ChatStart:
    return orch.ChatStart(
        request_id=start.request_id,
        model=start.model,
        deployment=deployment_to_proto(start.deployment),
        cached=start.cached,
        cache_source=cache_source(start),
        route_class=start.route_class,
        routed_model=start.routed_model,
        route_decision=ROUTE_DECISIONS[start.route_decision],
    )


def cache_source(start: chat.Start) -> orch.CacheSource:
    if not start.cached:
        return orch.CACHE_SOURCE_UNSPECIFIED
    return orch.CACHE_SOURCE_SEMANTIC if start.semantic else orch.CACHE_SOURCE_EXACT


def finish_to_proto(finish: chat.Finish) -> orch.ChatFinish:
    out = orch.ChatFinish()
    _fill_finish(out, finish)
    return out


def _fill_finish(out: orch.ChatFinish, finish: chat.Finish) -> None:
    out.reason = FINISH_REASONS[finish.reason]
    if finish.time_to_first_token is not None:
        out.timings.time_to_first_token.FromNanoseconds(int(finish.time_to_first_token * 1e9))
    if finish.total is not None:
        out.timings.total.FromNanoseconds(int(finish.total * 1e9))
    if finish.schema_valid is not None:
        out.schema_valid = finish.schema_valid


def verdict_to_proto(v: verdict.Verdict) -> firewall_pb2.Verdict:
    return firewall_pb2.Verdict(
        action=ACTIONS_TO_PROTO[v.action],
        findings=[finding_to_proto(f) for f in v.findings],
        redacted_text=v.redacted_text,
        decision=v.decision,
    )


def finding_to_proto(f: verdict.Finding) -> firewall_pb2.Finding:
    return firewall_pb2.Finding(
        category=CATEGORIES_TO_PROTO[f.category],
        type=f.type,
        rule=f.rule,
        start=f.start,
        end=f.end,
        score=f.score,
        preview=f.preview,
    )


def notice_to_proto(notice: FirewallNotice) -> orch.FirewallNotice:
    return orch.FirewallNotice(
        direction=DIRECTIONS_TO_PROTO[notice.direction],
        verdict=verdict_to_proto(notice.verdict),
        reasoning=notice.reasoning,
    )


def event_fields(event: Any) -> dict[str, Any]:
    """A chat event as the keyword argument of the event oneof shared by
    ChatResponse, ConverseResponse and CompareResponse."""
    kind = type(event)
    if kind is chat.TextDelta:
        return {"text_delta": orch.TextDelta(text=event.text)}
    if kind is chat.ToolCallDelta:
        return {
            "tool_call_delta": orch.ToolCallDelta(
                index=event.index, id=event.id, name=event.name, arguments_delta=event.arguments_delta
            )
        }
    if kind is chat.ReasoningDelta:
        return {"reasoning_delta": orch.ReasoningDelta(text=event.text)}
    if kind is chat.Start:
        return {"start": start_to_proto(event)}
    if kind is chat.Usage:
        return {"usage": usage_to_proto(event)}
    if kind is chat.Finish:
        return {"finish": finish_to_proto(event)}
    if kind is FirewallNotice:
        return {"firewall_notice": notice_to_proto(event)}
    raise TypeError(f"not a chat event: {kind.__name__}")


def complete_response(answer: CompletedAnswer) -> orch.CompleteResponse:
    # Filled in place: building each part and copying it in costs twice as much.
    response = orch.CompleteResponse()
    message = response.message
    message.role = chat_pb2.ROLE_ASSISTANT
    message.content = answer.content
    for c in answer.tool_calls:
        message.tool_calls.add(id=c.id, name=c.name, arguments_json=c.arguments_json)
    if answer.reasoning:
        response.reasoning = answer.reasoning_text
    if answer.notices:
        response.firewall_notices.extend(notice_to_proto(n) for n in answer.notices)
    start = answer.start
    if start is not None:
        out = response.start
        out.request_id = start.request_id
        out.model = start.model
        out.deployment.CopyFrom(deployment_to_proto(start.deployment))
        out.cached = start.cached
        out.cache_source = cache_source(start)
        out.route_class = start.route_class
        out.routed_model = start.routed_model
        out.route_decision = ROUTE_DECISIONS[start.route_decision]
    usage = answer.usage
    if usage is not None:
        response.usage.input_tokens = usage.input_tokens
        response.usage.output_tokens = usage.output_tokens
        response.usage.total_tokens = usage.total_tokens
        response.usage.estimated = usage.estimated
        response.usage.cost_usd = usage.cost_usd
        response.usage.cached_input_tokens = usage.cached_input_tokens
        response.usage.reasoning_tokens = usage.reasoning_tokens
    finish = answer.finish
    if finish is not None:
        _fill_finish(response.finish, finish)
    return response


# -- firewall ---------------------------------------------------------------


def rule_to_proto(rule: rules.Rule) -> fw.Rule:
    return fw.Rule(
        name=rule.name,
        kind=RULE_KINDS_TO_PROTO[rule.kind],
        match_type=MATCH_TYPES_TO_PROTO[rule.match_type],
        pattern=rule.pattern,
        keywords=list(rule.keywords),
        description=rule.description,
        enabled=rule.enabled,
        scope=RULE_SCOPES_TO_PROTO[rule.scope],
        create_time=timestamp(rule.create_time),
        update_time=timestamp(rule.update_time),
        examples=list(rule.examples),
        threshold=rule.threshold,
    )


def decision_to_proto(d: verdict.Decision) -> fw.Decision:
    return fw.Decision(
        name=d.name,
        create_time=timestamp(d.create_time),
        principal=d.principal,
        organisation=d.organisation,
        direction=DIRECTIONS_TO_PROTO[d.direction],
        action=ACTIONS_TO_PROTO[d.action],
        findings=[finding_to_proto(f) for f in d.findings],
        content_sha256=d.content_sha256,
        request_id=d.request_id,
    )


# -- registry ---------------------------------------------------------------


def instance_to_proto(instance: Instance) -> reg.Instance:
    return reg.Instance(
        name=instance.name,
        instance_id=instance.instance_id,
        address=instance.address,
        version=instance.version,
        models=list(instance.models),
        labels=instance.labels,
        register_time=timestamp(instance.register_time),
        lease_expire_time=timestamp(instance.lease_expire_time),
    )
