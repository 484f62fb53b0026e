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
    valid, 2 otherwise. With GITHUB_ACTIONS=true (and without --json), problems are also printed as
    workflow annotations.
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
    if os.environ.get("GITHUB_ACTIONS") == "true" and not as_json:
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
    from tunespec.request import render_request, resolve_api_version, spec_epochs, spec_steps
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
    epochs = spec_epochs(job)
    if steps is None:
        click.echo(f"predicted steps: unknown (batch_size not set, the service picks it); "
                   f"{len(dataset.examples)} examples x {epochs} epochs", err=True)
    else:
        click.echo(f"predicted steps: {steps} = ceil({len(dataset.examples)} examples x {epochs} epochs"
                   f" / batch size {job.hyperparameters.batch_size}); POST /{api_version}/tunedModels",
                   err=True)


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

@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs --token-file.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0 picks a free one).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Where models, jobs and the database live "
                   "[default: $TUNESPEC_ENGINE_DIR or ~/.local/share/tunespec/engine].")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="File of 'TOKEN [PROJECT]' lines; callers must present one as a bearer token or API key.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Tuning jobs trained at the same time.")
@click.option("--model", "models", multiple=True, metavar="NAME=PATH",
              help="Serve a local Hugging Face causal LM directory as base model NAME (repeatable).")
def serve(host: str, port: int, data_dir: str | None, token_file: str | None, workers: int,
          models: tuple[str, ...]) -> None:
    """Run the local tuning engine: Google's tuning API (v1beta3, v1beta) on this machine."""
    from pathlib import Path

    extra: dict[str, Path] = {}
    for item in models:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"expected NAME=PATH, got {item!r}", param_hint="--model")
        extra[name if name.startswith("models/") else f"models/{name}"] = Path(path).expanduser().resolve()
    try:
        from tunespec.engine.server import serve as run_engine
    except ImportError as exc:
        raise click.ClickException(f"the local engine needs the 'local' extra "
                                   f"(pip install 'tunespec[local]'): {exc}") from None
    run_engine(data_dir, host=host, port=port, token_file=token_file, workers=workers, models=extra,
               announce=lambda line: click.echo(line, err=True))

# ---- runner commands: plan, apply, status, eval, list, delete (issue 4 / 5) ----------------------

_TARGET_HELP = "Where to run: local, google or an http(s) URL (default: $TUNESPEC_TARGET, else the spec's)."


def _runner_options(func):  # type: ignore[no-untyped-def]
    func = click.option("--project", default=None, metavar="ID",
                        help="Google Cloud quota project, sent as x-goog-user-project (ADC only).")(func)
    return click.option("--target", default=None, metavar="TARGET", help=_TARGET_HELP)(func)


_SPECS = click.argument("paths", nargs=-1, required=True, metavar="SPEC...")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print one versioned JSON document on stdout.")


@cli.command()
@_SPECS
@_runner_options
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 0 when nothing would change, 2 when changes are pending, 1 on errors.")
@_JSON
def plan(paths: tuple[str, ...], target: str | None, project: str | None,
         detailed_exitcode: bool, as_json: bool) -> None:
    """Show what apply would do for each job (files, directories or globs); changes nothing."""
    from tunespec.commands import plan_command

    sys.exit(plan_command(paths, target=target, project=project, detailed_exitcode=detailed_exitcode,
                          as_json=as_json))


@cli.command()
@_SPECS
@_runner_options
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Give up waiting after this long (the job keeps running; apply again to attach).")
@click.option("--prune", is_flag=True, help="Delete each job's superseded models after it succeeds.")
@click.option("--no-progress", is_flag=True, help="No progress bar (plain lines are used off a terminal).")
@click.option("--parallel", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Jobs applied at once.")
@click.option("--fail-fast", is_flag=True, help="Stop the other jobs when one fails.")
@click.option("--junit", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Where to write the run's combined JUnit XML (default: next to the report dirs).")
@_JSON
def apply(paths: tuple[str, ...], target: str | None, project: str | None,
          timeout: float | None, prune: bool, no_progress: bool, parallel: int, fail_fast: bool,
          junit: str | None, as_json: bool) -> None:
    """Tune what changed, wait, evaluate and write reports; an unchanged job trains nothing."""
    from tunespec.commands import apply_command

    sys.exit(apply_command(paths, target=target, project=project, timeout=timeout, prune=prune,
                           progress=not no_progress, parallel=parallel, fail_fast=fail_fast, junit=junit,
                           as_json=as_json))


@cli.command(name="eval")
@_SPECS
@_runner_options
@click.option("--parallel", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Jobs evaluated at once.")
@click.option("--junit", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Where to write the run's combined JUnit XML.")
@_JSON
def eval_(paths: tuple[str, ...], target: str | None, project: str | None,
          parallel: int, junit: str | None, as_json: bool) -> None:
    """Re-run the evaluation on each job's existing model (no tuning) and rewrite its reports."""
    from tunespec.commands import apply_command

    sys.exit(apply_command(paths, target=target, project=project, timeout=None, prune=False, progress=False,
                           parallel=parallel, fail_fast=False, junit=junit, as_json=as_json, train=False))


@cli.command()
@_SPECS
@_runner_options
@_JSON
def status(paths: tuple[str, ...], target: str | None, project: str | None,
           as_json: bool) -> None:
    """State, progress and last loss of each job's model."""
    from tunespec.commands import status_command

    sys.exit(status_command(paths, target=target, project=project, as_json=as_json))


@cli.command(name="list")
@click.argument("paths", nargs=-1, metavar="[SPEC...]")
@_runner_options
@click.option("--api-version", type=click.Choice(["v1beta3", "v1beta"]), default=None,
              help="API dialect when no spec is given (default v1beta3).")
@_JSON
def list_(paths: tuple[str, ...], target: str | None, project: str | None,
          api_version: str | None, as_json: bool) -> None:
    """List tuned models: all of the target's, or those of the given jobs (current and superseded)."""
    from tunespec.commands import list_command

    sys.exit(list_command(paths, target=target, project=project, api_version=api_version, as_json=as_json))


@cli.command()
@click.argument("paths", nargs=-1, metavar="[SPEC...]")
@click.option("--model", "models", multiple=True, metavar="NAME",
              help="A tuned model to delete (repeatable).")
@_runner_options
@click.option("--api-version", type=click.Choice(["v1beta3", "v1beta"]), default=None,
              help="API dialect for --model (default v1beta3).")
@click.option("--superseded", "superseded_only", is_flag=True,
              help="Only the jobs' superseded models, not their current ones.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (required off a terminal).")
def delete(paths: tuple[str, ...], models: tuple[str, ...], target: str | None,
           project: str | None, api_version: str | None, superseded_only: bool, yes: bool) -> None:
    """Delete the jobs' tuned models (current and superseded), or the models named with --model."""
    from tunespec.commands import delete_command

    sys.exit(delete_command(paths, models=models, target=target, project=project, api_version=api_version,
                            superseded_only=superseded_only, yes=yes))


INTERRUPTED = "Interrupted."  # apply and eval say more: "Interrupted: <what became of the jobs>."


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (a CI timeout, docker stop) cleans up the way Ctrl-C does


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: known failures become one line and their exit code."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        code = cli.main(args=argv, prog_name="tunespec", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except click.exceptions.Abort as exc:
        # click turns Ctrl-C (and SIGTERM, above) inside a command or prompt into Abort; say it the way
        # apply does. A prompt closed by end of input is not an interrupt.
        cause = exc.__cause__ or exc.__context__
        click.echo(INTERRUPTED if isinstance(cause, KeyboardInterrupt) else "Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)  # a usage error exits 2, which is EXIT_INVALID
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except TunespecError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo(INTERRUPTED, err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
