"""What the schema cannot say: exclusive settings, files that must exist, assertions, finite numbers."""

from __future__ import annotations

import math
import re
from typing import Any

from tunespec.datasets import infer_format
from tunespec.spec.locations import KeyPath, LocatedDoc, Problems, format_key_path, walk
from tunespec.spec.model import ASSERTION_KEYS, ASSERTION_OPTIONS, dialect_for
from tunespec.spec.schema_check import unknown_key_hint


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
        elif "learning_rate_multiplier" in hp and api_version == "v1beta3" and data.get("target") != "vertex":
            problems.add(doc, ("hyperparameters", "learning_rate_multiplier"),
                         "learning_rate_multiplier needs api_version v1beta (v1beta3 has learning_rate only)",
                         "use learning_rate, or set api_version: v1beta with a Gemini base model", key=True)
    if data.get("target") == "vertex":
        _check_vertex(doc, data, problems)
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


def _check_vertex(doc: LocatedDoc, data: dict[str, Any], problems: Problems) -> None:
    """A job for Vertex AI tunes a named Gemini base model (Vertex has no default one)."""
    if "source_model" in data:
        problems.add(doc, ("source_model",), "source_model is not supported on target vertex",
                     "tune a base model: base_model: models/gemini-2.5-flash", key=True)
    elif "base_model" not in data:
        problems.add(doc, ("target",), "target vertex needs a base_model",
                     "add base_model: models/gemini-2.5-flash (tunespec/data/vertex_models.json lists "
                     "the tunable models)")


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
    if not any(key in evaluation for key in ("prompts", "prompts_file", "dataset")):
        problems.add(doc, ("evaluation",), "evaluation needs prompts, a prompts_file or a dataset", key=True)
    if isinstance(prompts, list):
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, dict):
                continue
            kinds = [k for k in prompt if k in ASSERTION_KEYS]
            if not kinds and "input" in prompt:
                problems.add(doc, ("evaluation", "prompts", i), "prompt has no assertion",
                             "add one of: " + ", ".join(ASSERTION_KEYS))
            check_scored(doc, evaluation, ("evaluation", "prompts", i), prompt, problems)
            for kind in ("regex", "not_regex"):
                pattern = prompt.get(kind)
                if isinstance(pattern, dict):
                    pattern = pattern.get("value")
                if isinstance(pattern, str):
                    problem = regex_problem(pattern)
                    if problem:
                        problems.add(doc, ("evaluation", "prompts", i, kind), problem)
    check_eval_dataset(doc, evaluation, problems)
    prompts_file = evaluation.get("prompts_file")
    if isinstance(prompts_file, str) and prompts_file:
        key = ("evaluation", "prompts_file")
        resolved = doc.file_at(key, prompts_file)
        if not resolved.is_file():
            _file_not_found(doc, key, "prompts file", prompts_file, problems)
        elif resolved.suffix.lower() not in (".csv", ".tsv", ".jsonl", ".ndjson"):
            problems.add(doc, key, "prompts_file must be a .csv, .tsv or .jsonl file")


def check_scored(doc: LocatedDoc, evaluation: dict[str, Any], where: KeyPath, prompt: dict[str, Any],
                 problems: Problems) -> None:
    """A prompt's scored assertions: options, JSON schemas, python metrics, the judge, the eval extra."""
    from tunespec.scoring.custom import reference_problem
    from tunespec.scoring.jsonish import schema_problem
    from tunespec.spec.model import is_options

    for key, raw in prompt.items():
        if key not in ASSERTION_KEYS:
            continue
        path = (*where, key)
        value = raw
        if isinstance(raw, dict) and (key != "json_schema" or is_options(raw) or "value" in raw):
            for option in raw:
                if option not in ASSERTION_OPTIONS:
                    problems.add(doc, (*path, option), f"unknown key '{option}'",
                                 unknown_key_hint(option, list(ASSERTION_OPTIONS), format_key_path(path)),
                                 key=True)
            value = raw.get("value")
        if key == "json_schema" and isinstance(value, dict):
            problem = schema_problem(value)
            if problem:
                problems.add(doc, path, f"json_schema is {problem}")
        elif key == "python" and isinstance(value, str) and ":" in value:
            found = reference_problem(value, doc.loc(path).path.parent)
            if found:
                problems.add(doc, path, *found)
        _check_kind_needs(doc, evaluation, path, key, problems)


def check_eval_dataset(doc: LocatedDoc, evaluation: dict[str, Any], problems: Problems) -> None:
    """`evaluation.dataset`: the file exists and has a known format; `score_with`'s needs."""
    value = evaluation.get("dataset")
    settings = value if isinstance(value, dict) else {"path": value}
    key = ("evaluation", "dataset") + (("path",) if isinstance(value, dict) else ())
    path = settings.get("path")
    if isinstance(path, str) and path:
        resolved = doc.file_at(key, path)
        if not resolved.is_file():
            _file_not_found(doc, key, "evaluation dataset", path, problems)
        fmt = settings.get("format")
        if infer_format(resolved, fmt if isinstance(fmt, str) else None) is None:
            problems.add(doc, key, f"cannot tell the format from the extension of {path}",
                         "set evaluation.dataset.format: csv, tsv, jsonl or json")
    score_with = evaluation.get("score_with")
    kind = score_with.get("kind") if isinstance(score_with, dict) else score_with
    if isinstance(kind, str):
        _check_kind_needs(doc, evaluation, ("evaluation", "score_with"), kind, problems)


def _check_kind_needs(doc: LocatedDoc, evaluation: dict[str, Any], path: KeyPath, kind: str,
                      problems: Problems) -> None:
    """A judge needs `judge_model`; `similar` needs the eval extra installed."""
    from tunespec.scoring.extras import INSTALL, missing_modules

    if kind == "judge" and not evaluation.get("judge_model"):
        problems.add(doc, path, "judge needs evaluation.judge_model, the model that grades",
                     "set evaluation.judge_model, e.g. models/gemini-1.5-flash (google) or a model the "
                     "engine serves (local)")
    missing = missing_modules(kind)
    if missing:
        problems.add(doc, path, f"{kind} needs the eval extra ({', '.join(missing)} not installed)",
                     f"install it: {INSTALL}")
