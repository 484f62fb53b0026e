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
ASSERTION_KINDS = ("equals", "contains", "icontains", "starts_with", "regex", "one_of")
ASSERTION_KEYS = ASSERTION_KINDS + tuple(f"not_{kind}" for kind in ASSERTION_KINDS)
ID_SUFFIX_CHARS = 11  # "-" + the 10-character fingerprint the runner appends to `name`
MAX_TUNED_MODEL_ID = TUNED_MODEL_ID_MAX_LEN  # the schema caps `name` at 40 - 11 = 29 characters


@dataclass(frozen=True)
class Hyperparameters:
    epoch_count: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    learning_rate_multiplier: float | None = None


@dataclass(frozen=True)
class Assertion:
    """One check on a generated output. kind: equals, contains, icontains, starts_with, regex, one_of."""

    kind: str
    value: str | tuple[str, ...]
    negate: bool = False  # the `not_` variants

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


@dataclass(frozen=True)
class Evaluation:
    prompts: tuple[EvalPrompt, ...]
    threshold: float = 1.0  # minimum suite pass rate, 0..1
    candidate_count: int = 1
    temperature: float | None = None  # None: the model's default
    max_output_tokens: int | None = None
    compare_base: bool = False
    concurrency: int = 4


@dataclass(frozen=True)
class DatasetSpec:
    path: Path | None = None  # absolute, resolved against the spec file's directory
    format: str | None = None  # csv, tsv, jsonl, json; None: from the extension
    input_column: str = "text_input"
    output_column: str = "output"
    inline_examples: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True)
class ReportSpec:
    dir: Path  # absolute
    formats: tuple[str, ...] = ("json", "markdown", "junit", "png")


@dataclass(frozen=True)
class JobSpec:
    path: Path  # the spec file
    name: str
    dataset: DatasetSpec
    report: ReportSpec
    display_name: str | None = None
    description: str | None = None
    target: str = "local"  # local | google | an http(s) URL
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

    @property
    def dialect(self) -> str:
        """The API dialect the job speaks (v1beta3 or v1beta): see `dialect_for`."""
        return dialect_for(self.api_version, self.base_model)


def assertions_of(items: Iterable[tuple[str, Any]]) -> tuple[Assertion, ...]:
    """The assertions among a prompt's (key, value) items: `not_contains: x` is a negated `contains`."""
    out = []
    for key, value in items:
        if key in ASSERTION_KEYS:
            negate = key.startswith("not_")
            kind = key[4:] if negate else key
            out.append(Assertion(kind, tuple(value) if isinstance(value, list) else value, negate))
    return tuple(out)


def dialect_for(api_version: object, base_model: object) -> str:
    """A job's API dialect: its api_version, else v1beta for a Gemini base model and v1beta3 otherwise.

    Takes raw values so that the checks can ask before the spec is known to be valid.
    """
    if isinstance(api_version, str) and api_version in API_VERSIONS:
        return api_version
    gemini = isinstance(base_model, str) and base_model.startswith("models/gemini")
    return "v1beta" if gemini else "v1beta3"
