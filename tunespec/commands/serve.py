"""`tunespec serve`: run the local engine in the foreground (needs the `local` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from tunespec.errors import EXIT_OK


def parse_models(items: Sequence[str]) -> dict[str, Path]:
    """`--model NAME=PATH` values as {models/NAME: absolute path} (PATH: a Hugging Face model
    directory or a .gguf file; the engine checks them when it starts)."""
    models: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"expected NAME=PATH, got {item!r}", param_hint="--model")
        models[name if name.startswith("models/") else f"models/{name}"] = Path(path).expanduser().resolve()
    return models


def run(*, host: str, port: int, data_dir: str | None, token_file: str | None, workers: int,
        models: Sequence[str], alias_model: str | None = None, executor: str = "local",
        ray_address: str | None = None, ray_cpus_per_job: float = 1.0, ray_gpus_per_job: float | None = None,
        storage: str | None = None) -> int:
    extra = parse_models(models)
    if executor != "ray" and (ray_address or storage or ray_gpus_per_job is not None):
        raise click.UsageError("--ray-address, --ray-gpus-per-job and --storage need --executor ray")
    try:
        from tunespec.engine.ray_executor import RaySettings
        from tunespec.engine.server import serve
    except ImportError as exc:
        raise click.ClickException(f"the local engine needs the 'local' extra "
                                   f"(pip install 'tunespec[local]'): {exc}") from None
    ray = None
    if executor == "ray":
        ray = RaySettings(address=ray_address, cpus_per_job=ray_cpus_per_job, gpus_per_job=ray_gpus_per_job,
                          storage=Path(storage).expanduser().resolve() if storage else None)
    serve(data_dir, host=host, port=port, token_file=token_file, workers=workers, models=extra,
          alias_model=alias_model, announce=lambda line: click.echo(line, err=True), ray=ray)
    return EXIT_OK
