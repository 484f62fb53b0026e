"""`tunespec init`: write a starting job spec and a sample dataset, never overwriting anything."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from tunespec.errors import Problem, SpecError
from tunespec.spec.schema_check import schema


def scaffold(name: str, root: str | Path = ".") -> list[Path]:
    """Create ROOT/jobs/NAME.yaml, ROOT/data/NAME.csv and, when absent, the schema; returns the paths written.

    Raises SpecError (nothing written) when NAME is not a valid job name or a file exists.
    """
    rule = schema()["properties"]["name"]  # the schema's rule for `name`, so that init writes a valid spec
    if not re.match(rule["pattern"], name) or len(name) > rule["maxLength"]:
        hint = f"use at most {rule['maxLength']} {rule['x-expected']}"
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
