"""A validated spec document -> the typed JobSpec, defaults filled in and paths made absolute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunespec.spec.locations import LocatedDoc, Problems, format_key_path
from tunespec.spec.model import (
    DEFAULT_BASE_MODEL,
    DatasetSpec,
    EvalPrompt,
    Evaluation,
    Hyperparameters,
    JobSpec,
    ReportSpec,
    assertions_of,
)
from tunespec.spec.prompts_file import read_prompts_file


def build_spec(doc: LocatedDoc, spec_path: Path, problems: Problems, extends: tuple[Path, ...]) -> JobSpec:
    """The JobSpec of a document without problems; problems in its prompts file are added to `problems`."""
    data = doc.data
    dataset = dataset_spec(doc)
    rep = data.get("report", {})
    # `{name}` lets one report dir setting (say in an `extends:` base) serve many jobs.
    report_dir = doc.file_at(("report", "dir"), rep["dir"].replace("{name}", data["name"])) \
        if "dir" in rep else Path.cwd().resolve() / "reports" / data["name"]
    formats = rep.get("formats", ReportSpec.__dataclass_fields__["formats"].default)
    report = ReportSpec(report_dir, tuple(formats))
    evaluation = None
    ev = data.get("evaluation")
    if isinstance(ev, dict):
        prompts = []
        for i, p in enumerate(ev.get("prompts", [])):
            loc = doc.loc(("evaluation", "prompts", i))
            prompts.append(EvalPrompt(p["input"], assertions_of(p.items()), _int(p.get("repeat", 1)),
                                      p.get("name"), loc.line, loc.file))
        if "prompts_file" in ev:
            file = doc.file_at(("evaluation", "prompts_file"), ev["prompts_file"])
            prompts += read_prompts_file(file, problems)
        evaluation = Evaluation(tuple(prompts), float(ev.get("threshold", 1.0)),
                                _int(ev.get("candidate_count", 1)), ev.get("temperature"),
                                _int(ev.get("max_output_tokens")), ev.get("compare_base", False),
                                _int(ev.get("concurrency", 4)))
    hp = data.get("hyperparameters", {})
    lines = {format_key_path(p): loc.line for p, loc in doc.values.items() if p and loc.path == doc.top.path}
    base_model = data.get("base_model")
    if base_model is None and "source_model" not in data:
        base_model = DEFAULT_BASE_MODEL
    return JobSpec(
        path=spec_path, name=data["name"], dataset=dataset, report=report,
        display_name=data.get("display_name"), description=data.get("description"),
        target=data.get("target", "local"), project=data.get("project"), api_version=data.get("api_version"),
        base_model=base_model, source_model=data.get("source_model"), tuning_method=data.get("tuning_method"),
        hyperparameters=Hyperparameters(_int(hp.get("epoch_count")), _int(hp.get("batch_size")),
                                        _float(hp.get("learning_rate")),
                                        _float(hp.get("learning_rate_multiplier"))),
        temperature=_float(data.get("temperature")), top_p=_float(data.get("top_p")),
        top_k=_int(data.get("top_k")),
        evaluation=evaluation, lines=lines, extends=extends,
    )


def dataset_spec(doc: LocatedDoc) -> DatasetSpec:
    """The `dataset:` settings of a document whose dataset section has no problems."""
    ds = doc.data["dataset"]
    path = doc.file_at(("dataset", "path"), ds["path"]) if "path" in ds else None
    inline = tuple((e["text_input"], e["output"]) for e in ds["examples"]) if "examples" in ds else None
    return DatasetSpec(path, ds.get("format"), ds.get("input_column", "text_input"),
                       ds.get("output_column", "output"), inline)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _int(value: Any) -> Any:
    """JSON Schema's integers include 1e3 (a float YAML reads): the API gets 1000, not 1000.0."""
    return int(value) if isinstance(value, float) and value.is_integer() else value
