"""`tunespec delete SPEC... | --model NAME`: delete jobs' tuned models (asks first on a terminal)."""

from __future__ import annotations

from collections.abc import Sequence

import click

from tunespec.commands.output import err, fail, interactive, retrying
from tunespec.errors import EXIT_INVALID, EXIT_OK, TunespecError
from tunespec.planning import make_plan
from tunespec.service import TuningService
from tunespec.spec.model import DEFAULT_DIALECT
from tunespec.targets import Targets, target_name


def run(
    paths: Sequence[str],
    *,
    models: Sequence[str],
    target: str | None,
    project: str | None,
    api_version: str | None,
    superseded_only: bool,
    yes: bool,
) -> int:
    if superseded_only and not paths:
        err("error: --superseded needs job specs (PATH...): it deletes the models those jobs superseded; "
            "--model names exact models")
        return EXIT_INVALID
    if not paths and not models:
        err("error: name job specs (PATH...) or tuned models (--model tunedModels/ID)")
        return EXIT_INVALID
    try:
        with Targets(on_retry=retrying) as targets:
            doomed: list[tuple[TuningService, str]] = []
            if models:
                service = targets.service(target_name(None, target), api_version or DEFAULT_DIALECT, project)
                names = [m if m.startswith("tunedModels/") else f"tunedModels/{m}" for m in models]
                doomed += [(service, name) for name in names]
            if paths:
                plan = make_plan(list(paths), targets, target=target, project=project)
                for job in plan.jobs:
                    if job.error:
                        raise job.error
                    service = targets.service(job.target, job.dialect, job.project)
                    current = [] if superseded_only or job.model is None else [job.name]
                    names = list(job.superseded) + current
                    doomed += [(service, n) for n in names]
            if not doomed:
                err("Nothing to delete.")
                return EXIT_OK
            err("Will delete:\n" + "\n".join(f"  {name}" for _, name in doomed))
            if not yes:
                if not interactive():
                    err("error: refusing to delete without confirmation in a non-interactive run; pass --yes")
                    return EXIT_INVALID
                if not click.confirm("Delete these tuned models?", err=True):
                    err("Nothing deleted.")
                    return EXIT_OK
            for service, name in doomed:
                service.delete_tuned_model(name)
                err(f"deleted {name}")
    except TunespecError as exc:
        return fail(exc, False, "delete")
    return EXIT_OK
