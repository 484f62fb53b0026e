"""Failures users read: one exception type per kind, each with an exit code from `EXIT_CODES`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

EXIT_OK = 0
EXIT_SERVICE = 1
EXIT_INVALID = 2
EXIT_EVAL_BELOW_THRESHOLD = 3
EXIT_INTERRUPTED = 130

EXIT_CODES = {  # the one table: `tunespec --help` prints it, the README repeats it
    EXIT_OK: "success",
    EXIT_SERVICE: "service error, or a tuning job ended FAILED / was cancelled / timed out",
    EXIT_INVALID: "invalid spec or dataset, or bad command-line usage",
    EXIT_EVAL_BELOW_THRESHOLD: "evaluation pass rate below the spec's threshold",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C or SIGTERM); `apply` again attaches to the job",
}
_SEVERITY = {EXIT_SERVICE: 3, EXIT_INVALID: 2, EXIT_EVAL_BELOW_THRESHOLD: 1, EXIT_OK: 0}


def worst_exit_code(codes: Iterable[int]) -> int:
    """A run's exit code: 1 (service / job failed) over 2 (invalid) over 3 (below threshold) over 0."""
    return max(codes, key=lambda c: _SEVERITY.get(c, 3), default=EXIT_OK)


def shown_path(path: str | os.PathLike[str]) -> str:
    """PATH as messages show it: relative to the working directory when it lies below it, else absolute."""
    absolute = os.path.abspath(path)
    try:
        relative = os.path.relpath(absolute)
    except ValueError:  # another drive
        return absolute
    return absolute if relative == os.pardir or relative.startswith(os.pardir + os.sep) else relative


def describe(value: Any, *, json_terms: bool = False) -> str:
    """A value as an error message shows it: "integer 3", "string 'abc'", "a list".

    `json_terms` names values the way a JSON or CSV dataset holds them ("null", "number 7", "an object").
    """
    if value is None:
        return "null" if json_terms else "nothing (null)"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)) and json_terms:
        return f"number {json.dumps(value)}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str) and not json_terms:
        return f"string {value!r}" if len(value) <= 40 else f"a string of {len(value)} characters"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object" if json_terms else "a mapping"
    return f"{type(value).__name__} {value!r}" if json_terms else type(value).__name__


@dataclass(frozen=True)
class Problem:
    """One located problem in a spec or dataset file."""

    file: str
    message: str
    line: int | None = None
    column: int | None = None
    key_path: str = ""  # e.g. "hyperparameters.epoch_count" or "row 7"
    hint: str = ""  # the fix, e.g. "did you mean 'epoch_count'?"
    severity: str = "error"  # or "warning"

    def location(self) -> str:
        loc = self.file
        if self.line is not None:
            loc += f":{self.line}"
            if self.column is not None:
                loc += f":{self.column}"
        return loc

    def __str__(self) -> str:
        text = f"{self.location()}: "
        if self.key_path:
            text += f"{self.key_path}: "
        text += self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class TunespecError(Exception):
    """Base of every error tunespec reports as one readable line instead of a traceback."""

    exit_code = EXIT_SERVICE


class SpecError(TunespecError):
    """A job spec is invalid; carries every problem found, not just the first."""

    exit_code = EXIT_INVALID

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class DatasetError(SpecError):
    """A dataset file cannot be turned into tuning examples."""


class ApiError(TunespecError):
    """The tuning service answered with an error (after retries, where retrying made sense)."""

    exit_code = EXIT_SERVICE

    def __init__(self, message: str, *, http_status: int | None = None, status: str = "",
                 method: str = "", url: str = ""):
        self.http_status = http_status
        self.status = status
        self.method = method
        self.url = url
        super().__init__(message)


class JobFailedError(TunespecError):
    """The tuning job ended FAILED or was cancelled."""

    exit_code = EXIT_SERVICE


class EvaluationBelowThreshold(TunespecError):
    """The evaluation suite's pass rate is below the spec's threshold."""

    exit_code = EXIT_EVAL_BELOW_THRESHOLD
