"""Rules of Google's tuning API that the client side and the local engine both obey.

One home for each: the tuned-model id's shape and length, the step arithmetic behind `totalSteps`,
and the mapping between the wire's lowerCamelCase and the spec's snake_case field names.
Light on purpose: imported by the CLI and by the engine alike.
"""

from __future__ import annotations

import re
from typing import Any

TUNED_MODEL_ID_MAX_LEN = 40
TUNED_MODEL_ID_RE = re.compile(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
TUNED_MODEL_ID_RULE = (
    "[a-z]([a-z0-9-]{0,38}[a-z0-9])? (1-40 characters, lowercase letters, digits and '-', "
    "starting with a letter)"
)


def valid_tuned_model_id(value: str) -> bool:
    """Whether `value` can be a `tunedModelId`."""
    return bool(TUNED_MODEL_ID_RE.match(value))


def total_steps(n: int, epochs: int, batch: int) -> int:
    """Training steps the service runs (`totalSteps`): ceil(examples x epochs / batch_size)."""
    if n < 0 or epochs < 1 or batch < 1:
        raise ValueError(f"need n >= 0, epochs >= 1 and batch >= 1, got {n}, {epochs}, {batch}")
    return -(-n * epochs // batch)  # exact integer ceil


_CAMEL_RE = re.compile(r"(?<=[a-z0-9])([A-Z])")


def snake(key: str) -> str:
    """`textInput` -> `text_input` (snake_case passes through)."""
    return _CAMEL_RE.sub(lambda m: "_" + m.group(1).lower(), key)


def to_snake(value: Any) -> Any:
    """Recursively snake_case every object key of a JSON value (`@type` kept)."""
    if isinstance(value, dict):
        return {(k if k.startswith("@") else snake(k)): to_snake(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_snake(v) for v in value]
    return value
