"""`tunespec schema`: print the tuning-job JSON Schema (for editors and other tools)."""

from __future__ import annotations

import json

import click

from tunespec.errors import EXIT_OK
from tunespec.spec import schema as job_schema


def run() -> int:
    click.echo(json.dumps(job_schema(), indent=2))
    return EXIT_OK
