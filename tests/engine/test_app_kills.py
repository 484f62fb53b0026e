"""Attempts are charged only to a job that crashes its own worker: engine restarts cost nothing."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.engine.engine_helpers import NUMBERS, ServeProcess, create_body, wait_done

pytestmark = pytest.mark.slow

PAIRS = NUMBERS[:8]


def _create(url: str, model_id: str, **kw: Any) -> dict[str, Any]:
    resp = requests.post(
        f"{url}/v1beta3/tunedModels?tunedModelId={model_id}", json=create_body(**kw), timeout=30
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def _db(data: Path, sql: str, *args: Any) -> list[tuple]:
    with sqlite3.connect(data / "engine.db") as db:
        return db.execute(sql, args).fetchall()


def _snapshot_total(data: Path) -> int:
    return _db(data, "SELECT COUNT(*) FROM snapshots")[0][0]


def _losses(op: dict[str, Any]) -> list[float]:
    return [s["meanLoss"] for s in op["metadata"]["snapshots"]]


def test_sigkill_of_the_whole_engine_again_and_again_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(11)
    data = tmp_path / "data"
    jobs = {
        f"job-{i}": {"epochs": 6, "batch": 1, "lr": 0.001 * (1 + i % 2), "pairs": PAIRS} for i in range(6)
    }
    serve = ServeProcess(data)
    try:
        ops = {model_id: _create(serve.url, model_id, **kw)["name"] for model_id, kw in jobs.items()}
    except BaseException:
        serve.kill()
        raise
    mid_training = 0
    for kill in range(20):
        if kill % 2 == 0:  # just after start-up: the worker still imports torch, or prepares the job
            time.sleep(rng.uniform(0.05, 3.0))
        else:  # mid-training: a few more steps than there were when this engine came up
            target = _snapshot_total(data) + rng.randint(3, 25)
            deadline = time.monotonic() + 60
            while _snapshot_total(data) < target and time.monotonic() < deadline:
                time.sleep(0.02)
            mid_training += _snapshot_total(data) >= target
        serve.kill()
        serve = ServeProcess(data)
    try:
        done = {model_id: wait_done(serve.url, op, timeout=240) for model_id, op in ops.items()}
        assert mid_training >= 5, "the kills seldom landed mid-training"
        refs = {lr: wait_done(serve.url, _create(serve.url, f"ref-{n}", epochs=6, batch=1, lr=lr,
                                                pairs=PAIRS)["name"], timeout=120)
                for n, lr in enumerate((0.001, 0.002))}
        for model_id, op in done.items():
            assert "error" not in op, (model_id, op["error"])
            assert op["response"]["state"] == "ACTIVE"
            steps = [s["step"] for s in op["metadata"]["snapshots"]]
            assert steps == list(range(1, 6 * len(PAIRS) + 1)), (model_id, steps)
            assert _losses(op) == _losses(refs[jobs[model_id]["lr"]]), model_id  # bit-identical resume
        assert _db(data, "SELECT id FROM tuned_models WHERE state != 'ACTIVE'") == []
        assert _db(data, "SELECT id FROM tuned_models WHERE attempts != 0") == []
    finally:
        serve.stop()


def _wait_steps(url: str, op_name: str, at_least: int) -> None:
    deadline = time.monotonic() + 120
    while requests.get(f"{url}/v1/{op_name}", timeout=10).json()["metadata"].get("completedSteps", 0) \
            < at_least:
        assert time.monotonic() < deadline, "training never got going"
        time.sleep(0.05)


def test_sigkills_of_a_worker_from_outside_cost_the_job_nothing(tmp_path: Path) -> None:
    rng = random.Random(5)
    data = tmp_path / "data"
    serve = ServeProcess(data)
    try:
        op = _create(serve.url, "victim", epochs=8, batch=1, pairs=PAIRS)["name"]
        _wait_steps(serve.url, op, 5)
        killed: set[int] = set()
        for kill in range(5):  # mid-training, then at random moments of the new worker's start-up
            for pid in serve.worker_pids():
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            deadline = time.monotonic() + 60
            while not set(serve.worker_pids()) - killed:
                assert time.monotonic() < deadline, "the engine did not restart its worker"
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 2.5) if kill < 4 else 0)
        done = wait_done(serve.url, op, timeout=180)
        assert "error" not in done, done["error"]
        assert [s["step"] for s in done["metadata"]["snapshots"]] == list(range(1, 8 * len(PAIRS) + 1))
        assert _db(data, "SELECT attempts FROM tuned_models WHERE id = 'victim'") == [(0,)]
    finally:
        serve.stop()


# Loaded by every Python process of the engine (PYTHONPATH): the worker SIGKILLs itself at step 3 of
# the job named by $CRASH_JOB, as the kernel's OOM killer would.
_CRASH_HOOK = """
import importlib.abc, importlib.util, os, signal, sys
from pathlib import Path

class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "tunespec.engine.train":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            real = module.train

            def train(req, work_dir, on_step, should_stop, **kw):
                def step(n, epoch, loss):
                    if Path(work_dir).name == os.environ["CRASH_JOB"] and n == 3:
                        os.kill(os.getpid(), signal.SIGKILL)
                    on_step(n, epoch, loss)
                return real(req, work_dir, step, should_stop, **kw)
            module.train = train
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, _Hook())
"""


def test_a_job_that_kills_its_own_worker_three_times_fails(tmp_path: Path, monkeypatch) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent(_CRASH_HOOK))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("CRASH_JOB", "crashy")
    data = tmp_path / "data"
    serve = ServeProcess(data)
    try:
        crashy = _create(serve.url, "crashy", epochs=2, batch=1, pairs=PAIRS)["name"]
        fine = _create(serve.url, "fine", epochs=1, batch=1, pairs=PAIRS)["name"]
        failed = wait_done(serve.url, crashy, timeout=180)
        assert failed["error"]["code"] == 13, failed
        assert "crashed its training worker 3 times" in failed["error"]["message"]
        assert requests.get(f"{serve.url}/v1beta3/tunedModels/crashy", timeout=10).json()["state"] == "FAILED"
        assert wait_done(serve.url, fine, timeout=120)["response"]["state"] == "ACTIVE"
        assert _db(data, "SELECT attempts FROM tuned_models WHERE id = 'fine'") == [(0,)]
    finally:
        serve.stop()
