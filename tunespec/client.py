"""TuningClient: the Generative Language tuning API over HTTP (Google's service or the local engine).

One instance per target. Every call has a timeout; transient failures (429, 500, 502, 503, 504 and
dropped connections) are retried with exponential backoff and full jitter, honouring `Retry-After`
and `google.rpc.RetryInfo`. Anything else becomes an `ApiError` whose text is one line: the HTTP
status, the service's message and what to do next. Credentials travel only in headers.
"""

from __future__ import annotations

import email.utils
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import requests

from tunespec.auth import Auth
from tunespec.errors import ApiError
from tunespec.version import __version__

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_TIMEOUT = 60.0

_NEXT_STEP = {
    400: "fix the request (see the message) and run again",
    401: "check the credentials: refresh them with `gcloud auth application-default login`, "
    "or set GOOGLE_API_KEY",
    403: "check that the credentials may use this API and model (OAuth scopes "
    "cloud-platform + generative-language.tuning, the quota project via --project), or use an API key",
    404: "check the name; `tunespec list` shows the tuned models this target holds",
    409: "it already exists; run `tunespec apply` again to attach to it",
    429: "the quota is exhausted; wait and run again, or ask for more quota",
    500: "the service failed; run again later",
    501: "this service does not implement the call",
    502: "the service is unreachable through its gateway; run again later",
    503: "the service is unavailable; run again later",
    504: "the service timed out; run again later",
}


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _parse_retry_info(body: Any) -> float | None:
    """`retryDelay` ("41s", "0.5s") from a google.rpc.RetryInfo detail in an error envelope."""
    try:
        details = body["error"].get("details") or []
    except (TypeError, KeyError, AttributeError):
        return None
    for detail in details:
        if isinstance(detail, dict) and detail.get("@type", "").endswith("google.rpc.RetryInfo"):
            delay = detail.get("retryDelay")
            if isinstance(delay, dict):  # proto Duration as an object
                return float(delay.get("seconds", 0)) + float(delay.get("nanos", 0)) / 1e9
            match = re.fullmatch(r"\s*([0-9.]+)s\s*", str(delay))
            if match:
                return float(match.group(1))
    return None


def without_credentials(url: str) -> str:
    """URL without any user:password part: what messages and reports may show."""
    parts = urlsplit(url)
    if not (parts.username or parts.password):
        return url
    return parts._replace(netloc=f"{parts.hostname}{f':{parts.port}' if parts.port else ''}").geturl()


class TuningClient:
    """The REST calls tunespec needs, for one service (`base_url`) and one API dialect.

    `dialect` is "v1beta3" (PaLM: generateText) or "v1beta" (Gemini: generateContent). Operations of
    v1beta3 jobs are read through `/v1/`, as Google serves them. `project`, when set, is sent as
    `x-goog-user-project` (the local engine scopes tuned models by it); credentials that carry their
    own (Google ADC) take precedence.
    """

    def __init__(
        self,
        base_url: str,
        *,
        dialect: str = "v1beta3",
        auth: Auth | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_retry_wait: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[str], None] | None = None,
        project: str | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.project = project
        self.dialect = dialect
        self.auth = auth or Auth()
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_wait = max_retry_wait
        self.sleep = sleep
        self.on_retry = on_retry
        self.retries = 0  # transient failures ridden out so far (for reports and tests)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: list[requests.Session] = []

    # ---- plumbing ---------------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = f"tunespec/{__version__}"
            session.headers["X-Tunespec-Stages"] = "1"  # the local engine then tells a job's stage
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()
        self._local = threading.local()

    def _backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
        done_if_after_retry: tuple[int, ...] = (),
    ) -> dict[str, Any]:
        """One call, retried while transient; returns the JSON body (`{}` when empty).

        `done_if_after_retry`: statuses that, answered to a retry, mean an earlier try whose answer
        was lost already did the work (a DELETE retried into 404): returned as `{}`."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        shown = f"{self.shown_url}/{path.lstrip('/')}"
        where = f"{method} {shown}"
        waited = 0.0
        attempt = 0
        while True:
            headers = {
                "Content-Type": "application/json",
                **({"x-goog-user-project": self.project} if self.project else {}),
                **self.auth.headers(),
            }
            try:
                response = self._session().request(
                    method,
                    url,
                    params={k: v for k, v in (params or {}).items() if v is not None},
                    data=None if body is None else json.dumps(body),
                    headers=headers,
                    timeout=timeout or self.timeout,
                )
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError,
            ) as exc:  # transient: a reset or truncated answer mid-response is retried like a drop
                if isinstance(exc, requests.Timeout):
                    kind = "timed out"
                elif isinstance(exc, requests.ConnectionError):
                    kind = "connection failed"
                else:
                    kind = "the answer was cut off"
                delay = self._backoff(attempt)
                if attempt >= self.max_retries or waited + delay > self.max_retry_wait:
                    raise ApiError(
                        f"{where}: {kind} after {attempt + 1} attempts ({type(exc).__name__}); "
                        f"check that the service at {self.shown_url} is running and reachable, "
                        "then run again",
                        method=method,
                        url=shown,
                    ) from None
                self._retry(f"{where}: {kind}; retrying in {delay:.1f}s", delay)
                waited += delay
                attempt += 1
                continue
            except requests.RequestException as exc:  # an unusable URL: retrying cannot help
                raise ApiError(
                    f"{where}: cannot send the request ({type(exc).__name__}: {exc}); "
                    f"check the target URL {self.shown_url}",
                    method=method,
                    url=shown,
                ) from None
            if response.status_code < 400:
                if not response.content:
                    return {}
                try:
                    return response.json()
                except ValueError:
                    # A truncated or mangled answer (a proxy's page) is transient: retried a few times.
                    delay = self._backoff(attempt)
                    if attempt < min(self.max_retries, 3) and waited + delay <= self.max_retry_wait:
                        self._retry(f"{where}: HTTP {response.status_code} with a body that is not JSON; "
                                    f"retrying in {delay:.1f}s", delay)
                        waited += delay
                        attempt += 1
                        continue
                    raise ApiError(
                        f"{where}: the service answered HTTP {response.status_code} with a body "
                        "that is not JSON; check that the target URL points at a tuning service",
                        http_status=response.status_code,
                        method=method,
                        url=shown,
                    ) from None
            if attempt > 0 and response.status_code in done_if_after_retry:
                return {}
            try:
                payload = response.json()
            except ValueError:
                payload = None
            if response.status_code in RETRY_STATUSES and attempt < self.max_retries:
                hinted = _parse_retry_after(response.headers.get("Retry-After"))
                if hinted is None:
                    hinted = _parse_retry_info(payload)
                delay = hinted if hinted is not None else self._backoff(attempt)
                if waited + delay <= self.max_retry_wait:
                    self._retry(f"{where}: HTTP {response.status_code}; retrying in {delay:.1f}s", delay)
                    waited += delay
                    attempt += 1
                    continue
            raise self._error(response, payload, method, shown)

    def _retry(self, message: str, delay: float) -> None:
        self.retries += 1
        if self.on_retry is not None:
            self.on_retry(self.auth.redact(message))
        self.sleep(delay)

    def _error(self, response: requests.Response, payload: Any, method: str, url: str) -> ApiError:
        status = ""
        message = ""
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            status = str(payload["error"].get("status") or "")
            message = str(payload["error"].get("message") or "")
            for detail in payload["error"].get("details") or []:
                if isinstance(detail, dict) and detail.get("fieldViolations"):
                    message += "; " + "; ".join(
                        f"{v.get('field')}: {v.get('description')}" for v in detail["fieldViolations"]
                    )
        if not message:
            message = (response.text or response.reason or "").strip().splitlines()[0:1]
            message = message[0][:300] if message else ""
        message = " ".join(message.split())
        code = response.status_code
        fallback = "run again later" if code >= 500 else "fix the request and run again"
        next_step = _NEXT_STEP.get(code, fallback)
        text = f"HTTP {code}{' ' + status if status else ''} from {method} {url}: {message or '(no message)'}"
        text = self.auth.redact(f"{text} -> {next_step}")
        return ApiError(text, http_status=code, status=status, method=method, url=url)

    @property
    def shown_url(self) -> str:
        """The base URL without any user:password part, for messages."""
        return without_credentials(self.base_url)

    # ---- models -----------------------------------------------------------------------------------

    def _paged(self, path: str, key: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        token = None
        while True:
            page = self.request("GET", path, params={**params, "pageToken": token})
            yield from page.get(key) or []
            token = page.get("nextPageToken")
            if not token:
                return

    def list_models(self) -> list[dict[str, Any]]:
        return list(self._paged(f"{self.dialect}/models", "models", {"pageSize": 1000}))

    def get_model(self, name: str) -> dict[str, Any]:
        return self.request("GET", f"{self.dialect}/{name}")

    # ---- tuned models -----------------------------------------------------------------------------

    def create_tuned_model(self, body: dict[str, Any], tuned_model_id: str | None = None) -> dict[str, Any]:
        """POST tunedModels; returns the Operation."""
        return self.request(
            "POST", f"{self.dialect}/tunedModels", params={"tunedModelId": tuned_model_id}, body=body
        )

    def get_tuned_model(self, name: str) -> dict[str, Any]:
        return self.request("GET", f"{self.dialect}/{name}")

    def find_tuned_model(self, name: str) -> dict[str, Any] | None:
        """The tuned model, or None when the service says 404."""
        try:
            return self.get_tuned_model(name)
        except ApiError as exc:
            if exc.http_status == 404:
                return None
            raise

    def find_operation(self, tuned_model: str) -> dict[str, Any] | None:
        """The model's running operation (else its latest one), or None when the service lists none."""
        try:
            operations = self.list_operations(tuned_model)
        except ApiError as exc:
            if exc.http_status in (400, 404, 405, 501):
                return None
            raise
        running = [o for o in operations if not o.get("done")]
        return (running or operations or [None])[-1]

    def list_tuned_models(self, *, filter: str | None = None) -> list[dict[str, Any]]:
        return list(
            self._paged(f"{self.dialect}/tunedModels", "tunedModels", {"pageSize": 1000, "filter": filter})
        )

    def update_tuned_model(self, name: str, fields: dict[str, Any]) -> dict[str, Any]:
        """PATCH the top-level `fields` (camelCase) of a tuned model."""
        return self.request(
            "PATCH", f"{self.dialect}/{name}", params={"updateMask": ",".join(fields)}, body=fields
        )

    def delete_tuned_model(self, name: str) -> None:
        """Delete `name`; a retry answered 404 means the lost answer of an earlier try deleted it."""
        self.request("DELETE", f"{self.dialect}/{name}", done_if_after_retry=(404,))

    # ---- operations -------------------------------------------------------------------------------

    @property
    def operations_version(self) -> str:
        return "v1" if self.dialect == "v1beta3" else self.dialect

    def get_operation(self, name: str) -> dict[str, Any]:
        return self.request("GET", f"{self.operations_version}/{name}")

    def list_operations(self, tuned_model: str) -> list[dict[str, Any]]:
        return list(
            self._paged(
                f"{self.operations_version}/{tuned_model}/operations", "operations", {"pageSize": 1000}
            )
        )

    def cancel_operation(self, name: str) -> None:
        self.request("POST", f"v1/{name}:cancel", body={})

    # ---- generation -------------------------------------------------------------------------------

    def generate_text(self, model: str, prompt: str, **options: Any) -> dict[str, Any]:
        """POST {model}:generateText; options are camelCase GenerateTextRequest fields (None: omitted)."""
        body = {"prompt": {"text": prompt}, **{k: v for k, v in options.items() if v is not None}}
        return self.request("POST", f"{self.dialect}/{model}:generateText", body=body)

    def generate_content(self, model: str, prompt: str, **config: Any) -> dict[str, Any]:
        """POST {model}:generateContent (v1beta); config goes into generationConfig."""
        body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
        generation = {k: v for k, v in config.items() if v is not None}
        if generation:
            body["generationConfig"] = generation
        return self.request("POST", f"{self.dialect}/{model}:generateContent", body=body)

    def generate(
        self,
        model: str,
        prompt: str,
        *,
        candidate_count: int | None = None,
        temperature: float | None = None,
        max_output_tokens: int | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
    ) -> list[str]:
        """The candidates' texts, through the dialect's generation method."""
        options = {
            "candidateCount": candidate_count,
            "temperature": temperature,
            "maxOutputTokens": max_output_tokens,
            "topP": top_p,
            "topK": top_k,
        }
        if self.dialect == "v1beta3":
            response = self.generate_text(model, prompt, **options)
            return [c.get("output", "") for c in response.get("candidates") or []]
        response = self.generate_content(model, prompt, **options)
        texts = []
        for candidate in response.get("candidates") or []:
            parts = (candidate.get("content") or {}).get("parts") or []
            texts.append("".join(p.get("text", "") for p in parts))
        return texts
