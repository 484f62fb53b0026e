"""Evaluation: run each eval prompt on a model, check the assertions, compute pass rates.

Each call returns `candidate_count` outputs and a prompt is called `repeat` times; every output is a
trial that passes when all the prompt's assertions hold. A prompt's pass rate is its passing trials
over its trials; the suite's pass rate is the mean of the prompts' rates, compared with `threshold`.
Calls run concurrently on a bounded thread pool.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from tunespec.errors import TunespecError
from tunespec.spec import Assertion, EvalPrompt, Evaluation


@dataclass
class AssertionResult:
    label: str
    value: Any
    passed: bool
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"type": self.label, "value": self.value, "passed": self.passed, "message": self.message}


@dataclass
class Trial:
    output: str | None
    assertions: list[AssertionResult] = field(default_factory=list)
    error: str | None = None  # a service error instead of an output

    @property
    def passed(self) -> bool:
        return self.error is None and all(a.passed for a in self.assertions)

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "passed": self.passed,
            "error": self.error,
            "assertions": [a.to_json() for a in self.assertions],
        }


@dataclass
class PromptResult:
    prompt: EvalPrompt
    index: int
    trials: list[Trial] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.prompt.name or f"prompt {self.index + 1}: {self.prompt.input[:40]}"

    @property
    def passes(self) -> int:
        return sum(t.passed for t in self.trials)

    @property
    def pass_rate(self) -> float:
        return self.passes / len(self.trials) if self.trials else 0.0

    @property
    def errors(self) -> list[str]:
        return [t.error for t in self.trials if t.error]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input": self.prompt.input,
            "repeat": self.prompt.repeat,
            "source": self.prompt.source,
            "line": self.prompt.line,
            "assertions": [{"type": a.label, "value": _plain(a.value)} for a in self.prompt.assertions],
            "pass_rate": self.pass_rate,
            "passes": self.passes,
            "trials": [t.to_json() for t in self.trials],
            "seconds": round(self.seconds, 3),
        }


@dataclass
class EvalResult:
    model: str
    prompts: list[PromptResult]
    threshold: float
    seconds: float = 0.0

    @property
    def pass_rate(self) -> float:
        return sum(p.pass_rate for p in self.prompts) / len(self.prompts) if self.prompts else 1.0

    @property
    def passed(self) -> bool:
        return self.pass_rate >= self.threshold - 1e-9

    @property
    def errors(self) -> list[str]:
        return [e for p in self.prompts for e in p.errors]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "pass_rate": self.pass_rate,
            "threshold": self.threshold,
            "passed": self.passed,
            "seconds": round(self.seconds, 3),
            "prompts": [p.to_json() for p in self.prompts],
        }


_VERBS = {
    "equals": "equal",
    "contains": "contain",
    "icontains": "contain (ignoring case)",
    "starts_with": "start with",
    "regex": "match",
    "one_of": "be one of",
}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def check(assertion: Assertion, output: str) -> AssertionResult:
    """One assertion on one output. equals / one_of / starts_with ignore surrounding whitespace."""
    kind, value = assertion.kind, assertion.value
    text = output.strip()
    if kind == "equals":
        ok = text == str(value).strip()
    elif kind == "contains":
        ok = str(value) in output
    elif kind == "icontains":
        ok = str(value).lower() in output.lower()
    elif kind == "starts_with":
        ok = text.startswith(str(value))
    elif kind == "one_of":
        options = [value] if isinstance(value, str) else list(value)
        ok = text in [str(v).strip() for v in options]
    elif kind == "regex":
        try:
            ok = re.search(str(value), output) is not None
        except re.error as exc:
            return AssertionResult(assertion.label, _plain(value), False, f"invalid regex: {exc}")
    else:
        return AssertionResult(assertion.label, _plain(value), False, f"unknown assertion {kind!r}")
    if assertion.negate:
        ok = not ok
    negated = "not " if assertion.negate else ""
    message = (
        ""
        if ok
        else f"expected output {negated}to {_VERBS.get(kind, kind)} {_plain(value)!r}, got {output!r}"
    )
    return AssertionResult(assertion.label, _plain(value), ok, message)


class Generator(Protocol):
    """Anything that answers a prompt with candidate texts (a `TuningService`, a `TuningClient`)."""

    def generate(self, model: str, prompt: str, **options: Any) -> list[str]: ...


def evaluate(
    client: Generator, model: str, evaluation: Evaluation, *, temperature: float | None = None
) -> EvalResult:
    """Run every prompt of `evaluation` on `model` (a `tunedModels/...` or `models/...` name)."""
    started = time.monotonic()
    results = [PromptResult(p, i) for i, p in enumerate(evaluation.prompts)]
    calls = [r for r in results for _ in range(max(1, r.prompt.repeat))]
    temp = evaluation.temperature if evaluation.temperature is not None else temperature

    def run(result: PromptResult) -> tuple[PromptResult, list[Trial], float]:
        t0 = time.monotonic()
        try:
            outputs = client.generate(
                model,
                result.prompt.input,
                candidate_count=evaluation.candidate_count,
                temperature=temp,
                max_output_tokens=evaluation.max_output_tokens,
            )
        except TunespecError as exc:
            trials = [Trial(None, error=str(exc))]
        else:
            trials = [Trial(o, [check(a, o) for a in result.prompt.assertions]) for o in outputs]
            if not trials:
                trials = [Trial("", [AssertionResult("output", None, False, "the model returned no output")])]
        return result, trials, time.monotonic() - t0

    workers = max(1, min(evaluation.concurrency, len(calls) or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tunespec-eval") as pool:
        for result, trials, seconds in pool.map(run, calls):
            result.trials.extend(trials)
            result.seconds += seconds
    return EvalResult(model, results, evaluation.threshold, time.monotonic() - started)
