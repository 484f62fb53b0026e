"""`tunespec init`: write a starting job spec and a sample dataset, never overwriting anything."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from tunespec.errors import Problem, SpecError

NAME_PATTERN = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")
MAX_NAME = 29


def scaffold(name: str, root: str | Path = ".") -> list[Path]:
    """Create ROOT/jobs/NAME.yaml, ROOT/data/NAME.csv and, when absent, the schema; returns the paths written.

    Raises SpecError (nothing written) when NAME is not a valid job name or a file exists.
    """
    if not NAME_PATTERN.match(name) or len(name) > MAX_NAME:
        hint = ("use at most 29 lowercase letters, digits and hyphens, starting with a letter and ending "
                "with a letter or digit")
        raise SpecError([Problem(name, "not a valid job name", hint=hint)])
    root = Path(root)
    spec_path, data_path = root / "jobs" / f"{name}.yaml", root / "data" / f"{name}.csv"
    existing = [p for p in (spec_path, data_path) if p.exists()]
    if existing:
        raise SpecError([Problem(str(p), "already exists; not overwriting it",
                                 hint="choose another NAME or remove the file") for p in existing])
    templates = resources.files("tunespec") / "templates"
    spec_text = (templates / "job.yaml").read_text("utf-8").format(
        name=name, display_name=name.replace("-", " ")[:40], spec_path=f"jobs/{name}.yaml",
        dataset_ref=f"../data/{name}.csv")
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    data_path.parent.mkdir(parents=True, exist_ok=True)
    data_path.write_bytes((templates / "sample.csv").read_bytes())
    spec_path.write_text(spec_text, "utf-8")
    written = [spec_path, data_path]
    # The spec's `$schema=../schemas/tuning-job.schema.json` line needs the file for editors to use it.
    schema_path = root / "schemas" / "tuning-job.schema.json"
    if not schema_path.exists():
        schema_path.parent.mkdir(parents=True, exist_ok=True)
        schema_path.write_bytes((resources.files("tunespec") / "schemas" / schema_path.name).read_bytes())
        written.append(schema_path)
    return written
