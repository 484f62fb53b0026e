"""32 concurrent clients against one `tunespec serve`: no errors, no hangs, memory flat."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests

from tests.engine.engine_helpers import NUMBERS, ServeProcess, create_body, wait_done

pytestmark = pytest.mark.slow

CLIENTS = 32
ROUNDS = 3  # requests per client per wave


def _calls(url: str, tuned: str) -> list[tuple[str, str, dict | None]]:
    prompt = {"prompt": {"text": "twenty two"}, "temperature": 0, "maxOutputTokens": 8}
    return [
        ("POST", f"{url}/v1beta3/models/text-bison-001:generateText", prompt),
        ("POST", f"{url}/v1beta3/{tuned}:generateText", prompt),
        ("POST", f"{url}/v1beta/{tuned}:generateContent",
         {"contents": [{"role": "user", "parts": [{"text": "8"}]}],
          "generationConfig": {"maxOutputTokens": 8}}),
        ("GET", f"{url}/v1beta3/tunedModels?pageSize=5", None),
        ("GET", f"{url}/v1beta3/{tuned}", None),
        ("GET", f"{url}/v1/{tuned}/operations", None),
        ("GET", f"{url}/v1beta3/models", None),
    ]


def _client(url: str, tuned: str, seed: int) -> list[str]:
    """One client's wave: ROUNDS random calls on its own connection; returns what went wrong."""
    rng = random.Random(seed)
    problems = []
    with requests.Session() as session:
        for _ in range(ROUNDS):
            method, target, body = rng.choice(_calls(url, tuned))
            try:
                resp = session.request(method, target, json=body, timeout=90)
            except requests.RequestException as exc:
                problems.append(f"{method} {target}: {type(exc).__name__}")
                continue
            if resp.status_code != 200:
                problems.append(f"{method} {target}: HTTP {resp.status_code} {resp.text[:200]}")
    return problems


def _wave(url: str, tuned: str, wave: int) -> float:
    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda i: _client(url, tuned, wave * 1000 + i), range(CLIENTS)))
    problems = [p for r in results for p in r]
    assert problems == [], problems[:5]
    return time.monotonic() - started


def test_32_concurrent_clients_get_answers_and_memory_stays_flat(tmp_path: Path) -> None:
    serve = ServeProcess(tmp_path / "data")
    try:
        created = requests.post(f"{serve.url}/v1beta3/tunedModels?tunedModelId=loaded",
                                json=create_body(epochs=1, batch=4, pairs=NUMBERS[:8]), timeout=30)
        assert created.status_code == 200, created.text
        done = wait_done(serve.url, created.json()["name"], timeout=180)
        assert done["response"]["state"] == "ACTIVE", done
        server = psutil.Process(serve.proc.pid)
        for wave in range(2):  # warm-up: models loaded, caches and thread pools at their size
            _wave(serve.url, "tunedModels/loaded", wave)
        warm = server.memory_info().rss
        took = [_wave(serve.url, "tunedModels/loaded", wave) for wave in range(2, 6)]
        grown = server.memory_info().rss - warm
        assert max(took) < 120, took  # no hang: every wave finishes well inside its timeouts
        assert grown < 64 * 2**20, f"the server grew by {grown / 2**20:.0f} MiB over 4 waves ({took})"
    finally:
        serve.stop()
