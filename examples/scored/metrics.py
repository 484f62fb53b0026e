"""A team's own metrics for the scored-evaluation example (`python: metrics:NAME` in job.yaml)."""

from __future__ import annotations

import re
from typing import Any


def is_number(output: str, prompt: dict[str, Any]) -> bool:
    """The answer is a number, in digits (with optional sign and thousands commas) or in words."""
    text = output.strip()
    return bool(re.fullmatch(r"-?\d{1,3}(,\d{3})*|-?\d+|[a-z]+( [a-z]+)*", text))
