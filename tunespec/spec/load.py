"""load_spec / load_specs: read, merge, validate and build, collecting every problem before raising."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from tunespec.datasets import read_dataset_file
from tunespec.errors import DatasetError, Problem, SpecError
from tunespec.spec.build import build_spec, dataset_spec
from tunespec.spec.checks import check_semantics
from tunespec.spec.extends import load_tree
from tunespec.spec.locations import LocatedDoc, Problems, format_key_path
from tunespec.spec.model import JobSpec
from tunespec.spec.paths import expand_spec_paths, symlink_loop
from tunespec.spec.prompts_file import read_prompts_file
from tunespec.spec.schema_check import check_schema


def load_spec(path: str | Path, *, env: Mapping[str, str] | None = None) -> JobSpec:
    """Load and validate one spec file; raises SpecError carrying every problem found."""
    path = Path(path)
    problems = Problems()
    doc, extends = load_tree(path, os.environ if env is None else env, problems)
    if doc is None:
        raise SpecError(problems.sorted())
    check_schema(doc, problems)
    if not isinstance(doc.data, dict):
        raise SpecError(problems.sorted())
    before = len(problems.items)
    check_semantics(doc, problems)
    _refine_file_problems(doc, problems, before)
    if not problems.items:
        spec = build_spec(doc, path, problems, extends)
        if not problems.items:
            return spec
    else:
        _check_files_of_invalid_spec(doc, problems)
    raise SpecError(problems.sorted())


def load_specs(paths: Iterable[str | Path], *, env: Mapping[str, str] | None = None) -> list[JobSpec]:
    """Load every spec under `paths` (files, directories, globs); raises SpecError with all problems."""
    problems: list[Problem] = []
    try:
        files = expand_spec_paths(paths)
    except SpecError as exc:
        problems += exc.problems
        files = []
    specs = []
    for file in files:
        try:
            specs.append(load_spec(file, env=env))
        except SpecError as exc:
            problems += exc.problems
    if problems:
        raise SpecError(problems)
    return specs


_FILE_KEYS = (("dataset", "path"), ("evaluation", "prompts_file"), ("report", "dir"))


def _refine_file_problems(doc: LocatedDoc, problems: Problems, since: int) -> None:
    """Of the problems added since `since`: a value with an unset `${VAR}` is reported once, as the
    variable, not also as a missing file; a path that is a loop of symbolic links says so."""
    unresolved = {format_key_path(p) for p in doc.unresolved}
    kept = [p for p in problems.items[since:] if p.key_path not in unresolved]
    for key in _FILE_KEYS:
        section = doc.data.get(key[0])
        value = section.get(key[1]) if isinstance(section, dict) else None
        if not isinstance(value, str) or not value or format_key_path(key) in unresolved:
            continue
        if symlink_loop(doc.file_at(key, value)):
            shown = format_key_path(key)
            kept = [p for p in kept if p.key_path != shown]
            kept.append(_loop_problem(doc, key, value))
    problems.items[since:] = kept


def _loop_problem(doc: LocatedDoc, key: tuple[str, ...], value: str) -> Problem:
    loc = doc.loc(key)
    return Problem(loc.file, f"{value} is a loop of symbolic links", loc.line, loc.column,
                   format_key_path(key), "point the link at a real file")


def _check_files_of_invalid_spec(doc: LocatedDoc, problems: Problems) -> None:
    """The spec has problems elsewhere: still read its dataset and prompts file when their settings
    are fine, so that one run reports everything."""

    def clean(prefix: str) -> bool:
        return not any(p.key_path == prefix or p.key_path.startswith((prefix + ".", prefix + "["))
                       for p in problems.items)

    ds = doc.data.get("dataset")
    if clean("dataset") and isinstance(ds, dict) and isinstance(ds.get("path"), str):
        try:
            read_dataset_file(dataset_spec(doc))
        except DatasetError as exc:
            problems.items.extend(exc.problems)
    ev = doc.data.get("evaluation")
    if clean("evaluation") and isinstance(ev, dict) and isinstance(ev.get("prompts_file"), str):
        read_prompts_file(doc.file_at(("evaluation", "prompts_file"), ev["prompts_file"]), problems)
