"""Provider parameters a request passes through as they are (`ProviderOptions`),
checked against each provider's allow-list: only parameters the official SDK
sends, whose answer the gateway still reads right, and that no contract field
already sets. The allow-lists are documented in docs/providers.md."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from .chat import ProviderKind, ProviderOptions
from .errors import ViolationCollector

# A check adds violations for a bad value at `path`.
ValueCheck = Callable[[Any, ViolationCollector, str], None]


def _number(low: float, high: float) -> ValueCheck:
    def check(value: Any, errors: ViolationCollector, path: str) -> None:
        if type(value) not in (int, float) or not math.isfinite(value) or not low <= value <= high:
            errors.add(path, f"must be a number from {low:g} to {high:g}")

    return check


def _one_of(*choices: str) -> ValueCheck:
    def check(value: Any, errors: ViolationCollector, path: str) -> None:
        if value not in choices:
            errors.add(path, f"must be one of {', '.join(choices)}")

    return check


def _text(max_chars: int) -> ValueCheck:
    def check(value: Any, errors: ViolationCollector, path: str) -> None:
        if type(value) is not str or not 0 < len(value) <= max_chars:
            errors.add(path, f"must be text of 1 to {max_chars} characters")

    return check


def _boolean(value: Any, errors: ViolationCollector, path: str) -> None:
    if type(value) is not bool:
        errors.add(path, "must be true or false")


MAX_LOGIT_BIAS_TOKENS = 300


def _logit_bias(value: Any, errors: ViolationCollector, path: str) -> None:
    # Token ids (as the object's keys) to a bias from -100 to 100.
    if type(value) is not dict or len(value) > MAX_LOGIT_BIAS_TOKENS:
        errors.add(path, f"must be an object of at most {MAX_LOGIT_BIAS_TOKENS} token ids")
        return
    for token, bias in value.items():
        if not token.isascii() or not token.isdigit():
            errors.add(f"{path}.{token[:32]}", "must be a token id (digits)")
        elif type(bias) not in (int, float) or not math.isfinite(bias) or not float(bias).is_integer():
            errors.add(f"{path}.{token}", "must be a whole number from -100 to 100")
        elif not -100 <= bias <= 100:
            errors.add(f"{path}.{token}", "must be a whole number from -100 to 100")


def _string_map(max_entries: int, max_key: int, max_value: int) -> ValueCheck:
    def check(value: Any, errors: ViolationCollector, path: str) -> None:
        if type(value) is not dict or len(value) > max_entries:
            errors.add(path, f"must be an object of at most {max_entries} entries")
            return
        for key, item in value.items():
            if not 0 < len(key) <= max_key or type(item) is not str or len(item) > max_value:
                errors.add(
                    f"{path}.{key[:max_key]}", f"keys of 1 to {max_key} characters, text values of at most {max_value}"
                )

    return check


# openai 3.63's chat.completions.create, less what the contract sets itself.
OPENAI_OPTIONS: dict[str, ValueCheck] = {
    "frequency_penalty": _number(-2, 2),
    "presence_penalty": _number(-2, 2),
    "logit_bias": _logit_bias,
    "service_tier": _one_of("auto", "default", "flex", "scale", "priority", "fast"),
    "store": _boolean,
    "metadata": _string_map(16, 64, 512),
    "prompt_cache_key": _text(256),
    "prompt_cache_retention": _one_of("in_memory", "24h"),
    "safety_identifier": _text(64),
    "verbosity": _one_of("low", "medium", "high"),
}

# anthropic 2.17's messages.create, less what the contract sets itself. The
# SDK (API version 2026-10-21) has no temperature, top_p or top_k any more.
ANTHROPIC_OPTIONS: dict[str, ValueCheck] = {
    "service_tier": _one_of("auto", "standard_only"),
    "speed": _one_of("standard", "fast"),
    "inference_geo": _text(64),
}

ALLOW_LISTS: dict[ProviderKind, dict[str, ValueCheck]] = {
    ProviderKind.OPENAI: OPENAI_OPTIONS,
    ProviderKind.ANTHROPIC: ANTHROPIC_OPTIONS,
}

# Parameters a caller may reach for that the contract sets in its own
# fields: refused with a pointer there, so there is one way to set each.
_CONTRACT_FIELDS = {
    "model": "model",
    "messages": "messages",
    "system": "messages (ROLE_SYSTEM)",
    "stream": "the RPC (Chat streams, Complete does not)",
    "stream_options": "the RPC",
    "temperature": "config.temperature",
    "top_p": "config.top_p",
    "max_tokens": "config.max_tokens",
    "max_completion_tokens": "config.max_tokens",
    "stop": "config.stop",
    "stop_sequences": "config.stop",
    "seed": "config.seed",
    "tools": "config.tools",
    "tool_choice": "config.tool_choice",
    "parallel_tool_calls": "config.parallel_tool_calls",
    "response_format": "config.response_format",
    "output_config": "config.response_format and config.reasoning",
    "reasoning_effort": "config.reasoning.effort",
    "thinking": "config.reasoning.budget_tokens",
    "user": "metadata.end_user_id",
}
_ANTHROPIC_CONTRACT_FIELDS = {**_CONTRACT_FIELDS, "metadata": "metadata.end_user_id"}


def check_provider_options(
    options: ProviderOptions | None, errors: ViolationCollector, path: str = "provider_options"
) -> None:
    if options is None:
        return
    for kind, section in options.given().items():
        contract = _ANTHROPIC_CONTRACT_FIELDS if kind is ProviderKind.ANTHROPIC else _CONTRACT_FIELDS
        allowed = ALLOW_LISTS[kind]
        for name, value in section.items():
            where = f"{path}.{kind.value}.{name[:64]}"
            check = allowed.get(name)
            if check is not None:
                check(value, errors, where)
            elif name in contract:
                errors.add(where, f"is set by {contract[name]}, not passed through")
            else:
                errors.add(where, f"is not a parameter passed to {kind.value}; allowed: {', '.join(sorted(allowed))}")


def check_options_served(
    options: ProviderOptions | None,
    providers: Iterable[ProviderKind],
    served_by: str,
    errors: ViolationCollector,
    path: str = "provider_options",
) -> None:
    """Refuses a section for a provider none of the model's deployments use:
    those parameters would silently do nothing. `served_by` names the
    model(s) in the message: "model 'fast'"."""
    if options is None:
        return
    served = set(providers)
    for kind in options.given():
        if kind not in served:
            errors.add(f"{path}.{kind.value}", f"{served_by} has no {kind.value} deployment to pass them to")


def wire_value(value: Any) -> Any:
    """A value from the request as the provider's JSON: a protobuf Struct has
    only doubles, so whole numbers go back to integers (a token id's bias is
    an integer on the wire)."""
    if type(value) is float and value.is_integer():
        return int(value)
    if type(value) is dict:
        return {key: wire_value(item) for key, item in value.items()}
    if type(value) is list:
        return [wire_value(item) for item in value]
    return value
