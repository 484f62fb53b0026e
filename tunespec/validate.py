"""`tunespec validate`: check spec files and their datasets, report every problem per file.

The `--json` shape is versioned (`schema_version`); fields are only ever added:

    {"schema_version": 1, "kind": "tunespec.validate", "valid": bool,
     "files": [{"path": str, "valid": bool, "name": str | null,
                "errors":   [{"file", "line", "column", "path", "message", "hint"}],
                "warnings": [...same...],
                "examples": {"count", "input_chars": {"min", "median", "max"},
                             "output_chars": {...}} | null}]}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunespec.datasets import DatasetResult, DatasetStats, load_examples
from tunespec.errors import Problem, SpecError
from tunespec.spec import JobSpec, expand_spec_paths, load_spec
from tunespec.spec.paths import safe_resolve

JSON_SCHEMA_VERSION = 1


@dataclass
class FileResult:
    """The outcome of validating one spec file (and its dataset and prompts file)."""

    path: str
    spec: JobSpec | None = None
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    stats: DatasetStats | None = None
    dataset: DatasetResult | None = field(default=None, repr=False)  # the examples, when valid

    @property
    def valid(self) -> bool:
        return not self.errors


def validate_file(path: str | Path, *, env: Mapping[str, str] | None = None) -> FileResult:
    """Load the spec and its training examples; collect every error and warning."""
    result = FileResult(str(path))
    try:
        result.spec = load_spec(path, env=env)
    except SpecError as exc:
        result.errors = exc.problems
        return result
    try:
        dataset = load_examples(result.spec)
    except SpecError as exc:  # DatasetError
        result.errors = exc.problems
        return result
    result.warnings = dataset.warnings
    result.stats = dataset.stats
    result.dataset = dataset
    return result


def validate_paths(paths: Iterable[str | Path], *, env: Mapping[str, str] | None = None) -> list[FileResult]:
    """Validate every spec under `paths` (files, directories, globs). A path that matches nothing is
    reported as an invalid entry of its own."""
    results: list[FileResult] = []
    files: list[Path] = []
    for raw in paths:
        try:
            files += expand_spec_paths([raw])
        except SpecError as exc:
            results.append(FileResult(str(raw), errors=exc.problems))
    seen: set[Path] = set()
    for file in files:
        if safe_resolve(file) not in seen:
            seen.add(safe_resolve(file))
            results.append(validate_file(file, env=env))
    _check_unique_jobs(results, env)
    return results


def _check_unique_jobs(results: list[FileResult], env: Mapping[str, str] | None) -> None:
    """`plan` refuses two jobs with one tuned model id or one report dir: so does validate."""
    valid = [r for r in results if r.valid and r.spec is not None and r.dataset is not None]
    if len(valid) < 2:
        return
    from tunespec.planning import check_unique_ids, identify  # planning imports this module

    jobs, owner = [], {}
    for result in valid:
        assert result.spec is not None
        jobs.append(identify(result.spec, result.dataset, env=env))
        owner[str(result.spec.path)] = result
    try:
        check_unique_ids(jobs)
    except SpecError as exc:
        for problem in exc.problems:
            result = owner.get(problem.file)
            if result is not None:
                result.errors.append(problem)


def problem_json(problem: Problem) -> dict[str, Any]:
    return {"file": problem.file, "line": problem.line, "column": problem.column, "path": problem.key_path,
            "message": problem.message, "hint": problem.hint}


def results_json(results: list[FileResult]) -> dict[str, Any]:
    """The versioned `validate --json` document."""
    def stats(s: DatasetStats | None) -> dict[str, Any] | None:
        if s is None:
            return None
        return {"count": s.count,
                "input_chars": {"min": s.input.min, "median": s.input.median, "max": s.input.max},
                "output_chars": {"min": s.output.min, "median": s.output.median, "max": s.output.max}}

    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "kind": "tunespec.validate",
        "valid": all(r.valid for r in results),
        "files": [{"path": r.path, "valid": r.valid, "name": r.spec.name if r.spec else None,
                   "errors": [problem_json(p) for p in r.errors],
                   "warnings": [problem_json(p) for p in r.warnings],
                   "examples": stats(r.stats)} for r in results],
    }
