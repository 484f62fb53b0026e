"""`evaluation.prompts_file`: eval prompts from a CSV / TSV / JSONL file, with row-numbered problems."""

from __future__ import annotations

from pathlib import Path

from tunespec.datasets import ProblemLog, infer_format, read_rows
from tunespec.errors import Problem, describe, shown_path
from tunespec.spec.checks import regex_problem
from tunespec.spec.locations import Problems
from tunespec.spec.model import ASSERTION_KEYS, EvalPrompt, assertions_of
from tunespec.spec.schema_check import unknown_key_hint

_COLUMNS = ("input", "name", "repeat", *ASSERTION_KEYS)
_WHERE = "evaluation.prompts[]"  # the spec objects that the rows stand for


def read_prompts_file(path: Path, problems: Problems) -> list[EvalPrompt]:
    """Prompts from a CSV/TSV/JSONL file: column input, optional name/repeat, one column per assertion."""
    shown = shown_path(path)
    log = ProblemLog(shown)
    fmt = infer_format(path) or "csv"
    try:
        header, rows = read_rows(path, fmt, log)
    except OSError as exc:
        problems.items.append(Problem(shown, f"cannot read the prompts file: {exc.strerror or exc}"))
        return []
    if header is not None:
        for column in header:
            if column not in _COLUMNS:
                log.add("column", f"unknown column {column!r}", line=1,
                        hint=unknown_key_hint(column, list(_COLUMNS), _WHERE))
        if "input" not in header:
            log.add("column", f"missing column 'input' (columns present: {', '.join(header) or 'none'})",
                    line=1)
    prompts: list[EvalPrompt] = []
    for row in rows if not log.has_errors() else ():
        values = {k: v for k, v in row.values.items() if not (fmt != "jsonl" and v == "")}
        bad = False
        if header is None:
            for key in values:
                if key not in _COLUMNS:
                    log.add("key", f"unknown key {key!r}", row=row,
                            hint=unknown_key_hint(key, list(_COLUMNS), _WHERE))
                    bad = True
        text = values.get("input")
        if not isinstance(text, str) or not text:
            log.add("input", "missing or empty 'input'" if not isinstance(text, (int, float)) or
                    isinstance(text, bool) else f"'input' must be a string, got {describe(text)}", row=row)
            bad = True
        repeat = values.get("repeat", 1)
        if isinstance(repeat, str):
            repeat = int(repeat) if repeat.strip().isdigit() else repeat
        if not isinstance(repeat, int) or isinstance(repeat, bool) or not 1 <= repeat <= 100:
            log.add("repeat", f"'repeat' must be a whole number from 1 to 100, got {repeat!r}", row=row)
            bad = True
        items = []
        for key, value in values.items():
            if key not in ASSERTION_KEYS:
                continue
            if key.endswith("one_of"):
                value = value.split("|") if isinstance(value, str) else value
                ok = isinstance(value, list) and value and all(isinstance(v, str) for v in value)
            else:
                ok = isinstance(value, str)
            if not ok:
                wanted = "a list of strings" if key.endswith("one_of") else "a string"
                log.add("type", f"{key!r} must be {wanted}, got {describe(value)}", row=row)
                bad = True
                continue
            if key.endswith("regex") and (problem := regex_problem(value)):
                log.add("regex", f"{key}: {problem}", row=row)
                bad = True
                continue
            items.append((key, value))
        if not items and not bad:
            log.add("assertion", "row has no assertion", row=row,
                    hint="fill at least one of: " + ", ".join(ASSERTION_KEYS))
            bad = True
        name = values.get("name")
        if not bad:
            prompts.append(EvalPrompt(text, assertions_of(items), repeat,
                                      name if isinstance(name, str) else None, row.line, shown))
    if not prompts and not log.has_errors():
        what = "only a header row" if header is not None else "no rows"
        log.add("empty", f"the prompts file has {what}: no prompt to evaluate", line=1,
                hint="add one row per prompt, with an 'input' and at least one assertion; "
                     "or remove evaluation.prompts_file")
    problems.items.extend(log.problems())
    return prompts
