"""Shared pieces for the engine's HTTP tests: the quickstart data, `tunespec serve`, polling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from tests.cli_helpers import CLI

os.environ.setdefault("HF_HUB_OFFLINE", "1")

NUMBERS = [
    ("1", "2"),
    ("3", "4"),
    ("-3", "-2"),
    ("twenty two", "twenty three"),
    ("two hundred", "two hundred one"),
    ("ninety nine", "one hundred"),
    ("8", "9"),
    ("-98", "-97"),
    ("1,000", "1,001"),
    ("10,100,000", "10,100,001"),
    ("thirteen", "fourteen"),
    ("eighty", "eighty one"),
    ("one", "two"),
    ("three", "four"),
    ("seven", "eight"),
]


def examples_json(pairs: list[tuple[str, str]] = NUMBERS) -> list[dict[str, str]]:
    return [{"textInput": i, "output": o} for i, o in pairs]


def create_body(
    *,
    epochs: int = 1,
    batch: int = 4,
    lr: float = 0.001,
    display_name: str = "test model",
    base_model: str = "models/text-bison-001",
    pairs: list[tuple[str, str]] = NUMBERS,
) -> dict[str, Any]:
    return {
        "displayName": display_name,
        "baseModel": base_model,
        "tuningTask": {
            "hyperparameters": {"epochCount": epochs, "batchSize": batch, "learningRate": lr},
            "trainingData": {"examples": {"examples": examples_json(pairs)}},
        },
    }


def wait_done(
    url: str, op_name: str, *, timeout: float = 120, prefix: str = "v1", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Poll an operation until done; returns its JSON."""
    deadline = time.monotonic() + timeout
    while True:
        op = requests.get(f"{url}/{prefix}/{op_name}", headers=headers, timeout=10).json()
        assert "name" in op, op
        if op.get("done"):
            return op
        if time.monotonic() > deadline:
            raise AssertionError(f"operation {op_name} not done after {timeout}s: {op.get('metadata')}")
        time.sleep(0.1)


def assert_error(resp: requests.Response, http: int, status: str, *fragments: str) -> dict[str, Any]:
    """The response is Google's error envelope with this code/status and a message naming fragments."""
    assert resp.status_code == http, resp.text
    body = resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert err["code"] == http and err["status"] == status, err
    for fragment in fragments:
        assert fragment in err["message"], (fragment, err["message"])
    return err


class ServeProcess:
    """`tunespec serve` as a real subprocess on a free port."""

    def __init__(self, data_dir: Path, *extra: str):
        self.data_dir = Path(data_dir)
        (self.data_dir / "engine.json").unlink(missing_ok=True)
        self.log = open(self.data_dir.parent / f"serve-{self.data_dir.name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*CLI, "serve", "--port", "0", "--data-dir", str(self.data_dir), *extra],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                info = json.loads((self.data_dir / "engine.json").read_text())
                if info["pid"] == self.proc.pid:
                    self.url = info["url"]
                    break
            except (OSError, ValueError, KeyError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"tunespec serve did not start (exit {self.proc.poll()})")
            time.sleep(0.05)

    def worker_pids(self) -> list[int]:
        import psutil

        return [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]

    def kill(self) -> None:
        """SIGKILL the worker(s) and the server: nothing gets to clean up."""
        for pid in self.worker_pids():
            os.kill(pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait()
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
