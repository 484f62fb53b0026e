"""What a run did: one `JobResult` per job and the `ApplyResult` that `tunespec.apply` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunespec.errors import EXIT_INVALID, EXIT_OK, TunespecError, worst_exit_code
from tunespec.evaluate import EvalResult
from tunespec.planning import LABELS, JobPlan, Plan
from tunespec.resources import TunedModel

APPLY_SCHEMA_VERSION = 1


@dataclass
class JobResult:
    """What happened to one job."""

    plan: JobPlan
    action: str
    state: str = ""
    model: TunedModel | None = None
    operation: str | None = None
    submitted: bool = False  # a new tuning job was started
    attached: bool = False  # waited on a job started earlier
    evaluation: EvalResult | None = None
    base_evaluation: EvalResult | None = None
    error: TunespecError | None = None
    exit_code: int = EXIT_OK
    timings: dict[str, float] = field(default_factory=dict)
    reports: dict[str, Path] = field(default_factory=dict)
    pruned: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.plan.spec.name

    @property
    def pass_rate(self) -> float | None:
        return self.evaluation.pass_rate if self.evaluation and self.evaluation.prompts else None

    @property
    def report_dir(self) -> Path:
        return self.plan.spec.report.dir

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.name,
            "spec": str(self.plan.spec.path),
            "action": self.action,
            "label": LABELS.get(self.action, self.action),
            "tuned_model": self.plan.name,
            "state": self.state,
            "submitted": self.submitted,
            "attached": self.attached,
            "pass_rate": self.pass_rate,
            "threshold": self.evaluation.threshold if self.evaluation else None,
            "exit_code": self.exit_code,
            "error": str(self.error) if self.error else None,
            "reports": {k: str(v) for k, v in self.reports.items()},
            "pruned": self.pruned,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


@dataclass
class ApplyResult:
    """The outcome of `tunespec.apply`: `.exit_code`, `.jobs`, `.raise_for_errors()`."""

    plan: Plan
    jobs: list[JobResult]
    junit: Path | None = None

    @property
    def exit_code(self) -> int:
        return worst_exit_code([j.exit_code for j in self.jobs] + [EXIT_INVALID] * len(self.plan.invalid))

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    def raise_for_errors(self) -> None:
        """Raise the first job's error (or SpecError for an invalid spec) when the run did not pass."""
        for job in self.jobs:
            if job.error and job.exit_code == self.exit_code:
                raise job.error
        if self.plan.invalid:
            raise self.plan.invalid[0].error

    def to_json(self, kind: str = "apply") -> dict[str, Any]:
        return {
            "schema_version": APPLY_SCHEMA_VERSION,
            "kind": f"tunespec.{kind}",
            "exit_code": self.exit_code,
            "jobs": [j.to_json() for j in self.jobs],
            "invalid": [i.to_json() for i in self.plan.invalid],
            "junit": str(self.junit) if self.junit else None,
        }
