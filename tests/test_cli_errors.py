"""Bad environments and command lines: one readable line naming what is wrong, the documented exit code,
never a traceback. Each test runs the real console entry point in a subprocess."""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_helpers import start_tunespec, tunespec
from tests.fakeservice import FakeService

SPEC = """\
name: tiny
target: {target}
hyperparameters: {{epoch_count: 1, batch_size: 1}}
dataset:
  examples:
    - {{text_input: "1", output: "2"}}
evaluation:
  prompts:
    - {{input: "1", equals: "2"}}
"""


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def test_serve_with_an_unusable_data_dir(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = tunespec("serve", "--port", "0", "--data-dir", str(blocker / "engine"), cwd=tmp_path)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert str(blocker / "engine") in line and "data dir" in line and "writable" in line


def test_serve_with_a_port_out_of_range(tmp_path: Path) -> None:
    proc = tunespec("serve", "--port", "99999", "--data-dir", str(tmp_path / "engine"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--port" in proc.stderr and "0<=x<=65535" in proc.stderr


def test_apply_with_an_unusable_engine_dir(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC.format(target="local"))
    proc = tunespec("apply", str(spec), cwd=tmp_path, env={"TUNESPEC_ENGINE_DIR": str(blocker / "x")})
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert str(blocker / "x") in line and "TUNESPEC_ENGINE_DIR" in line


@pytest.mark.parametrize("url", ["not-a-url", "http://", "http://127.0.0.1:99999"])
def test_engine_url_that_is_not_a_url(tmp_path: Path, url: str) -> None:
    proc = tunespec("list", cwd=tmp_path, env={"TUNESPEC_ENGINE_URL": url})
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "TUNESPEC_ENGINE_URL" in line and repr(url) in line


def test_unknown_target_on_the_command_line_is_a_usage_error(tmp_path: Path) -> None:
    proc = tunespec("list", "--target", "googel", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown target 'googel'" in one_error_line(proc)


@pytest.fixture
def not_a_tuning_service() -> Iterator[str]:
    """A real HTTP server that answers every request with an HTML page."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>hello</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_status_does_not_claim_not_created_when_the_service_failed(
    tmp_path: Path, not_a_tuning_service: str
) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC.format(target=not_a_tuning_service))
    proc = tunespec("status", str(spec), cwd=tmp_path)
    assert proc.returncode == 1
    assert "not created" not in proc.stdout
    assert "unknown (error)" in proc.stdout
    assert "not JSON" in one_error_line(proc)


@pytest.fixture
def stalling_service() -> Iterator[tuple[str, threading.Event]]:
    """A real HTTP server that never answers; the event is set once a request has arrived."""
    arrived = threading.Event()
    release = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            arrived.set()
            release.wait(30)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", arrived
    release.set()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("command", ["plan", "status"])
def test_ctrl_c_while_waiting_for_a_service_says_interrupted(
    tmp_path: Path, stalling_service: tuple[str, threading.Event], command: str
) -> None:
    """Ctrl-C in any command ends with the word apply uses, "Interrupted", and exit code 130."""
    import signal

    url, arrived = stalling_service
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC.format(target=url))
    proc = start_tunespec(command, str(spec), cwd=tmp_path)
    try:
        assert arrived.wait(30), f"{command} never reached the service"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Aborted" not in err
    assert err.rstrip("\n").splitlines()[-1] == "Interrupted."


def test_eval_of_a_job_never_applied_says_to_apply_first(tmp_path: Path) -> None:
    service = FakeService()
    url = service.start()
    try:
        spec = tmp_path / "tiny.yaml"
        spec.write_text(SPEC.format(target=url))
        proc = tunespec("eval", str(spec), cwd=tmp_path)
    finally:
        service.stop()
    assert proc.returncode == 1
    assert "create ->" not in proc.stderr
    line = one_error_line(proc)
    assert "no ACTIVE model to evaluate" in line and f"tunespec apply {spec}" in line


def test_sigterm_during_apply_says_how_to_attach(tmp_path: Path) -> None:
    """A CI timeout sends SIGTERM: apply stops like Ctrl-C and says the job keeps its place."""
    import signal

    service = FakeService(steps_per_poll=1)
    url = service.start()
    try:
        spec = tmp_path / "tiny.yaml"
        spec.write_text(SPEC.format(target=url).replace("epoch_count: 1", "epoch_count: 1000"))
        proc = start_tunespec("apply", str(spec), cwd=tmp_path)
        assert proc.stderr is not None
        seen = ""
        while "submitted" not in seen:
            line = proc.stderr.readline()
            assert line, seen
            seen += line
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
    finally:
        service.stop()
    assert proc.returncode == 130
    assert "Traceback" not in rest
    assert "run `tunespec apply` again to attach" in rest


@pytest.mark.slow
def test_a_base_model_the_target_lacks_names_the_spec_line(tmp_path: Path, engine) -> None:
    spec = tmp_path / "tiny.yaml"
    text = SPEC.format(target="local").replace("target: local\n", "target: local\nbase_model: models/gpt-5\n")
    spec.write_text(text)
    proc = tunespec("apply", str(spec), cwd=tmp_path, env={"TUNESPEC_ENGINE_URL": engine.url})
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert line.startswith(f"error: {spec}:3: base_model: the local target has no model 'models/gpt-5'")
    assert "models it can tune: " in line and "models/text-bison-001" in line
    assert "tunespec list" not in line
