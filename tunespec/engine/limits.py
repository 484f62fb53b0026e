"""The API's size and range limits on requests, and the checks of a parsed JSON body.

Bodies are capped before they are read (Content-Length, else while streaming): a CreateTunedModel
request carries at most 4 MiB of examples (compact UTF-8 JSON, as `datasets.payload_size` counts
them; the raw body may be larger, since clients escape non-ASCII text), any other request 1 MiB.
A parsed body nests at most 100 levels (protobuf's JSON parser limit) and holds no lone UTF-16
surrogates; integers are int32, floats finite.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 100
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
FLOAT32_MAX = 3.4028234663852886e38
MAX_EXAMPLES_BYTES = 4 * 2**20  # Google's 4 MB request limit, read as MiB like the runner does
CREATE_BODY_LIMIT = 16 * 2**20  # the examples' 4 MiB even when every character is \u-escaped
BODY_LIMIT = 2**20  # generation (40,000 characters of prompt), PATCH, cancel
DRAIN_LIMIT = 64 * 2**20  # bytes of a too-large body read and dropped so the client sees the 413
MAX_PROMPT_CHARS = 40_000  # a prompt, as a tuning example's text_input


def too_large_message(limit: int) -> str:
    return f"Request payload size exceeds the limit: {limit} bytes."


def _shown(key: str) -> str:
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


def _lone_surrogate(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"U+{ord(text[exc.start]):04X}"
    return None


def tree_problem(value: Any) -> tuple[str, str] | None:
    """(field, message) for the first thing Google's JSON parser would refuse in a parsed body:
    nesting deeper than MAX_DEPTH, a lone surrogate in a string or a key. Iterative: any depth."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, str):
            bad = _lone_surrogate(node)
            if bad:
                return path, (f"Invalid JSON payload received. Invalid string at '{path}': "
                              f"lone UTF-16 surrogate {bad} is not valid Unicode.")
            continue
        if not isinstance(node, (dict, list)):
            continue
        if depth >= MAX_DEPTH:
            return path, (f"Invalid JSON payload received. Nesting at '{path}' exceeds the limit "
                          f"of {MAX_DEPTH} levels.")
        if isinstance(node, dict):
            for key, sub in node.items():
                at = f"{path}.{_shown(key)}" if path else _shown(key)
                bad = _lone_surrogate(key)
                if bad:
                    return at, (f"Invalid JSON payload received. Invalid name at '{at}': "
                                f"lone UTF-16 surrogate {bad} is not valid Unicode.")
                stack.append((sub, at, depth + 1))
        else:
            stack.extend((sub, f"{path}[{i}]", depth + 1) for i, sub in enumerate(node))
    return None


def examples_bytes(examples: list[tuple[str, str]]) -> int:
    """Bytes of the examples as compact UTF-8 JSON (the measure of the runner's 4 MiB check)."""
    body = [{"textInput": i, "output": o} for i, o in examples]
    return len(json.dumps({"examples": {"examples": body}}, ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8"))
