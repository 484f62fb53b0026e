"""How far a job's evaluation is: its planned generate calls, counted as they are answered.

The runner wraps the service in a `Counted` per evaluated model (the tuned model, and the base model
with `compare_base`, both sharing one `Tally`), so the progress display can say "evaluating n/N
prompts" without the evaluation knowing about it. Calls to other models (a judge) are not counted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from tunespec.evaluate import Generator
from tunespec.heldout import validation_prompts
from tunespec.spec import Evaluation


def planned_calls(evaluation: Evaluation, held_out: Sequence[Any] = ()) -> int:
    """The generate calls one model's evaluation makes: each prompt `repeat` times, then the scored
    examples' suite."""
    prompts = (*evaluation.prompts, *validation_prompts(evaluation, held_out))
    return sum(max(1, p.repeat) for p in prompts)


class Tally:
    """Answered calls out of `total`; `on_change(done, total)` is told each one (from any thread)."""

    def __init__(self, total: int, on_change: Callable[[int, int], None]):
        self.total, self.done = total, 0
        self._on_change = on_change
        self._lock = threading.Lock()

    def on_start(self) -> None:
        """Show the count before the first answer (0/total)."""
        self._on_change(0, self.total)

    def add(self) -> None:
        with self._lock:
            self.done = min(self.total, self.done + 1)
            done = self.done
        self._on_change(done, self.total)


class Counted:
    """A Generator that counts, in `tally`, the calls answered for `model`."""

    def __init__(self, inner: Generator, model: str, tally: Tally):
        self.inner, self.model, self.tally = inner, model, tally

    def generate(self, model: str, prompt: str, **options: Any) -> list[str]:
        try:
            return self.inner.generate(model, prompt, **options)
        finally:
            if model == self.model:
                self.tally.add()
