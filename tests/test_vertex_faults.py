"""Vertex AI's failures as the runner meets them, from answers recorded in Vertex's wire format: quota
exhausted (429), a job that ends FAILED with an error, a cancelled job, a dataset the service rejects.

A small HTTP server on loopback plays the recorded answers; staging goes to a real Cloud Storage
emulator. Each case runs `tunespec apply` through the console entry point."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import tunespec
from tests.vertex_fixtures import BUCKET, Emulator, storage_emulator

PARENT = "projects/rec-project/locations/us-central1"
SPEC = f"""\
name: vx-faults
target: vertex
base_model: models/gemini-2.5-flash
vertex: {{project: rec-project, location: us-central1, staging_bucket: "gs://{BUCKET}/faults"}}
dataset:
  examples:
    - {{text_input: "1", output: "2"}}
evaluation:
  prompts:
    - {{input: "1", equals: "2"}}
report: {{dir: reports, formats: [json]}}
"""
QUOTA = {
    "error": {
        "code": 429,
        "status": "RESOURCE_EXHAUSTED",
        "message": "Quota exceeded for aiplatform.googleapis.com/concurrent_tuning_jobs_per_region "
        "with base model gemini-2.5-flash. Please submit a quota increase request.",
    }
}
REJECTED = {
    "error": {
        "code": 400,
        "status": "INVALID_ARGUMENT",
        "message": "Failed to validate dataset: row 1: missing required field contents[1].role (model).",
    }
}


class RecordedVertex:
    """Plays a tuning job through recorded states: `states` one per GET, the last one repeated."""

    def __init__(self, states: list[dict[str, Any]], create_faults: list[tuple[int, dict[str, Any]]]):
        self.states = states
        self.create_faults = list(create_faults)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.gets = 0
        self.creates = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path = self.path.split("?")[0].removeprefix("/v1/")
                if path == f"{PARENT}/tuningJobs":
                    self._send(200, {"tuningJobs": [service.view(n) for n in service.jobs]})
                elif path in service.jobs:
                    service.gets += 1
                    self._send(200, service.view(path))
                else:
                    self._send(404, {"error": {"code": 404, "status": "NOT_FOUND", "message": "no"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                path = self.path.split("?")[0].removeprefix("/v1/")
                if path == f"{PARENT}/tuningJobs":
                    service.creates += 1
                    if service.create_faults:
                        code, answer = service.create_faults.pop(0)
                        self._send(code, answer, {"Retry-After": "0"} if code == 429 else None)
                        return
                    name = f"{PARENT}/tuningJobs/{1000 + len(service.jobs)}"
                    service.jobs[name] = {**body, "name": name, "createTime": "2026-12-01T10:00:00Z"}
                    self._send(200, {**service.jobs[name], "state": "JOB_STATE_PENDING"})
                elif path.endswith(":generateContent"):
                    self._send(
                        200, {"candidates": [{"content": {"role": "model", "parts": [{"text": "2"}]}}]}
                    )
                else:
                    self._send(404, {"error": {"code": 404, "status": "NOT_FOUND", "message": "no"}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def view(self, name: str) -> dict[str, Any]:
        state = self.states[min(self.gets, len(self.states) - 1)]
        return {**self.jobs[name], **state}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


SUCCEEDED = {
    "state": "JOB_STATE_SUCCEEDED",
    "endTime": "2026-12-01T10:30:00Z",
    "tunedModel": {"model": f"{PARENT}/models/77@1", "endpoint": f"{PARENT}/endpoints/88"},
    "tuningDataStats": {
        "supervisedTuningDataStats": {"tuningDatasetExampleCount": "1", "tuningStepCount": "5"}
    },
}
RUNNING = {"state": "JOB_STATE_RUNNING", "startTime": "2026-12-01T10:01:00Z"}


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with storage_emulator() as emu:
        yield emu


def _apply(tmp_path: Path, service: RecordedVertex, emulator: Emulator) -> Any:
    (tmp_path / "job.yaml").write_text(SPEC)
    env = {"TUNESPEC_VERTEX_URL": service.url, "STORAGE_EMULATOR_HOST": emulator.url}
    try:
        return tunespec("apply", "job.yaml", cwd=tmp_path, env=env, timeout=120)
    finally:
        service.close()


def test_quota_429_is_ridden_out(tmp_path: Path, emulator: Emulator) -> None:
    service = RecordedVertex([RUNNING, SUCCEEDED], [(429, QUOTA)])
    result = _apply(tmp_path, service, emulator)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "retrying" in result.stderr and "429" in result.stderr
    assert service.creates == 2 and len(service.jobs) == 1
    report = json.loads((tmp_path / "reports" / "report.json").read_text())
    assert report["tuning_data_stats"] == {"tuningDatasetExampleCount": "1", "tuningStepCount": "5"}


def test_quota_that_stays_exhausted_fails_in_one_line(tmp_path: Path, emulator: Emulator) -> None:
    service = RecordedVertex([SUCCEEDED], [(429, QUOTA)] * 20)
    (tmp_path / "job.yaml").write_text(SPEC)
    env = {"TUNESPEC_VERTEX_URL": service.url, "STORAGE_EMULATOR_HOST": emulator.url}
    try:
        result = tunespec("apply", "job.yaml", "--timeout", "60", cwd=tmp_path, env=env, timeout=200)
    finally:
        service.close()
    assert result.returncode == 1
    assert "RESOURCE_EXHAUSTED" in result.stderr and "Quota exceeded" in result.stderr
    assert "Traceback" not in result.stderr


def test_failed_job_reports_its_error(tmp_path: Path, emulator: Emulator) -> None:
    failed = {
        "state": "JOB_STATE_FAILED",
        "endTime": "2026-12-01T10:05:00Z",
        "error": {"code": 3, "message": "Training data has 1 examples; at least 16 are required."},
    }
    result = _apply(tmp_path, RecordedVertex([RUNNING, failed], []), emulator)
    assert result.returncode == 1
    assert "ended FAILED: Training data has 1 examples; at least 16 are required." in result.stderr


def test_cancelled_job(tmp_path: Path, emulator: Emulator) -> None:
    cancelled = {"state": "JOB_STATE_CANCELLED", "error": {"code": 1, "message": "CANCELED"}}
    result = _apply(tmp_path, RecordedVertex([RUNNING, cancelled], []), emulator)
    assert result.returncode == 1 and "was cancelled: CANCELED" in result.stderr


def test_rejected_dataset(tmp_path: Path, emulator: Emulator) -> None:
    service = RecordedVertex([SUCCEEDED], [(400, REJECTED)])
    result = _apply(tmp_path, service, emulator)
    assert result.returncode == 1
    line = next(x for x in result.stderr.splitlines() if "INVALID_ARGUMENT" in x)
    assert (
        "Failed to validate dataset: row 1" in line and f"POST {service.url}/v1/{PARENT}/tuningJobs" in line
    )
