"""Bad environments and command lines: one readable line naming what is wrong, the documented exit code,
never a traceback. Each test runs the real console entry point in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def tunespec(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60):
    full = {**os.environ, "HF_HUB_OFFLINE": "1", "CI": "true", "NO_COLOR": "1", **(env or {})}
    for key in ("GITHUB_STEP_SUMMARY", "GITHUB_ACTIONS", "TUNESPEC_TARGET", "TUNESPEC_ENGINE_URL"):
        if key not in (env or {}):
            full.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "tunespec.cli", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


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
