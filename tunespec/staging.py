"""Cloud Storage over its JSON API: content-addressed uploads (resumable for large files), downloads.

`CloudStorage` speaks to storage.googleapis.com, or to an emulator at $STORAGE_EMULATOR_HOST (the
google-cloud-storage convention; no credentials are sent there). `stage` uploads a file only when
no object of that name exists: names are content hashes, so an existing one holds the same bytes.
Small files go in one multipart request; larger ones resumably, in chunks, picking up where the
service says it stopped. Bodies are sent as application/octet-stream (some emulators parse
`application/jsonl` bodies as JSON).
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import requests

from tunespec.auth import Auth
from tunespec.errors import ApiError

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
GOOGLE_STORAGE = "https://storage.googleapis.com"
RESUMABLE_THRESHOLD = 8 * 1024 * 1024  # bytes; above it uploads are resumable
CHUNK = 8 * 1024 * 1024  # a multiple of 256 KiB, as resumable uploads require
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
OCTET = "application/octet-stream"


def split_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/name` -> (bucket, name); ValueError for anything else."""
    if not uri.startswith("gs://"):
        raise ValueError(f"not a gs:// URI: {uri!r}")
    bucket, _, name = uri[5:].partition("/")
    if not bucket or not name:
        raise ValueError(f"a gs:// URI names a bucket and an object: {uri!r}")
    return bucket, name


def storage_url(env: Mapping[str, str] | None = None) -> str:
    """The JSON API's base URL: the emulator at $STORAGE_EMULATOR_HOST, else Google's."""
    env = os.environ if env is None else env
    host = (env.get(EMULATOR_ENV) or "").strip().rstrip("/")
    if not host:
        return GOOGLE_STORAGE
    return host if "://" in host else f"http://{host}"


class CloudStorage:
    """The few Cloud Storage calls tunespec needs, with retries on transient failures."""

    def __init__(
        self,
        base_url: str | None = None,
        auth: Auth | None = None,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 120.0,
        chunk_size: int = CHUNK,
        resumable_threshold: int = RESUMABLE_THRESHOLD,
        max_retries: int = 5,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = (base_url or storage_url(env)).rstrip("/")
        emulated = base_url is None and bool((os.environ if env is None else env).get(EMULATOR_ENV))
        self.auth = Auth() if emulated or auth is None else auth
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.resumable_threshold = resumable_threshold
        self.max_retries = max_retries
        self.sleep = sleep
        self.session = requests.Session()
        self.uploads = 0  # objects uploaded by this instance (for tests and reports)

    def close(self) -> None:
        self.session.close()

    def _call(
        self, method: str, url: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any
    ) -> requests.Response:
        """One request, retried while transient; a status outside `ok` (and 404, 308) is an ApiError."""
        shown = url.split("?")[0]
        for attempt in range(self.max_retries + 1):
            headers = {**kwargs.pop("headers", {}), **self.auth.headers()}
            try:
                response = self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt == self.max_retries:
                    raise ApiError(
                        f"{method} {shown}: {type(exc).__name__}; check that Cloud Storage at "
                        f"{self.base_url} is reachable ({EMULATOR_ENV} points at an emulator)",
                        method=method,
                        url=shown,
                    ) from None
                kwargs["headers"] = headers
                self.sleep(random.uniform(0, min(10.0, 0.5 * 2**attempt)))
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.max_retries:
                kwargs["headers"] = headers
                self.sleep(random.uniform(0, min(10.0, 0.5 * 2**attempt)))
                continue
            if response.status_code in ok:
                return response
            raise self._error(response, method, shown)
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, response: requests.Response, method: str, url: str) -> ApiError:
        try:
            message = str(response.json()["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = (response.text or response.reason or "").strip()[:200]
        code = response.status_code
        hint = {
            401: "check the Google credentials",
            403: "check that the credentials may write the bucket",
            404: "check that the bucket exists",
        }.get(code, "run again later" if code >= 500 else "")
        text = self.auth.redact(
            f"HTTP {code} from Cloud Storage {method} {url}: {' '.join(message.split())}"
            + (f" -> {hint}" if hint else "")
        )
        return ApiError(text, http_status=code, method=method, url=url)

    def _object_url(self, bucket: str, name: str) -> str:
        return f"{self.base_url}/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"

    def stat(self, uri: str) -> dict[str, Any] | None:
        """The object's metadata, or None when it does not exist."""
        bucket, name = split_uri(uri)
        response = self._call("GET", self._object_url(bucket, name), ok=(200, 404))
        return None if response.status_code == 404 else response.json()

    def download(self, uri: str, limit: int | None = None) -> bytes:
        """The object's bytes (ApiError 404 when absent); refused past `limit` bytes."""
        bucket, name = split_uri(uri)
        response = self._call("GET", self._object_url(bucket, name), params={"alt": "media"}, stream=True)
        chunks, size = [], 0
        for chunk in response.iter_content(1 << 20):
            size += len(chunk)
            if limit is not None and size > limit:
                response.close()
                raise ApiError(f"{uri} is larger than {limit:,} bytes", http_status=413)
            chunks.append(chunk)
        return b"".join(chunks)

    def stage(self, uri: str, data: bytes) -> bool:
        """Upload `data` as `uri` unless the object exists already; True when it was uploaded."""
        existing = self.stat(uri)
        if existing is not None and int(existing.get("size", -1)) == len(data):
            return False
        self.upload(uri, data)
        return True

    def upload(self, uri: str, data: bytes) -> dict[str, Any]:
        """Write `data` as `uri`: one multipart request, or a resumable upload past the threshold."""
        bucket, name = split_uri(uri)
        if len(data) > self.resumable_threshold:
            result = self._resumable(bucket, name, data)
        else:
            result = self._multipart(bucket, name, data)
        self.uploads += 1
        return result

    def _multipart(self, bucket: str, name: str, data: bytes) -> dict[str, Any]:
        boundary = f"tunespec-{uuid.uuid4().hex}"
        meta = json.dumps({"name": name, "contentType": OCTET}).encode()
        body = b"".join(
            [
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode(),
                meta,
                f"\r\n--{boundary}\r\nContent-Type: {OCTET}\r\n\r\n".encode(),
                data,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        url = f"{self.base_url}/upload/storage/v1/b/{quote(bucket, safe='')}/o"
        response = self._call(
            "POST",
            url,
            params={"uploadType": "multipart"},
            data=body,
            headers={"Content-Type": f"multipart/related; boundary={boundary}"},
        )
        return response.json()

    def _resumable(self, bucket: str, name: str, data: bytes) -> dict[str, Any]:
        url = f"{self.base_url}/upload/storage/v1/b/{quote(bucket, safe='')}/o"
        start = self._call(
            "POST",
            url,
            params={"uploadType": "resumable", "name": name},
            data=json.dumps({"name": name, "contentType": OCTET}),
            headers={
                "Content-Type": "application/json; charset=UTF-8",
                "X-Upload-Content-Type": OCTET,
                "X-Upload-Content-Length": str(len(data)),
            },
        )
        session = start.headers.get("Location")
        if not session:
            raise ApiError(f"Cloud Storage gave no resumable upload session for gs://{bucket}/{name}")
        offset, total, stalled = 0, len(data), 0
        while True:
            end = min(offset + self.chunk_size, total)
            response = self._call(
                "PUT",
                session,
                ok=(200, 201, 308),
                data=data[offset:end],
                headers={"Content-Type": OCTET, "Content-Range": f"bytes {offset}-{end - 1}/{total}"},
            )
            if response.status_code in (200, 201):
                return response.json() if response.content else {}
            received = response.headers.get("Range")  # "bytes=0-N": what the service holds so far
            held = int(received.rsplit("-", 1)[1]) + 1 if received else 0
            stalled = stalled + 1 if held <= offset else 0
            if stalled > self.max_retries:
                raise ApiError(
                    f"Cloud Storage stopped taking gs://{bucket}/{name} at byte {held:,}; run again"
                )
            offset = held
