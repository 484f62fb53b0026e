"""The `tunespec` command line: its commands and options, declared with click.

Each command's work is in `tunespec.commands.<verb>.run(...)`, imported when the command runs, so that
`tunespec --help` and `validate` stay light (no torch, no engine).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from importlib import import_module
from typing import Any

import click

from tunespec.errors import EXIT_CODES, EXIT_INTERRUPTED, TunespecError
from tunespec.signals import sigterm_as_interrupt
from tunespec.version import __version__

HELP = "Declarative, config-as-code runner for LLM tuning jobs.\n\n\b\nExit codes:\n" + "\n".join(
    f"  {code:<3}  {meaning}" for code, meaning in EXIT_CODES.items()
)
INTERRUPTED = "Interrupted."  # apply and eval say more: "Interrupted: <what became of the jobs>."


def _run(verb: str, *args: Any, **kwargs: Any) -> None:
    """Run `tunespec.commands.<verb>.run` and exit with the code it returns."""
    sys.exit(import_module(f"tunespec.commands.{verb}").run(*args, **kwargs))


@click.group(help=HELP, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tunespec")
def cli() -> None:
    pass


# ---- spec commands: validate, render, init, schema -----------------------------------------------------


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
    _run("validate", paths, as_json=as_json)


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True,
              help='Print {"schema_version", "api_version", "request", "example_count", "predicted_steps"}.')
def render(spec: str, as_json: bool) -> None:
    """Print the exact CreateTunedModel request body for SPEC, without sending anything.

    The body (Google's camelCase JSON, training examples included) goes to stdout; the predicted
    step count, ceil(examples x epochs / batch_size), and any warnings go to stderr.
    """
    _run("render", spec, as_json=as_json)


@cli.command()
@click.argument("name", default="my-job")
@click.option("--dir", "root", type=click.Path(file_okay=False, path_type=str), default=".",
              show_default=True, help="Project directory to create jobs/NAME.yaml and data/NAME.csv in.")
def init(name: str, root: str) -> None:
    """Scaffold jobs/NAME.yaml and a sample dataset data/NAME.csv (never overwrites)."""
    _run("init", name, root=root)


@cli.command()
def schema() -> None:
    """Print the tuning-job JSON Schema (for editors and other tools)."""
    _run("schema")


# ---- engine command: serve ---------------------------------------------------------------------------


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
              help="Serve a local Hugging Face causal LM directory, or a GGUF file (converted once into "
                   "the data dir), as base model NAME (repeatable).")
@click.option("--alias-model", default=None, metavar="auto|builtin|NAME",
              help="The model serving Google's model names (models/text-bison-001, the Gemini names): "
                   "auto (the best installed pretrained model, else the built-in one), builtin, or a "
                   "model NAME [default: $TUNESPEC_ALIAS_MODEL, else auto].")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where jobs train: worker processes of this engine, or tasks on a Ray cluster "
                   "(pip install 'tunespec[ray]').")
@click.option("--ray-address", default=None, metavar="HOST:PORT",
              help="The Ray cluster to join (its token authentication stays on) [default: start a local "
                   "Ray instance bound to 127.0.0.1].")
@click.option("--ray-cpus-per-job", default=1.0, show_default=True, type=click.FloatRange(min=0.0, max=1024),
              help="CPUs each job asks Ray for.")
@click.option("--ray-gpus-per-job", default=None, type=click.FloatRange(min=0.0, max=64),
              help="GPUs each job asks Ray for [default: 1 when the cluster has GPUs, else 0].")
@click.option("--storage", default=None, type=click.Path(file_okay=False, path_type=str),
              help="With --executor ray: a path every Ray node reaches (a shared file system) for "
                   "checkpoints, base models and tuned weights [default: the data dir].")
def serve(host: str, port: int, data_dir: str | None, token_file: str | None, workers: int,
          models: tuple[str, ...], alias_model: str | None, executor: str, ray_address: str | None,
          ray_cpus_per_job: float, ray_gpus_per_job: float | None, storage: str | None) -> None:
    """Run the local tuning engine: Google's tuning API (v1beta3, v1beta) on this machine."""
    _run("serve", host=host, port=port, data_dir=data_dir, token_file=token_file, workers=workers,
         models=models, alias_model=alias_model, executor=executor, ray_address=ray_address,
         ray_cpus_per_job=ray_cpus_per_job, ray_gpus_per_job=ray_gpus_per_job, storage=storage)


# ---- runner commands: plan, apply, eval, status, list, delete ----------------------------------------

def _finite_seconds(value: float | None) -> float | None:
    """--timeout: a positive, finite number of seconds (FloatRange lets nan and inf through)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number of seconds.")
    return value


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
    _run("plan", paths, target=target, project=project, detailed_exitcode=detailed_exitcode, as_json=as_json)


@cli.command()
@_SPECS
@_runner_options
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              callback=lambda _ctx, _param, value: _finite_seconds(value),
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
    _run("apply", paths, target=target, project=project, timeout=timeout, prune=prune,
         progress=not no_progress, parallel=parallel, fail_fast=fail_fast, junit=junit, as_json=as_json)


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
    _run("apply", paths, target=target, project=project, timeout=None, prune=False, progress=False,
         parallel=parallel, fail_fast=False, junit=junit, as_json=as_json, train=False)


@cli.command()
@_SPECS
@_runner_options
@_JSON
def status(paths: tuple[str, ...], target: str | None, project: str | None, as_json: bool) -> None:
    """State, progress and last loss of each job's model."""
    _run("status", paths, target=target, project=project, as_json=as_json)


@cli.command(name="list")
@click.argument("paths", nargs=-1, metavar="[SPEC...]")
@_runner_options
@click.option("--api-version", type=click.Choice(["v1beta3", "v1beta"]), default=None,
              help="API dialect when no spec is given (default v1beta3).")
@_JSON
def list_(paths: tuple[str, ...], target: str | None, project: str | None,
          api_version: str | None, as_json: bool) -> None:
    """List tuned models: all of the target's, or those of the given jobs (current and superseded)."""
    _run("list", paths, target=target, project=project, api_version=api_version, as_json=as_json)


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
    _run("delete", paths, models=models, target=target, project=project, api_version=api_version,
         superseded_only=superseded_only, yes=yes)


@cli.command(name="export")
@click.argument("model", metavar="tunedModels/ID")
@click.option("--out", required=True, type=click.Path(path_type=str), metavar="DIR",
              help="New (or empty) directory to write the model to.")
@click.option("--adapter-only", is_flag=True,
              help="Write the LoRA adapter alone (peft), not the model with the adapter merged in.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=str), default=None,
              help="The local engine's data dir [default: $TUNESPEC_ENGINE_DIR or "
                   "~/.local/share/tunespec/engine].")
@click.option("--project", default=None, metavar="ID",
              help="The project the model was tuned in [default: $GOOGLE_CLOUD_PROJECT, else 'default'].")
def export_(model: str, out: str, adapter_only: bool, data_dir: str | None, project: str | None) -> None:
    """Export a local engine's tuned model as a Hugging Face directory that plain transformers loads.

    LoRA-tuned models are written with the adapter merged into the base (or, with --adapter-only,
    as a peft adapter). README.md and tunespec-export.json in DIR say how the engine frames prompts.
    """
    _run("export", model, out=out, adapter_only=adapter_only, data_dir=data_dir, project=project)


# ---- entry point -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: known failures become one line and their exit code.

    Run as the `tunespec` command (no `argv`), a process that loaded torch exits without the
    interpreter's teardown of it (about a second): by then every file is written and closed.
    """
    try:
        _main(argv)
    except SystemExit as exc:
        if argv is None and "torch" in sys.modules:
            _exit_now(exc.code)
        raise


def _exit_now(code: object) -> None:
    if code is not None and not isinstance(code, int):
        sys.stderr.write(f"{code}\n")
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code or 0)


def _main(argv: list[str] | None) -> None:
    with sigterm_as_interrupt():  # a CI timeout or `docker stop` cleans up the way Ctrl-C does
        try:
            code = cli.main(args=argv, prog_name="tunespec", standalone_mode=False)
            sys.exit(code if isinstance(code, int) else 0)
        except click.exceptions.Abort as exc:
            # click turns Ctrl-C (and SIGTERM) inside a command or prompt into Abort; say it the way
            # apply does. A prompt closed by end of input is not an interrupt.
            cause = exc.__cause__ or exc.__context__
            click.echo(INTERRUPTED if isinstance(cause, KeyboardInterrupt) else "Aborted.", err=True)
            sys.exit(EXIT_INTERRUPTED)
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
            sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
