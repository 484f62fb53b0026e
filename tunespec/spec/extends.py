"""`extends: base.yaml`: a spec deep-merged over the file it extends, each value keeping its location."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunespec.errors import shown_path
from tunespec.spec.located_yaml import parse
from tunespec.spec.locations import LocatedDoc, Problems, walk
from tunespec.spec.paths import safe_resolve, symlink_loop


def load_tree(path: Path, env: Mapping[str, str], problems: Problems,
              chain: tuple[Path, ...] = ()) -> tuple[LocatedDoc | None, tuple[Path, ...]]:
    """Parse `path` and, if it `extends:` another file, merge it over that file. Returns the doc and
    the files it extends (nearest first)."""
    doc = parse(path, shown_path(path), env, problems)
    if doc is None or not isinstance(doc.data, dict) or "extends" not in doc.data:
        return doc, ()
    ref = doc.data.pop("extends")
    where = doc.loc(("extends",))
    if ("extends",) in doc.unresolved:
        pass
    elif not isinstance(ref, str) or not ref:
        problems.at(where, "extends", "expected a path to another spec file")
    elif symlink_loop(path.parent / ref):
        problems.at(where, "extends", f"{ref} is a loop of symbolic links", "point the link at a real file")
    elif (base_path := safe_resolve(path.parent / ref)) in (*chain, safe_resolve(path)):
        cycle = " -> ".join(shown_path(p) for p in (*chain, safe_resolve(path), base_path))
        problems.at(where, "extends", f"extends cycle: {cycle}")
    elif not base_path.is_file():
        problems.at(where, "extends", f"no such file: {ref}", f"resolved to {base_path}")
    else:
        before = len(problems.items)
        base, bases = load_tree(base_path, env, problems, (*chain, safe_resolve(path)))
        if base is None:
            if len(problems.items) == before:
                problems.at(where, "extends", f"cannot load {ref}")
        elif not isinstance(base.data, dict):
            problems.add(base, (), "a spec must be a mapping of keys to values")
        else:
            return _merged(doc, base), (base_path, *bases)
    doc.incomplete = True  # its base is missing: keys it would supply are not reported missing
    return doc, ()


def _merged(child: LocatedDoc, base: LocatedDoc) -> LocatedDoc:
    merged = LocatedDoc(merge(base.data, child.data), {}, {}, child.top)
    merged.unresolved = child.unresolved | base.unresolved
    merged.incomplete = base.incomplete
    # Each merged value takes the location from the file that supplied it.
    for path, _ in walk(merged.data):
        for table, child_table, base_table in ((merged.values, child.values, base.values),
                                               (merged.keys, child.keys, base.keys)):
            loc = child_table.get(path) or base_table.get(path)
            if loc is not None:
                table[path] = loc
    return merged


def merge(base: Any, override: Any) -> Any:
    """Deep-merge mappings; anything else (scalars, lists) in `override` replaces `base`; a key set
    to null in `override` removes the inherited value."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            if value is None and key in base:
                del out[key]
            else:
                out[key] = merge(base[key], value) if key in base else value
        return out
    return override
