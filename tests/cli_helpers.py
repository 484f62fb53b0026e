"""The real `tunespec` CLI for tests: as a subprocess (the console entry point) or in-process (CliRunner).

Both run in an environment that ignores the caller's CI, target and project settings, so a test sees the
same thing on a laptop and on a CI runner; a test sets any of those it needs through `env`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from click.testing import CliRunner, Result

from tunespec.cli import cli

CLI = [sys.executable, "-m", "tunespec.cli"]

# Settings a shell or a CI runner may carry that change what the CLI does; unset unless a test gives them.
AMBIENT = (
    "GITHUB_ACTIONS",
    "GITHUB_STEP_SUMMARY",
    "GOOGLE_CLOUD_PROJECT",
    "NO_COLOR",
    "TUNESPEC_ENGINE_URL",
    "TUNESPEC_TARGET",
)
# What every run of the CLI in the tests gets: no model downloads, CI's plain output, and Google's model
# names served by the fast built-in model (a test of the pretrained path sets TUNESPEC_ALIAS_MODEL).
FIXED = {"HF_HUB_OFFLINE": "1", "CI": "true", "TUNESPEC_ALIAS_MODEL": "builtin"}


def cli_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """os.environ without the AMBIENT settings, offline and as in CI, then `env` on top."""
    inherited = {key: value for key, value in os.environ.items() if key not in AMBIENT}
    return {**inherited, **FIXED, **(env or {})}


def tunespec(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `tunespec ARGS` in a subprocess and wait for it; output captured as text."""
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env=cli_env(env), capture_output=True, text=True, timeout=timeout
    )


def start_tunespec(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `tunespec ARGS` in a subprocess with its output piped, for tests that signal it."""
    return subprocess.Popen(
        [*CLI, *args], cwd=cwd, env=cli_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def invoke(*args: str, env: Mapping[str, str] | None = None) -> Result:
    """Run `tunespec ARGS` in this process (CliRunner), in the same environment as `tunespec()`."""
    overrides: dict[str, str | None] = {**dict.fromkeys(AMBIENT), **FIXED, **(env or {})}
    return CliRunner().invoke(cli, list(args), env=overrides, catch_exceptions=False)
