"""The Ray executor (`tunespec serve --executor ray`): the engine's queued jobs train as Ray tasks.

One dispatcher thread in the engine process owns the store, as the local workers do: it claims
queued jobs (the same atomic claim and lease, renewed by its heartbeat), submits each as a Ray task
asking for the job's resources (`RaySettings`), and turns what the tasks report into store writes.
A task never touches the database: it trains in a Ray worker process and reports its progress
(the checkpoint it resumed from, one event per step) to a small hub actor, which also carries the
dispatcher's stop requests back to it (cancel, delete, shutdown). So jobs wait for capacity in Ray,
and a job that Ray holds pending says what it waits for (the store's `waiting_for`).

Faults: Ray's own retries are off; a task whose worker process or node dies costs the job one
attempt (`Store.charge_attempt`) and the job resumes from its last checkpoint in a new task. Weights
and checkpoints live in `RaySettings.storage` (default: the data dir), a path every node must reach.
An engine restart charges nothing: its tasks die with it (Ray ties a driver's tasks to it) and the
new engine claims and resumes the jobs. Without an address the engine starts a local Ray bound to
127.0.0.1 only; joining a cluster keeps Ray's token authentication on.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunespec.engine import ray_local
from tunespec.engine.store import CANCEL_MESSAGE, LEASE_S, MAX_ATTEMPTS, Store, owner_token
from tunespec.engine.wire import now_ns
from tunespec.engine.worker import preload_finished

log = logging.getLogger("tunespec.engine")

POLL_S = 0.2
HEARTBEAT_S = 2.0
REPORT_S = 0.25  # how often a task asks whether to stop between steps (each step is sent at once)
CANCEL_GRACE_S = 2.0  # a task that ignores a stop request this long is cancelled by force
SHUTDOWN_S = 20.0  # how long a stopping engine waits for its tasks to checkpoint
MAX_IN_FLIGHT = 64  # jobs claimed and handed to Ray at once; the others stay queued in the store
# Before `import ray` (it reads them once): token authentication on, no usage statistics, and for a
# local instance a node address (and so every socket) on loopback: Ray otherwise swaps 127.0.0.1
# for the host's own address.
_RAY_ENV = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
_LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


class RayUnavailable(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached: the message names the fix."""


@dataclass(frozen=True)
class RaySettings:
    """Where and how jobs run on Ray. `gpus_per_job` None: one GPU when the cluster has any."""

    address: str | None = None
    cpus_per_job: float = 1.0
    gpus_per_job: float | None = None
    storage: Path | None = None


def _import_ray(local: bool) -> Any:
    for key, value in {**_RAY_ENV, **(_LOOPBACK_ENV if local else {})}.items():
        os.environ.setdefault(key, value)
    try:
        import ray
    except ModuleNotFoundError:
        raise RayUnavailable("--executor ray needs Ray: pip install 'tunespec[ray]'") from None
    return ray


class _Hub:
    """A Ray actor between the tasks and the dispatcher: progress events in, stop requests out."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.stops: dict[str, str] = {}

    def report(self, model_id: str, events: list[tuple[Any, ...]]) -> str | None:
        self.events.extend(events)
        return self.stops.get(model_id)

    def drain(self) -> list[tuple[Any, ...]]:
        events, self.events = self.events, []
        return events

    def stop(self, model_id: str, why: str) -> None:
        self.stops.setdefault(model_id, why)

    def forget(self, model_id: str) -> None:
        self.stops.pop(model_id, None)


def _train_task(job: dict[str, Any], examples: list[tuple[str, str]], storage: str,
                extra: dict[str, str], alias: str, hub: Any) -> dict[str, Any]:
    """Train one job in a Ray worker; progress goes to `hub`. Returns how it ended."""
    import ray

    model_id = job["id"]
    ray.get(hub.report.remote(model_id, [("started", model_id, os.getpid())]))  # out of Ray's queue

    from tunespec.engine import train
    from tunespec.engine.gguf_import import ModelError
    from tunespec.engine.worker import train_request

    root = Path(storage)
    work_dir = root / "jobs" / model_id
    pending: list[tuple[Any, ...]] = []
    state: dict[str, Any] = {"sent": time.monotonic(), "why": None}

    def send() -> None:
        events, pending[:] = list(pending), []
        state["why"] = ray.get(hub.report.remote(model_id, events)) or state["why"]
        state["sent"] = time.monotonic()

    def on_step(step: int, epoch: int, mean_loss: float) -> None:
        # Sent before the next checkpoint can be written: a step the checkpoint covers must be in
        # the store, or a resume from it would leave a gap in the snapshots.
        pending.append(("step", model_id, step, epoch, float(mean_loss), now_ns()))
        send()

    def on_resume(steps: list[tuple[int, int, float, int]]) -> None:
        # steps the checkpoint covers whose reports may have died with an earlier engine
        pending.append(("history", model_id, [list(s) for s in steps]))
        send()

    def should_stop() -> bool:  # called before every step
        if not state.get("training"):
            state["training"] = True
            pending.append(("training", model_id))
            send()
        if time.monotonic() - state["sent"] >= REPORT_S:
            send()
        return state["why"] is not None

    work_dir.mkdir(parents=True, exist_ok=True)
    pending.append(("attempt", model_id, train.checkpoint_step(work_dir), now_ns()))
    send()
    try:
        req = train_request(job, examples, root, {k: Path(v) for k, v in extra.items()}, alias)
    except ModelError as exc:
        return {"outcome": "failed", "code": 9, "message": f"Tuning failed: {exc}"}
    except Exception as exc:
        return {"outcome": "failed", "code": 13, "message": f"Tuning failed while preparing the job: {exc}"}
    try:
        out_dir = train.train(req, work_dir, on_step, should_stop, on_resume=on_resume)
    except train.TrainingStopped:
        send()
        return {"outcome": "stopped", "why": state["why"] or "shutdown"}
    except Exception as exc:
        send()
        return {"outcome": "failed", "code": 13, "message": f"Tuning failed: {exc}"}
    send()
    return {"outcome": "done", "weights_dir": str(out_dir)}


@dataclass
class _Running:
    model_id: str
    ref: Any
    started: bool = False
    stop_asked_at: float | None = None


class RayExecutor:
    """Runs `data_dir`'s queued jobs on Ray until `stop()` (the engine's start path starts it)."""

    def __init__(self, data_dir: Path, settings: RaySettings, *, extra_models: Mapping[str, Path],
                 alias_model: str | None):
        from tunespec.engine.basemodels import BUILTIN

        self.data_dir = Path(data_dir)
        self.settings = settings
        self.storage = Path(settings.storage or data_dir).expanduser().resolve()
        self.extra = {k: str(v) for k, v in extra_models.items()}
        self.alias = alias_model or BUILTIN
        self.owner = owner_token()
        self._ray: Any = None
        self._started_ray = False
        self._hub: Any = None
        self._task: Any = None
        self._gpus = 0.0
        self._running: dict[str, _Running] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tunespec-ray-dispatcher", daemon=True)

    @property
    def pids(self) -> list[int]:
        """No worker processes of the engine's own: Ray's workers belong to Ray."""
        return []

    # ---- start and stop ------------------------------------------------------------------------
    def start(self) -> None:
        ray = self._ray = _import_ray(self.settings.address is None)
        env = {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
               "TRANSFORMERS_OFFLINE": os.environ.get("TRANSFORMERS_OFFLINE", "1")}
        kwargs: dict[str, Any] = dict(namespace="tunespec", log_to_driver=False, configure_logging=False,
                                      runtime_env={"env_vars": env})
        if self.settings.address is None:
            kwargs.update(_node_ip_address="127.0.0.1", include_dashboard=False)
            for pid in ray_local.reap(self.data_dir):
                log.warning("stopped process %s of the local Ray a killed engine left behind", pid)
        else:
            kwargs["address"] = self.settings.address
        if not ray.is_initialized():
            try:
                ray.init(**kwargs)
            except Exception as exc:
                where = self.settings.address or "a local Ray instance"
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise RayUnavailable(f"cannot start or join {where}: {first}") from None
            self._started_ray = True
            if self.settings.address is None:
                ray_local.record(self.data_dir)
        gpus = ray.cluster_resources().get("GPU", 0.0)
        self._gpus = self.settings.gpus_per_job if self.settings.gpus_per_job is not None else (
            1.0 if gpus else 0.0)
        self._hub = ray.remote(num_cpus=0)(_Hub).remote()
        self._task = ray.remote(max_retries=0, num_cpus=self.settings.cpus_per_job,
                                num_gpus=self._gpus)(_train_task)
        self.storage.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def signal_stop(self) -> None:
        """Ask every task to checkpoint (the dispatcher does it), without waiting."""
        self._stop.set()

    def stop(self, timeout: float = SHUTDOWN_S) -> None:
        """Ask every task to checkpoint, give their jobs back to the queue, leave Ray."""
        self.signal_stop()
        if self._thread.is_alive():
            self._thread.join(timeout + 5)
        if self._started_ray and self._ray is not None:
            self._ray.shutdown()
            self._started_ray = False
            ray_local.forget(self.data_dir)

    # ---- the dispatcher ------------------------------------------------------------------------
    def _needs(self) -> str:
        cpus = f"{self.settings.cpus_per_job:g} CPU"
        gpus = f"{self._gpus:g} GPU" if self._gpus else ""
        return f"{' and '.join(filter(None, [gpus, cpus]))} in the Ray cluster"

    def _loop(self) -> None:
        store = Store(self.data_dir)
        next_beat = 0.0
        shutdown_at: float | None = None
        finished = now_ns()
        while True:
            try:
                finished = preload_finished(store, self.data_dir, finished)  # before the first call asks
                if self._stop.is_set() and shutdown_at is None:
                    shutdown_at = time.monotonic()
                    for job in self._running.values():
                        self._ask_stop(job, "shutdown")
                if time.monotonic() >= next_beat:
                    store.heartbeat(self.owner, lease_s=LEASE_S)
                    for model_id in store.reap(now_ns()):
                        log.error("ended orphaned job tunedModels/%s", model_id)
                    next_beat = time.monotonic() + HEARTBEAT_S
                    if self._started_ray and self.settings.address is None:
                        ray_local.record(self.data_dir)  # Ray starts some of its processes late
                if shutdown_at is None:
                    self._submit_queued(store)
                    self._watch_cancels(store)
                self._collect(store)
                if shutdown_at is not None:
                    if not self._running:
                        return
                    if time.monotonic() - shutdown_at > SHUTDOWN_S:
                        for job in list(self._running.values()):
                            self._ray.cancel(job.ref, force=True)
                            store.release(job.model_id, self.owner)
                        return
            except Exception:  # a busy database or a Ray hiccup must not stop the dispatcher
                log.exception("the Ray dispatcher hit an error; going on")
                time.sleep(1.0)
            time.sleep(POLL_S)

    def _submit_queued(self, store: Store) -> None:
        while len(self._running) < MAX_IN_FLIGHT:
            job = store.claim_next(self.owner)
            if job is None:
                return
            store.update_model(job["id"], waiting_for=self._needs())
            ref = self._task.remote(dict(job), store.examples(job["id"]), str(self.storage), self.extra,
                                    self.alias, self._hub)
            self._running[job["id"]] = _Running(job["id"], ref)
            log.info("tunedModels/%s handed to Ray (%s)", job["id"], self._needs())

    def _ask_stop(self, job: _Running, why: str) -> None:
        if job.stop_asked_at is None:
            job.stop_asked_at = time.monotonic()
            self._hub.stop.remote(job.model_id, why)
            if not job.started:  # still pending in Ray: nothing to checkpoint
                self._ray.cancel(job.ref, force=False)

    def _watch_cancels(self, store: Store) -> None:
        for job in list(self._running.values()):
            row = store.job_status(job.model_id)
            if row is None:
                self._ask_stop(job, "deleted")
            elif row["cancel_requested"]:
                self._ask_stop(job, "cancelled")
            if job.stop_asked_at is not None and time.monotonic() - job.stop_asked_at > CANCEL_GRACE_S:
                self._ray.cancel(job.ref, force=True)

    def _apply_events(self, store: Store) -> None:
        for event in self._ray.get(self._hub.drain.remote()):
            kind, model_id = event[0], event[1]
            job = self._running.get(model_id)
            if job is None:
                continue
            if kind == "started":
                job.started = True
                store.update_model(model_id, waiting_for=None)
                log.info("tunedModels/%s runs in Ray worker process %s", model_id, event[2])
            elif kind == "attempt":
                store.start_attempt(model_id, event[2])
                if (store.get_model(model_id) or {}).get("start_ns") is None:
                    store.update_model(model_id, start_ns=event[3])
            elif kind == "step":
                store.add_snapshot(model_id, event[2], event[3], event[4], event[5])
            elif kind == "training":
                store.training_began(model_id)
            elif kind == "history":
                store.add_missing_snapshots(model_id, [tuple(s) for s in event[2]])

    def _collect(self, store: Store) -> None:
        refs = [job.ref for job in self._running.values()]
        ready = set(self._ray.wait(refs, num_returns=len(refs), timeout=0)[0]) if refs else set()
        self._apply_events(store)  # a task reports everything before it returns
        for job in [j for j in self._running.values() if j.ref in ready]:
            del self._running[job.model_id]
            self._hub.forget.remote(job.model_id)
            self._finish(store, job)

    def _finish(self, store: Store, job: _Running) -> None:
        ray, model_id = self._ray, job.model_id
        try:
            result = ray.get(job.ref)
        except ray.exceptions.TaskCancelledError:
            result = {"outcome": "stopped", "why": "cancelled-by-force"}
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.ObjectLostError, ray.exceptions.RayTaskError,
                ray.exceptions.RayError) as exc:
            if store.charge_attempt(model_id, self.owner):
                row = store.get_model(model_id) or {}
                log.warning("tunedModels/%s lost its Ray worker (%s; attempt %s of %d)", model_id,
                            type(exc).__name__, row.get("attempts"), MAX_ATTEMPTS)
            return
        outcome = result["outcome"]
        row = store.job_status(model_id)
        if outcome == "done":
            if row is None:
                shutil.rmtree(self.storage / "jobs" / model_id, ignore_errors=True)
                return
            out = Path(result["weights_dir"])
            weights = str(out.relative_to(self.data_dir)) if out.is_relative_to(self.data_dir) else str(out)
            store.finish(model_id, self.owner, state="ACTIVE", now_ns=now_ns(), weights_dir=weights)
            log.info("tunedModels/%s is ACTIVE", model_id)
        elif outcome == "failed":
            store.finish(model_id, self.owner, state="FAILED", now_ns=now_ns(), error_code=result["code"],
                         error_message=result["message"])
        elif row is None:  # deleted while it ran
            shutil.rmtree(self.storage / "jobs" / model_id, ignore_errors=True)
        elif row["cancel_requested"]:
            store.finish(model_id, self.owner, state="FAILED", now_ns=now_ns(), error_code=1,
                         error_message=CANCEL_MESSAGE)
            log.info("tunedModels/%s cancelled", model_id)
        else:  # shutdown: checkpointed, back to the queue
            store.release(model_id, self.owner)
