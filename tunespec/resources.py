"""The service's view of a tuning job, as small frozen types that every dialect parses into.

A dialect's JSON (Google's `TunedModel` and `Operation`, or another service's job resource) is read
once, where the service answers (`tunespec.service`); the runner, `plan`, `status` and `list` read
only these types. States use one vocabulary: CREATING (queued or training), ACTIVE (ready) and
FAILED (failed or cancelled); `raw_state` keeps the service's own word.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CREATING, ACTIVE, FAILED = "CREATING", "ACTIVE", "FAILED"
CANCELLED_CODE = 1  # google.rpc.Code.CANCELLED
# What a running job is doing, as the service reports it (the engine's operation metadata `stage`).
QUEUED, LOADING, TRAINING, SAVING = "QUEUED", "LOADING_BASE_MODEL", "TRAINING", "SAVING"
STAGE_WORDS = {QUEUED: "queued", LOADING: "loading the base model", TRAINING: "training",
               SAVING: "saving the tuned model"}


def stage_words(stage: str) -> str:
    """A stage as the progress display and `status` say it ("" for none)."""
    return STAGE_WORDS.get(stage, stage.lower().replace("_", " "))


@dataclass(frozen=True)
class Status:
    """A google.rpc.Status: why an operation or job failed."""

    code: int | None
    message: str

    @property
    def cancelled(self) -> bool:
        return self.code == CANCELLED_CODE


@dataclass(frozen=True)
class Snapshot:
    """One training step's record: step, epoch, mean loss; `raw` is the service's JSON for reports."""

    step: int
    epoch: int = 0
    mean_loss: float | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Progress:
    """Where a tuning job stands."""

    step: int = 0
    total: int = 0
    percent: float = 0.0
    epoch: int = 0
    loss: float | None = None
    state: str = ""
    stage: str = ""  # QUEUED, LOADING_BASE_MODEL, TRAINING, SAVING while it runs ("" when not told)


@dataclass(frozen=True)
class TunedModel:
    """A tuned model (or tuning job) as the service holds it."""

    name: str
    state: str
    base_model: str | None = None
    display_name: str | None = None
    create_time: str | None = None
    start_time: str | None = None
    complete_time: str | None = None
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)  # as the service resolved them
    snapshots: tuple[Snapshot, ...] = ()
    error: Status | None = None
    raw_state: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    data_stats: Mapping[str, Any] = field(default_factory=dict)  # what the service counted in the data

    @property
    def last_snapshot(self) -> Snapshot | None:
        return self.snapshots[-1] if self.snapshots else None


@dataclass(frozen=True)
class Operation:
    """A long-running tuning operation; its metadata tells the progress while it runs."""

    name: str
    done: bool = False
    error: Status | None = None
    tuned_model: str | None = None
    total_steps: int = 0
    completed_steps: int = 0
    completed_percent: float = 0.0
    snapshots: tuple[Snapshot, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    stage: str = ""  # what the running job is doing, where the service says (see Progress.stage)


def progress_of(operation: Operation | None, model: TunedModel | None, total: int = 0) -> Progress:
    """Progress from the operation's metadata, else the model's snapshots; `total` is the predicted
    step count for services that do not report one (0: unknown)."""
    snaps = (operation.snapshots if operation else ()) or (model.snapshots if model else ())
    last = snaps[-1] if snaps else None
    total = (operation.total_steps if operation else 0) or total or 0
    step = (operation.completed_steps if operation else 0) or (last.step if last else 0)
    percent = (operation.completed_percent if operation else 0.0) or (100.0 * step / total if total else 0.0)
    return Progress(
        step=step,
        total=total,
        percent=percent,
        epoch=last.epoch if last else 0,
        loss=last.mean_loss if last else None,
        state=model.state if model else "",
        stage=operation.stage if operation and not operation.done else "",
    )
