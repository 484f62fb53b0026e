"""Shared pieces of the SDK tests: an engine whose token file names two projects, a trained model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.engine.engine_helpers import create_body, wait_done

ALICE, BOB, CAROL = "alice-key", "bob-key", "carol-key"  # API keys of projects team-a, team-b, team-c
TOKENS = f"{ALICE} team-a\n{BOB} team-b\n{CAROL} team-c\n"
GEMINI = "models/gemini-1.5-flash-001-tuning"


def guarded_engine(root: Path) -> Iterator[Any]:
    """A real engine (uvicorn thread + worker) that lets in the three projects of TOKENS only."""
    pytest.importorskip("torch")
    from tunespec.engine.server import start_background

    token_file = root / "tokens.txt"
    token_file.write_text(TOKENS)
    with start_background(root / "data", token_file=token_file) as running:
        yield running


def train(url: str, model_id: str, *, key: str = ALICE, version: str = "v1beta", base: str = GEMINI) -> str:
    """Create tuned model `model_id` as `key`'s project over plain HTTP and wait until it is done."""
    headers = {"x-goog-api-key": key}
    resp = requests.post(
        f"{url}/{version}/tunedModels", params={"tunedModelId": model_id},
        json=create_body(base_model=base, epochs=2), headers=headers, timeout=30,
    )
    assert resp.status_code == 200, resp.text
    op = wait_done(url, resp.json()["name"], headers=headers, timeout=300)
    assert "error" not in op, op
    return f"tunedModels/{model_id}"
