"""Files, directories and globs named on the command line -> the spec files they stand for."""

from __future__ import annotations

import errno
import glob
import os
from collections.abc import Iterable
from pathlib import Path

from tunespec.errors import Problem, SpecError

SPEC_SUFFIXES = (".yaml", ".yml")


def expand_spec_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files, directories (their *.yaml / *.yml, recursively) and globs -> spec files, in order.

    Files whose name starts with '_' are skipped in directories and globs: they hold shared settings
    meant for `extends:`. Raises SpecError for a path that matches nothing.
    """
    found: list[Path] = []
    problems: list[Problem] = []
    for raw in paths:
        text = str(raw)
        if glob.has_magic(text):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
            files = [m for m in matches if m.is_file() and _is_spec(m)]
            for m in matches:
                if m.is_dir():
                    files += _spec_files_in(m)
            if not files:
                problems.append(Problem(text, "no spec files match this pattern"))
            found += files
        elif Path(text).is_dir():
            files = _spec_files_in(Path(text))
            if not files:
                problems.append(Problem(text, "no *.yaml or *.yml spec files in this directory"))
            found += files
        elif Path(text).exists():
            found.append(Path(text))
        elif symlink_loop(Path(text)):
            problems.append(Problem(text, "a loop of symbolic links", hint="point the link at a real file"))
        else:
            problems.append(Problem(text, "no such file or directory"))
    if problems:
        raise SpecError(problems)
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(safe_resolve(p), p)
    return list(unique.values())


def safe_resolve(path: Path) -> Path:
    """`path` made absolute and resolved like Path.resolve(), without raising on a symlink loop
    (Python 3.11 raises RuntimeError there): a looping path comes back absolute, unresolved."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return Path(os.path.abspath(path))


def symlink_loop(path: Path) -> bool:
    """Whether `path` runs into a loop of symbolic links."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    except (RuntimeError, ValueError):
        return False
    return False


def _is_spec(path: Path) -> bool:
    """A YAML file that is not a partial ('_shared.yaml' holds settings for `extends:`)."""
    return path.suffix in SPEC_SUFFIXES and not path.name.startswith("_")


def _spec_files_in(directory: Path) -> list[Path]:
    files = [p for p in directory.rglob("*") if _is_spec(p) and p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(directory).parts)]
    return sorted(files)
