"""`tunespec` with `target: vertex`, end to end: the CLI against the engine's Vertex dialect
(TUNESPEC_VERTEX_URL) and a real Cloud Storage emulator (STORAGE_EMULATOR_HOST)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.cli_helpers import tunespec
from tests.vertex_fixtures import BUCKET, Emulator, storage_emulator

pytestmark = pytest.mark.slow

SPEC = f"""\
name: vx-e2e
target: vertex
base_model: models/gemini-2.5-flash
vertex:
  project: e2e-project
  location: us-central1
  staging_bucket: gs://{BUCKET}/e2e
hyperparameters:
  epoch_count: 2
  batch_size: 2
  adapter_size: 4
dataset:
  examples:
    - {{text_input: "1", output: "2"}}
    - {{text_input: "2", output: "3"}}
    - {{text_input: "3", output: "4"}}
    - {{text_input: "4", output: "5"}}
evaluation:
  threshold: 1
  compare_base: true
  prompts:
    - {{input: "1", not_contains: "tunespec-never-says-this"}}
report:
  dir: reports
  formats: [json, markdown, junit]
"""


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with storage_emulator() as emu:
        yield emu


def _jobs(engine: Any) -> list[dict[str, Any]]:
    url = f"{engine.url}/v1/projects/e2e-project/locations/us-central1/tuningJobs"
    return requests.get(url, params={"filter": 'labels.tunespec_job="vx-e2e"'}, timeout=30).json()[
        "tuningJobs"
    ]


def test_apply_on_vertex_then_up_to_date(engine: Any, emulator: Emulator, tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(SPEC)
    env = {"TUNESPEC_VERTEX_URL": engine.url, "STORAGE_EMULATOR_HOST": emulator.url}

    plan = tunespec("plan", "job.yaml", "--json", cwd=tmp_path, env=env)
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)["jobs"][0]
    assert planned["action"] == "create" and planned["dialect"] == "vertex:e2e-project/us-central1"

    first = tunespec("apply", "job.yaml", cwd=tmp_path, env=env, timeout=400)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "staged" in first.stderr and "gs://tunespec-ci/e2e/" in first.stderr
    assert "batch_size is ignored on target vertex" in first.stderr
    report = json.loads((tmp_path / "reports" / "report.json").read_text())
    assert report["state"] == "ACTIVE" and report["dialect"] == "vertex:e2e-project/us-central1"
    assert report["tuning_data_stats"]["tuningDatasetExampleCount"] == "4"
    assert report["hyperparameters"]["resolved"] == {"epoch_count": 2, "adapter_size": 4}
    assert report["evaluation"]["pass_rate"] == 1.0 and report["base_evaluation"] is not None
    jobs = _jobs(engine)
    assert len(jobs) == 1 and jobs[0]["state"] == "JOB_STATE_SUCCEEDED"
    assert jobs[0]["labels"] == {"tunespec_job": "vx-e2e", "tunespec_fingerprint": report["fingerprint"]}

    again = tunespec("apply", "job.yaml", cwd=tmp_path, env=env, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "up to date" in again.stderr and "staged" not in again.stderr
    assert len(_jobs(engine)) == 1  # never created twice

    status = tunespec("status", "job.yaml", "--json", cwd=tmp_path, env=env)
    assert status.returncode == 0 and json.loads(status.stdout)["jobs"][0]["state"] == "ACTIVE"
    listed = tunespec("list", "job.yaml", cwd=tmp_path, env=env)
    assert listed.returncode == 0 and f"tunedModels/vx-e2e-{report['fingerprint']}" in listed.stdout

    # a changed dataset is a new job; the old one is what it supersedes
    (tmp_path / "job.yaml").write_text(SPEC.replace('output: "5"', 'output: "five"'))
    changed = tunespec("plan", "job.yaml", "--json", cwd=tmp_path, env=env)
    assert json.loads(changed.stdout)["jobs"][0]["action"] == "replace"

    # delete removes the tuned model (Vertex keeps the job); the job is then tuned again
    (tmp_path / "job.yaml").write_text(SPEC)
    deleted = tunespec("delete", "job.yaml", "--yes", cwd=tmp_path, env=env)
    assert deleted.returncode == 0, deleted.stderr
    after = tunespec("plan", "job.yaml", "--json", cwd=tmp_path, env=env)
    assert json.loads(after.stdout)["jobs"][0]["action"] == "recreate"


def test_missing_project_is_one_clear_line(tmp_path: Path) -> None:
    text = SPEC.replace("  project: e2e-project\n", "")
    (tmp_path / "job.yaml").write_text(text)
    result = tunespec("plan", "job.yaml", cwd=tmp_path, env={"TUNESPEC_VERTEX_URL": "http://127.0.0.1:9"})
    assert result.returncode == 2
    assert "no Google Cloud project" in result.stderr and "Traceback" not in result.stderr
