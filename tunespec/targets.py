"""Where jobs run: `local` (the engine), `google`, `vertex` (Vertex AI tuning jobs), or any URL.

`local` is the engine at $TUNESPEC_ENGINE_URL, else a `tunespec serve` already running on the data
dir, else an engine started in this process. `vertex` is `https://{location}-aiplatform.googleapis.com`,
or $TUNESPEC_VERTEX_URL (the engine's Vertex dialect, a proxy, a private endpoint); its training data
goes to Cloud Storage ($STORAGE_EMULATOR_HOST: an emulator).

The target is chosen by `--target`, else $TUNESPEC_TARGET, else the spec's `target:` (default
`local`). `Targets` opens each target once per run and hands out one client and one service
(`tunespec.service`) per target, project and API dialect (`JobSpec.dialect`).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tunespec.auth import PROJECT_ENV, Auth, engine_auth, google_auth, vertex_auth
from tunespec.client import DEFAULT_TIMEOUT, TuningClient, without_credentials
from tunespec.errors import EXIT_INVALID, TunespecError
from tunespec.service import GenerativeLanguageService, TuningService

if TYPE_CHECKING:
    from tunespec.spec import JobSpec

GOOGLE_URL = "https://generativelanguage.googleapis.com"
TARGET_ENV = "TUNESPEC_TARGET"
ENGINE_URL_ENV = "TUNESPEC_ENGINE_URL"
VERTEX_URL_ENV = "TUNESPEC_VERTEX_URL"
TARGET_NAMES = ("local", "google", "vertex")
GOOGLE_NO_TUNING = (
    "Google no longer tunes models on the Generative Language API (it has had no tunable base model "
    "since Gemini 1.5 Flash-001 was retired in May 2025); Vertex AI tunes Gemini models: use "
    "`--target vertex` (target: vertex, with vertex: {project, location, staging_bucket})"
)
_ENGINE_DEPENDENCIES = {
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "safetensors",
    "fastapi",
    "uvicorn",
    "starlette",
    "tokenizers",
}


class TargetError(TunespecError):
    """A target cannot be reached or started."""


class TargetUsageError(TargetError):
    """A target named on the command line, the environment or the spec is not a target at all."""

    exit_code = EXIT_INVALID


def _is_url(name: str) -> bool:
    try:
        parts = urlsplit(name)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 1) > 0
    except ValueError:  # a malformed netloc or port
        return False


def target_name(
    spec_target: str | None = None, cli_target: str | None = None, env: Mapping[str, str] | None = None
) -> str:
    """`--target`, else $TUNESPEC_TARGET, else the spec's target, else `local`."""
    env = os.environ if env is None else env
    name = cli_target or env.get(TARGET_ENV) or spec_target or "local"
    if name not in TARGET_NAMES and not _is_url(name):
        raise TargetUsageError(
            f"unknown target {name!r}: use `local`, `google`, `vertex` or an http(s):// URL"
        )
    return name


def job_dialect(spec: JobSpec, target: str, project: str | None = None,
                env: Mapping[str, str] | None = None) -> str:
    """The dialect a job speaks on `target`: `vertex:<project>/<location>` on vertex, else the spec's."""
    if target != "vertex":
        return spec.dialect
    from tunespec.request_vertex import settings_of

    return settings_of(spec, project, env).dialect


def vertex_url(location: str) -> str:
    """Vertex AI's regional endpoint (the global one for `global`)."""
    return "https://aiplatform.googleapis.com" if location == "global" else \
        f"https://{location}-aiplatform.googleapis.com"


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


def _stderr_notice(message: str) -> None:
    sys.stderr.write(f"{message}\n")


def start_local_engine(data_dir: Path) -> Any:
    """The local engine on `data_dir`: the `tunespec serve` running on it (its stop() leaves it running),
    else one started in this process on a free loopback port (needs the `local` extra)."""
    try:
        from tunespec.engine.server import find_or_start

        return find_or_start(data_dir, host="127.0.0.1", port=0)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in _ENGINE_DEPENDENCIES or (exc.name or "").startswith("tunespec.engine"):
            raise TargetError(
                f"the local engine needs the `local` extra ({exc.name} is missing): "
                "run `pip install 'tunespec[local]'`, or choose another target with --target "
                "(google or a URL), or set TUNESPEC_ENGINE_URL to a running `tunespec serve`"
            ) from None
        raise


@dataclass
class Target:
    """A resolved service: its name as the user wrote it, base URL and credentials."""

    name: str
    url: str
    auth: Auth = field(default_factory=Auth)
    engine: Any = None  # a RunningEngine this process started

    def describe(self) -> dict[str, str]:
        """For reports and output: never carries secrets."""
        url = without_credentials(self.url)
        name = url if self.name == self.url else self.name
        return {"name": name, "url": url, "auth": self.auth.describe()}


class Targets:
    """Opens each target once per run (one in-process engine shared by every job) and closes them."""

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        on_retry: Callable[[str], None] | None = None,
        engine_dir: Path | None = None,
        notify: Callable[[str], None] | None = None,
    ):
        self.env = dict(os.environ if env is None else env)
        self.notify = notify or _stderr_notice  # notices ("warning: ...", "note: ..."): once each per run
        self._noticed: set[str] = set()
        self._notice_lock = threading.Lock()  # notices come from inside _open, which holds _lock
        self._storage: Any = None
        self.timeout = timeout
        self.on_retry = on_retry
        self.engine_dir = engine_dir
        self._targets: dict[tuple[str, str | None], Target] = {}
        self._clients: dict[tuple[str, str | None, str], TuningClient] = {}
        self._services: dict[TuningClient, TuningService] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(name: str, project: str | None) -> tuple[str, str | None]:
        """Google's credentials depend on the project; every other target is opened once."""
        return name, project if name in ("google", "vertex") else None

    def target(self, name: str, project: str | None = None) -> Target:
        key = self._key(name, project)
        with self._lock:
            if key not in self._targets:
                self._targets[key] = self._open(name, project)
            return self._targets[key]

    def describe(self, name: str, project: str | None = None) -> dict[str, str]:
        """The target as reports tell it (no secrets); only its name when it cannot be opened."""
        try:
            return self.target(name, project).describe()
        except TunespecError:
            return {"name": name, "url": "", "auth": ""}

    def in_process(self, name: str, project: str | None = None) -> bool:
        """Whether NAME is an engine this process started: it stops when the run ends, pausing its jobs."""
        with self._lock:
            target = self._targets.get(self._key(name, project))
        return target is not None and target.engine is not None

    def notice(self, message: str) -> None:
        """Tell the user `message` once per run."""
        with self._notice_lock:
            if message in self._noticed:
                return
            self._noticed.add(message)
        self.notify(message)

    def _open(self, name: str, project: str | None) -> Target:
        if name == "google":
            self.notice(f"note: {GOOGLE_NO_TUNING}")
            return Target(name, GOOGLE_URL, google_auth(project, self.env))
        if name == "vertex":
            url = (self.env.get(VERTEX_URL_ENV) or "").rstrip("/")
            if url and not _is_url(url):
                raise TargetUsageError(f"{VERTEX_URL_ENV}={url!r} is not an http(s):// URL; set it to the "
                                       "base URL of a Vertex AI API (e.g. http://127.0.0.1:8765 for "
                                       "`tunespec serve`), or unset it for Google's")
            auth = engine_auth(self.env) if url and _loopback(url) else vertex_auth(project, self.env)
            return Target(name, url, auth)  # url "": the job's regional endpoint
        if name == "local":
            url = self.env.get(ENGINE_URL_ENV)
            if url:
                if not _is_url(url):
                    raise TargetUsageError(
                        f"{ENGINE_URL_ENV}={url!r} is not an http(s):// URL; set it to the address "
                        "`tunespec serve` prints (e.g. http://127.0.0.1:8765), or unset it to start "
                        "the local engine in-process"
                    )
                return Target(name, url.rstrip("/"), engine_auth(self.env))
            from tunespec.auth import ENGINE_TOKEN_ENV
            from tunespec.engine.datadir import default_data_dir

            engine = start_local_engine(self.engine_dir or default_data_dir(self.env))
            if engine.owned:
                return Target(name, engine.url, engine_auth({}), engine=engine)
            # a running `tunespec serve` on the same data dir: it outlives this run (not in-process)
            if engine.auth and not self.env.get(ENGINE_TOKEN_ENV):
                raise TargetError(
                    f"the engine at {engine.url} (`tunespec serve` on {engine.data_dir}) needs a token: "
                    f"set {ENGINE_TOKEN_ENV} to one of its --token-file tokens"
                )
            return Target(name, engine.url, engine_auth(self.env))
        return Target(name, name.rstrip("/"), engine_auth(self.env))

    def project(self, name: str, project: str | None = None) -> str | None:
        """The project a client for target NAME sends: `project`, else $GOOGLE_CLOUD_PROJECT.

        Google's credentials resolve theirs (see `google_auth`), so for `google` this is `project` as given.
        """
        return project if name in ("google", "vertex") else project or self.env.get(PROJECT_ENV) or None

    def _vertex_dialect(self, dialect: str, project: str | None) -> str:
        """A job's `vertex:<project>/<location>`; for a bare --model call, the project and region given
        by --project / $GOOGLE_CLOUD_PROJECT and $GOOGLE_CLOUD_LOCATION."""
        if dialect.startswith("vertex:"):
            return dialect
        from tunespec.request_vertex import DEFAULT_LOCATION, LOCATION_ENV

        chosen = project or self.env.get(PROJECT_ENV)
        if not chosen:
            raise TargetUsageError(f"the vertex target needs a Google Cloud project: pass --project or set "
                                   f"{PROJECT_ENV}")
        return f"vertex:{chosen}/{self.env.get(LOCATION_ENV) or DEFAULT_LOCATION}"

    def client(self, name: str, dialect: str, project: str | None = None) -> TuningClient:
        """One client per target, project and dialect; every target but Google's gets the project as
        `x-goog-user-project` (the local engine scopes tuned models by it; Google's ADC credentials
        send their own quota project, and an API key carries its project)."""
        target = self.target(name, project)
        project = self.project(name, project)
        dialect = self._vertex_dialect(dialect, project) if name == "vertex" else dialect
        key = (name, project, dialect)
        url = target.url
        if name == "vertex" and not url:
            from tunespec.request_vertex import parse_dialect

            url = vertex_url(parse_dialect(dialect)[1])
        with self._lock:
            if key not in self._clients:
                self._clients[key] = TuningClient(
                    url,
                    dialect="v1" if name == "vertex" else dialect,
                    auth=target.auth,
                    timeout=self.timeout,
                    on_retry=self.on_retry,
                    project=None if name in ("google", "vertex") else project,
                )
            return self._clients[key]

    def service(self, name: str, dialect: str, project: str | None = None) -> TuningService:
        """The service behind `client(name, dialect, project)`, reading its answers as parsed resources."""
        client = self.client(name, dialect, project)
        storage = self.storage(name, project) if name == "vertex" else None
        with self._lock:
            if client not in self._services:
                if name == "vertex":
                    from tunespec.request_vertex import parse_dialect
                    from tunespec.vertex import VertexService

                    vertex_project, location = parse_dialect(self._vertex_dialect(dialect, project))
                    self._services[client] = VertexService(client, vertex_project, location, storage,
                                                           notify=self.notice)
                else:
                    self._services[client] = GenerativeLanguageService(client)
            return self._services[client]

    def storage(self, name: str = "vertex", project: str | None = None) -> Any:
        """Cloud Storage (an emulator at $STORAGE_EMULATOR_HOST) with the target's credentials."""
        from tunespec.staging import EMULATOR_ENV, CloudStorage

        auth = Auth() if self.env.get(EMULATOR_ENV) else self.target(name, project).auth
        with self._lock:
            if self._storage is None:
                self._storage = CloudStorage(auth=auth, env=self.env)
            return self._storage

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        if self._storage is not None:
            self._storage.close()
            self._storage = None
        for target in self._targets.values():
            if target.engine is not None:
                target.engine.stop()
        self._clients.clear()
        self._services.clear()
        self._targets.clear()

    def __enter__(self) -> Targets:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
