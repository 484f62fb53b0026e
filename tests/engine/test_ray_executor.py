"""`tunespec serve --executor ray`: jobs train as tasks of a local Ray instance bound to loopback."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from tests.cli_helpers import CLI
from tests.engine.engine_helpers import NUMBERS, ServeProcess, create_body, wait_done

pytestmark = pytest.mark.slow
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs tunespec[ray]")

PAIRS = NUMBERS[:8]


def _create(url: str, model_id: str, epochs: int) -> str:
    resp = requests.post(f"{url}/v1beta3/tunedModels?tunedModelId={model_id}",
                         json=create_body(epochs=epochs, batch=1, pairs=PAIRS), timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()["name"]


def _op(url: str, name: str) -> dict[str, Any]:
    return requests.get(f"{url}/v1/{name}", headers={"X-Tunespec-Stages": "1"}, timeout=10).json()


def _wait(what, timeout: float = 180, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := what()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every)
    return got


def _ray_processes(serve: ServeProcess) -> list[psutil.Process]:
    return psutil.Process(serve.proc.pid).children(recursive=True)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _training_tasks(serve: ServeProcess) -> list[psutil.Process]:
    found = []
    for proc in _ray_processes(serve):
        try:
            if "_train_task" in proc.name() or "_train_task" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def _listening_beyond_loopback(pids: set[int]) -> list[str]:
    return [f"{c.laddr.ip}:{c.laddr.port} (pid {c.pid})" for c in psutil.net_connections("inet")
            if c.status == psutil.CONN_LISTEN and c.pid in pids and not _is_loopback(c.laddr.ip)]


def _attempts(data: Path) -> dict[str, int]:
    with sqlite3.connect(data / "engine.db") as db:
        return dict(db.execute("SELECT id, attempts FROM tuned_models").fetchall())


@needs_ray
def test_jobs_train_in_ray_workers_survive_a_lost_worker_and_an_engine_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    serve = ServeProcess(data, "--executor", "ray")
    try:
        ops = {f"ray-{i}": _create(serve.url, f"ray-{i}", epochs=10 + 5 * i) for i in range(3)}
        victim = _wait(lambda: [p for p in _training_tasks(serve)
                                if _op(serve.url, ops["ray-0"])["metadata"].get("completedSteps", 0) >= 5])
        assert _listening_beyond_loopback({p.pid for p in _ray_processes(serve)}) == []
        assert serve.proc.pid not in {p.pid for p in victim}  # training runs in Ray's processes
        victim[0].send_signal(signal.SIGKILL)  # a Ray worker dies mid-training
        _wait(lambda: sum(_attempts(data).values()) == 1, timeout=60)
        _wait(lambda: _op(serve.url, ops["ray-2"])["metadata"].get("completedSteps", 0) >= 3)
        time.sleep(2.5)  # a heartbeat: the engine records its local Ray's processes
        ray_procs = _ray_processes(serve)
        serve.proc.send_signal(signal.SIGKILL)  # the engine dies while Ray runs its jobs
        serve.proc.wait()
        serve.log.close()
        serve = ServeProcess(data, "--executor", "ray")
        # the new engine stopped what the dead one's local Ray left behind (its agents would live on);
        # a Ray worker process ends by itself once it sees its raylet gone, within seconds
        _wait(lambda: not [p.pid for p in ray_procs if _alive(p)], timeout=30, every=0.5)
        done = {model_id: wait_done(serve.url, op, timeout=300) for model_id, op in ops.items()}
        for i, (model_id, op) in enumerate(done.items()):
            assert "error" not in op, (model_id, op["error"])
            steps = [s["step"] for s in op["metadata"]["snapshots"]]
            assert steps == list(range(1, (10 + 5 * i) * len(PAIRS) + 1)), (model_id, steps)
            answer = requests.post(f"{serve.url}/v1beta3/tunedModels/{model_id}:generateText",
                                   json={"prompt": {"text": "1"}}, timeout=120)
            assert answer.status_code == 200, answer.text
        assert sum(_attempts(data).values()) == 1  # the lost worker; the engine restart costs nothing
    finally:
        serve.stop()


@needs_ray
def test_a_job_needing_a_gpu_waits_and_says_so_and_cancel_stops_it(tmp_path: Path) -> None:
    serve = ServeProcess(tmp_path / "data", "--executor", "ray", "--ray-gpus-per-job", "1")
    try:
        name = _create(serve.url, "wants-gpu", epochs=2)
        meta = _wait(lambda: (m := _op(serve.url, name)["metadata"]).get("stage") == "WAITING_FOR_RESOURCES"
                     and m, timeout=60)
        assert "1 GPU" in meta["stageDetail"], meta
        time.sleep(2)
        assert _op(serve.url, name)["metadata"].get("completedSteps") is None  # nothing ran
        resp = requests.post(f"{serve.url}/v1/{name}:cancel", json={}, timeout=10)
        assert resp.status_code == 200, resp.text
        started = time.monotonic()
        op = wait_done(serve.url, name, timeout=30)
        assert op["error"]["code"] == 1 and time.monotonic() - started < 5, op
    finally:
        serve.stop()


@needs_ray
def test_storage_holds_the_weights_and_cancel_stops_a_running_task_within_a_second(tmp_path: Path) -> None:
    storage = tmp_path / "shared"
    serve = ServeProcess(tmp_path / "data", "--executor", "ray", "--storage", str(storage))
    try:
        short = wait_done(serve.url, _create(serve.url, "short", epochs=1), timeout=180)
        assert short["response"]["state"] == "ACTIVE", short
        assert list((storage / "jobs" / "short").iterdir()), "no weights in the storage"
        assert not (tmp_path / "data" / "jobs" / "short").exists()
        answer = requests.post(f"{serve.url}/v1beta3/tunedModels/short:generateText",
                               json={"prompt": {"text": "1"}}, timeout=120)
        assert answer.status_code == 200, answer.text
        name = _create(serve.url, "long", epochs=200)
        _wait(lambda: _op(serve.url, name)["metadata"].get("completedSteps", 0) >= 3)
        started = time.monotonic()
        assert requests.post(f"{serve.url}/v1/{name}:cancel", json={}, timeout=10).status_code == 200
        op = wait_done(serve.url, name, timeout=30)
        took = time.monotonic() - started
        assert op["error"]["code"] == 1, op
        assert took < 2.5, f"cancel took {took:.1f} s"
        _wait(lambda: not _training_tasks(serve), timeout=10)
    finally:
        serve.stop()


def test_without_ray_installed_serve_says_how_to_install_it(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "ray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'ray'\", name='ray')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(shadow.parent),
                                                                     os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([*CLI, "serve", "--executor", "ray", "--port", "0", "--data-dir",
                           str(tmp_path / "data")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "pip install 'tunespec[ray]'" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_the_executor_options_need_executor_ray(tmp_path: Path) -> None:
    from tests.cli_helpers import invoke

    result = invoke("serve", "--data-dir", str(tmp_path), "--ray-address", "10.0.0.1:6379")
    assert result.exit_code == 2 and "need --executor ray" in result.output, result.output
    assert os.environ.get("RAY_ADDRESS") is None
