"""The runner commands behind the CLI: plan, apply, status, eval, list, delete.

Each function returns the exit code. Human text goes to stderr (progress, messages) and stdout (tables);
with `as_json` stdout carries exactly one JSON document with a `schema_version`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from tunespec.errors import EXIT_INVALID, EXIT_OK, EXIT_SERVICE, TunespecError

if TYPE_CHECKING:
    from tunespec.plan import JobPlan
    from tunespec.targets import Targets

STATUS_SCHEMA_VERSION = 1
LIST_SCHEMA_VERSION = 1


def _err(text: str) -> None:
    click.echo(text, err=True)


def _json(doc: Mapping[str, Any]) -> None:
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False))


def _table(rows: Sequence[Sequence[str]]) -> str:
    from tunespec.apply import format_table

    return format_table(rows)


def _retrying(message: str) -> None:
    _err(f"retrying: {message}")


def interactive(env: Mapping[str, str] | None = None) -> bool:
    """Whether we may ask the user something: stdin is a terminal and CI is not set."""
    env = os.environ if env is None else env
    return sys.stdin.isatty() and not env.get("CI")


def _fail(exc: TunespecError, as_json: bool, kind: str) -> int:
    if as_json:
        _json(
            {"schema_version": 1, "kind": f"tunespec.{kind}", "exit_code": exc.exit_code, "error": str(exc)}
        )
    _err(f"error: {exc}")
    return exc.exit_code


def annotate_invalid(invalid: Sequence[Any], env: Mapping[str, str] | None = None) -> None:
    """With GITHUB_ACTIONS=true, each invalid spec's problems as workflow annotations (as `validate`)."""
    from tunespec.validate import github_annotation

    env = os.environ if env is None else env
    if env.get("GITHUB_ACTIONS") != "true":
        return
    for item in invalid:
        for p in item.error.problems:
            _err(github_annotation(p))


# ---- plan --------------------------------------------------------------------------------------


def plan_command(
    paths: Sequence[str], *, target: str | None, project: str | None, detailed_exitcode: bool, as_json: bool
) -> int:
    from tunespec.plan import plan_specs
    from tunespec.targets import Targets

    try:
        with Targets(on_retry=_retrying) as targets:
            plan = plan_specs(list(paths), target=target, project=project, targets=targets)
    except TunespecError as exc:
        return _fail(exc, as_json, "plan")
    annotate_invalid(plan.invalid)
    if as_json:
        _json(plan.to_json())
    else:
        rows = [("JOB", "PLAN", "TUNED MODEL", "TARGET", "EXAMPLES")]
        for job in plan.jobs:
            rows.append((job.spec.name, job.label, job.name, job.target, str(len(job.examples))))
        for item in plan.invalid:
            rows.append((item.name, "invalid", "-", "-", "-"))
        click.echo(_table(rows))
        for job in plan.jobs:
            if job.superseded:
                _err(
                    f"{job.spec.name}: earlier models of this job: {', '.join(job.superseded)} "
                    "(`tunespec apply --prune` deletes them)"
                )
            if job.error:
                _err(f"error: {job.error}")
        for item in plan.invalid:
            _err(f"invalid: {item.error}")
        pending = sum(j.pending and not j.error for j in plan.jobs)
        _err(
            f"Plan: {pending} of {len(plan.jobs)} job(s) to apply"
            + (f", {len(plan.invalid)} invalid spec(s)" if plan.invalid else "")
            + "."
        )
    code = plan.exit_code
    if code == EXIT_OK and detailed_exitcode and plan.has_changes:
        return 2
    if detailed_exitcode and code == EXIT_INVALID:
        return EXIT_SERVICE  # --detailed-exitcode keeps 2 for "changes pending"
    return code


# ---- apply / eval ------------------------------------------------------------------------------


def apply_command(
    paths: Sequence[str],
    *,
    target: str | None,
    project: str | None,
    timeout: float | None,
    prune: bool,
    progress: bool,
    parallel: int,
    fail_fast: bool,
    junit: str | None,
    as_json: bool,
    train: bool = True,
) -> int:
    from tunespec.apply import apply_specs, shown_path, summary_table

    kind = "apply" if train else "eval"
    try:
        result = apply_specs(
            list(paths),
            target=target,
            project=project,
            timeout=timeout,
            prune=prune,
            progress=None if progress else False,
            parallel=parallel,
            fail_fast=fail_fast,
            train=train,
            junit=junit,
        )
    except TunespecError as exc:
        return _fail(exc, as_json, kind)
    except KeyboardInterrupt:
        # apply said what became of the submitted jobs; no "Aborted." after that
        raise click.exceptions.Exit(130) from None
    annotate_invalid(result.plan.invalid)
    for job in result.jobs:
        if job.error:
            _err(f"error: {job.error}")
    if as_json:
        doc = result.to_json()
        doc["kind"] = f"tunespec.{kind}"
        _json(doc)
    else:
        click.echo(summary_table(result))
        if result.junit:
            _err(f"JUnit report for the run: {junit or shown_path(result.junit)}")
    return result.exit_code


# ---- status ------------------------------------------------------------------------------------


def status_command(paths: Sequence[str], *, target: str | None, project: str | None, as_json: bool) -> int:
    from tunespec.plan import make_plan
    from tunespec.targets import Targets

    try:
        with Targets(on_retry=_retrying) as targets:
            plan = make_plan(list(paths), targets, target=target, project=project)
            jobs_out = [_status_entry(job, targets) for job in plan.jobs]
    except TunespecError as exc:
        return _fail(exc, as_json, "status")
    annotate_invalid(plan.invalid)
    code = plan.exit_code
    if as_json:
        _json(
            {
                "schema_version": STATUS_SCHEMA_VERSION,
                "kind": "tunespec.status",
                "exit_code": code,
                "jobs": jobs_out,
                "invalid": [i.to_json() for i in plan.invalid],
            }
        )
        return code
    rows = [("JOB", "TUNED MODEL", "STATE", "PROGRESS", "LAST LOSS")]
    for e in jobs_out:
        progress = "-"
        if e["total_steps"]:
            progress = f"{e['completed_percent']:.0f}% ({e['completed_steps']}/{e['total_steps']})"
        loss = "-" if e["last_loss"] is None else f"{e['last_loss']:.4f}"
        state = e["state"] or ("unknown (error)" if e["error"] else "not created")
        rows.append((e["job"], e["tuned_model"], state, progress, loss))
    for item in plan.invalid:
        rows.append((item.name, "-", "invalid", "-", "-"))
    click.echo(_table(rows))
    for e in jobs_out:
        if e["error"]:
            _err(f"error: {e['error']}")
    for item in plan.invalid:
        _err(f"invalid: {item.error}")
    return code


def _status_entry(job: JobPlan, targets: Targets) -> dict[str, Any]:
    """One job's line of `status`: its model's state and, while it tunes, its operation's progress."""
    from tunespec.apply import find_operation

    entry: dict[str, Any] = {
        "job": job.spec.name,
        "spec": str(job.spec.path),
        "tuned_model": job.name,
        "plan": job.label,
        "target": job.target,
        "state": (job.model or {}).get("state"),
        "completed_steps": None,
        "total_steps": None,
        "completed_percent": None,
        "last_loss": None,
        "epoch": None,
        "superseded": job.superseded,
        "error": str(job.error) if job.error else None,
    }
    snaps = ((job.model or {}).get("tuningTask") or {}).get("snapshots") or []
    if job.model is not None and not job.error:
        try:
            client = targets.client(job.target, job.dialect, job.project)
            op = find_operation(client, job.name) if job.model.get("state") == "CREATING" else None
        except TunespecError as exc:
            entry["error"], op = str(exc), None
        meta = (op or {}).get("metadata") or {}
        snaps = meta.get("snapshots") or snaps
        entry["total_steps"] = meta.get("totalSteps") or (
            snaps[-1]["step"] if snaps and job.model.get("state") == "ACTIVE" else None
        )
        entry["completed_steps"] = meta.get("completedSteps") or (snaps[-1].get("step") if snaps else 0)
        if entry["total_steps"]:
            entry["completed_percent"] = meta.get("completedPercent") or round(
                100.0 * entry["completed_steps"] / entry["total_steps"], 2
            )
    if snaps:
        entry["last_loss"] = snaps[-1].get("meanLoss")
        entry["epoch"] = snaps[-1].get("epoch", 0)
    return entry


# ---- list / delete -----------------------------------------------------------------------------


def list_command(
    paths: Sequence[str], *, target: str | None, project: str | None, api_version: str | None, as_json: bool
) -> int:
    from tunespec.plan import is_model_of_job, make_plan
    from tunespec.targets import Targets, target_name

    rows_out: list[dict[str, Any]] = []
    try:
        with Targets(on_retry=_retrying) as targets:
            if paths:
                listings: dict[Any, list[dict[str, Any]]] = {}  # the plan's one list call per client
                plan = make_plan(list(paths), targets, target=target, project=project, listings=listings)
                annotate_invalid(plan.invalid)
                seen = set()
                for job in plan.jobs:
                    client = targets.client(job.target, job.dialect, job.project)
                    if client not in listings:  # the plan could not list it: ask again
                        listings[client] = client.list_tuned_models()
                    for model in listings[client]:
                        if (
                            is_model_of_job(model.get("name", ""), job.spec.name)
                            and model["name"] not in seen
                        ):
                            seen.add(model["name"])
                            rows_out.append(_model_row(model, job.spec.name, model["name"] == job.name))
                code = plan.exit_code
            else:
                name = target_name(None, target)
                client = targets.client(name, api_version or "v1beta3", project)
                rows_out = [_model_row(m, None, None) for m in client.list_tuned_models()]
                code = EXIT_OK
    except TunespecError as exc:
        return _fail(exc, as_json, "list")
    if as_json:
        _json(
            {
                "schema_version": LIST_SCHEMA_VERSION,
                "kind": "tunespec.list",
                "exit_code": code,
                "models": rows_out,
            }
        )
        return code
    rows = [("TUNED MODEL", "STATE", "JOB", "CURRENT", "CREATED", "LAST LOSS")]
    for r in rows_out:
        rows.append(
            (
                r["name"],
                r["state"] or "-",
                r["job"] or "-",
                {True: "yes", False: "superseded", None: "-"}[r["current"]],
                r["create_time"] or "-",
                "-" if r["last_loss"] is None else f"{r['last_loss']:.4f}",
            )
        )
    click.echo(_table(rows))
    return code


def _model_row(model: Mapping[str, Any], job: str | None, current: bool | None) -> dict[str, Any]:
    snaps = (model.get("tuningTask") or {}).get("snapshots") or []
    return {
        "name": model.get("name"),
        "display_name": model.get("displayName"),
        "state": model.get("state"),
        "base_model": model.get("baseModel"),
        "create_time": model.get("createTime"),
        "job": job,
        "current": current,
        "last_loss": snaps[-1].get("meanLoss") if snaps else None,
    }


def delete_command(
    paths: Sequence[str],
    *,
    models: Sequence[str],
    target: str | None,
    project: str | None,
    api_version: str | None,
    superseded_only: bool,
    yes: bool,
) -> int:
    from tunespec.plan import make_plan
    from tunespec.targets import Targets, target_name

    if not paths and not models:
        _err("error: name job specs (PATH...) or tuned models (--model tunedModels/ID)")
        return EXIT_INVALID
    try:
        with Targets(on_retry=_retrying) as targets:
            doomed: list[tuple[Any, str]] = []
            if models:
                client = targets.client(target_name(None, target), api_version or "v1beta3", project)
                doomed += [
                    (client, m if m.startswith("tunedModels/") else f"tunedModels/{m}") for m in models
                ]
            if paths:
                plan = make_plan(list(paths), targets, target=target, project=project)
                for job in plan.jobs:
                    if job.error:
                        raise job.error
                    client = targets.client(job.target, job.dialect, job.project)
                    names = list(job.superseded) + (
                        [] if superseded_only or job.model is None else [job.name]
                    )
                    doomed += [(client, n) for n in names]
            if not doomed:
                _err("Nothing to delete.")
                return EXIT_OK
            _err("Will delete:\n" + "\n".join(f"  {name}" for _, name in doomed))
            if not yes:
                if not interactive():
                    _err(
                        "error: refusing to delete without confirmation in a non-interactive run; pass --yes"
                    )
                    return EXIT_INVALID
                if not click.confirm("Delete these tuned models?", err=True):
                    _err("Nothing deleted.")
                    return EXIT_OK
            for client, name in doomed:
                client.delete_tuned_model(name)
                _err(f"deleted {name}")
    except TunespecError as exc:
        return _fail(exc, False, "delete")
    return EXIT_OK
