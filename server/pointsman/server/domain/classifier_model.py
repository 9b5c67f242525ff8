"""The question a router's classifier model is asked, and how its answer is
read: a short prompt listing the classes, a few tokens at temperature 0, and
an answer taken only when it is plainly one class name (or "none"). Anything
else is no answer, and the embeddings' choice stands: a chatty or confused
model must not send a call somewhere arbitrary."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .chat import ChatRequest, GenerationConfig, Message, Role
from .classify import NO_CLASS, ClassifierSpec, RouteClass

# Examples standing in for a class without a description.
_EXAMPLES_PER_CLASS = 2
_DESCRIPTION_CHARS = 200
# What a model may wrap a bare name in: quotes, backticks, a full stop, asterisks.
_WRAPPING = " \t\r\n\"'`*.:;!,()[]{}<>"
# A label some models put first ("Class: code", "Answer: math").
_LABEL = re.compile(r"^(?:the\s+)?(?:class|category|answer|label)\s*(?:is)?\s*[:=-]?\s*", re.IGNORECASE)


def classifier_request(spec: ClassifierSpec, classes: Sequence[RouteClass], text: str) -> ChatRequest:
    """The chat request that asks `spec.model` which of `classes` the text is
    in. One user message, no system message: some small models' chat
    templates (Gemma's) drop system messages, and the instructions with them."""
    lines = [
        "Which one of these classes is the message below in?",
        "",
    ]
    for cls in classes:
        about = cls.description or "; ".join(cls.examples[:_EXAMPLES_PER_CLASS])
        lines.append(f"- {cls.name}: {about[:_DESCRIPTION_CHARS]}")
    lines += [
        "",
        f"Reply with the class name only, or {NO_CLASS} if it is in none of them.",
        "",
        f"Message: {text}",
    ]
    return ChatRequest(
        spec.model,
        [Message(Role.USER, "\n".join(lines))],
        GenerationConfig(temperature=0.0, max_tokens=spec.max_tokens),
    )


def read_label(answer: str, classes: Sequence[RouteClass]) -> str | None:
    """The class the answer names (or NO_CLASS); None when it names none
    plainly. Case and wrapping punctuation are forgiven, nothing else."""
    lines = [line for line in answer.strip().splitlines() if line.strip()]
    if not lines:
        return None
    word = _LABEL.sub("", lines[0].strip(_WRAPPING)).strip(_WRAPPING).casefold()
    names = {cls.name.casefold(): cls.name for cls in classes}
    if word in names:
        return names[word]
    return NO_CLASS if word == NO_CLASS else None
