"""JSON outputs: does the output parse (is_json), and does it match a JSON Schema (json_schema)."""

from __future__ import annotations

import json
import re
from typing import Any

from tunespec.scoring import Score

_FENCE = re.compile(r"^```(?:json)?\s*\n(.*)\n```$", re.S)


def parse_output(output: str) -> tuple[Any, str]:
    """(value, "") when the output (optionally in a ```json fence) is JSON, else (None, why not)."""
    text = output.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        return json.loads(text), ""
    except ValueError as exc:
        return None, f"output is not JSON: {exc}"


def schema_of(value: Any) -> dict[str, Any]:
    """A json_schema assertion's schema: a mapping, or (from a prompts file) its JSON text."""
    return json.loads(value) if isinstance(value, str) else dict(value)


def schema_problem(value: Any) -> str:
    """Why `value` is not a usable JSON Schema; "" when it is one."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema_of(value))
    except ValueError as exc:
        return f"not JSON: {exc}"
    except SchemaError as exc:
        return f"not a valid JSON Schema: {exc.message}"
    return ""


def score_is_json(output: str) -> Score:
    _, why = parse_output(output)
    return Score(0.0 if why else 1.0, why)


def score_json_schema(output: str, schema: Any) -> Score:
    from jsonschema import Draft202012Validator

    value, why = parse_output(output)
    if why:
        return Score(0.0, why)
    try:
        validator = Draft202012Validator(schema_of(schema))
    except ValueError as exc:
        return Score(0.0, f"json_schema is not JSON: {exc}")
    errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.path])
    if not errors:
        return Score(1.0)
    first = errors[0]
    where = "/".join(str(p) for p in first.absolute_path) or "the top level"
    return Score(
        0.0, f"output does not match the schema at {where}: {first.message}", {"errors": len(errors)}
    )
