"""The typed job spec: the contract the rest of tunespec relies on (plan, apply, evaluate, report).

Add fields if needed; do not rename or remove them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunespec.tuning_api import TUNED_MODEL_ID_MAX_LEN

DEFAULT_BASE_MODEL = "models/text-bison-001"
API_VERSIONS = ("v1beta3", "v1beta")
DEFAULT_DIALECT = "v1beta3"  # when neither the spec nor its base model names one (also list, delete)
ASSERTION_KINDS = ("equals", "contains", "icontains", "starts_with", "regex", "one_of")
# Scored assertions: each gives a score in [0, 1] that passes at its threshold (no `not_` variants).
SCORED_KINDS = ("similar", "levenshtein", "rouge_l", "is_json", "json_schema", "python", "judge")
DEFAULT_THRESHOLDS = {"similar": 0.8, "levenshtein": 0.8, "rouge_l": 0.5, "python": 0.5, "judge": 0.5}
ASSERTION_KEYS = ASSERTION_KINDS + tuple(f"not_{kind}" for kind in ASSERTION_KINDS) + SCORED_KINDS
ASSERTION_OPTIONS = ("value", "threshold", "weight", "metric")  # the mapping form of an assertion
# What `evaluation.score_with` may name: assertions that compare an output with an expected answer.
SCORE_WITH_KINDS = ("equals", "contains", "icontains", "starts_with", "similar", "levenshtein", "rouge_l",
                    "judge")
ID_SUFFIX_CHARS = 11  # "-" + the 10-character fingerprint the runner appends to `name`
MAX_TUNED_MODEL_ID = TUNED_MODEL_ID_MAX_LEN  # the schema caps `name` at 40 - 11 = 29 characters


@dataclass(frozen=True)
class Hyperparameters:
    epoch_count: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    learning_rate_multiplier: float | None = None
    adapter_size: int | None = None  # Vertex AI's LoRA adapter size


@dataclass(frozen=True)
class Sharing:
    """The `sharing:` section: who may use the tuned model besides its owner (see tunespec.sharing)."""

    readers: tuple[str, ...] = ()
    writers: tuple[str, ...] = ()


@dataclass(frozen=True)
class VertexSpec:
    """The `vertex:` section: where a job runs on the vertex target (None: from the environment)."""

    project: str | None = None
    location: str | None = None
    staging_bucket: str | None = None  # gs://bucket[/prefix]


@dataclass(frozen=True)
class Assertion:
    """One check on an output: a string check (`ASSERTION_KINDS`) or a scored one (`SCORED_KINDS`)."""

    kind: str
    value: Any  # text, alternatives (tuple), a JSON schema (dict), True (is_json), module:function
    negate: bool = False  # the `not_` variants
    threshold: float | None = None  # scored kinds pass at this score; None: DEFAULT_THRESHOLDS
    weight: float = 1.0  # its share in the weighted score
    metric: str | None = None  # a named metric that aggregates it per job; None: its label
    # where `python:` modules are looked up (the defining file's dir); not part of what the check is
    base_dir: Path | None = field(default=None, compare=False)

    @property
    def pass_at(self) -> float:
        """The score at which it passes."""
        return self.threshold if self.threshold is not None else DEFAULT_THRESHOLDS.get(self.kind, 1.0)

    @property
    def metric_name(self) -> str:
        return self.metric or self.label

    @property
    def label(self) -> str:
        return ("not_" if self.negate else "") + self.kind


@dataclass(frozen=True)
class EvalPrompt:
    input: str
    assertions: tuple[Assertion, ...]
    repeat: int = 1
    name: str | None = None
    line: int | None = None  # where the prompt is defined (spec line or prompts-file row)
    source: str | None = None  # the file that defines it
    expected: str | None = None  # the reference answer of a held-out or evaluation-dataset example
    group: str | None = None  # None: a written prompt; "held_out" or "dataset": a scored example


@dataclass(frozen=True)
class Evaluation:
    prompts: tuple[EvalPrompt, ...]
    threshold: float = 1.0  # minimum suite pass rate, 0..1
    candidate_count: int = 1
    temperature: float | None = None  # None: the model's default
    max_output_tokens: int | None = None
    compare_base: bool = False
    concurrency: int | None = None  # prompts in flight; None: 16 on the local engine, else 4
    examples: tuple[EvalPrompt, ...] = ()  # `evaluation.dataset` rows, scored with `score_with`
    score_with: Assertion = field(default_factory=lambda: Assertion("equals", ""))  # value: the expected
    accuracy_threshold: float | None = None  # minimum accuracy on held-out and dataset examples
    score_threshold: float | None = None  # minimum weighted score of the prompts
    judge_model: str | None = None  # the model that grades `judge:` assertions


@dataclass(frozen=True)
class ValidationSplit:
    """`dataset.validation_split`: examples held out of training (a fraction or a count), seeded."""

    fraction: float | None = None
    count: int | None = None
    seed: int = 0

    def size(self, total: int) -> int:
        """How many of `total` examples are held out (at least 1 for a fraction, leaving 1 to train)."""
        n = self.count if self.count is not None else max(1, round((self.fraction or 0.0) * total))
        return max(0, min(n, total - 1))


@dataclass(frozen=True)
class DatasetSpec:
    path: Path | None = None  # absolute, resolved against the spec file's directory
    format: str | None = None  # csv, tsv, jsonl, json; None: from the extension
    input_column: str = "text_input"
    output_column: str = "output"
    inline_examples: tuple[tuple[str, str], ...] | None = None
    validation_split: ValidationSplit | None = None


@dataclass(frozen=True)
class ReportSpec:
    dir: Path  # absolute
    formats: tuple[str, ...] = ("json", "markdown", "junit", "png", "html")


@dataclass(frozen=True)
class JobSpec:
    path: Path  # the spec file
    name: str
    dataset: DatasetSpec
    report: ReportSpec
    display_name: str | None = None
    description: str | None = None
    target: str = "local"  # local | google | vertex | an http(s) URL
    project: str | None = None  # sent as x-goog-user-project
    api_version: str | None = None  # v1beta3 | v1beta; None: derived from the base model
    base_model: str | None = None
    source_model: str | None = None
    tuning_method: str | None = None  # full | lora (local engine)
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    evaluation: Evaluation | None = None
    lines: dict[str, int] = field(default_factory=dict)  # key path -> line, for annotations
    extends: tuple[Path, ...] = ()  # the files this spec extends, nearest first
    vertex: VertexSpec = field(default_factory=VertexSpec)
    sharing: Sharing | None = None  # None: the spec leaves the tuned model's permissions alone

    @property
    def dialect(self) -> str:
        """The API dialect the job speaks (v1beta3 or v1beta): see `dialect_for`."""
        return dialect_for(self.api_version, self.base_model)


def assertions_of(items: Iterable[tuple[str, Any]], base_dir: Path | None = None) -> tuple[Assertion, ...]:
    """The assertions among a prompt's (key, value) items: `not_contains: x` is a negated `contains`.

    A value may be a mapping of ASSERTION_OPTIONS (`{value, threshold, weight, metric}`).
    """
    out = []
    for key, value in items:
        if key in ASSERTION_KEYS:
            negate = key.startswith("not_")
            kind = key[4:] if negate else key
            options = value if is_options(value) else {"value": value}
            value = options.get("value", True)
            weight = options.get("weight", 1.0)
            out.append(Assertion(kind, tuple(value) if isinstance(value, list) else value, negate,
                                 _number(options.get("threshold")), float(weight),
                                 options.get("metric"), base_dir))
    return tuple(out)


def scored_prompt(text: str, expected: str, score_with: Assertion, group: str, line: int | None,
                  source: str | None, name: str | None = None) -> EvalPrompt:
    """A held-out or evaluation-dataset example as a prompt whose assertion compares with `expected`."""
    value = expected
    if score_with.kind == "judge":
        value = f"It gives the same answer as this reference: {expected}"
    check = Assertion(score_with.kind, value, threshold=score_with.threshold, metric="accuracy")
    return EvalPrompt(text, (check,), name=name, line=line, source=source, expected=expected, group=group)


def is_options(value: Any) -> bool:
    """Whether an assertion's value is its mapping form (`{value: ..., threshold: ...}`)."""
    return isinstance(value, dict) and bool(value) and set(value) <= set(ASSERTION_OPTIONS)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def dialect_for(api_version: object, base_model: object) -> str:
    """A job's API dialect: its api_version, else v1beta for a Gemini base model and v1beta3 otherwise.

    Takes raw values so that the checks can ask before the spec is known to be valid.
    """
    if isinstance(api_version, str) and api_version in API_VERSIONS:
        return api_version
    gemini = isinstance(base_model, str) and base_model.startswith("models/gemini")
    return "v1beta" if gemini else DEFAULT_DIALECT
