"""Cloud Storage staging against a real emulator on loopback: content-addressed, uploaded once,
resumable in chunks for large files."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.vertex_fixtures import BUCKET, Emulator, storage_emulator
from tunespec.errors import ApiError
from tunespec.request_vertex import staged_uri
from tunespec.staging import CloudStorage, split_uri, storage_url


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with storage_emulator() as emu:
        yield emu


def test_storage_url_follows_the_emulator_convention() -> None:
    assert storage_url({}) == "https://storage.googleapis.com"
    assert storage_url({"STORAGE_EMULATOR_HOST": "localhost:9023"}) == "http://localhost:9023"
    assert storage_url({"STORAGE_EMULATOR_HOST": "http://127.0.0.1:1/"}) == "http://127.0.0.1:1"
    assert split_uri("gs://b/a/b.jsonl") == ("b", "a/b.jsonl")
    with pytest.raises(ValueError):
        split_uri("gs://bucket-only")


def test_stage_uploads_once(emulator: Emulator) -> None:
    storage = CloudStorage()
    data = b'{"contents": []}\n' * 10
    uri = staged_uri(f"gs://{BUCKET}/once", data)
    assert storage.stat(uri) is None
    assert storage.stage(uri, data) is True
    assert storage.stage(uri, data) is False  # the same name holds the same bytes
    assert CloudStorage().stage(uri, data) is False  # another run sees it too
    assert storage.uploads == 1
    assert storage.download(uri) == data
    assert int(storage.stat(uri)["size"]) == len(data)


def test_large_files_upload_resumably_in_chunks(emulator: Emulator) -> None:
    data = os.urandom(256 * 1024 * 3 + 1234)  # four chunks, the last one short
    storage = CloudStorage(resumable_threshold=1024, chunk_size=256 * 1024)
    uri = f"gs://{BUCKET}/big/{len(data)}.bin"
    storage.upload(uri, data)
    assert storage.download(uri) == data


def test_missing_objects_and_buckets(emulator: Emulator) -> None:
    storage = CloudStorage()
    with pytest.raises(ApiError) as caught:
        storage.download(f"gs://{BUCKET}/no/such.jsonl")
    assert caught.value.http_status == 404
    with pytest.raises(ApiError, match="Cloud Storage"):
        storage.upload("gs://no-such-bucket-here/x.jsonl", b"x")


def test_unreachable_storage_is_one_line() -> None:
    storage = CloudStorage("http://127.0.0.1:9", max_retries=1, sleep=lambda s: None)
    with pytest.raises(ApiError, match="STORAGE_EMULATOR_HOST") as caught:
        storage.stat("gs://b/x")
    assert "\n" not in str(caught.value)
