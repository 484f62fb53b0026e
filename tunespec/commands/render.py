"""`tunespec render SPEC`: print the exact CreateTunedModel body that `apply` sends; no network."""

from __future__ import annotations

import json

import click

from tunespec.datasets import load_examples
from tunespec.errors import EXIT_OK
from tunespec.request import render_request, spec_epochs, spec_steps
from tunespec.spec import load_spec
from tunespec.targets import target_name


def run(spec_path: str, *, as_json: bool) -> int:
    job = load_spec(spec_path)
    dataset = load_examples(job)
    body = render_request(job, dataset.examples, target=target_name(job.target, None))
    steps = spec_steps(job, len(dataset.examples))
    if as_json:
        doc = {"schema_version": 1, "api_version": job.dialect, "request": body,
               "example_count": len(dataset.examples), "predicted_steps": steps}
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))
    for problem in (*dataset.warnings, *getattr(body, "warnings", ())):
        click.echo(f"warning: {problem}", err=True)
    epochs = spec_epochs(job)
    if steps is None:
        click.echo(f"predicted steps: unknown (batch_size not set, the service picks it); "
                   f"{len(dataset.examples)} examples x {epochs} epochs", err=True)
    else:
        click.echo(f"predicted steps: {steps} = ceil({len(dataset.examples)} examples x {epochs} epochs"
                   f" / batch size {job.hyperparameters.batch_size}); POST /{job.dialect}/tunedModels",
                   err=True)
    return EXIT_OK
