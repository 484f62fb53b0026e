"""The tuning-job JSON Schema, and its errors as located messages with a did-you-mean."""

from __future__ import annotations

import difflib
import json
import re
from functools import lru_cache
from typing import Any

from tunespec.errors import describe
from tunespec.spec.locations import KeyPath, LocatedDoc, Problems
from tunespec.tuning_api import snake as camel_to_snake


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The tuning-job JSON Schema (schemas/tuning-job.schema.json)."""
    from importlib import resources

    text = (resources.files("tunespec") / "schemas" / "tuning-job.schema.json").read_text("utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema())


def check_schema(doc: LocatedDoc, problems: Problems) -> None:
    """Unknown keys (with a did-you-mean) and every schema violation, each at its key."""
    if not isinstance(doc.data, dict):
        problems.add(doc, (), f"a spec must be a mapping of keys to values, got {describe(doc.data)}")
        return
    _check_unknown_keys(doc.data, schema(), (), doc, problems)
    for error in _validator().iter_errors(doc.data):
        for leaf in _leaves(error):
            described = _schema_message(leaf)
            if doc.incomplete and leaf.validator == "required":
                continue
            if described is not None and tuple(leaf.absolute_path) not in doc.unresolved:
                problems.add(doc, tuple(leaf.absolute_path), *described)


# ---- unknown keys ---------------------------------------------------------------------------------


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = schema()["$defs"][ref.rsplit("/", 1)[1]]
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


@lru_cache(maxsize=1)
def _key_homes() -> dict[str, list[str]]:
    """property name -> the key paths of the objects that allow it (for 'belongs under' hints)."""
    homes: dict[str, list[str]] = {}

    def walk(node: dict[str, Any], where: str) -> None:
        node = _resolve(node)
        for key, sub in node.get("properties", {}).items():
            homes.setdefault(key, []).append(where)
            walk(sub, f"{where}.{key}" if where else key)
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{where}[]")

    walk(schema(), "")
    return homes


def _camel_to_snake(name: str) -> str:
    return camel_to_snake(name).replace("-", "_").lower()


def unknown_key_hint(key: str, allowed: list[str], here: str) -> str:
    """The fix for an unknown `key` in the object at `here`: a snake_case or near spelling, the
    object the key belongs under, or the keys allowed."""
    snake = _camel_to_snake(key)
    if snake in allowed:
        return f"did you mean '{snake}'? keys are snake_case"
    close = difflib.get_close_matches(snake, allowed, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    homes = [h for h in _key_homes().get(snake, []) if h != here]
    if homes:
        return f"'{snake}' belongs under '{homes[0].replace('[]', '[...]')}'" if homes[0] else \
            f"'{snake}' is a top-level key"
    return "expected one of: " + ", ".join(allowed)


def _check_unknown_keys(data: Any, node: dict[str, Any], path: KeyPath, doc: LocatedDoc, problems: Problems,
                        here: str = "") -> None:
    node = _resolve(node)
    if isinstance(data, dict) and "properties" in node:
        allowed = list(node["properties"])
        for key, value in data.items():
            if key not in allowed:
                problems.add(doc, (*path, key), f"unknown key '{key}'", unknown_key_hint(key, allowed, here),
                             key=True)
            else:
                _check_unknown_keys(value, node["properties"][key], (*path, key), doc, problems,
                                    f"{here}.{key}" if here else key)
    elif isinstance(data, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(data):
            _check_unknown_keys(item, node["items"], (*path, i), doc, problems, f"{here}[]")


# ---- schema errors as messages ---------------------------------------------------------------------

_TYPE_NAMES = {"string": "a string", "integer": "an integer", "number": "a number",
               "boolean": "true or false", "object": "a mapping of keys", "array": "a list",
               "null": "nothing"}


def _schema_message(error: Any) -> tuple[str, str] | None:
    """(message, hint) for a jsonschema error; None for those reported elsewhere."""
    kw, value, sub = error.validator, error.instance, error.schema
    hint = sub.get("x-hint", "") if kw == "maxLength" else ""
    if kw in ("additionalProperties", "not"):
        return None
    if kw == "type":
        expected = error.validator_value
        names = [expected] if isinstance(expected, str) else list(expected)
        message = f"expected {' or '.join(_TYPE_NAMES.get(n, n) for n in names)}, got {describe(value)}"
        if "string" in names and isinstance(value, (int, float)) and not isinstance(value, bool):
            hint = hint or f'quote it to keep it text: "{value}"'
        numeric = {"number", "integer"} & set(names)
        if numeric and isinstance(value, str) and re.fullmatch(r"[-+0-9.eE_]+", value):
            hint = hint or "remove the quotes"
        return message, hint
    if kw == "enum":
        options = error.validator_value
        close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1, cutoff=0.5)
        return (f"expected one of {', '.join(repr(o) for o in options)}, got {describe(value)}",
                hint or (f"did you mean {close[0]!r}?" if close else ""))
    if kw in ("anyOf", "oneOf", "pattern"):
        expected = sub.get("x-expected") or f"text matching {sub.get('pattern', '')}"
        return f"expected {expected}, got {describe(value)}", hint
    bounds = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "greater than",
              "exclusiveMaximum": "less than"}
    if kw in bounds:
        return f"must be {bounds[kw]} {error.validator_value}, got {value}", hint
    if kw == "maxLength":
        return f"must be at most {error.validator_value} characters, got {len(value)}", hint
    if kw == "minLength":
        return "must not be empty", hint
    if kw == "minItems":
        return f"must have at least {error.validator_value} item(s)", hint
    if kw == "uniqueItems":
        return "items must be unique", hint
    if kw == "required":
        missing = [k for k in error.validator_value if isinstance(value, dict) and k not in value]
        return f"missing required key{'s' if len(missing) > 1 else ''} " + \
            ", ".join(f"'{k}'" for k in missing), hint
    return error.message, hint


def _leaves(error: Any) -> list[Any]:
    """The specific errors under a combinator error (anyOf over enum/pattern is reported as a whole)."""
    if error.validator in ("anyOf", "oneOf") and "x-expected" in error.schema:
        return [error]
    if error.context:
        return [leaf for sub in error.context for leaf in _leaves(sub)]
    return [error]
