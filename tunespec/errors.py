"""Failures users read: one exception type per kind, each with a documented exit code.

Exit codes (also in the README):
  0  success
  1  service error, or the tuning job ended FAILED / cancelled
  2  invalid spec or dataset (and command-line usage errors)
  3  evaluation pass rate below the spec's threshold
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_SERVICE = 1
EXIT_INVALID = 2
EXIT_EVAL_BELOW_THRESHOLD = 3


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
