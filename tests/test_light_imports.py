"""`tunespec --help` and `tunespec validate` stay light: no torch, transformers, peft, fastapi, uvicorn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft", "fastapi", "uvicorn", "safetensors", "accelerate",
         "matplotlib", "numpy", "PIL")

PROBE = f"""
import atexit, sys
def report():
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
    print("HEAVY:" + ",".join(heavy), file=sys.stderr)
atexit.register(report)
from tunespec.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize("args", [["--help"], ["validate", "jobs/"], ["validate", "--json", "jobs/"],
                                  ["render", "jobs/number-generator.yaml"], ["schema"], ["export", "--help"],
                                  ["serve", "--help"]])
def test_command_does_not_import_heavy_modules(args: list[str]):
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    heavy = proc.stderr.rsplit("HEAVY:", 1)[1].strip()
    assert heavy == "", f"`tunespec {' '.join(args)}` imported {heavy}"


def test_the_light_install_depends_on_no_heavy_package():
    """`pip install tunespec` brings no torch, engine stack or plotting (numpy, pillow): those are extras."""
    tomllib = pytest.importorskip("tomllib")

    core = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {dep.split(">")[0].split("=")[0].split("[")[0].strip().lower() for dep in core}
    heavy = {"torch", "transformers", "peft", "fastapi", "uvicorn", "matplotlib", "numpy", "pillow"}
    assert not names & heavy
