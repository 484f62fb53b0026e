"""GitHub Actions: workflow-command annotations and the job step summary.

With GITHUB_ACTIONS=true, invalid specs and failing prompts become `::error file=…,line=…::` lines
that GitHub shows on the pull request; reports are appended to $GITHUB_STEP_SUMMARY within its 1 MiB.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tunespec.errors import Problem

if TYPE_CHECKING:
    from tunespec.evaluate import EvalResult
    from tunespec.spec import JobSpec

STEP_SUMMARY_LIMIT = 1024 * 1024


def in_actions(env: Mapping[str, str] | None = None) -> bool:
    """Whether this runs as a GitHub Actions step."""
    env = os.environ if env is None else env
    return env.get("GITHUB_ACTIONS") == "true"


def _escape(text: str, *, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def github_annotation(problem: Problem) -> str:
    """A GitHub Actions workflow command (`::error file=...,line=...,col=...::message`)."""
    level = "warning" if problem.severity == "warning" else "error"
    props = [f"file={_escape(problem.file, prop=True)}"]
    if problem.line is not None:
        props.append(f"line={problem.line}")
        if problem.column is not None:
            props.append(f"col={problem.column}")
    text = f"{problem.key_path}: {problem.message}" if problem.key_path else problem.message
    if problem.hint:
        text += f" ({problem.hint})"
    return f"::{level} {','.join(props)}::{_escape(text)}"


def annotate_invalid(
    invalid: Sequence[Any], env: Mapping[str, str] | None = None, stream: TextIO | None = None
) -> None:
    """In GitHub Actions, each invalid spec's problems as annotations (as `validate` prints them)."""
    if not in_actions(env):
        return
    for item in invalid:
        for p in item.error.problems:
            print(github_annotation(p), file=stream or sys.stderr, flush=True)


def prompt_annotations(spec: JobSpec, evaluation: EvalResult) -> Iterator[str]:
    """One `::error` line for each prompt that did not pass every trial, at the line defining it."""
    for p in evaluation.prompts:
        if p.passes >= len(p.trials):
            continue
        where = f"file={p.prompt.source or spec.path}"
        if p.prompt.line:
            where += f",line={p.prompt.line}"
        problem = (
            p.errors or [a.message for t in p.trials for a in t.assertions if not a.passed] or ["failed"]
        )[0]
        yield (
            f"::error {where},title=tunespec {spec.name}::"
            f"{p.name}: pass rate {p.pass_rate:.0%}: {_escape(problem)}"
        )


def append_step_summary(markdown: str, env: Mapping[str, str] | None = None) -> None:
    """Append to $GITHUB_STEP_SUMMARY when set, keeping the file within GitHub's 1 MiB limit."""
    env = os.environ if env is None else env
    target = env.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    path = Path(target)
    used = path.stat().st_size if path.exists() else 0
    note = "\n> tunespec: summary truncated at GitHub's 1 MiB step-summary limit; see report.md.\n"
    room = STEP_SUMMARY_LIMIT - used
    data = markdown.encode("utf-8")
    if len(data) > room:
        keep = max(0, room - len(note.encode()))
        if keep <= 0:
            return
        data = data[:keep].decode("utf-8", "ignore").encode("utf-8") + note.encode()
    with path.open("ab") as fh:
        fh.write(data)
