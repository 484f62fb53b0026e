"""What the commands print: messages on stderr, tables and JSON documents on stdout, shown paths."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click

from tunespec.errors import TunespecError


def err(text: str) -> None:
    """A message for the person at the terminal (stderr)."""
    click.echo(text, err=True)


def retrying(message: str) -> None:
    err(f"retrying: {message}")


def print_json(doc: Mapping[str, Any]) -> None:
    """The command's one JSON document (stdout)."""
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False))


def fail(exc: TunespecError, as_json: bool, kind: str) -> int:
    """Report a command-ending error (as a JSON document too with --json); returns its exit code."""
    if as_json:
        print_json(
            {"schema_version": 1, "kind": f"tunespec.{kind}", "exit_code": exc.exit_code, "error": str(exc)}
        )
    err(f"error: {exc}")
    return exc.exit_code


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """ROWS as left-aligned columns two spaces apart, the first row the header."""
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def interactive(env: Mapping[str, str] | None = None) -> bool:
    """Whether we may ask the user something: stdin is a terminal and CI is not set."""
    env = os.environ if env is None else env
    return sys.stdin.isatty() and not env.get("CI")
