"""How a job's failures read: one line that says what happened and what to do next.

Built here for the runner, so that its loop reads as the steps of a job and not as their wording.
"""

from __future__ import annotations

from tunespec.errors import ApiError, EvaluationBelowThreshold, JobFailedError, TunespecError
from tunespec.evaluate import EvalResult
from tunespec.identity import base_model_of
from tunespec.planning import JobPlan
from tunespec.resources import Status
from tunespec.service import TuningService


class Stopped(TunespecError):
    """Waiting was abandoned (--fail-fast after another job failed)."""


def no_such_model(service: TuningService, job: JobPlan, exc: ApiError) -> ApiError:
    """The service has no such base (or source) model: name the spec line and what it does have."""
    spec = job.spec
    key = "source_model" if spec.source_model else "base_model"
    model = spec.source_model or base_model_of(spec)
    line = spec.lines.get(key)
    where = f"{spec.path}:{line}" if line else str(spec.path)
    try:
        names = service.tunable_models()
    except (TunespecError, KeyError, TypeError):
        names = []
    hint = (
        f"models it can tune: {', '.join(names)}" if names and key == "base_model"
        else "`tunespec list` shows its tuned models" if key == "source_model"
        else "check the name"
    )
    return ApiError(
        f"{where}: {key}: the {job.target} target has no model {model!r} to tune ({hint}). "
        f"The service said: {str(exc).split(' -> ')[0]}",
        http_status=exc.http_status,
        status=exc.status,
        method=exc.method,
        url=exc.url,
    )


def below_threshold(job: JobPlan, ev: EvalResult) -> EvaluationBelowThreshold:
    failing = [p.name for p in ev.prompts if p.pass_rate < 1.0]
    other = ev.shortfall() if ev.pass_rate >= ev.threshold - 1e-9 else ""
    if other:  # the pass rate is fine: a score or accuracy threshold was missed
        return EvaluationBelowThreshold(f"{job.spec.path}: {job.spec.name}: {other}; see the report")
    return EvaluationBelowThreshold(
        f"{job.spec.path}: {job.spec.name}: evaluation pass rate {ev.pass_rate:.0%} is below the threshold "
        f"{ev.threshold:.0%} (failing: {', '.join(failing[:5])}{' ...' if len(failing) > 5 else ''}); "
        "see the report for the outputs"
    )


def evaluation_calls_failed(ev: EvalResult) -> ApiError:
    return ApiError(f"{len(ev.errors)} evaluation call(s) failed: {ev.errors[0]}")


def tuning_failed(job: JobPlan, error: Status | None) -> JobFailedError:
    """The tuning job ended FAILED (or was cancelled); `error` is the service's reason, if it gave one."""
    if error is not None:
        what = "was cancelled" if error.cancelled else "ended FAILED"
        message = error.message or "(no message)"
    else:
        what, message = "ended FAILED", "the service gave no reason"
    return JobFailedError(
        f"{job.spec.name}: tuning job for {job.name} {what}: {message}; "
        "fix the cause and run `tunespec apply` again (it retries the job)"
    )


def nothing_to_evaluate(job: JobPlan) -> JobFailedError:
    state = job.model.state if job.model else "absent"
    return JobFailedError(
        f"{job.spec.name}: no ACTIVE model to evaluate ({job.name} is {state or 'absent'}); "
        f"run `tunespec apply {job.spec.path}` first"
    )


_PAUSES = (
    "the local engine stops with this run, so the tuning job pauses at its last checkpoint: "
    "run `tunespec apply` again to resume it"
)
_KEEPS_ITS_PLACE = "the tuning job keeps its place on the service: run `tunespec apply` again to attach to it"


def left_behind(in_process: bool) -> str:
    """What becomes of a job this run stops watching, and how to pick it up again."""
    return _PAUSES if in_process else _KEEPS_ITS_PLACE


def interrupted(in_process: list[bool]) -> str:
    """What an interrupted run leaves behind, given which of its jobs ran on an in-process engine."""
    parts = []
    if any(in_process):
        parts.append(
            "the local engine stops with this run, so its tuning jobs pause at their last checkpoint; "
            "run `tunespec apply` again to resume them"
        )
    if not in_process or not all(in_process):
        parts.append(
            "tuning jobs already submitted "
            + ("to other services " if any(in_process) else "")
            + "keep their place on the service; run `tunespec apply` again to attach to them"
        )
    return "Interrupted: " + "; ".join(parts) + "."
