"""`tunespec plan SPEC...`: what `apply` would do for each job; changes nothing."""

from __future__ import annotations

from collections.abc import Sequence

import click

from tunespec.api import plan
from tunespec.commands.output import err, fail, format_table, print_json, retrying
from tunespec.errors import EXIT_INVALID, EXIT_OK, EXIT_SERVICE, TunespecError
from tunespec.github import annotate_invalid
from tunespec.targets import Targets

CHANGES_PENDING = 2  # --detailed-exitcode, as Terraform's


def run(
    paths: Sequence[str], *, target: str | None, project: str | None, detailed_exitcode: bool, as_json: bool
) -> int:
    try:
        with Targets(on_retry=retrying) as targets:
            the_plan = plan(list(paths), target=target, project=project, targets=targets)
    except TunespecError as exc:
        return fail(exc, as_json, "plan")
    annotate_invalid(the_plan.invalid)
    if as_json:
        print_json(the_plan.to_json())
    else:
        rows = [("JOB", "PLAN", "TUNED MODEL", "TARGET", "EXAMPLES")]
        for job in the_plan.jobs:
            rows.append((job.spec.name, job.label, job.name, job.target, str(len(job.examples))))
        for item in the_plan.invalid:
            rows.append((item.name, "invalid", "-", "-", "-"))
        click.echo(format_table(rows))
        for job in the_plan.jobs:
            if job.superseded:
                err(
                    f"{job.spec.name}: earlier models of this job: {', '.join(job.superseded)} "
                    "(`tunespec apply --prune` deletes them)"
                )
            if job.error:
                err(f"error: {job.error}")
        for item in the_plan.invalid:
            err(f"invalid: {item.error}")
        pending = sum(j.pending and not j.error for j in the_plan.jobs)
        err(
            f"Plan: {pending} of {len(the_plan.jobs)} job(s) to apply"
            + (f", {len(the_plan.invalid)} invalid spec(s)" if the_plan.invalid else "")
            + "."
        )
    code = the_plan.exit_code
    if code == EXIT_OK and detailed_exitcode and the_plan.has_changes:
        return CHANGES_PENDING
    if detailed_exitcode and code == EXIT_INVALID:
        return EXIT_SERVICE  # --detailed-exitcode keeps 2 for "changes pending"
    return code
