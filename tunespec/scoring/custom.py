"""`python: module:function`: a team's own metric, from a module beside the spec (or an installed one).

The function is called as `function(output, prompt)`, `prompt` being a dict of the prompt's fields
(input, name, expected, group). It returns a bool, a number in [0, 1], or a dict with `score` (or
`pass`) and an optional `reason`.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunespec.scoring import Score

_LOCK = threading.Lock()
_LOADED: dict[tuple[str, str], Callable[..., Any]] = {}


def split_ref(ref: str) -> tuple[str, str]:
    """'pkg.module:function' -> ('pkg.module', 'function')."""
    module, _, function = ref.partition(":")
    return module, function


def module_file(module: str, base_dir: Path | None) -> Path | None:
    """The file of `module` beside the spec (module.py or module/__init__.py); None when there is none."""
    if base_dir is None:
        return None
    stem = base_dir.joinpath(*module.split("."))
    for candidate in (stem.with_suffix(".py"), stem / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def reference_problem(ref: str, base_dir: Path | None) -> tuple[str, str] | None:
    """(message, hint) when `ref` names no function that can be found; None when it names one.

    A module beside the spec is read, not run: its source must define the function at top level.
    """
    module, function = split_ref(ref)
    file = module_file(module, base_dir)
    if file is None:
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is None:
            where = base_dir / (module.replace(".", "/") + ".py") if base_dir else module
            return (
                f"python metric module {module!r} not found",
                f"looked for {where} and for an installed module; write {module}.py beside the spec",
            )
        return None
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    except SyntaxError as exc:
        return f"{file.name} line {exc.lineno}: syntax error: {exc.msg}", "fix the module's syntax"
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot read {file}: {exc}", ""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    if function not in names:
        defined = sorted(n.name for n in tree.body if isinstance(n, ast.FunctionDef))
        return (
            f"{file.name} defines no function {function!r}",
            "functions defined there: " + (", ".join(defined) or "none"),
        )
    return None


def resolve(ref: str, base_dir: Path | None) -> Callable[..., Any]:
    """The function `ref` names, its module loaded once (from beside the spec, else installed)."""
    module, function = split_ref(ref)
    file = module_file(module, base_dir)
    key = (str(file or module), function)
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        if file is not None:
            name = "tunespec_metric_" + hashlib.sha256(str(file).encode()).hexdigest()[:12]
            spec = importlib.util.spec_from_file_location(name, file)
            assert spec is not None and spec.loader is not None
            loaded = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(loaded)
        else:
            loaded = importlib.import_module(module)
        fn = getattr(loaded, function, None)
        if not callable(fn):
            raise LookupError(f"{module} has no function {function!r}")
        _LOADED[key] = fn
        return fn


def score_python(output: str, ref: str, base_dir: Path | None, fields: dict[str, Any]) -> Score:
    """Call the metric; whatever goes wrong is a failing score that says what, never an exception."""
    try:
        fn = resolve(ref, base_dir)
    except Exception as exc:
        return Score(0.0, f"cannot load python metric {ref}: {type(exc).__name__}: {exc}")
    try:
        answer = fn(output, dict(fields))
    except Exception as exc:
        return Score(0.0, f"python metric {ref} raised {type(exc).__name__}: {exc}")
    return _as_score(answer, ref)


def _as_score(answer: Any, ref: str) -> Score:
    reason = ""
    if isinstance(answer, dict):
        reason = str(answer.get("reason", ""))
        answer = answer.get("score", answer.get("pass"))
    if isinstance(answer, bool):
        return Score(1.0 if answer else 0.0, reason)
    if isinstance(answer, (int, float)) and math.isfinite(answer) and 0.0 <= answer <= 1.0:
        return Score(float(answer), reason)
    return Score(0.0, f"python metric {ref} returned {answer!r}; expected a bool or a number in [0, 1]")
