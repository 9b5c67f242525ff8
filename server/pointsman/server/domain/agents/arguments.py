"""A tool call's arguments checked against the tool's input schema."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError, best_match


def parse_arguments(arguments_json: str) -> tuple[dict[str, Any] | None, str]:
    """The arguments as an object, or None and what is wrong with them."""
    try:
        arguments = json.loads(arguments_json) if arguments_json.strip() else {}
    except ValueError:
        return None, "the arguments are not valid JSON"
    if not isinstance(arguments, dict):
        return None, "the arguments must be a JSON object"
    return arguments, ""


def schema_problem(schema: dict[str, Any], arguments: dict[str, Any]) -> str:
    """What in `arguments` breaks `schema` ("" if nothing), naming the place.
    A schema the checker cannot read is the tool server's business: not checked."""
    if not schema:
        return ""
    try:
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
    except SchemaError:
        return ""
    error = best_match(validator_class(schema).iter_errors(arguments))
    if error is None:
        return ""
    place = "/".join(str(p) for p in error.absolute_path) or "(the arguments)"
    return f"{place}: {error.message}"[:500]
