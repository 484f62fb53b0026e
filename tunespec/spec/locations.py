"""Where things are in a spec: key paths, file locations, a located document and its problems."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from tunespec.errors import Problem
from tunespec.spec.paths import safe_resolve  # a symlink loop is reported, not raised

KeyPath = tuple[str | int, ...]


class Loc(NamedTuple):
    """Where a YAML node sits: the file as shown to users, its real path, 1-based line and column."""

    file: str
    path: Path
    line: int
    column: int


def format_key_path(path: KeyPath) -> str:
    """('evaluation', 'prompts', 2, 'equals') -> 'evaluation.prompts[2].equals'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def walk(data: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    """Every value in nested mappings and lists with its key path, parents before children."""
    yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from walk(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from walk(value, (*path, i))


class LocatedDoc:
    """A YAML document as plain data plus the location of every value and key."""

    def __init__(self, data: Any, values: dict[KeyPath, Loc], keys: dict[KeyPath, Loc], top: Loc):
        self.data = data
        self.values = values
        self.keys = keys
        self.top = top
        self.unresolved: set[KeyPath] = set()  # values whose ${VAR} could not be resolved
        self.incomplete = False  # its `extends:` base could not be loaded: missing keys are expected

    def loc(self, path: KeyPath, *, key: bool = False) -> Loc:
        """Location of the value at `path` (or of its key), else of the nearest parent that exists."""
        if key and path in self.keys:
            return self.keys[path]
        while path:
            if path in self.values:
                return self.values[path]
            path = path[:-1]
        return self.top

    def file_at(self, path: KeyPath, value: str) -> Path:
        """A path value, resolved against the directory of the file that holds it."""
        return safe_resolve(self.loc(path).path.parent / value)


class Problems:
    """Collects located problems for one spec."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def at(self, loc: Loc, path: KeyPath | str, message: str, hint: str = "") -> None:
        key_path = path if isinstance(path, str) else format_key_path(path)
        self.items.append(Problem(loc.file, message, loc.line, loc.column, key_path, hint))

    def add(self, doc: LocatedDoc, path: KeyPath, message: str, hint: str = "", *, key: bool = False) -> None:
        self.at(doc.loc(path, key=key), path, message, hint)

    def sorted(self) -> list[Problem]:
        seen: set[str] = set()
        unique = [p for p in self.items if not (str(p) in seen or seen.add(str(p)))]
        return sorted(unique, key=lambda p: (p.file, p.line or 0, p.column or 0))
