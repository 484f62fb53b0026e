"""Job handling beyond the happy path: concurrency, delete while training, tuning a tuned model."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.engine.engine_helpers import create_body, wait_done
from tunespec.engine.server import start_background

pytestmark = pytest.mark.slow


def test_two_workers_train_two_jobs_at_once(tmp_path: Path) -> None:
    with start_background(tmp_path, workers=2) as eng:
        ops = [
            requests.post(
                f"{eng.url}/v1beta3/tunedModels?tunedModelId=par-{i}", json=create_body(epochs=10, batch=1)
            ).json()
            for i in range(2)
        ]
        done = [wait_done(eng.url, op["name"]) for op in ops]
        assert [d["response"]["state"] for d in done] == ["ACTIVE", "ACTIVE"]
        spans = [
            (d["metadata"]["snapshots"][0]["computeTime"], d["metadata"]["snapshots"][-1]["computeTime"])
            for d in done
        ]
        # the two jobs trained at the same time: each started before the other ended
        assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], spans
        assert len(eng.worker_pids) == 2


def test_delete_while_training_and_tune_a_tuned_model(engine) -> None:
    op = requests.post(
        f"{engine.url}/v1beta3/tunedModels?tunedModelId=doomed", json=create_body(epochs=200, batch=1)
    ).json()
    deadline = time.monotonic() + 120
    while not requests.get(f"{engine.url}/v1/{op['name']}").json()["metadata"].get("completedSteps"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert requests.delete(f"{engine.url}/v1beta3/tunedModels/doomed").json() == {}
    assert requests.get(f"{engine.url}/v1beta3/tunedModels/doomed").status_code == 404
    job_dir = Path(engine.data_dir) / "jobs" / "doomed"
    deadline = time.monotonic() + 30
    while job_dir.exists():  # the worker stops and removes the job's files
        assert time.monotonic() < deadline, "the deleted job kept training"
        time.sleep(0.1)

    first = requests.post(
        f"{engine.url}/v1beta3/tunedModels?tunedModelId=stage-one", json=create_body()
    ).json()
    # tuning from a model that is still CREATING is refused
    body = create_body()
    del body["baseModel"]
    body["tunedModelSource"] = {"tunedModel": "tunedModels/stage-one"}
    resp = requests.post(f"{engine.url}/v1beta3/tunedModels?tunedModelId=stage-two", json=body)
    if resp.status_code == 400:
        assert resp.json()["error"]["status"] == "FAILED_PRECONDITION"
    wait_done(engine.url, first["name"])
    if resp.status_code != 200:
        resp = requests.post(f"{engine.url}/v1beta3/tunedModels?tunedModelId=stage-two", json=body)
    second = wait_done(engine.url, resp.json()["name"])["response"]
    assert second["state"] == "ACTIVE"
    assert second["tunedModelSource"] == {
        "tunedModel": "tunedModels/stage-one",
        "baseModel": "models/text-bison-001",
    }
    assert "baseModel" not in second


def test_a_finished_model_is_loaded_by_the_engine_before_anyone_asks(engine) -> None:
    from tunespec.engine import generate

    op = requests.post(f"{engine.url}/v1beta3/tunedModels?tunedModelId=warm-served",
                       json=create_body(epochs=2, batch=2)).json()
    assert wait_done(engine.url, op["name"])["response"]["state"] == "ACTIVE"
    weights = str((engine.data_dir / "jobs" / "warm-served").resolve())
    deadline = time.monotonic() + 30
    while not any(key.startswith(weights) for key in list(generate._cache)):
        assert time.monotonic() < deadline, "the engine did not load the finished model"
        time.sleep(0.1)
    answer = requests.post(f"{engine.url}/v1beta3/tunedModels/warm-served:generateText",
                           json={"prompt": {"text": "1"}, "temperature": 0}, timeout=60)
    assert answer.status_code == 200, answer.text
