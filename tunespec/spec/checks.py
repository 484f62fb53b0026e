"""What the schema cannot say: exclusive settings, files that must exist, assertions, finite numbers."""

from __future__ import annotations

import math
import re
from typing import Any

from tunespec.datasets import infer_format
from tunespec.spec.locations import KeyPath, LocatedDoc, Problems, walk
from tunespec.spec.model import ASSERTION_KEYS, dialect_for


def check_semantics(doc: LocatedDoc, problems: Problems) -> None:
    """Add the problems of a spec whose data is a mapping (schema problems are reported elsewhere)."""
    data = doc.data
    if "base_model" in data and "source_model" in data:
        problems.add(doc, ("source_model",), "base_model and source_model are mutually exclusive",
                     "a job tunes a base model or continues from a tuned model, not both", key=True)
    hp = data.get("hyperparameters")
    api_version = dialect_for(data.get("api_version"), data.get("base_model"))
    if isinstance(hp, dict):
        if "learning_rate" in hp and "learning_rate_multiplier" in hp:
            problems.add(doc, ("hyperparameters", "learning_rate_multiplier"),
                         "learning_rate and learning_rate_multiplier are mutually exclusive",
                         "keep one of them", key=True)
        elif "learning_rate_multiplier" in hp and api_version == "v1beta3":
            problems.add(doc, ("hyperparameters", "learning_rate_multiplier"),
                         "learning_rate_multiplier needs api_version v1beta (v1beta3 has learning_rate only)",
                         "use learning_rate, or set api_version: v1beta with a Gemini base model", key=True)
    dataset = data.get("dataset")
    if isinstance(dataset, dict):
        _check_dataset(doc, dataset, problems)
    evaluation = data.get("evaluation")
    if isinstance(evaluation, dict):
        _check_evaluation(doc, evaluation, problems)
    # NaN and infinity pass JSON Schema's range checks; no tunespec setting accepts them.
    for path, value in walk(data):
        if isinstance(value, float) and not math.isfinite(value):
            problems.add(doc, path, f"must be a finite number, got {value}")


def regex_problem(pattern: str) -> str:
    """Why `pattern` is not a regular expression; "" when it is one."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"invalid regular expression: {exc.msg} at position {exc.pos}"
    return ""


def _file_not_found(doc: LocatedDoc, key: KeyPath, what: str, value: str, problems: Problems) -> None:
    problems.add(doc, key, f"{what} not found: {value}",
                 f"resolved against the spec's directory to {doc.file_at(key, value)}")


def _check_dataset(doc: LocatedDoc, dataset: dict[str, Any], problems: Problems) -> None:
    has_path, has_examples = "path" in dataset, "examples" in dataset
    if has_path and has_examples:
        problems.add(doc, ("dataset", "examples"), "dataset.path and dataset.examples are mutually exclusive",
                     key=True)
    elif not has_path and not has_examples:
        problems.add(doc, ("dataset",), "dataset needs a path or inline examples",
                     "add dataset.path: data/train.csv (columns text_input, output)", key=True)
    path = dataset.get("path")
    if isinstance(path, str) and path:
        key = ("dataset", "path")
        resolved = doc.file_at(key, path)
        if not resolved.exists():
            _file_not_found(doc, key, "dataset file", path, problems)
        elif not resolved.is_file():
            problems.add(doc, key, f"not a file: {path}")
        fmt = dataset.get("format")
        if infer_format(resolved, fmt if isinstance(fmt, str) else None) is None:
            problems.add(doc, key, f"cannot tell the format from the extension of {path}",
                         "set dataset.format: csv, tsv, jsonl or json")


def _check_evaluation(doc: LocatedDoc, evaluation: dict[str, Any], problems: Problems) -> None:
    prompts = evaluation.get("prompts")
    if "prompts" not in evaluation and "prompts_file" not in evaluation:
        problems.add(doc, ("evaluation",), "evaluation needs prompts or a prompts_file", key=True)
    if isinstance(prompts, list):
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, dict):
                continue
            kinds = [k for k in prompt if k in ASSERTION_KEYS]
            if not kinds and "input" in prompt:
                problems.add(doc, ("evaluation", "prompts", i), "prompt has no assertion",
                             "add one of: " + ", ".join(ASSERTION_KEYS))
            for kind in ("regex", "not_regex"):
                pattern = prompt.get(kind)
                if isinstance(pattern, str):
                    problem = regex_problem(pattern)
                    if problem:
                        problems.add(doc, ("evaluation", "prompts", i, kind), problem)
    prompts_file = evaluation.get("prompts_file")
    if isinstance(prompts_file, str) and prompts_file:
        key = ("evaluation", "prompts_file")
        resolved = doc.file_at(key, prompts_file)
        if not resolved.is_file():
            _file_not_found(doc, key, "prompts file", prompts_file, problems)
        elif resolved.suffix.lower() not in (".csv", ".tsv", ".jsonl", ".ndjson"):
            problems.add(doc, key, "prompts_file must be a .csv, .tsv or .jsonl file")
