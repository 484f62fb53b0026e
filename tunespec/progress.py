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

from tunespec.resources import Progress


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
        self._last: dict[str, tuple[float, int]] = {}
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
                TextColumn("step {task.completed:.0f}/{task.total:.0f}"),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self._console,
                transient=False,
            )
            self._bars.start()
        return self._bars

    def progress(self, job: str, p: Progress, started: float, from_step: int = 0) -> None:
        """Show P for JOB; `started` is when waiting began and `from_step` the step it began at."""
        if not self.show_progress or self.quiet:
            return
        detail = f"epoch {p.epoch}" + (f" loss {p.loss:.4f}" if p.loss is not None else "")
        if self.rich:
            with self._lock:
                bars = self._rich_bars()
                if job not in self._tasks:  # start at the current step: rich's ETA then counts this run only
                    self._tasks[job] = bars.add_task(
                        job, total=max(p.total, 1), completed=p.step, detail=detail
                    )
                bars.update(self._tasks[job], completed=p.step, total=max(p.total, 1), detail=detail)
            return
        now = time.monotonic()
        last_time, last_step = self._last.get(job, (0.0, -1))
        finished = p.total and p.step >= p.total
        # A line for the first step seen, the last one, and a new step at most every `plain_every` seconds.
        if p.step == last_step or (last_step >= 0 and now - last_time < self.plain_every and not finished):
            return
        self._last[job] = (now, p.step)
        elapsed = now - started
        left = remaining_seconds(elapsed, p, from_step)
        eta = f", ETA {left:.0f}s" if left is not None else ""
        self.message(
            f"{job}: tuning {p.percent:5.1f}% step {p.step}/{p.total} {detail} (elapsed {elapsed:.0f}s{eta})"
        )

    def close(self) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars = None
