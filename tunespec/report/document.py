"""report.json: the versioned document that records one job's run, from which every format is drawn."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tunespec.identity import base_model_of, requested_hyperparameters
from tunespec.planning import LABELS
from tunespec.report.compare import comparison
from tunespec.version import __version__

if TYPE_CHECKING:
    from tunespec.results import JobResult

REPORT_SCHEMA_VERSION = 1


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def losses(report: Mapping[str, Any]) -> list[tuple[int, float]]:
    """(step, mean loss) of each snapshot in the report."""
    return [(int(s.get("step", 0)), float(s.get("meanLoss", 0.0))) for s in report.get("snapshots") or []]


def percent(rate: float | None) -> str:
    """A pass rate as the reports show it: "80%", or "-" when there is none."""
    return "-" if rate is None else f"{rate * 100:.0f}%"


def build_report(result: JobResult, target: Mapping[str, str]) -> dict[str, Any]:
    """The report document of one job's run; `target` is the target as `Target.describe()` tells it."""
    job = result.plan
    model = result.model or job.model
    base = result.base_evaluation
    delta = (result.evaluation.pass_rate - base.pass_rate) if result.evaluation and base else None
    tuned_json = result.evaluation.to_json() if result.evaluation else None
    base_json = base.to_json() if base else None
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "kind": "tunespec.report",
        "tunespec_version": __version__,
        "generated_at": now_rfc3339(),
        "job": {"name": job.spec.name, "spec": str(job.spec.path), "display_name": job.spec.display_name},
        "fingerprint": job.fingerprint,
        "tuned_model": job.name,
        "base_model": (model.base_model if model else None) or base_model_of(job.spec),
        "source_model": job.spec.source_model,
        "tuning_method": job.spec.tuning_method,
        "target": dict(target),
        "dialect": job.dialect,
        "action": result.action,
        "action_label": LABELS.get(result.action, result.action),
        "submitted": result.submitted,
        "attached": result.attached,
        "state": result.state or (model.state if model else None),
        "operation": result.operation,
        "examples": len(job.examples),
        "hyperparameters": {
            "requested": requested_hyperparameters(job.spec),
            "resolved": dict(model.hyperparameters) if model else {},
        },
        "timings": {
            **{k: round(v, 3) for k, v in result.timings.items()},
            "create_time": model.create_time if model else None,
            "start_time": model.start_time if model else None,
            "complete_time": model.complete_time if model else None,
        },
        "snapshots": [dict(s.raw) for s in model.snapshots] if model else [],
        "tuning_data_stats": dict(model.data_stats) if model and model.data_stats else None,
        "evaluation": tuned_json,
        "base_evaluation": base_json,
        "delta": delta,
        "accuracy": result.evaluation.accuracy if result.evaluation else None,
        "comparison": comparison(tuned_json, base_json),
        "pruned": result.pruned,
        "error": str(result.error) if result.error else None,
        "error_type": type(result.error).__name__ if result.error else None,
        "exit_code": result.exit_code,
    }
