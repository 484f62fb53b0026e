"""`tunespec apply SPEC...` and `tunespec eval SPEC...`: run the plan, then print the run's summary."""

from __future__ import annotations

from collections.abc import Sequence

import click

from tunespec.api import apply
from tunespec.commands.output import err, fail, format_table, print_json
from tunespec.errors import EXIT_INTERRUPTED, EXIT_INVALID, TunespecError, shown_path
from tunespec.github import annotate_invalid
from tunespec.planning import LABELS
from tunespec.results import ApplyResult


def run(
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
    kind = "apply" if train else "eval"
    try:
        result = apply(
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
        return fail(exc, as_json, kind)
    except KeyboardInterrupt:
        # apply said what became of the submitted jobs; no "Aborted." after that
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    annotate_invalid(result.plan.invalid)
    for job in result.jobs:
        if job.error:
            err(f"error: {job.error}")
    if as_json:
        print_json(result.to_json(kind))
    else:
        click.echo(summary_table(result))
        if result.junit:
            err(f"JUnit report for the run: {junit or shown_path(result.junit)}")
    return result.exit_code


def summary_table(result: ApplyResult) -> str:
    """One line per job: job, action, state, pass rate, exit code, report path."""
    rows = [("JOB", "ACTION", "STATE", "PASS RATE", "EXIT", "REPORT")]
    for j in result.jobs:
        rate = "-" if j.pass_rate is None else f"{j.pass_rate:.0%}"
        report = str(j.reports.get("markdown") or j.reports.get("json") or j.report_dir)
        action = LABELS.get(j.action, j.action)
        rows.append((j.name, action, j.state or "-", rate, str(j.exit_code), shown_path(report)))
    for i in result.plan.invalid:
        rows.append((i.name, "invalid", "-", "-", str(EXIT_INVALID), shown_path(str(i.path))))
    return format_table(rows)
