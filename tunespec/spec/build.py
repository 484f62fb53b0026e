"""A validated spec document -> the typed JobSpec, defaults filled in and paths made absolute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunespec.datasets import read_eval_examples
from tunespec.spec.locations import LocatedDoc, Problems, format_key_path
from tunespec.spec.model import (
    DEFAULT_BASE_MODEL,
    Assertion,
    DatasetSpec,
    EvalPrompt,
    Evaluation,
    Hyperparameters,
    JobSpec,
    ReportSpec,
    Sharing,
    ValidationSplit,
    VertexSpec,
    assertions_of,
    scored_prompt,
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
            prompts.append(EvalPrompt(p["input"], assertions_of(p.items(), loc.path.parent),
                                      _int(p.get("repeat", 1)), p.get("name"), loc.line, loc.file))
        if "prompts_file" in ev:
            file = doc.file_at(("evaluation", "prompts_file"), ev["prompts_file"])
            prompts += read_prompts_file(file, problems)
        score_with = score_with_of(ev.get("score_with", "equals"))
        evaluation = Evaluation(tuple(prompts), float(ev.get("threshold", 1.0)),
                                _int(ev.get("candidate_count", 1)), ev.get("temperature"),
                                _int(ev.get("max_output_tokens")), ev.get("compare_base", False),
                                _int(ev.get("concurrency")),
                                examples=eval_dataset_prompts(doc, dataset, score_with, problems),
                                score_with=score_with,
                                accuracy_threshold=_float(ev.get("accuracy_threshold")),
                                score_threshold=_float(ev.get("score_threshold")),
                                judge_model=ev.get("judge_model"))
    elif dataset.validation_split is not None:  # held-out examples are scored without an evaluation section
        evaluation = Evaluation(())
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
                                        _float(hp.get("learning_rate_multiplier")),
                                        _int(hp.get("adapter_size"))),
        temperature=_float(data.get("temperature")), top_p=_float(data.get("top_p")),
        top_k=_int(data.get("top_k")),
        evaluation=evaluation, lines=lines, extends=extends,
        vertex=VertexSpec(**{k: data.get("vertex", {}).get(k) for k in VERTEX_KEYS}),
        sharing=sharing_of(data.get("sharing")),
    )


VERTEX_KEYS = ("project", "location", "staging_bucket")


def sharing_of(value: Any) -> Sharing | None:
    """The `sharing:` section (readers, writers) as a Sharing; None without one."""
    if value is None:
        return None
    return Sharing(tuple(value.get("readers", ())), tuple(value.get("writers", ())))


def dataset_spec(doc: LocatedDoc) -> DatasetSpec:
    """The `dataset:` settings of a document whose dataset section has no problems."""
    ds = doc.data["dataset"]
    path = doc.file_at(("dataset", "path"), ds["path"]) if "path" in ds else None
    inline = tuple((e["text_input"], e["output"]) for e in ds["examples"]) if "examples" in ds else None
    return DatasetSpec(path, ds.get("format"), ds.get("input_column", "text_input"),
                       ds.get("output_column", "output"), inline, split_of(ds.get("validation_split")))


def split_of(value: Any) -> ValidationSplit | None:
    """`dataset.validation_split` (a fraction, a count, or {size, seed}) as a ValidationSplit."""
    if value is None:
        return None
    seed = 0
    if isinstance(value, dict):
        seed, value = int(value.get("seed", 0)), value["size"]
    if isinstance(value, float) and not value.is_integer():
        return ValidationSplit(fraction=value, seed=seed)
    return ValidationSplit(count=int(value), seed=seed)


def score_with_of(value: Any) -> Assertion:
    """`evaluation.score_with` as the assertion each scored example gets (its value: the expected)."""
    if isinstance(value, dict):
        return Assertion(value["kind"], "", threshold=_float(value.get("threshold")))
    return Assertion(value, "")


def eval_dataset_prompts(doc: LocatedDoc, dataset: DatasetSpec, score_with: Assertion,
                         problems: Problems) -> tuple[EvalPrompt, ...]:
    """`evaluation.dataset`'s rows as prompts scored with `score_with`; its problems go to `problems`."""
    value = doc.data["evaluation"].get("dataset")
    if value is None:
        return ()
    settings = value if isinstance(value, dict) else {"path": value}
    key = ("evaluation", "dataset") + (("path",) if isinstance(value, dict) else ())
    path = doc.file_at(key, settings["path"])
    rows = read_eval_examples(path, settings.get("format"),
                              settings.get("input_column", dataset.input_column),
                              settings.get("output_column", dataset.output_column), problems)
    return tuple(scored_prompt(text, expected, score_with, "dataset", None, source, f"{path.name} row {row}")
                 for text, expected, row, source in rows)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _int(value: Any) -> Any:
    """JSON Schema's integers include 1e3 (a float YAML reads): the API gets 1000, not 1000.0."""
    return int(value) if isinstance(value, float) and value.is_integer() else value
