"""A Cloud Storage emulator (gcp-storage-emulator, pure Python) on loopback, for the Vertex tests."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

BUCKET = "tunespec-ci"


@dataclass
class Emulator:
    url: str  # what STORAGE_EMULATOR_HOST is set to
    server: object

    def wipe(self) -> None:
        self.server.wipe(keep_buckets=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def storage_emulator(bucket: str = BUCKET) -> Iterator[Emulator]:
    """The emulator with `bucket`, and $STORAGE_EMULATOR_HOST pointing at it while it runs."""
    server_mod = pytest.importorskip("gcp_storage_emulator.server")
    port = _free_port()
    server = server_mod.create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    server.start()
    url = f"http://127.0.0.1:{port}"
    before = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = url
    try:
        yield Emulator(url, server)
    finally:
        if before is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = before
        server.stop()
