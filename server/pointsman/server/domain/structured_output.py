"""Structured output: the response format's checks, up front (a schema that
is not JSON Schema) and on the answer (is it the JSON that was asked for)."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError

from .chat import ResponseFormat, ResponseFormatType
from .errors import ViolationCollector

_SCHEMA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# What OpenAI calls a schema with no name; Anthropic takes none.
DEFAULT_SCHEMA_NAME = "answer"


def _validator_class(schema: dict[str, Any]) -> Any:
    # The dialect the schema names in `$schema`, else the current one.
    return jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)


def check_response_format(response_format: ResponseFormat | None, errors: ViolationCollector, path: str) -> None:
    if response_format is None or response_format.type is not ResponseFormatType.JSON_SCHEMA:
        return
    name = response_format.schema_name
    if name and _SCHEMA_NAME.fullmatch(name) is None:
        errors.add(f"{path}.schema_name", "must be 1 to 64 letters, digits, underscores or dashes")
    schema = response_format.schema
    if not schema:
        errors.add(f"{path}.schema", "is required with RESPONSE_FORMAT_TYPE_JSON_SCHEMA")
        return
    try:
        _validator_class(schema).check_schema(schema)
    except SchemaError as error:
        place = "/".join(str(p) for p in error.absolute_path) or "(the schema)"
        errors.add(f"{path}.schema", f"is not valid JSON Schema: at {place}: {error.message}"[:300])


def answer_is_valid(response_format: ResponseFormat, text: str) -> bool:
    """Whether the answer's text is the JSON asked for: an object for
    JSON_OBJECT, an instance of the schema for JSON_SCHEMA. The schema passed
    `check_response_format`; none of its references are fetched."""
    try:
        value = json.loads(text)
    except ValueError:
        return False
    if response_format.type is ResponseFormatType.JSON_OBJECT:
        return isinstance(value, dict)
    schema = response_format.schema
    return bool(_validator_class(schema)(schema).is_valid(value))
