"""`tunespec list [SPEC...]`: tuned models on the target, or those of the given jobs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from tunespec.commands.output import fail, format_table, print_json, retrying
from tunespec.errors import EXIT_OK, TunespecError
from tunespec.github import annotate_invalid
from tunespec.identity import is_model_of_job
from tunespec.planning import Listings, make_plan
from tunespec.resources import TunedModel
from tunespec.spec.model import DEFAULT_DIALECT
from tunespec.targets import Targets, target_name

LIST_SCHEMA_VERSION = 1


def run(
    paths: Sequence[str], *, target: str | None, project: str | None, api_version: str | None, as_json: bool
) -> int:
    rows_out: list[dict[str, Any]] = []
    try:
        with Targets(on_retry=retrying) as targets:
            if paths:
                listings: Listings = {}  # the plan's one list call per service
                plan = make_plan(list(paths), targets, target=target, project=project, listings=listings)
                annotate_invalid(plan.invalid)
                seen = set()
                for job in plan.jobs:
                    service = targets.service(job.target, job.dialect, job.project)
                    if service not in listings:  # the plan could not list it: ask again
                        listings[service] = service.list_tuned_models()
                    for model in listings[service]:
                        if is_model_of_job(model.name, job.spec.name) and model.name not in seen:
                            seen.add(model.name)
                            rows_out.append(model_row(model, job.spec.name, model.name == job.name))
                code = plan.exit_code
            else:
                service = targets.service(target_name(None, target), api_version or DEFAULT_DIALECT, project)
                rows_out = [model_row(m, None, None) for m in service.list_tuned_models()]
                code = EXIT_OK
    except TunespecError as exc:
        return fail(exc, as_json, "list")
    if as_json:
        doc = {"schema_version": LIST_SCHEMA_VERSION, "kind": "tunespec.list", "exit_code": code}
        print_json({**doc, "models": rows_out})
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
    click.echo(format_table(rows))
    return code


def model_row(model: TunedModel, job: str | None, current: bool | None) -> dict[str, Any]:
    last = model.last_snapshot
    return {
        "name": model.name,
        "display_name": model.display_name,
        "state": model.state or None,
        "base_model": model.base_model,
        "create_time": model.create_time,
        "job": job,
        "current": current,
        "last_loss": last.mean_loss if last else None,
    }
