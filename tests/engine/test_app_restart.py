"""Kill the engine at any moment, start it again: nothing is lost, nothing stays CREATING."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from tests.engine.engine_helpers import ServeProcess, create_body, wait_done
from tunespec.engine.server import start_background

pytestmark = pytest.mark.slow


def _steps(url: str, op_name: str) -> int:
    return requests.get(f"{url}/v1/{op_name}", timeout=10).json()["metadata"].get("completedSteps", 0)


def test_sigkill_during_training_then_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = ServeProcess(data)
    try:
        done_op = requests.post(
            f"{first.url}/v1beta3/tunedModels?tunedModelId=finished", json=create_body(epochs=1)
        ).json()
        wait_done(first.url, done_op["name"])
        long_op = requests.post(
            f"{first.url}/v1beta3/tunedModels?tunedModelId=interrupted", json=create_body(epochs=12, batch=1)
        ).json()
        queued_op = requests.post(
            f"{first.url}/v1beta3/tunedModels?tunedModelId=queued", json=create_body(epochs=1)
        ).json()
        deadline = time.monotonic() + 120
        while _steps(first.url, long_op["name"]) < 60:  # past the first checkpoint (every 50 steps / 2 s)
            assert time.monotonic() < deadline, "training never got going"
            time.sleep(0.05)
    finally:
        first.kill()
    killed_at = _snapshot_count(data, "interrupted")
    assert 60 <= killed_at < 180

    second = ServeProcess(data)
    try:
        url = second.url
        finished = requests.get(f"{url}/v1beta3/tunedModels/finished").json()
        assert finished["state"] == "ACTIVE"
        gen = requests.post(
            f"{url}/v1beta3/tunedModels/finished:generateText", json={"prompt": {"text": "1"}}
        )
        assert gen.status_code == 200 and "output" in gen.json()["candidates"][0]

        resumed = wait_done(url, long_op["name"], timeout=240)
        # "resumes or ends FAILED with a clear error" are both acceptable; this engine resumes
        assert "error" not in resumed, resumed["error"]
        assert resumed["response"]["state"] == "ACTIVE"
        steps = [s["step"] for s in resumed["metadata"]["snapshots"]]
        assert steps == list(range(1, 181)), "one snapshot per step, none lost or repeated"
        assert wait_done(url, queued_op["name"])["response"]["state"] == "ACTIVE"
        states = {
            m["name"]: m["state"] for m in requests.get(f"{url}/v1beta3/tunedModels").json()["tunedModels"]
        }
        assert "CREATING" not in states.values()
        assert len(states) == 3
    finally:
        second.stop()


def test_graceful_stop_returns_the_job_to_the_queue(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = ServeProcess(data)
    try:
        op = requests.post(
            f"{first.url}/v1beta3/tunedModels?tunedModelId=paused", json=create_body(epochs=8, batch=1)
        ).json()
        deadline = time.monotonic() + 120
        while _steps(first.url, op["name"]) < 10:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        first.stop()  # SIGINT: the worker checkpoints and releases the job
    second = ServeProcess(data)
    try:
        done = wait_done(second.url, op["name"], timeout=240)
        assert done["response"]["state"] == "ACTIVE"
        assert [s["step"] for s in done["metadata"]["snapshots"]] == list(range(1, 121))
    finally:
        second.stop()


def test_sigterm_stops_serve_like_ctrl_c(tmp_path: Path) -> None:
    """docker stop / systemd / kill: the workers are stopped and engine.json removed, not left behind."""
    import signal

    import psutil

    data = tmp_path / "data"
    serve = ServeProcess(data)
    workers = serve.worker_pids()
    assert workers
    serve.proc.send_signal(signal.SIGTERM)
    try:
        assert serve.proc.wait(30) == 130
    finally:
        serve.stop()
    assert not (data / "engine.json").exists()

    def alive(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "the training worker outlived tunespec serve"
        time.sleep(0.1)


def _snapshot_count(data: Path, model_id: str) -> int:
    import sqlite3

    with sqlite3.connect(data / "engine.db") as db:
        state = db.execute("SELECT state FROM tuned_models WHERE id = ?", (model_id,)).fetchone()[0]
        assert state == "CREATING"
        return db.execute("SELECT COUNT(*) FROM snapshots WHERE model_id = ?", (model_id,)).fetchone()[0]


def test_tuned_models_survive_moving_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with start_background(data) as engine:
        for model_id, method in (("full-one", "full"), ("lora-one", "lora")):
            op = requests.post(
                f"{engine.url}/v1beta3/tunedModels?tunedModelId={model_id}",
                json={**create_body(epochs=1), "tuningMethod": method},
                timeout=30,
            ).json()
            assert wait_done(engine.url, op["name"])["response"]["state"] == "ACTIVE"
    meta = json.loads((data / "jobs" / "lora-one" / "model" / "tunespec.json").read_text())
    assert meta["kind"] == "lora" and not Path(meta["base_dir"]).is_absolute(), meta
    moved = tmp_path / "moved"
    data.rename(moved)
    with start_background(moved) as engine:
        for model_id in ("full-one", "lora-one"):
            gen = requests.post(
                f"{engine.url}/v1beta3/tunedModels/{model_id}:generateText",
                json={"prompt": {"text": "1"}},
                timeout=60,
            )
            assert gen.status_code == 200, gen.text
        body = create_body(epochs=1)
        del body["baseModel"]
        body["tunedModelSource"] = {"tunedModel": "tunedModels/lora-one"}
        op = requests.post(
            f"{engine.url}/v1beta3/tunedModels?tunedModelId=continued", json=body, timeout=30
        ).json()
        assert wait_done(engine.url, op["name"])["response"]["state"] == "ACTIVE"
