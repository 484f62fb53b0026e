"""Corpus-driven CLI test: every directory under tests/corpus/ is one case of `tunespec validate`.

A case directory holds the spec file(s) and data files, and `expect.json`:

    {"exit": 2,                                  # the exit code of `tunespec validate .`
     "contains": ["job.yaml:3:9: dataset.path"],  # fragments the output must contain
     "symlinks": {"loop1.csv": "loop2.csv"},      # optional: links made before the run (git-free)
     "env": {"NAME": "value"}}                    # optional: environment of the run

A new case joins by adding one directory; no code changes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.cli_helpers import invoke

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "expect.json").is_file())


@pytest.mark.parametrize("case", CASES)
def test_corpus_case(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expect = json.loads((CORPUS / case / "expect.json").read_text("utf-8"))
    work = tmp_path / case
    shutil.copytree(CORPUS / case, work, ignore=shutil.ignore_patterns("expect.json"))
    for link, target in expect.get("symlinks", {}).items():
        os.symlink(target, work / link)
    monkeypatch.chdir(work)
    started = time.monotonic()
    result = invoke("validate", ".", env=expect.get("env"))
    elapsed = time.monotonic() - started
    output = result.output
    assert "Traceback" not in output
    assert result.exit_code == expect["exit"], output
    for fragment in expect.get("contains", []):
        assert fragment in output, f"{fragment!r} not in:\n{output}"
    assert elapsed < 20, f"validate took {elapsed:.1f} s"


def test_corpus_is_not_empty() -> None:
    assert len(CASES) >= 15
