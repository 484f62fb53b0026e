"""JobSpec + examples -> a Vertex AI tuning job: the contents JSONL, its gs:// name, the TuningJob body.

The training data is staged in Cloud Storage under a content-addressed name (`<prefix>/<sha256>.jsonl`),
so an unchanged dataset keeps its URI and is never uploaded twice. The body is the `TuningJob` that
`POST /v1/projects/{p}/locations/{l}/tuningJobs` takes; its labels carry the job's name and fingerprint,
which is how a rerun finds its job again. The Vertex parent (project and region) is part of the job's
dialect, `vertex:<project>/<location>`, so the fingerprint covers where the job runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

from tunespec.errors import EXIT_INVALID, TunespecError
from tunespec.spec import DEFAULT_BASE_MODEL, JobSpec

VERTEX = "vertex"
DIALECT_PREFIX = "vertex:"
LOCATION_ENV = "GOOGLE_CLOUD_LOCATION"
BUCKET_ENV = "TUNESPEC_VERTEX_STAGING_BUCKET"
PROJECT_ENV = "GOOGLE_CLOUD_PROJECT"
DEFAULT_LOCATION = "us-central1"
JOB_LABEL, FINGERPRINT_LABEL = "tunespec_job", "tunespec_fingerprint"
ADAPTER_SIZES = {1: "ONE", 2: "TWO", 4: "FOUR", 8: "EIGHT", 16: "SIXTEEN", 32: "THIRTY_TWO"}
ADAPTER_ENUM = {f"ADAPTER_SIZE_{word}": size for size, word in ADAPTER_SIZES.items()}
IGNORED = {  # spec settings Vertex tuning jobs have no field for
    "batch_size": "Vertex picks the batch size",
    "learning_rate": "Vertex takes learning_rate_multiplier, not a raw learning rate",
    "tuning_method": "Vertex tunes adapters (adapter_size)",
    "temperature": "a Vertex tuned model has no stored sampling defaults; set evaluation.temperature",
    "top_p": "a Vertex tuned model has no stored sampling defaults",
    "top_k": "a Vertex tuned model has no stored sampling defaults",
}


class VertexSettingsError(TunespecError):
    """A vertex job lacks its project or staging bucket."""

    exit_code = EXIT_INVALID


@dataclass(frozen=True)
class VertexSettings:
    """Where a job runs on Vertex: project, region, and the gs:// prefix its data is staged under."""

    project: str
    location: str
    staging_bucket: str | None

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def dialect(self) -> str:
        return f"{DIALECT_PREFIX}{self.project}/{self.location}"


@cache
def model_table() -> dict[str, Any]:
    """tunespec/data/vertex_models.json: the base models Vertex tunes and their limits."""
    text = resources.files("tunespec").joinpath("data/vertex_models.json").read_text(encoding="utf-8")
    return json.loads(text)


def settings_of(
    spec: JobSpec, project: str | None = None, env: Mapping[str, str] | None = None
) -> VertexSettings:
    """The job's Vertex settings: `project` (--project), else the spec's vertex.project, else its project,
    else $GOOGLE_CLOUD_PROJECT; the region from vertex.location, $GOOGLE_CLOUD_LOCATION or us-central1."""
    env = os.environ if env is None else env
    v = spec.vertex
    chosen = project or v.project or spec.project or env.get(PROJECT_ENV)
    if not chosen:
        raise VertexSettingsError(
            f"{spec.path}: vertex: no Google Cloud project for job {spec.name!r}; set vertex.project in "
            f"the spec, pass --project, or set {PROJECT_ENV}"
        )
    location = v.location or env.get(LOCATION_ENV) or DEFAULT_LOCATION
    return VertexSettings(chosen, location, v.staging_bucket or env.get(BUCKET_ENV) or None)


def parse_dialect(dialect: str) -> tuple[str, str]:
    """`vertex:<project>/<location>` -> (project, location)."""
    project, _, location = dialect.removeprefix(DIALECT_PREFIX).partition("/")
    return project, location or DEFAULT_LOCATION


def base_model(spec: JobSpec) -> str:
    """The Vertex name of the spec's base model (`models/gemini-2.5-flash` -> `gemini-2.5-flash`)."""
    return (spec.base_model or DEFAULT_BASE_MODEL).removeprefix("models/")


def warnings_for(spec: JobSpec, today: date | None = None) -> list[str]:
    """What the vertex target ignores or doubts in `spec`: each a one-line warning."""
    out = []
    hp = spec.hyperparameters
    settings = {
        "batch_size": hp.batch_size,
        "learning_rate": hp.learning_rate,
        "tuning_method": spec.tuning_method,
        "temperature": spec.temperature,
        "top_p": spec.top_p,
        "top_k": spec.top_k,
    }
    for key, value in settings.items():
        if value is not None:
            line = spec.lines.get(f"hyperparameters.{key}") or spec.lines.get(key)
            where = f"{spec.path}:{line}" if line else str(spec.path)
            out.append(f"{where}: {key} is ignored on target vertex ({IGNORED[key]})")
    name = base_model(spec)
    table = model_table()["models"]
    entry = table.get(name)
    if entry is None:
        out.append(
            f"{spec.path}: base_model {name} is not in tunespec's table of Vertex tunable models "
            f"({', '.join(table)}); sending it anyway"
        )
    else:
        shutdown = entry.get("shutdown")
        if shutdown and (today or date.today()).isoformat() >= shutdown:
            out.append(f"{spec.path}: base_model {name} was to shut down on {shutdown}; Vertex may refuse it")
        if hp.adapter_size is not None and hp.adapter_size not in entry.get("adapter_sizes", ()):
            out.append(
                f"{spec.path}: adapter_size {hp.adapter_size} is not one {name} takes "
                f"({', '.join(map(str, entry['adapter_sizes']))})"
            )
    return out


def contents_line(text_input: str, output: str) -> dict[str, Any]:
    """One supervised example as Vertex takes it: a user turn and the model's answer."""
    return {
        "contents": [
            {"role": "user", "parts": [{"text": text_input}]},
            {"role": "model", "parts": [{"text": output}]},
        ]
    }


def contents_jsonl(examples: Sequence[Any]) -> bytes:
    """The training file: one `contents` example a line, UTF-8."""
    lines = (
        json.dumps(contents_line(e.text_input, e.output), ensure_ascii=False, separators=(",", ":"))
        for e in examples
    )
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def staged_uri(staging_bucket: str, data: bytes) -> str:
    """The content-addressed gs:// name of `data` under `staging_bucket`."""
    return f"{staging_bucket.rstrip('/')}/{hashlib.sha256(data).hexdigest()}.jsonl"


def labels_for(tuned_model_id: str) -> dict[str, str]:
    """The labels that find a job again: its name and fingerprint (`<name>-<fingerprint>`)."""
    name, _, fp = tuned_model_id.rpartition("-")
    return {JOB_LABEL: name, FINGERPRINT_LABEL: fp}


class TuningJobBody(dict):
    """A TuningJob body (a plain dict on the wire) with the files it refers to: {gs:// URI: bytes}."""

    files: dict[str, bytes]
    warnings: list[str]


def render_tuning_job(
    spec: JobSpec,
    examples: Sequence[Any],
    *,
    tuned_model_id: str | None = None,
    project: str | None = None,
    env: Mapping[str, str] | None = None,
) -> TuningJobBody:
    """The TuningJob body for `spec`, its training data staged under the spec's staging bucket."""
    from tunespec.identity import fingerprint
    from tunespec.identity import tuned_model_id as model_id_of

    env = os.environ if env is None else env
    settings = settings_of(spec, project, env)
    if not settings.staging_bucket:
        raise VertexSettingsError(
            f"{spec.path}: vertex: no staging bucket for job {spec.name!r}; set vertex.staging_bucket: "
            f"gs://BUCKET/PREFIX in the spec, or {BUCKET_ENV}"
        )
    data = contents_jsonl(examples)
    uri = staged_uri(settings.staging_bucket, data)
    if tuned_model_id is None:
        tuned_model_id = model_id_of(spec.name, fingerprint(spec, examples, settings.dialect))
    hp = spec.hyperparameters
    hyper: dict[str, Any] = {}
    if hp.epoch_count is not None:
        hyper["epochCount"] = hp.epoch_count
    if hp.learning_rate_multiplier is not None:
        hyper["learningRateMultiplier"] = hp.learning_rate_multiplier
    if hp.adapter_size is not None:
        hyper["adapterSize"] = f"ADAPTER_SIZE_{ADAPTER_SIZES[hp.adapter_size]}"
    tuning: dict[str, Any] = {"trainingDatasetUri": uri}
    if hyper:
        tuning["hyperParameters"] = hyper
    body = TuningJobBody(baseModel=base_model(spec))
    longest = model_table()["limits"]["max_display_name"]
    body["tunedModelDisplayName"] = (spec.display_name or tuned_model_id)[:longest]
    if spec.description is not None:
        body["description"] = spec.description
    body["labels"] = labels_for(tuned_model_id)
    body["supervisedTuningSpec"] = tuning
    body.files = {uri: data}
    body.warnings = warnings_for(spec)
    return body
