"""The local Ray's processes outlive a killed engine: the next engine reaps them, and nothing else."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunespec.engine import ray_local

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")

ENGINE = """
import subprocess, sys, time
from tunespec.engine import ray_local
child = subprocess.Popen(["sleep", "300"])  # stands for Ray's agents
ray_local.record(sys.argv[1])
print(child.pid, flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _engine(data: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", ENGINE, str(data)], stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def test_a_killed_engines_leftovers_are_reaped_and_a_live_engines_are_not(tmp_path: Path) -> None:
    live, live_child = _engine(tmp_path)
    dead, dead_child = _engine(tmp_path)
    try:
        dead.send_signal(signal.SIGKILL)  # its child lives on, as Ray's agents do
        dead.wait()
        assert _alive(dead_child)
        assert ray_local.reap(tmp_path) == [dead_child]
        deadline = time.monotonic() + 5
        while _alive(dead_child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(dead_child)
        assert _alive(live_child)  # the other engine on the data dir still runs: untouched
        assert [p.name for p in tmp_path.glob("ray-local.*.json")] == [f"ray-local.{live.pid}.json"]
    finally:
        for proc, child in ((live, live_child), (dead, dead_child)):
            proc.kill()
            if _alive(child):
                os.kill(child, signal.SIGKILL)


def test_a_recorded_pid_now_used_by_another_process_is_left_alone(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "300"])
    try:
        record = {"engine": [999_999_999, "1"], "procs": [[other.pid, "1"]]}  # another start time
        (tmp_path / "ray-local.999999999.json").write_text(json.dumps(record))
        assert ray_local.reap(tmp_path) == []
        assert other.poll() is None
        assert not list(tmp_path.glob("ray-local.*.json"))  # a dead engine's record is gone
    finally:
        other.kill()
