"""The processes of a local Ray the engine started: recorded in the data dir, reaped after a crash.

A local Ray (no `--ray-address`) runs as children of the engine. When the engine is killed outright
(SIGKILL, the OOM killer) some of them outlive it (Ray's dashboard and runtime-env agents), holding
memory and loopback ports. The engine records their pids and start times in
DATA_DIR/ray-local.<engine pid>.json while it runs; the next engine on that data dir kills those of
every dead engine that are still alive before it starts its own Ray (a pid reused by another
process has another start time, and is left alone). Linux only (/proc); elsewhere nothing is
recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

RECORD = "ray-local.{pid}.json"


def _stat(pid: int | str) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (the state first), None if the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (stat field 22), None if gone."""
    stat = _stat(pid)
    return stat[19] if stat else None


def _descendants(pid: int) -> list[int]:
    """Every live process below `pid`."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(entry.name)):
            children.setdefault(int(stat[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def record(data_dir: Path) -> None:
    """Write this engine's Ray processes (its descendants) to its record in the data dir."""
    if not Path("/proc/self/stat").exists():
        return
    me = os.getpid()
    procs = [[pid, start] for pid in _descendants(me) if (start := _start_time(pid)) is not None]
    path = Path(data_dir) / RECORD.format(pid=me)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"engine": [me, _start_time(me)], "procs": procs}))
    os.replace(tmp, path)


def forget(data_dir: Path) -> None:
    """Remove this engine's record (it shut its Ray down itself)."""
    with contextlib.suppress(OSError):
        (Path(data_dir) / RECORD.format(pid=os.getpid())).unlink()


def reap(data_dir: Path) -> list[int]:
    """Kill the recorded processes of every dead engine's local Ray; returns the pids killed."""
    killed = []
    for path in Path(data_dir).glob(RECORD.format(pid="*")):
        try:
            info = json.loads(path.read_text())
            engine_pid, engine_start = info["engine"]
            procs = [(int(pid), str(start)) for pid, start in info["procs"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _start_time(int(engine_pid)) == engine_start:
            continue  # that engine still runs (it shares the data dir): its Ray is not ours to stop
        for pid, start in procs:
            if _start_time(pid) == start:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
        with contextlib.suppress(OSError):
            path.unlink()
    return killed
