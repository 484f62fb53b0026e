"""`judge: RUBRIC`: a model named in the spec (`evaluation.judge_model`) grades the output.

The judge is asked for a verdict, PASS or FAIL, on the first line of its answer; "yes"/"no" and a
"score: N/10" are read too. An answer with no verdict fails and says what the judge wrote. How good
the grading is depends on the judge: a small model (the engine's 135M SmolLM2) is a weak judge.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tunespec.scoring import Score

TEMPLATE = """You are grading an answer against a rubric.
Rubric: {rubric}
Question: {question}
Answer: {answer}
Does the answer satisfy the rubric? Reply with PASS or FAIL on the first line, then one sentence why."""

_VERDICT = re.compile(r"\b(pass|passes|passed|fail|fails|failed|yes|no)\b", re.I)
_SCORE = re.compile(r"\bscore\W{0,3}(\d+(?:\.\d+)?)\s*(?:/\s*(\d+))?", re.I)


def grading_prompt(rubric: str, question: str, answer: str) -> str:
    return TEMPLATE.format(rubric=rubric.strip(), question=question.strip(), answer=answer.strip())


def verdict(text: str) -> float | None:
    """The judge's answer as a score: 1.0 (pass), 0.0 (fail), a `score: N/10` scaled, or None."""
    found = _SCORE.search(text)
    if found:
        top = float(found.group(2) or 10)
        return max(0.0, min(1.0, float(found.group(1)) / top)) if top else None
    first = _VERDICT.search(text)
    if first is None:
        return None
    return 1.0 if first.group(1).lower() in ("pass", "passes", "passed", "yes") else 0.0


def score_judge(
    output: str, rubric: str, question: str, ask: Callable[[str], str] | None, model: str | None
) -> Score:
    """Ask the judge; a service error or an answer without a verdict is a failing score that says so."""
    if ask is None or not model:
        return Score(0.0, "no judge: set evaluation.judge_model")
    try:
        answer = ask(grading_prompt(rubric, question, output))
    except Exception as exc:
        return Score(0.0, f"the judge {model} could not answer: {exc}", {"judge": model})
    details: dict[str, Any] = {"judge": model, "judge_output": answer}
    value = verdict(answer)
    if value is None:
        return Score(0.0, f"the judge {model} gave no verdict: {answer.strip()[:200]!r}", details)
    return Score(value, "" if value >= 0.5 else f"the judge {model} says: {answer.strip()[:200]}", details)
