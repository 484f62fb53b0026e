"""Held-out data: `dataset.validation_split`'s examples and `evaluation.dataset`'s rows, scored.

They run as a second suite beside the written prompts, each example a prompt whose one assertion
(`evaluation.score_with`, default equals) compares the answer with the expected output; that
suite's pass rate is the job's accuracy (`EvalResult.accuracy`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from tunespec.evaluate import EvalResult, Generator, evaluate
from tunespec.spec import EvalPrompt, Evaluation
from tunespec.spec.model import scored_prompt


def validation_prompts(evaluation: Evaluation, held_out: Sequence[Any]) -> tuple[EvalPrompt, ...]:
    """The held-out examples (then the evaluation dataset's) as prompts scored with `score_with`."""
    held = tuple(
        scored_prompt(e.text_input, e.output, evaluation.score_with, "held_out", None, None, f"held-out {i}")
        for i, e in enumerate(held_out, 1)
    )
    return held + evaluation.examples


def has_work(evaluation: Evaluation | None, held_out: Sequence[Any]) -> bool:
    """Whether there is anything to evaluate: written prompts or scored examples."""
    return evaluation is not None and bool(evaluation.prompts or evaluation.examples or held_out)


def evaluate_job(
    client: Generator,
    model: str,
    evaluation: Evaluation,
    held_out: Sequence[Any] = (),
    *,
    temperature: float | None = None,
) -> EvalResult:
    """The prompts' evaluation of `model`, with the scored examples' suite as its `validation`."""
    result = evaluate(client, model, evaluation, temperature=temperature)
    result.score_threshold = evaluation.score_threshold
    result.accuracy_threshold = evaluation.accuracy_threshold
    prompts = validation_prompts(evaluation, held_out)
    if prompts:
        suite = dataclasses.replace(
            evaluation, prompts=prompts, threshold=0.0, candidate_count=1, examples=()
        )
        result.validation = evaluate(client, model, suite, temperature=temperature)
        result.seconds += result.validation.seconds
    return result
