"""Starting the engine: `serve()` for `tunespec serve`, `start_background()` for in-process use,
`find_or_start()` for `--target local`.

An engine is uvicorn (in a thread) serving app.create_app() plus an executor that trains the queued
jobs: training worker processes that a worker.WorkerSupervisor restarts if they die (the default),
or Ray tasks (ray_executor.RayExecutor, `--executor ray`); `serve()` and `start_background()` both
start it through `_start()`. Who may call follows the door's rule (door.load_tokens). `tunespec serve`
records itself in DATA_DIR/engine.json so that `find_or_start()` reuses a running engine instead of
starting a second one on the same database.

Which model serves Google's model names (`models/text-bison-001`, the Gemini names) is decided
once per engine, at start (basemodels.resolve_alias: the `alias_model` argument, else
$TUNESPEC_ALIAS_MODEL, else "auto"), and handed to the routes and, explicitly, to every worker.
Registered models and that model are checked at start (gguf_import.check: package installed, GGUF
file whole, architecture loadable, enough memory), so a bad one stops the start with the fix.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunespec.engine.datadir import default_data_dir
from tunespec.engine.door import load_tokens
from tunespec.engine.store import pid_alive
from tunespec.engine.worker import WorkerSupervisor

if TYPE_CHECKING:
    from tunespec.engine.ray_executor import RaySettings
from tunespec.errors import EXIT_INVALID, TunespecError
from tunespec.signals import sigterm_as_interrupt

ENGINE_FILE = "engine.json"
DEFAULT_PORT = 8765


class EngineStartError(TunespecError):
    """The engine cannot start as asked (door without a token file, bad token file, data dir in use)."""

    exit_code = EXIT_INVALID


def prepare_data_dir(data_dir: Path) -> None:
    """Create the data dir, or raise EngineStartError naming it when it cannot be used."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise EngineStartError(
            f"{data_dir}: cannot use this directory as the engine's data dir ({exc.strerror or exc}); "
            "pass --data-dir or set TUNESPEC_ENGINE_DIR to a writable directory"
        ) from None


def _bind(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise EngineStartError(f"cannot listen on port {port}: a port is 0-65535 (0 picks a free one)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise EngineStartError(
            f"cannot listen on {host}:{port}: {exc.strerror}"
            + (" (is another engine running? try --port 0)" if exc.errno == 98 else "")
        ) from None
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


def _client_url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "", "localhost"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _uvicorn_server(app: Any) -> Any:
    import uvicorn

    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=3
    )
    return uvicorn.Server(config)


class RunningEngine:
    """An engine serving `url`. `stop()` ends it (a no-op for an engine this object did not start).

    `auth` says whether callers need a token (the engine was started with a token file).
    """

    def __init__(
        self,
        url: str,
        data_dir: Path,
        *,
        server: Any = None,
        thread: threading.Thread | None = None,
        supervisor: Any = None,
        owned: bool = True,
        auth: bool = False,
        engine_file: Path | None = None,
        alias_model: str | None = None,
    ):
        self.url = url
        self.data_dir = data_dir
        self.owned = owned
        self.auth = auth
        self.alias_model = alias_model  # what serves Google's names (None: not known, not started here)
        self._server = server
        self._thread = thread
        self._supervisor = supervisor
        self._engine_file = engine_file

    @property
    def worker_pids(self) -> list[int]:
        """The training worker processes (empty for an engine this object did not start, or one whose
        jobs run on Ray)."""
        return self._supervisor.pids if self._supervisor else []

    def wait(self) -> None:
        """Block until the server ends (a KeyboardInterrupt ends the wait, not the server)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def stop(self) -> None:
        if not self.owned:
            return
        if self._supervisor is not None:
            self._supervisor.signal_stop()  # the workers checkpoint while the server shuts down
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=10)
        if self._supervisor is not None:
            self._supervisor.stop()
        if self._engine_file is not None:
            with contextlib.suppress(OSError, ValueError, KeyError):
                if json.loads(self._engine_file.read_text()).get("pid") == os.getpid():
                    self._engine_file.unlink()
        self._server = self._thread = self._supervisor = self._engine_file = None

    def __enter__(self) -> RunningEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RunningEngine(url={self.url!r}, data_dir={str(self.data_dir)!r}, owned={self.owned})"


def _start(
    data_dir: Path | str,
    *,
    host: str,
    port: int,
    token_file: Path | str | None,
    workers: int,
    models: Mapping[str, Path] | None,
    record: bool,
    alias_model: str | None = None,
    ray: RaySettings | None = None,
) -> RunningEngine:
    """Start an engine: the door's tokens, the data dir, uvicorn in a thread, then the executor (the
    workers, or with `ray` the Ray dispatcher).

    `record` is `tunespec serve`'s way: refuse a data dir another `tunespec serve` is serving,
    record this engine in DATA_DIR/engine.json, and let the workers write to this process's
    output. Otherwise the workers write to DATA_DIR/logs/worker.log.
    """
    from tunespec.engine.app import create_app

    data_dir = Path(data_dir).expanduser().resolve()
    try:
        tokens = load_tokens(host, token_file)
    except ValueError as exc:
        raise EngineStartError(str(exc)) from None
    prepare_data_dir(data_dir)
    if record:
        other = live_engine(data_dir)
        if other is not None:
            raise EngineStartError(
                f"{data_dir} is already served by process {other['pid']} at {other['url']}; "
                "stop it first or pass another --data-dir"
            )
    alias = check_models(models or {}, alias_model)
    app = create_app(data_dir, tokens=tokens, extra_models=models, alias_model=alias)
    sock = _bind(host, port)
    port = sock.getsockname()[1]
    url = _client_url(host, port)
    server = _uvicorn_server(app)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="tunespec-engine", daemon=True
    )
    supervisor: Any
    if ray is not None:
        from tunespec.engine.ray_executor import RayExecutor

        supervisor = RayExecutor(data_dir, ray, extra_models=models or {}, alias_model=alias)
    else:
        supervisor = WorkerSupervisor(
            data_dir,
            count=workers,
            extra_models=models or {},
            log_path=None if record else data_dir / "logs" / "worker.log",
            alias_model=alias,
        )
    engine = RunningEngine(
        url,
        data_dir,
        server=server,
        thread=thread,
        supervisor=supervisor,
        auth=tokens is not None,
        engine_file=data_dir / ENGINE_FILE if record else None,  # stop() removes it only if it is ours
        alias_model=alias,
    )
    try:
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise EngineStartError(f"the engine failed to start on {host}:{port}")
            time.sleep(0.01)
        from tunespec.engine import generate

        generate.warm_up()  # the generation stack imports while the workers import the training one
        try:
            supervisor.start()
        except RuntimeError as exc:  # ray_executor.RayUnavailable: names the fix
            raise EngineStartError(str(exc)) from None
        if record:
            _record(data_dir, url, host, port, auth=tokens is not None)
    except BaseException:
        engine.stop()
        sock.close()
        raise
    return engine


def check_models(models: Mapping[str, Path], alias_model: str | None) -> str:
    """Check the registered models and the one serving Google's names; return that one's name.

    Cheap (headers only, nothing loaded); EngineStartError naming the fix for a path that is
    neither a directory nor a .gguf file, a GGUF file that is truncated, corrupt, of an unsupported
    architecture or too large, or a model package that is not installed.
    """
    from tunespec.engine import basemodels, gguf_import

    for name, path in models.items():
        given = f"--model {name.removeprefix('models/')}={path}"
        if basemodels.is_gguf(path):
            try:
                gguf_import.check(Path(path))
            except gguf_import.ModelError as exc:
                raise EngineStartError(f"{given}: {exc}") from None
        elif not Path(path).is_dir():
            raise EngineStartError(f"{given}: no such directory (a model is a Hugging Face model directory "
                                   "or a .gguf file)")
    try:
        alias = basemodels.resolve_alias(alias_model, models)
    except gguf_import.ModelError as exc:
        raise EngineStartError(str(exc)) from None
    if alias != basemodels.BUILTIN and basemodels.model_name(alias) not in {
            basemodels.model_name(n) for n in models}:
        try:
            basemodels.check(alias, models)
        except gguf_import.ModelError as exc:
            raise EngineStartError(f"{exc} (it would serve Google's model names; --alias-model builtin "
                                   "serves them with the built-in model instead)") from None
    return alias


def _record(data_dir: Path, url: str, host: str, port: int, *, auth: bool) -> None:
    """Write DATA_DIR/engine.json (atomically) naming this process as the data dir's server."""
    engine_file = data_dir / ENGINE_FILE
    tmp = engine_file.with_suffix(f".{os.getpid()}.tmp")
    info = {"url": url, "pid": os.getpid(), "host": host, "port": port, "data_dir": str(data_dir)}
    tmp.write_text(json.dumps({**info, "auth": auth}))
    os.replace(tmp, engine_file)


def start_background(
    data_dir: Path | str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    token_file: Path | str | None = None,
    workers: int = 1,
    models: Mapping[str, Path] | None = None,
    alias_model: str | None = None,
    ray: RaySettings | None = None,
) -> RunningEngine:
    """Start an engine in this process: uvicorn in a daemon thread plus a worker child process (or,
    with `ray`, a dispatcher of Ray tasks).

    Returns once the server answers. Several engines may share one data dir safely (jobs are
    claimed atomically); worker output goes to DATA_DIR/logs/worker.log. `alias_model` (auto,
    builtin or a model name; None: $TUNESPEC_ALIAS_MODEL, else auto) serves Google's model names.
    """
    return _start(
        data_dir, host=host, port=port, token_file=token_file, workers=workers, models=models, record=False,
        alias_model=alias_model, ray=ray,
    )


def live_engine(data_dir: Path | str) -> dict[str, Any] | None:
    """The `tunespec serve` recorded in DATA_DIR/engine.json, if it is alive and answering."""
    path = Path(data_dir).expanduser() / ENGINE_FILE
    try:
        info = json.loads(path.read_text())
        url, pid = info["url"], int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not pid_alive(pid):
        return None
    try:
        with urllib.request.urlopen(f"{url}/v1beta3/models?pageSize=1", timeout=2) as resp:
            resp.read()
    except OSError as exc:
        # a token-protected engine answers 401 to anonymous probes: still alive
        if getattr(exc, "code", None) not in (400, 401, 403):
            return None
    return info


def find_or_start(data_dir: Path | str, **kwargs: Any) -> RunningEngine:
    """Reuse the `tunespec serve` running on `data_dir` (stop() then leaves it running; `auth` says
    whether it needs a token), else start_background(data_dir, **kwargs)."""
    info = live_engine(data_dir)
    if info is not None:
        return RunningEngine(
            info["url"], Path(data_dir).expanduser().resolve(), owned=False, auth=bool(info.get("auth"))
        )
    return start_background(data_dir, **kwargs)


def serve(
    data_dir: Path | str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token_file: Path | str | None = None,
    workers: int = 1,
    models: Mapping[str, Path] | None = None,
    announce: Any = print,
    alias_model: str | None = None,
    ray: RaySettings | None = None,
) -> None:
    """Run the engine in the foreground until interrupted (`tunespec serve`); SIGTERM acts as Ctrl-C,
    so the workers are stopped (checkpointing their jobs) and engine.json removed either way."""
    try:
        import uvicorn  # noqa: F401

        from tunespec.engine.app import create_app  # noqa: F401
    except ModuleNotFoundError as exc:
        raise EngineStartError(
            f"the local engine needs the `local` extra ({exc.name} is missing): pip install 'tunespec[local]'"
        ) from None

    with sigterm_as_interrupt():
        engine = _start(
            data_dir or default_data_dir(),
            host=host,
            port=port,
            token_file=token_file,
            workers=workers,
            models=models,
            record=True,
            alias_model=alias_model,
            ray=ray,
        )
        try:
            announce(
                f"tunespec engine serving {engine.url} (data dir {engine.data_dir}; "
                + ("token file required" if engine.auth else "loopback, no credentials needed")
                + ("; jobs train on Ray" + (f" at {ray.address}" if ray.address else " (a local instance on "
                   "127.0.0.1)") if ray is not None else
                   f"; {workers} training worker{'s' if workers != 1 else ''}")
                + "; Google's model names "
                f"served by {engine.alias_model}). Ctrl-C stops it."
            )
            engine.wait()
        finally:
            engine.stop()
