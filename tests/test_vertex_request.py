"""The vertex target without a network: spec settings, the TuningJob body, the contents JSONL, warnings,
and how Vertex's TuningJob answers read as the runner's resources."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from tunespec.datasets import Example, load_examples
from tunespec.errors import SpecError, TunespecError
from tunespec.identity import fingerprint, tuned_model_id
from tunespec.planning import identify
from tunespec.request import render_request
from tunespec.request_vertex import (
    contents_jsonl,
    model_table,
    parse_dialect,
    render_tuning_job,
    settings_of,
    staged_uri,
    warnings_for,
)
from tunespec.resources import ACTIVE, CREATING, FAILED
from tunespec.spec import load_spec
from tunespec.targets import GOOGLE_NO_TUNING, Targets, job_dialect, target_name
from tunespec.vertex import _label_filter, job_operation, parse_tuning_job

REPO = Path(__file__).resolve().parents[1]
SPEC = """\
name: vx-job
target: vertex
base_model: models/gemini-2.5-flash
vertex:
  project: my-project
  location: europe-west4
  staging_bucket: gs://my-bucket/tuning/
hyperparameters:
  epoch_count: 3
  batch_size: 2
  learning_rate_multiplier: 0.5
  adapter_size: 8
dataset:
  examples:
    - {text_input: "1", output: "2"}
    - {text_input: "é", output: "ü"}
"""


def _spec(tmp_path: Path, text: str = SPEC):
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return load_spec(path)


def test_spec_reads_the_vertex_section(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    assert spec.target == "vertex"
    assert (spec.vertex.project, spec.vertex.location) == ("my-project", "europe-west4")
    assert spec.hyperparameters.adapter_size == 8
    settings = settings_of(spec, env={})
    assert settings.parent == "projects/my-project/locations/europe-west4"
    assert parse_dialect(settings.dialect) == ("my-project", "europe-west4")
    assert settings_of(spec, "cli-project", env={}).project == "cli-project"


def test_settings_come_from_the_environment(tmp_path: Path) -> None:
    text = SPEC.replace(
        "vertex:\n  project: my-project\n  location: europe-west4\n"
        "  staging_bucket: gs://my-bucket/tuning/\n",
        "",
    )
    spec = _spec(tmp_path, text)
    env = {"GOOGLE_CLOUD_PROJECT": "env-project", "TUNESPEC_VERTEX_STAGING_BUCKET": "gs://b/p"}
    settings = settings_of(spec, env=env)
    assert (settings.project, settings.location, settings.staging_bucket) == (
        "env-project",
        "us-central1",
        "gs://b/p",
    )
    with pytest.raises(TunespecError, match=r"no Google Cloud project.*vertex\.project"):
        settings_of(spec, env={})
    with pytest.raises(TunespecError, match=r"no staging bucket.*TUNESPEC_VERTEX_STAGING_BUCKET"):
        render_tuning_job(spec, [Example("a", "b")], env={"GOOGLE_CLOUD_PROJECT": "p-123456"})


def test_tuning_job_body(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    examples = load_examples(spec).examples
    body = render_request(spec, examples, target="vertex")
    data = contents_jsonl(examples)
    uri = f"gs://my-bucket/tuning/{__import__('hashlib').sha256(data).hexdigest()}.jsonl"
    fp = fingerprint(spec, examples, settings_of(spec, env={}).dialect)
    assert dict(body) == {
        "baseModel": "gemini-2.5-flash",
        "tunedModelDisplayName": tuned_model_id("vx-job", fp),
        "labels": {"tunespec_job": "vx-job", "tunespec_fingerprint": fp},
        "supervisedTuningSpec": {
            "trainingDatasetUri": uri,
            "hyperParameters": {
                "epochCount": 3,
                "learningRateMultiplier": 0.5,
                "adapterSize": "ADAPTER_SIZE_EIGHT",
            },
        },
    }
    assert body.files == {uri: data}
    json.dumps(body)  # a plain JSON object on the wire


def test_contents_jsonl_is_one_example_a_line() -> None:
    data = contents_jsonl([Example("hi", "there"), Example("ünï", "cödé\nline")])
    lines = data.decode().splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0]) == {
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"text": "there"}]},
        ]
    }
    assert json.loads(lines[1])["contents"][1]["parts"][0]["text"] == "cödé\nline"


def test_staged_name_is_content_addressed() -> None:
    a = staged_uri("gs://b/p/", b"one")
    assert a == staged_uri("gs://b/p", b"one") and a.startswith("gs://b/p/") and a.endswith(".jsonl")
    assert a != staged_uri("gs://b/p", b"two")


def test_ignored_settings_are_warnings_with_lines(tmp_path: Path) -> None:
    spec = _spec(tmp_path, SPEC.replace("  adapter_size: 8\n", "  adapter_size: 32\n") + "temperature: 0.5\n")
    found = warnings_for(spec, today=date(2026, 1, 1))
    path = str(spec.path)
    assert f"{path}:10: batch_size is ignored on target vertex (Vertex picks the batch size)" in found
    assert any(w.startswith(f"{path}:") and "temperature is ignored" in w for w in found)
    assert any("adapter_size 32 is not one gemini-2.5-flash takes" in w for w in found)
    assert not any("shut down" in w for w in found)
    assert any("shut down on 2026-10-16" in w for w in warnings_for(spec, today=date(2026, 12, 1)))


def test_unknown_base_model_is_a_warning(tmp_path: Path) -> None:
    spec = _spec(tmp_path, SPEC.replace("models/gemini-2.5-flash", "models/gemini-9-ultra"))
    assert any("gemini-9-ultra is not in tunespec's table" in w for w in warnings_for(spec))
    assert "gemini-2.5-flash" in model_table()["models"]


def test_vertex_spec_problems(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="target vertex needs a base_model"):
        _spec(tmp_path, SPEC.replace("base_model: models/gemini-2.5-flash\n", ""))
    with pytest.raises(SpecError, match="staging_bucket"):
        _spec(tmp_path, SPEC.replace("gs://my-bucket/tuning/", "s3://nope"))
    with pytest.raises(SpecError, match="adapter_size"):
        _spec(tmp_path, SPEC.replace("adapter_size: 8", "adapter_size: 3"))


def test_target_and_dialect(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    assert target_name("vertex") == "vertex"
    assert job_dialect(spec, "vertex", None, {}) == "vertex:my-project/europe-west4"
    assert job_dialect(spec, "local", None, {}) == spec.dialect
    # the fingerprint covers where the job runs
    local = identify(spec, load_examples(spec), target="local", env={})
    vertex = identify(spec, load_examples(spec), env={})
    assert vertex.dialect.startswith("vertex:") and vertex.fingerprint != local.fingerprint


def test_example_vertex_job_renders() -> None:
    spec = load_spec(REPO / "examples" / "vertex" / "number-generator.yaml", env={})
    body = render_request(spec, load_examples(spec).examples, target="vertex")
    assert body["baseModel"] == "gemini-2.5-flash"
    assert body["supervisedTuningSpec"]["trainingDatasetUri"].startswith("gs://my-bucket/tunespec/")
    assert any("learning_rate is ignored" in w for w in body.warnings)


def _job(state: str, **extra):
    return {
        "name": "projects/p/locations/l/tuningJobs/123",
        "state": state,
        "baseModel": "gemini-2.5-flash",
        "labels": {"tunespec_job": "vx-job", "tunespec_fingerprint": "abcdefghij"},
        "supervisedTuningSpec": {"hyperParameters": {"epochCount": "3", "adapterSize": "ADAPTER_SIZE_FOUR"}},
        **extra,
    }


@pytest.mark.parametrize(
    ("state", "extra", "want", "code"),
    [
        ("JOB_STATE_PENDING", {}, CREATING, None),
        ("JOB_STATE_RUNNING", {}, CREATING, None),
        ("JOB_STATE_CANCELLING", {}, CREATING, None),
        (
            "JOB_STATE_SUCCEEDED",
            {"tunedModel": {"model": "m", "endpoint": "projects/p/locations/l/endpoints/9"}},
            ACTIVE,
            None,
        ),
        ("JOB_STATE_SUCCEEDED", {}, FAILED, 5),  # its tuned model deleted
        ("JOB_STATE_FAILED", {"error": {"code": 3, "message": "bad rows"}}, FAILED, 3),
        ("JOB_STATE_CANCELLED", {}, FAILED, 1),
        ("JOB_STATE_EXPIRED", {}, FAILED, 4),
    ],
)
def test_tuning_job_states(state: str, extra: dict, want: str, code: int | None) -> None:
    model = parse_tuning_job(_job(state, **extra))
    assert model.name == "tunedModels/vx-job-abcdefghij"
    assert (model.state, model.raw_state) == (want, state)
    assert (model.error.code if model.error else None) == code
    assert model.hyperparameters == {"epoch_count": 3, "adapter_size": 4}
    op = job_operation(
        _job(state, **extra, tuningDataStats={"supervisedTuningDataStats": {"tuningStepCount": "12"}})
    )
    assert op.done == (want != CREATING) and op.total_steps == 12


def test_label_filter() -> None:
    assert (
        _label_filter("tunedModels/vx-job-abcdefghij")
        == 'labels.tunespec_job="vx-job" AND labels.tunespec_fingerprint="abcdefghij"'
    )


def test_google_target_says_tuning_moved_to_vertex() -> None:
    notices: list[str] = []
    with Targets(env={"GOOGLE_API_KEY": "k"}, notify=notices.append) as targets:
        targets.target("google")
        targets.target("google", "other")
    assert notices == [f"note: {GOOGLE_NO_TUNING}"]
    assert "vertex" in GOOGLE_NO_TUNING
