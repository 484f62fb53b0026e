"""Scored assertions: each family in its own module, each giving a `Score` in [0, 1].

text        levenshtein and rouge_l against a reference (pure Python)
jsonish     is_json and json_schema (jsonschema, a core dependency)
custom      python: a team's own metric, `module:function` beside the spec
embeddings  similar: cosine similarity of all-MiniLM-L6-v2 sentence embeddings (the `eval` extra)
judge       judge: a rubric graded by a model the spec names, on the job's target
extras      which extra a kind needs, and whether it is installed
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Score:
    """How well one output did on one scored assertion."""

    value: float  # 0..1
    message: str = ""  # why it failed (or what went wrong), "" when there is nothing to say
    details: dict[str, Any] = field(default_factory=dict)  # e.g. the judge's answer


@dataclass(frozen=True)
class Context:
    """What a scored check may need beyond the output: the prompt and a way to ask the judge."""

    prompt: Any = None  # the EvalPrompt being checked
    judge: Callable[[str], str] | None = None  # sends a grading prompt to the judge model, returns its text
    judge_model: str | None = None  # the judge's name, for messages
