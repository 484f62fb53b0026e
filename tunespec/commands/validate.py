"""`tunespec validate PATH...`: check specs, datasets and prompts files; report every problem."""

from __future__ import annotations

import json
from collections.abc import Sequence

import click

from tunespec.errors import EXIT_INVALID, EXIT_OK
from tunespec.github import github_annotation, in_actions
from tunespec.validate import results_json, validate_paths


def run(paths: Sequence[str], *, as_json: bool) -> int:
    results = validate_paths(paths)
    if as_json:
        click.echo(json.dumps(results_json(results), indent=2))
    else:
        for result in results:
            for problem in result.errors:
                click.echo(f"{problem}", err=True)
            for problem in result.warnings:
                click.echo(f"warning: {problem}", err=True)
            if result.valid:
                detail = f" ({result.stats.count} examples)" if result.stats else ""
                click.echo(f"ok       {result.path}{detail}")
            else:
                errors = len(result.errors)
                click.echo(f"invalid  {result.path} ({errors} error{'s' if errors != 1 else ''})")
        bad = sum(not r.valid for r in results)
        click.echo(f"{len(results)} file{'s' if len(results) != 1 else ''} checked: "
                   f"{len(results) - bad} valid, {bad} invalid")
    if in_actions() and not as_json:
        for result in results:
            for problem in (*result.errors, *result.warnings):
                click.echo(github_annotation(problem))
    return EXIT_OK if all(r.valid for r in results) else EXIT_INVALID
