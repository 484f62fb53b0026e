"""`tunespec init NAME`: scaffold jobs/NAME.yaml and a sample dataset data/NAME.csv (never overwrites)."""

from __future__ import annotations

import click

from tunespec.errors import EXIT_OK
from tunespec.scaffold import scaffold


def run(name: str, *, root: str) -> int:
    for path in scaffold(name, root):
        click.echo(f"created {path}")
    click.echo(f"next: tunespec validate jobs/{name}.yaml && tunespec render jobs/{name}.yaml")
    return EXIT_OK
