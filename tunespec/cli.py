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
