"""The chat domain: requests, and the events an answer is streamed as."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Role(enum.Enum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class FinishReason(enum.Enum):
    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"


class ProviderKind(enum.Enum):
    BUILTIN = "builtin"
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments_json: str


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


class ImageDetail(enum.Enum):
    AUTO = "auto"
    LOW = "low"
    HIGH = "high"
    ORIGINAL = "original"


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image by https `url`, or inline `data` of type `mime_type`
    (checked by domain/images.py)."""

    url: str = ""
    data: bytes = b""
    mime_type: str = ""
    detail: ImageDetail | None = None


ContentPart = TextPart | ImagePart


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str
    name: str = ""
    tool_call_id: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    # More content after `content` (its first text part, when set): text, and images in user messages.
    parts: tuple[ContentPart, ...] = ()

    @property
    def text(self) -> str:
        """All of the message's text: `content` and its text parts, one per line."""
        if not self.parts:
            return self.content
        texts = [self.content] if self.content else []
        texts.extend(p.text for p in self.parts if type(p) is TextPart)
        return "\n".join(texts)

    @property
    def images(self) -> tuple[ImagePart, ...]:
        return tuple(p for p in self.parts if type(p) is ImagePart) if self.parts else ()


class ResponseFormatType(enum.Enum):
    TEXT = "text"
    JSON_OBJECT = "json_object"
    JSON_SCHEMA = "json_schema"


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """The shape the answer must take. `schema_name`, `schema` and `strict`
    are read only with JSON_SCHEMA."""

    type: ResponseFormatType = ResponseFormatType.TEXT
    schema_name: str = ""
    schema: dict[str, Any] = field(default_factory=dict)
    strict: bool = False

    @property
    def wants_json(self) -> bool:
        return self.type is not ResponseFormatType.TEXT


class ToolChoiceMode(enum.Enum):
    AUTO = "auto"
    NONE = "none"
    REQUIRED = "required"
    TOOL = "tool"  # the tool named in ToolChoice.tool_name


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: ToolChoiceMode
    tool_name: str = ""  # read only with ToolChoiceMode.TOOL


class ReasoningEffort(enum.Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class Reasoning:
    effort: ReasoningEffort | None = None
    budget_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class GenerationConfig:
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    tools: tuple[Tool, ...] = ()
    response_format: ResponseFormat | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    reasoning: Reasoning | None = None


@dataclass(frozen=True, slots=True)
class RequestMetadata:
    """Who a call is for and how its spend is attributed; never changes the answer."""

    end_user_id: str = ""
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProviderOptions:
    """Parameters passed to a provider as they are, per provider, checked
    against its allow-list (domain/provider_options.py)."""

    openai: dict[str, Any] = field(default_factory=dict)
    anthropic: dict[str, Any] = field(default_factory=dict)

    def given(self) -> dict[ProviderKind, dict[str, Any]]:
        """The sections that hold parameters."""
        sections = {ProviderKind.OPENAI: self.openai, ProviderKind.ANTHROPIC: self.anthropic}
        return {kind: section for kind, section in sections.items() if section}


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    config: GenerationConfig = field(default_factory=GenerationConfig)
    # The request's say over the response cache: skip it, or keep the answer this long.
    cache_bypass: bool = False
    cache_ttl_seconds: float | None = None
    metadata: RequestMetadata | None = None
    provider_options: ProviderOptions | None = None


@dataclass(frozen=True, slots=True)
class Price:
    """What a deployment charges, in US dollars per million tokens."""

    input_per_million: float = 0.0
    output_per_million: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_million + output_tokens * self.output_per_million) / 1_000_000


@dataclass(frozen=True, slots=True)
class Deployment:
    """One concrete place a model alias is served from."""

    name: str
    provider: ProviderKind
    model: str
    endpoint: str = ""
    weight: int = 1
    # Longest wait for the first event before falling back.
    timeout_seconds: float = 60.0
    # From the routes file; None: its calls are not costed.
    price: Price | None = None
    # Whether the model takes images (the routes file's `vision`); requests with images go only to those that do.
    vision: bool = False


# Events of a streamed answer, in the order a client sees them.


class RouteDecision(enum.Enum):
    """How a router alias put a turn in a class (domain/classify.py)."""

    KEYWORD = "keyword"
    EMBEDDING = "embedding"
    CLASSIFIER_MODEL = "classifier_model"
    # The classifier model was asked and gave no usable class: the embeddings' choice stood.
    CLASSIFIER_FALLBACK = "classifier_fallback"


@dataclass(frozen=True, slots=True)
class Start:
    request_id: str
    model: str
    deployment: Deployment
    cached: bool = False
    # With `cached`: the answer was to another question that means the same
    # (the semantic cache), not to this very request (the exact cache).
    semantic: bool = False
    # Through a router alias (domain/classify.py): the class chosen and the
    # alias it sent the call to; `model` stays the alias the client asked for.
    route_class: str = ""
    routed_model: str = ""
    route_decision: RouteDecision | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """Reasoning text: never part of the answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    index: int
    id: str
    name: str
    arguments_delta: str


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int
    estimated: bool = False  # the upstream sent no counts: see `estimate_usage`
    cost_usd: float = 0.0  # at the deployment's price; set by the orchestrator
    cached_input_tokens: int = 0  # of input_tokens: read from the provider's prompt cache
    reasoning_tokens: int = 0  # of output_tokens: spent reasoning

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Finish:
    reason: FinishReason
    time_to_first_token: float | None = None  # seconds
    total: float | None = None  # seconds
    # With a JSON response format: whether the answer is JSON as asked; set by the orchestrator.
    schema_valid: bool | None = None


# What a provider yields: the answer's own events, without gateway framing.
ProviderEvent = TextDelta | ToolCallDelta | ReasoningDelta | Usage | Finish

# The most characters one streamed delta carries (at most 64 KiB of UTF-8):
# an upstream may send megabytes in one chunk, and one gRPC message over the
# server's size limit would end the stream.
MAX_DELTA_CHARS = 16_384


def split_delta(event: ProviderEvent) -> list[ProviderEvent]:
    """The event as deltas of at most MAX_DELTA_CHARS characters each (code
    points: a cut never splits a character); other events as they are. A
    tool call's id and name stay on its first piece, as upstreams send them."""
    if type(event) is TextDelta and len(event.text) > MAX_DELTA_CHARS:
        text = event.text
        return [TextDelta(text[i : i + MAX_DELTA_CHARS]) for i in range(0, len(text), MAX_DELTA_CHARS)]
    if type(event) is ToolCallDelta and len(event.arguments_delta) > MAX_DELTA_CHARS:
        arguments = event.arguments_delta
        pieces: list[ProviderEvent] = [ToolCallDelta(event.index, event.id, event.name, arguments[:MAX_DELTA_CHARS])]
        pieces.extend(
            ToolCallDelta(event.index, "", "", arguments[i : i + MAX_DELTA_CHARS])
            for i in range(MAX_DELTA_CHARS, len(arguments), MAX_DELTA_CHARS)
        )
        return pieces
    return [event]
