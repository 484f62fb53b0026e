"""Showing a job's progress while it tunes: a progress bar on a terminal, plain lines otherwise.

`Reporter` prints a `Progress` (read from the service by `resources.progress_of`) and messages, on
stderr by default; `remaining_seconds` is the ETA both the display and the poll interval use;
`next_poll_interval` backs off without sleeping far past the expected end.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, TextIO

from tunespec.resources import LOADING, QUEUED, SAVING, Progress, stage_words


def next_poll_interval(interval: float, cap: float, eta: float | None, near: float = 1.0) -> float:
    """Back off by 1.5x up to `cap`, but do not sleep far past the job's expected end.

    `eta` is the estimated seconds left; near the end polls come every `near` seconds at most, so a
    finished job is noticed promptly instead of up to `cap` seconds late.
    """
    interval = min(cap, interval * 1.5)
    if eta is not None:
        interval = min(interval, max(near, eta))
    return interval


def remaining_seconds(elapsed: float, p: Progress, from_step: int = 0) -> float | None:
    """Seconds left at the pace seen since `from_step` (an attached job was part-way when watching
    began); None until a step has been seen to complete, or once the job is at its end."""
    if p.step > from_step and p.total and p.step < p.total:
        return elapsed / (p.step - from_step) * (p.total - p.step)
    return None


def _plain_output(env: Mapping[str, str], stream: TextIO) -> bool:
    return (
        (not stream.isatty()) or bool(env.get("CI")) or bool(env.get("NO_COLOR")) or env.get("TERM") == "dumb"
    )


class Reporter:
    """Progress lines and messages on stderr; a rich progress bar on a terminal, plain lines otherwise."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        progress: bool | None = None,
        env: Mapping[str, str] | None = None,
        plain_every: float = 10.0,
        quiet: bool = False,
    ):
        self.stream = stream or sys.stderr
        env = os.environ if env is None else env
        self.rich = progress is not False and not _plain_output(env, self.stream)
        self.show_progress = progress is not False
        self.plain_every = plain_every
        self.quiet = quiet
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, Any]] = {}
        self._bars: Any = None
        self._tasks: dict[str, Any] = {}
        self._console: Any = None
        if self.rich:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)

    def message(self, text: str) -> None:
        if self.quiet:
            return
        with self._lock:
            if self._console is not None:
                self._console.print(text, markup=False)
            else:
                print(text, file=self.stream, flush=True)

    def _rich_bars(self) -> Any:
        if self._bars is None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bars = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>5.1f}%"),
                TextColumn("{task.fields[count]}"),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self._console,
                transient=False,
            )
            self._bars.start()
        return self._bars

    def _bar(self, key: str, label: str, done: int, total: int, count: str, detail: str) -> None:
        with self._lock:
            bars = self._rich_bars()
            if key not in self._tasks:  # start at the current count: rich's ETA then counts this run only
                self._tasks[key] = bars.add_task(label, total=max(total, 1), completed=done, count=count,
                                                 detail=detail)
            bars.update(self._tasks[key], completed=done, total=max(total, 1), count=count, detail=detail)

    def _due(self, key: str, mark: Any, finished: bool) -> bool:
        """Whether a plain line is due: the first one, the last one, and a new `mark` (step, stage)
        at most every `plain_every` seconds (a new stage at once)."""
        now = time.monotonic()
        last_time, last_mark = self._last.get(key, (0.0, None))
        if mark == last_mark:
            return False
        new_stage = last_mark is None or (isinstance(mark, tuple) and mark[0] != last_mark[0])
        if not new_stage and now - last_time < self.plain_every and not finished:
            return False
        self._last[key] = (now, mark)
        return True

    def progress(self, job: str, p: Progress, started: float, from_step: int = 0) -> None:
        """Show P for JOB; `started` is when waiting began and `from_step` the step it began at.
        Before training starts (and while saving) the line says the service's stage instead."""
        if not self.show_progress or self.quiet:
            return
        waiting = p.stage in (QUEUED, LOADING) or (p.stage == SAVING)
        detail = f"epoch {p.epoch}" + (f" loss {p.loss:.4f}" if p.loss is not None else "")
        if waiting:
            detail = stage_words(p.stage)
        if self.rich:
            self._bar(job, job, p.step, p.total, f"step {p.step}/{p.total}", detail)
            return
        finished = bool(p.total and p.step >= p.total and not waiting)
        if not self._due(job, (p.stage if waiting else "", p.step), finished):
            return
        elapsed = time.monotonic() - started
        if waiting and p.stage != SAVING:
            self.message(f"{job}: {detail} (elapsed {elapsed:.0f}s)")
            return
        if waiting:
            self.message(f"{job}: {detail}, step {p.step}/{p.total} (elapsed {elapsed:.0f}s)")
            return
        left = remaining_seconds(elapsed, p, from_step)
        eta = f", ETA {left:.0f}s" if left is not None else ""
        self.message(
            f"{job}: tuning {p.percent:5.1f}% step {p.step}/{p.total} {detail} (elapsed {elapsed:.0f}s{eta})"
        )

    def evaluating(self, job: str, done: int, total: int, started: float) -> None:
        """Show that JOB's evaluation has `done` of its `total` prompts answered."""
        if not self.show_progress or self.quiet or total <= 0:
            return
        text = f"evaluating {done}/{total} prompts"
        if self.rich:
            self._bar(f"{job}\0eval", job, done, total, text, "")
            return
        if self._due(f"{job}\0eval", ("eval", done), done >= total):
            self.message(f"{job}: {text} (elapsed {time.monotonic() - started:.0f}s)")

    def close(self) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars = None
