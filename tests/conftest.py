"""Fixtures shared by the test suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakeservice import FakeService

# Google's model names are served by the fast built-in model in the tests, even where a pretrained
# model package is installed (a test that wants the pretrained path says so: alias_model=...).
os.environ["TUNESPEC_ALIAS_MODEL"] = "builtin"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real local engine (uvicorn thread + worker process) on a fresh data dir, one per test module."""
    pytest.importorskip("torch")
    from tunespec.engine.server import start_background

    with start_background(tmp_path_factory.mktemp("engine")) as running:
        yield running


@pytest.fixture
def service() -> Iterator[FakeService]:
    """A fake Generative Language service (tests/fakeservice.py) on a free port, its url in `.url`;
    a test module may define its own `service` fixture instead (tests/test_client.py does)."""
    svc = FakeService(steps_per_poll=3)
    svc.url = svc.start()
    yield svc
    svc.stop()
