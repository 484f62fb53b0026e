"""Starting the engine: `serve()` for `tunespec serve`, `start_background()` for in-process use.

An engine is uvicorn serving app.create_app() plus one worker child process (worker.py) that a
supervisor thread restarts if it dies. The door: loopback addresses only, unless a token file
names who may call. `tunespec serve` records itself in DATA_DIR/engine.json so that
`find_or_start()` reuses a running engine instead of starting a second one.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunespec.errors import EXIT_INVALID, TunespecError

log = logging.getLogger("tunespec.engine")
ENGINE_FILE = "engine.json"
DEFAULT_PORT = 8765


class EngineStartError(TunespecError):
    """The engine cannot start as asked (door without a token file, bad token file, data dir in use)."""

    exit_code = EXIT_INVALID


def default_data_dir() -> Path:
    """$TUNESPEC_ENGINE_DIR, else ${XDG_DATA_HOME:-~/.local/share}/tunespec/engine."""
    env = os.environ.get("TUNESPEC_ENGINE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "tunespec" / "engine"


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


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_tokens(host: str, token_file: Path | str | None) -> dict[str, str | None] | None:
    """The door's rule: a non-loopback address needs a token file; returns its tokens (None: open)."""
    from tunespec.engine.door import parse_token_file

    if token_file is None:
        if not is_loopback(host):
            raise EngineStartError(
                f"refusing to listen on {host} without --token-file: any address other than 127.0.0.1 "
                "is reachable from other machines. Pass --token-file FILE (lines 'TOKEN [PROJECT]') or "
                "bind 127.0.0.1."
            )
        return None
    try:
        return parse_token_file(Path(token_file))
    except ValueError as exc:
        raise EngineStartError(str(exc)) from None


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


class WorkerSupervisor:
    """Keeps `count` worker processes alive (restarting any that dies) until stopped.

    Concurrency is one process per job: Hugging Face model loading is not thread-safe, and
    separate processes keep one job's crash from taking the others down.
    """

    def __init__(
        self, data_dir: Path, *, count: int, extra_models: Mapping[str, Path], log_path: Path | None
    ):
        self.data_dir = data_dir
        self.count = max(1, count)
        self.extra = {k: str(v) for k, v in extra_models.items()}
        self.log_path = log_path
        self.procs: list[subprocess.Popen[bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tunespec-worker-supervisor", daemon=True)

    def _spawn(self) -> subprocess.Popen[bytes]:
        cmd = [
            sys.executable,
            "-m",
            "tunespec.engine.worker",
            "--data-dir",
            str(self.data_dir),
            "--models",
            json.dumps(self.extra),
            "--parent-pid",
            str(os.getpid()),
        ]
        env = dict(os.environ)
        if self.count > 1 and "OMP_NUM_THREADS" not in env:  # share the cores instead of oversubscribing
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.count))
        out: Any = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
        finally:
            if out is not None:
                out.close()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def start(self) -> None:
        self.procs = [self._spawn() for _ in range(self.count)]
        self._thread.start()

    def _loop(self) -> None:
        delay = 0.5
        while not self._stop.wait(0.5):
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None and not self._stop.is_set():
                    log.warning("training worker exited with %s; restarting it", proc.returncode)
                    self._stop.wait(delay)
                    delay = min(delay * 2, 10)
                    if not self._stop.is_set():
                        self.procs[i] = self._spawn()

    def stop(self, timeout: float = 15) -> None:
        self._stop.set()
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread.is_alive():
            self._thread.join(timeout=2)


def _uvicorn_server(app: Any) -> Any:
    import uvicorn

    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=3
    )
    return uvicorn.Server(config)


class RunningEngine:
    """An engine serving `url`. `stop()` ends it (a no-op for an engine this object did not start)."""

    def __init__(
        self,
        url: str,
        data_dir: Path,
        *,
        server: Any = None,
        thread: threading.Thread | None = None,
        supervisor: WorkerSupervisor | None = None,
        owned: bool = True,
    ):
        self.url = url
        self.data_dir = data_dir
        self.owned = owned
        self._server = server
        self._thread = thread
        self._supervisor = supervisor

    @property
    def worker_pids(self) -> list[int]:
        """The training worker processes (empty for an engine this object did not start)."""
        return self._supervisor.pids if self._supervisor else []

    def stop(self) -> None:
        if not self.owned:
            return
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._supervisor is not None:
            self._supervisor.stop()
        self._server = self._thread = self._supervisor = None

    def __enter__(self) -> RunningEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RunningEngine(url={self.url!r}, data_dir={str(self.data_dir)!r}, owned={self.owned})"


def start_background(
    data_dir: Path | str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    token_file: Path | str | None = None,
    workers: int = 1,
    models: Mapping[str, Path] | None = None,
) -> RunningEngine:
    """Start an engine in this process: uvicorn in a daemon thread plus a worker child process.

    Returns once the server answers. Several engines may share one data dir safely (jobs are
    claimed atomically); worker output goes to DATA_DIR/logs/worker.log.
    """
    from tunespec.engine.app import create_app

    data_dir = Path(data_dir).expanduser().resolve()
    tokens = load_tokens(host, token_file)
    prepare_data_dir(data_dir)
    app = create_app(data_dir, tokens=tokens, extra_models=models)
    sock = _bind(host, port)
    port = sock.getsockname()[1]
    server = _uvicorn_server(app)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="tunespec-engine", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise EngineStartError(f"the engine failed to start on {host}:{port}")
        time.sleep(0.01)
    supervisor = WorkerSupervisor(
        data_dir, count=workers, extra_models=models or {}, log_path=data_dir / "logs" / "worker.log"
    )
    supervisor.start()
    return RunningEngine(
        _client_url(host, port), data_dir, server=server, thread=thread, supervisor=supervisor
    )


def live_engine(data_dir: Path | str) -> dict[str, Any] | None:
    """The `tunespec serve` recorded in DATA_DIR/engine.json, if it is alive and answering."""
    from tunespec.engine.store import pid_alive

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
    """Reuse the `tunespec serve` running on `data_dir` (stop() then leaves it running), else
    start_background(data_dir, **kwargs)."""
    info = live_engine(data_dir)
    if info is not None:
        return RunningEngine(info["url"], Path(data_dir).expanduser().resolve(), owned=False)
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
) -> None:
    """Run the engine in the foreground until interrupted (`tunespec serve`)."""
    try:
        import uvicorn  # noqa: F401

        from tunespec.engine.app import create_app
    except ModuleNotFoundError as exc:
        raise EngineStartError(
            f"the local engine needs the `local` extra ({exc.name} is missing): pip install 'tunespec[local]'"
        ) from None

    data_dir = Path(data_dir).expanduser().resolve() if data_dir else default_data_dir()
    tokens = load_tokens(host, token_file)
    prepare_data_dir(data_dir)
    other = live_engine(data_dir)
    if other is not None:
        raise EngineStartError(
            f"{data_dir} is already served by process {other['pid']} at {other['url']}; "
            "stop it first or pass another --data-dir"
        )
    for name, path in (models or {}).items():
        if not Path(path).is_dir():
            raise EngineStartError(f"--model {name}={path}: no such directory")
    app = create_app(data_dir, tokens=tokens, extra_models=models)
    sock = _bind(host, port)
    port = sock.getsockname()[1]
    url = _client_url(host, port)
    supervisor = WorkerSupervisor(data_dir, count=workers, extra_models=models or {}, log_path=None)
    supervisor.start()
    engine_file = data_dir / ENGINE_FILE
    tmp = engine_file.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(
        json.dumps(
            {
                "url": url,
                "pid": os.getpid(),
                "host": host,
                "port": port,
                "data_dir": str(data_dir),
                "auth": tokens is not None,
            }
        )
    )
    os.replace(tmp, engine_file)
    announce(
        f"tunespec engine serving {url} (data dir {data_dir}; "
        + ("token file required" if tokens is not None else "loopback, no credentials needed")
        + f"; {workers} training worker{'s' if workers != 1 else ''}). Ctrl-C stops it."
    )
    server = _uvicorn_server(app)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it; without a handler of ours that
    # would end the process before the workers are stopped (checkpointing) and engine.json removed.
    previous = signal.signal(signal.SIGTERM, _interrupt) if _main_thread() else None
    try:
        server.run(sockets=[sock])
    finally:
        supervisor.stop()
        with contextlib.suppress(OSError, ValueError, KeyError):
            if json.loads(engine_file.read_text()).get("pid") == os.getpid():
                engine_file.unlink()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM stops `tunespec serve` the way Ctrl-C does."""
    raise KeyboardInterrupt
