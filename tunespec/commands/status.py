"""`tunespec status SPEC...`: state, progress and last loss of each job's model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from tunespec.commands.output import err, fail, format_table, print_json, retrying
from tunespec.errors import TunespecError
from tunespec.github import annotate_invalid
from tunespec.planning import JobPlan, make_plan
from tunespec.resources import ACTIVE, CREATING, progress_of, stage_words
from tunespec.targets import Targets

STATUS_SCHEMA_VERSION = 1


def run(paths: Sequence[str], *, target: str | None, project: str | None, as_json: bool) -> int:
    try:
        with Targets(on_retry=retrying) as targets:
            plan = make_plan(list(paths), targets, target=target, project=project)
            entries = [status_entry(job, targets) for job in plan.jobs]
    except TunespecError as exc:
        return fail(exc, as_json, "status")
    annotate_invalid(plan.invalid)
    code = plan.exit_code
    if as_json:
        print_json(
            {
                "schema_version": STATUS_SCHEMA_VERSION,
                "kind": "tunespec.status",
                "exit_code": code,
                "jobs": entries,
                "invalid": [i.to_json() for i in plan.invalid],
            }
        )
        return code
    rows = [("JOB", "TUNED MODEL", "STATE", "PROGRESS", "LAST LOSS")]
    for e in entries:
        progress = "-"
        if e["total_steps"]:
            progress = f"{e['completed_percent']:.0f}% ({e['completed_steps']}/{e['total_steps']})"
        loss = "-" if e["last_loss"] is None else f"{e['last_loss']:.4f}"
        state = e["state"] or ("unknown (error)" if e["error"] else "not created")
        if e["stage"]:
            state = f"{state} ({stage_words(e['stage'])})"
        rows.append((e["job"], e["tuned_model"], state, progress, loss))
    for item in plan.invalid:
        rows.append((item.name, "-", "invalid", "-", "-"))
    click.echo(format_table(rows))
    for e in entries:
        if e["error"]:
            err(f"error: {e['error']}")
    for item in plan.invalid:
        err(f"invalid: {item.error}")
    return code


def status_entry(job: JobPlan, targets: Targets) -> dict[str, Any]:
    """One job's line of `status`: its model's state and, while it tunes, its operation's progress."""
    model = job.model
    entry: dict[str, Any] = {
        "job": job.spec.name,
        "spec": str(job.spec.path),
        "tuned_model": job.name,
        "plan": job.label,
        "target": job.target,
        "state": model.state if model else None,
        "completed_steps": None,
        "total_steps": None,
        "completed_percent": None,
        "last_loss": None,
        "epoch": None,
        "stage": None,  # while CREATING, what the service says the job is doing (QUEUED, TRAINING, ...)
        "superseded": job.superseded,
        "error": str(job.error) if job.error else None,
    }
    if model is None or job.error:
        return entry
    operation = None
    if model.state == CREATING:
        try:
            operation = targets.service(job.target, job.dialect, job.project).find_operation(job.name)
        except TunespecError as exc:
            entry["error"] = str(exc)
    last = model.last_snapshot
    finished = last.step if last and model.state == ACTIVE else 0  # a finished model's steps are all done
    progress = progress_of(operation, model, finished)
    entry["stage"] = progress.stage or None
    entry["total_steps"] = progress.total or None
    entry["completed_steps"] = progress.step
    if progress.total:
        entry["completed_percent"] = round(progress.percent, 2)
    if (operation is not None and operation.snapshots) or last is not None:
        entry["last_loss"] = progress.loss
        entry["epoch"] = progress.epoch
    return entry
