"""Evaluation: run each eval prompt on a model, check the assertions, compute pass rates.

Each call returns `candidate_count` outputs and a prompt is called `repeat` times; every output is a
trial that passes when all the prompt's assertions hold. A prompt's pass rate is its passing trials
over its trials; the suite's pass rate is the mean of the prompts' rates, compared with `threshold`.
Calls run concurrently on a bounded thread pool.

Every assertion also gives a score in [0, 1] (string checks 1 or 0, scored kinds their score; see
`tunespec.scoring`): a trial's score is the weighted mean of its assertions' scores, a prompt's the
mean of its trials', the suite's the mean of its prompts'; named metrics are averaged the same way.
Held-out and evaluation-dataset examples are a second suite (`validation`, see `tunespec.heldout`)
whose pass rate is the accuracy.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tunespec.errors import TunespecError
from tunespec.scoring import Context, Score
from tunespec.spec import Assertion, EvalPrompt, Evaluation
from tunespec.spec.model import SCORED_KINDS

REMOTE_CONCURRENCY = 4  # prompts in flight per model on Google's services (their quotas)
LOCAL_CONCURRENCY = 16  # on the local engine, which decodes them together


@dataclass
class AssertionResult:
    label: str
    value: Any
    passed: bool
    message: str = ""
    score: float | None = None  # None: 1 or 0, as it passed
    threshold: float | None = None  # the score at which a scored assertion passes
    weight: float = 1.0
    metric: str = ""  # the named metric it counts toward ("" : its label)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def value_score(self) -> float:
        return self.score if self.score is not None else float(self.passed)

    def to_json(self) -> dict[str, Any]:
        out = {
            "type": self.label,
            "value": self.value,
            "passed": self.passed,
            "message": self.message,
            "score": round(self.value_score, 4),
            "weight": self.weight,
            "metric": self.metric or self.label,
        }
        if self.threshold is not None:
            out["threshold"] = self.threshold
        if self.details:
            out["details"] = self.details
        return out


def weighted(pairs: list[tuple[float, float]]) -> float:
    """The weighted mean of (score, weight) pairs; the plain mean when every weight is 0."""
    total = sum(w for _, w in pairs)
    if total > 0:
        return sum(s * w for s, w in pairs) / total
    return sum(s for s, _ in pairs) / len(pairs) if pairs else 1.0


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _metrics(parts: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over the parts that have it."""
    names = sorted({name for part in parts for name in part})
    return {name: _mean([part[name] for part in parts if name in part]) for name in names}


@dataclass
class Trial:
    output: str | None
    assertions: list[AssertionResult] = field(default_factory=list)
    error: str | None = None  # a service error instead of an output

    @property
    def passed(self) -> bool:
        return self.error is None and all(a.passed for a in self.assertions)

    @property
    def score(self) -> float:
        """The weighted mean of its assertions' scores (0 for a service error)."""
        if self.error is not None:
            return 0.0
        return weighted([(a.value_score, a.weight) for a in self.assertions]) if self.assertions else 1.0

    @property
    def metrics(self) -> dict[str, float]:
        groups: dict[str, list[tuple[float, float]]] = {}
        for a in self.assertions:
            score = 0.0 if self.error else a.value_score
            groups.setdefault(a.metric or a.label, []).append((score, a.weight))
        return {name: weighted(pairs) for name, pairs in groups.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "passed": self.passed,
            "score": round(self.score, 4),
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

    @property
    def score(self) -> float:
        return _mean([t.score for t in self.trials])

    @property
    def metrics(self) -> dict[str, float]:
        answered = [t.metrics for t in self.trials if t.error is None]
        return _metrics(answered or [t.metrics for t in self.trials])

    def to_json(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "input": self.prompt.input,
            "repeat": self.prompt.repeat,
            "source": self.prompt.source,
            "line": self.prompt.line,
            "assertions": [_assertion_json(a) for a in self.prompt.assertions],
            "pass_rate": self.pass_rate,
            "passes": self.passes,
            "score": round(self.score, 4),
            "metrics": {k: round(v, 4) for k, v in self.metrics.items()},
            "trials": [t.to_json() for t in self.trials],
            "seconds": round(self.seconds, 3),
        }
        if self.prompt.group:
            out["group"] = self.prompt.group
            out["expected"] = self.prompt.expected
        return out


def _assertion_json(a: Assertion) -> dict[str, Any]:
    out: dict[str, Any] = {"type": a.label, "value": _plain(a.value)}
    if a.kind in SCORED_KINDS or a.threshold is not None:
        out["threshold"] = a.pass_at
    if a.weight != 1.0:
        out["weight"] = a.weight
    if a.metric:
        out["metric"] = a.metric
    return out


@dataclass
class EvalResult:
    model: str
    prompts: list[PromptResult]
    threshold: float
    seconds: float = 0.0
    score_threshold: float | None = None  # minimum weighted score
    accuracy_threshold: float | None = None  # minimum accuracy of `validation`
    validation: EvalResult | None = None  # held-out and evaluation-dataset examples

    @property
    def pass_rate(self) -> float:
        return sum(p.pass_rate for p in self.prompts) / len(self.prompts) if self.prompts else 1.0

    @property
    def score(self) -> float:
        return _mean([p.score for p in self.prompts]) if self.prompts else 1.0

    @property
    def metrics(self) -> dict[str, float]:
        return _metrics([p.metrics for p in self.prompts])

    @property
    def accuracy(self) -> float | None:
        """The share of held-out and evaluation-dataset examples answered right; None without any."""
        return self.validation.pass_rate if self.validation and self.validation.prompts else None

    @property
    def passed(self) -> bool:
        ok = self.pass_rate >= self.threshold - 1e-9
        if self.score_threshold is not None and self.prompts:
            ok = ok and self.score >= self.score_threshold - 1e-9
        if self.accuracy_threshold is not None and self.accuracy is not None:
            ok = ok and self.accuracy >= self.accuracy_threshold - 1e-9
        return ok

    def shortfall(self) -> str:
        """Which threshold besides the pass rate's was missed ("" when none was)."""
        if self.score_threshold is not None and self.prompts and self.score < self.score_threshold - 1e-9:
            return f"weighted score {self.score:.2f} is below the score_threshold {self.score_threshold:.2f}"
        accuracy, wanted = self.accuracy, self.accuracy_threshold
        if wanted is not None and accuracy is not None and accuracy < wanted - 1e-9:
            return f"held-out accuracy {accuracy:.0%} is below the accuracy_threshold {wanted:.0%}"
        return ""

    @property
    def errors(self) -> list[str]:
        own = [f"{p.name}: {e}" for p in self.prompts for e in p.errors]  # which prompt failed, first
        return own + (self.validation.errors if self.validation else [])

    def to_json(self) -> dict[str, Any]:
        out = {
            "model": self.model,
            "pass_rate": self.pass_rate,
            "threshold": self.threshold,
            "passed": self.passed,
            "score": round(self.score, 4),
            "score_threshold": self.score_threshold,
            "metrics": {k: round(v, 4) for k, v in self.metrics.items()},
            "seconds": round(self.seconds, 3),
            "prompts": [p.to_json() for p in self.prompts],
        }
        if self.validation is not None:
            out["accuracy"] = self.accuracy
            out["accuracy_threshold"] = self.accuracy_threshold
            out["validation"] = {**self.validation.to_json(), "groups": _groups(self.validation)}
        return out


def _groups(validation: EvalResult) -> dict[str, dict[str, Any]]:
    """Accuracy per source of scored examples: held_out (validation_split) and dataset."""
    out: dict[str, dict[str, Any]] = {}
    for group in ("held_out", "dataset"):
        prompts = [p for p in validation.prompts if p.prompt.group == group]
        if prompts:
            out[group] = {"count": len(prompts), "accuracy": _mean([p.pass_rate for p in prompts]),
                          "score": round(_mean([p.score for p in prompts]), 4)}
    return out


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


def check(assertion: Assertion, output: str, context: Context | None = None) -> AssertionResult:
    """One assertion on one output. equals / one_of / starts_with ignore surrounding whitespace."""
    kind, value = assertion.kind, assertion.value
    if kind in SCORED_KINDS:
        return _scored(assertion, output, context or Context())
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
    return AssertionResult(assertion.label, _plain(value), ok, message, weight=assertion.weight,
                           metric=assertion.metric or "")


def _scored(assertion: Assertion, output: str, context: Context) -> AssertionResult:
    """A scored assertion: its family's score, passing at the assertion's threshold."""
    kind, value = assertion.kind, assertion.value
    prompt = context.prompt
    if kind == "levenshtein":
        from tunespec.scoring.text import score_levenshtein

        score = score_levenshtein(output, str(value))
    elif kind == "rouge_l":
        from tunespec.scoring.text import score_rouge_l

        score = score_rouge_l(output, str(value))
    elif kind == "is_json":
        from tunespec.scoring.jsonish import score_is_json

        score = score_is_json(output)
    elif kind == "json_schema":
        from tunespec.scoring.jsonish import score_json_schema

        score = score_json_schema(output, value)
    elif kind == "similar":
        from tunespec.scoring.embeddings import score_similar

        score = score_similar(output, str(value))
    elif kind == "python":
        from tunespec.scoring.custom import score_python

        base_dir = assertion.base_dir
        if base_dir is None and prompt is not None and prompt.source:  # a prompts-file row
            base_dir = Path(prompt.source).resolve().parent
        fields = {"input": getattr(prompt, "input", None), "name": getattr(prompt, "name", None),
                  "expected": getattr(prompt, "expected", None), "group": getattr(prompt, "group", None)}
        score = score_python(output, str(value), base_dir, fields)
    else:  # judge
        from tunespec.scoring.judge import score_judge

        score = score_judge(output, str(value), getattr(prompt, "input", ""), context.judge,
                            context.judge_model)
    return _scored_result(assertion, score)


def _scored_result(assertion: Assertion, score: Score) -> AssertionResult:
    threshold = assertion.pass_at
    ok = score.value >= threshold - 1e-9
    message = score.message if not ok or score.message else ""
    if not ok and not message:
        message = f"{assertion.label} score {score.value:.2f} is below {threshold:.2f}"
    return AssertionResult(assertion.label, _plain(assertion.value), ok, message if not ok else "",
                           round(score.value, 4), threshold, assertion.weight, assertion.metric or "",
                           dict(score.details))


def context_for(client: Generator, evaluation: Evaluation, prompt: EvalPrompt) -> Context:
    """What the scored checks of `prompt` need: the prompt, and its judge on the same service."""
    judge_model = evaluation.judge_model

    def ask(text: str) -> str:
        answers = client.generate(judge_model, text, candidate_count=1, temperature=0.0, max_output_tokens=64)
        return answers[0] if answers else ""

    return Context(prompt, ask if judge_model else None, judge_model)


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
            context = context_for(client, evaluation, result.prompt)
            trials = [Trial(o, [check(a, o, context) for a in result.prompt.assertions]) for o in outputs]
            if not trials:
                trials = [Trial("", [AssertionResult("output", None, False, "the model returned no output")])]
        return result, trials, time.monotonic() - t0

    workers = max(1, min(evaluation.concurrency or REMOTE_CONCURRENCY, len(calls) or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tunespec-eval") as pool:
        for result, trials, seconds in pool.map(run, calls):
            result.trials.extend(trials)
            result.seconds += seconds
    return EvalResult(model, results, evaluation.threshold, time.monotonic() - started)
