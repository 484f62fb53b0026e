"""The `tunespec` command line: a thin click shell over the library functions.

Nothing here imports torch or the engine at module level: `tunespec --help` and `validate` stay light.
"""

from __future__ import annotations

import sys

import click

from tunespec import __version__
from tunespec.errors import EXIT_INVALID, TunespecError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tunespec")
def cli() -> None:
    """Declarative, config-as-code runner for LLM tuning jobs.

    \b
    Exit codes:
      0  success
      1  service error, or the tuning job ended FAILED / cancelled
      2  invalid spec or dataset, or bad command-line usage
      3  evaluation pass rate below the spec's threshold
    """


# ---- spec commands: validate, render, init, schema (issue 2 / 5) ---------------------------------


@cli.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--json", "as_json", is_flag=True, help="Print a versioned JSON document instead of text.")
def validate(paths: tuple[str, ...], as_json: bool) -> None:
    """Check spec files, their datasets and prompts files; report every problem.

    PATH may be a spec file, a directory (its *.yaml / *.yml files, recursively; names starting
    with '_' are skipped, they hold shared settings for `extends:`) or a glob. Exits 0 when all are
    valid, 2 otherwise. With GITHUB_ACTIONS=true, problems are also printed as workflow annotations.
    """
    import json
    import os

    from tunespec.validate import github_annotation, results_json, validate_paths

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
                click.echo(f"invalid  {result.path} ({len(result.errors)} error"
                           f"{'s' if len(result.errors) != 1 else ''})")
        bad = sum(not r.valid for r in results)
        click.echo(f"{len(results)} file{'s' if len(results) != 1 else ''} checked: "
                   f"{len(results) - bad} valid, {bad} invalid")
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for result in results:
            for problem in (*result.errors, *result.warnings):
                click.echo(github_annotation(problem))
    if not all(r.valid for r in results):
        sys.exit(EXIT_INVALID)


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True,
              help='Print {"schema_version", "api_version", "request", "example_count", "predicted_steps"}.')
def render(spec: str, as_json: bool) -> None:
    """Print the exact CreateTunedModel request body for SPEC, without sending anything.

    The body (Google's camelCase JSON, training examples included) goes to stdout; the predicted
    step count, ceil(examples x epochs / batch_size), and any warnings go to stderr.
    """
    import json

    from tunespec.datasets import load_examples
    from tunespec.request import DEFAULT_EPOCHS, render_request, resolve_api_version, spec_steps
    from tunespec.spec import load_spec

    job = load_spec(spec)
    dataset = load_examples(job)
    body = render_request(job, dataset.examples)
    api_version = resolve_api_version(job)
    steps = spec_steps(job, len(dataset.examples))
    if as_json:
        click.echo(json.dumps({"schema_version": 1, "api_version": api_version, "request": body,
                               "example_count": len(dataset.examples), "predicted_steps": steps},
                              indent=2, ensure_ascii=False))
    else:
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))
    for problem in dataset.warnings:
        click.echo(f"warning: {problem}", err=True)
    hp = job.hyperparameters
    epochs = hp.epoch_count or DEFAULT_EPOCHS[api_version]
    if steps is None:
        click.echo(f"predicted steps: unknown (batch_size not set, the service picks it); "
                   f"{len(dataset.examples)} examples x {epochs} epochs", err=True)
    else:
        click.echo(f"predicted steps: {steps} = ceil({len(dataset.examples)} examples x {epochs} epochs"
                   f" / batch size {hp.batch_size}); POST /{api_version}/tunedModels", err=True)


@cli.command()
@click.argument("name", default="my-job")
@click.option("--dir", "root", type=click.Path(file_okay=False, path_type=str), default=".",
              show_default=True, help="Project directory to create jobs/NAME.yaml and data/NAME.csv in.")
def init(name: str, root: str) -> None:
    """Scaffold jobs/NAME.yaml and a sample dataset data/NAME.csv (never overwrites)."""
    from tunespec.scaffold import scaffold

    for path in scaffold(name, root):
        click.echo(f"created {path}")
    click.echo(f"next: tunespec validate jobs/{name}.yaml && tunespec render jobs/{name}.yaml")


@cli.command()
def schema() -> None:
    """Print the tuning-job JSON Schema (for editors and other tools)."""
    import json

    from tunespec.spec import schema as job_schema

    click.echo(json.dumps(job_schema(), indent=2))



# ---- engine command: serve (issue 3) --------------------------------------------------------------

# ---- runner commands: plan, apply, status, eval, list, delete (issue 4 / 5) ----------------------


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: known failures become one line and their exit code."""
    try:
        cli.main(args=argv, prog_name="tunespec", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_INVALID if exc.exit_code == 2 else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except TunespecError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
