"""`tunespec export tunedModels/ID --out DIR`: a local engine's tuned model as a Hugging Face directory."""

from __future__ import annotations

import os
from pathlib import Path

from tunespec.auth import PROJECT_ENV
from tunespec.commands.output import err
from tunespec.engine.datadir import default_data_dir
from tunespec.engine.door import DEFAULT_PROJECT
from tunespec.engine.export import ExportError, export
from tunespec.errors import EXIT_INVALID, EXIT_OK, EXIT_SERVICE, shown_path


def run(name: str, *, out: str, adapter_only: bool, data_dir: str | None, project: str | None) -> int:
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    # the project the runner's local target sends (targets.py), else the engine's default
    project = project or os.environ.get(PROJECT_ENV) or DEFAULT_PROJECT
    try:
        done = export(root, name, Path(out), project=project, adapter_only=adapter_only)
    except ExportError as exc:
        err(f"error: {exc}")
        return EXIT_INVALID if exc.usage else EXIT_SERVICE
    except OSError as exc:  # --out unwritable, disk full, the model deleted while being copied
        err(f"error: exporting {name} to {shown_path(out)} failed: {exc}")
        return EXIT_SERVICE
    except ImportError as exc:
        err(f"error: exporting needs the local engine's packages (pip install 'tunespec[local]'): {exc}")
        return EXIT_SERVICE
    what = {"full": "full model", "merged": "LoRA merged into its base", "adapter": "LoRA adapter"}[done.kind]
    err(f"exported {done.name} ({what}) to {shown_path(done.out)}")
    if done.base_dir is not None:
        err(f"its base model: {done.base_dir}")
    err("prompt format and loading: see README.md there")
    return EXIT_OK
