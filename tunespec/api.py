"""The library's two calls, `tunespec.plan(...)` and `tunespec.apply(...)`, as the CLI makes them."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import TextIO

from tunespec.planning import ERROR, NOOP, Plan, make_plan
from tunespec.progress import Reporter
from tunespec.report import combined_html_path, combined_junit_path, write_combined_html, write_combined_junit
from tunespec.results import ApplyResult
from tunespec.runner import RunOptions, run_plan
from tunespec.spec import JobSpec
from tunespec.targets import Targets

Specs = str | Path | JobSpec | Iterable[str | Path | JobSpec]


def plan(
    specs: Specs,
    *,
    target: str | None = None,
    project: str | None = None,
    env: Mapping[str, str] | None = None,
    targets: Targets | None = None,
) -> Plan:
    """Plan job specs (paths, directories, globs or JobSpec values) against their targets; changes nothing.

    `target` overrides every spec's target (like `--target`); `project` is the project (Google's quota
    project, the local engine's scope). `targets`, when given, is used and left open.
    """
    with nullcontext(targets) if targets is not None else Targets(env=env) as opened:
        return make_plan(specs, opened, target=target, project=project)


def apply(
    specs: Specs,
    *,
    target: str | None = None,
    project: str | None = None,
    timeout: float | None = None,
    prune: bool = False,
    progress: bool | None = None,
    parallel: int = 1,
    fail_fast: bool = False,
    train: bool = True,
    junit: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
    quiet: bool = False,
    targets: Targets | None = None,
) -> ApplyResult:
    """Apply job specs (paths, directories, globs or JobSpec values): tune what changed, evaluate, report.

    Returns an ApplyResult (`.exit_code`, `.jobs`, `.raise_for_errors()`); raises SpecError only when the
    specs cannot be planned at all (a path that matches nothing, two jobs with the same tuned model id).
    `train=False` evaluates existing models only (`tunespec eval`). `progress=None` shows a bar on a
    terminal and plain lines elsewhere; messages go to `stream` (stderr), none with `quiet`.
    """
    env = dict(os.environ if env is None else env)
    options = RunOptions(timeout=timeout, prune=prune, parallel=parallel, fail_fast=fail_fast, train=train)
    reporter = Reporter(stream, progress=progress, env=env, quiet=quiet)
    with (
        nullcontext(targets)  # the caller's: left open
        if targets is not None
        else Targets(env=env, on_retry=lambda m: reporter.message(f"retrying: {m}"))
    ) as opened:
        the_plan = make_plan(specs, opened, target=target, project=project)
        for invalid in the_plan.invalid:
            reporter.message(f"invalid: {invalid.error}")
        for job in the_plan.jobs:
            if job.action == ERROR or (not train and job.action != NOOP):
                continue  # eval of a job without an ACTIVE model: the job's error says what to do
            reporter.message(f"{job.spec.name}: {job.label} -> {job.name}")
        results = run_plan(the_plan, opened, reporter, options, env=env)
    outcome = ApplyResult(the_plan, results)
    dirs = [r.report_dir for r in results]
    path = Path(junit) if junit else combined_junit_path(dirs, len(the_plan.invalid))
    if path is not None:
        outcome.junit = write_combined_junit(
            [r.report for r in results], [(str(i.path), i.error.problems) for i in the_plan.invalid], path
        )
    done = [r for r in results if r.report]
    html = combined_html_path(dirs) if any(r.reports.get("html") for r in done) else None
    if html is not None and html.parent not in dirs:  # a job's own report.html is never overwritten
        write_combined_html([r.report for r in done], [r.reports.get("html") for r in done], html)
    return outcome
