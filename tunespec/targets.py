"""Where jobs run: `local` (the engine), `google`, or any URL.

`local` is the engine at $TUNESPEC_ENGINE_URL, else a `tunespec serve` already running on the data
dir, else an engine started in this process.

The target is chosen by `--target`, else $TUNESPEC_TARGET, else the spec's `target:` (default
`local`). `Targets` opens each target once per run and hands out one client and one service
(`tunespec.service`) per target, project and API dialect (`JobSpec.dialect`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tunespec.auth import PROJECT_ENV, Auth, engine_auth, google_auth
from tunespec.client import DEFAULT_TIMEOUT, TuningClient, without_credentials
from tunespec.errors import EXIT_INVALID, TunespecError
from tunespec.service import GenerativeLanguageService, TuningService

GOOGLE_URL = "https://generativelanguage.googleapis.com"
TARGET_ENV = "TUNESPEC_TARGET"
ENGINE_URL_ENV = "TUNESPEC_ENGINE_URL"
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
    if name not in ("local", "google") and not _is_url(name):
        raise TargetUsageError(f"unknown target {name!r}: use `local`, `google` or an http(s):// URL")
    return name


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
    ):
        self.env = dict(os.environ if env is None else env)
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
        return name, project if name == "google" else None

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

    def _open(self, name: str, project: str | None) -> Target:
        if name == "google":
            return Target(name, GOOGLE_URL, google_auth(project, self.env))
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
        return project if name == "google" else project or self.env.get(PROJECT_ENV) or None

    def client(self, name: str, dialect: str, project: str | None = None) -> TuningClient:
        """One client per target, project and dialect; every target but Google's gets the project as
        `x-goog-user-project` (the local engine scopes tuned models by it; Google's ADC credentials
        send their own quota project, and an API key carries its project)."""
        target = self.target(name, project)
        project = self.project(name, project)
        key = (name, project, dialect)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = TuningClient(
                    target.url,
                    dialect=dialect,
                    auth=target.auth,
                    timeout=self.timeout,
                    on_retry=self.on_retry,
                    project=None if name == "google" else project,
                )
            return self._clients[key]

    def service(self, name: str, dialect: str, project: str | None = None) -> TuningService:
        """The service behind `client(name, dialect, project)`, reading its answers as parsed resources."""
        client = self.client(name, dialect, project)
        with self._lock:
            if client not in self._services:
                self._services[client] = GenerativeLanguageService(client)
            return self._services[client]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
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
