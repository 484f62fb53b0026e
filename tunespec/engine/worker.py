"""The training worker: a separate process that runs queued tuning jobs from the store, in order.

`python -m tunespec.engine.worker --data-dir DIR [--models JSON] [--alias-model NAME] [--parent-pid PID]`

The engine starts one such process per concurrent job (`tunespec serve --workers N`) and keeps
them alive with a WorkerSupervisor (below): Hugging Face model loading is not thread-safe, so each
process runs one job at a time. It claims the
oldest CREATING job (an atomic UPDATE with a lease, renewed by a heartbeat), trains it with
tunespec.engine.train, writes one snapshot per step, and ends it ACTIVE or FAILED. A cancelled
job ends FAILED with the operation error code 1 (CANCELLED). On SIGTERM a running job checkpoints
and goes back to the queue; after a crash (SIGKILL) the next worker sees the dead owner, reclaims
the job and resumes from its last checkpoint. Only a worker that dies while its supervisor lives on
and did not ask it to stop charges an attempt to the job it held (the supervisor records it:
Store.charge_crash, told the cause: a fatal signal or non-zero exit, the kernel's OOM killer (its
counters in /proc/vmstat and the cgroup's memory.events went up), or a bare SIGKILL, charged only when
it repeats at one training step); a job that crashes its worker three times ends FAILED instead of
looping. The engine dying with its workers (SIGKILL, reboot) or stopping them (SIGTERM, Ctrl-C), and a
worker killed from outside, charge nothing.
A base model that cannot be used (a package not installed, a GGUF file that fails to convert) ends
the job FAILED with the reason. The worker exits when its parent process dies.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunespec.engine.store import CANCEL_MESSAGE, LEASE_S, MAX_ATTEMPTS, Store, owner_token
from tunespec.engine.wire import now_ns

log = logging.getLogger("tunespec.engine.worker")
supervisor_log = logging.getLogger("tunespec.engine")
POLL_S = 0.2
HEARTBEAT_S = 2.0


def train_request(job: Mapping[str, Any], examples: list[tuple[str, str]], data_dir: Path,
                  extra: Mapping[str, Path], alias: str) -> Any:
    """The train.TrainRequest of a claimed job (its store row): its base model materialised under
    `data_dir` (a GGUF file converted once), a continued model's weights checked. Raises
    gguf_import.ModelError when the base model cannot be used."""
    from tunespec.engine import basemodels, train

    base_dir = basemodels.materialize(job["base_model"], data_dir, extra, alias)
    init_dir = data_dir / job["init_dir"] if job["init_dir"] else None
    if init_dir is not None and not init_dir.exists():
        raise RuntimeError(f"the source tuned model's weights are missing ({init_dir})")
    return train.TrainRequest(
        base_dir=Path(base_dir),
        examples=examples,
        epoch_count=job["epoch_count"],
        batch_size=job["batch_size"],
        learning_rate=job["effective_learning_rate"],
        tuning_method=job["tuning_method"],
        seed=0,
        init_dir=init_dir,
        data_dir=data_dir,
        lora_rank=job.get("lora_rank") or train.LORA_RANK,
    )


def _import_training_stack() -> None:
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers.models.llama.modeling_llama  # noqa: F401  - the built-in and SmolLM2's
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401


class Worker:
    """Runs jobs from `data_dir`'s store until `stop()`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        extra_models: Mapping[str, Path] | None = None,
        alias_model: str | None = None,
        parent_pid: int | None = None,
    ):
        from tunespec.engine.basemodels import BUILTIN

        self.data_dir = Path(data_dir)
        self.store = Store(self.data_dir)
        self.extra = dict(extra_models or {})
        self.alias = alias_model or BUILTIN  # the model serving Google's names, as the server resolved it
        self.owner = owner_token()
        self.parent_pid = parent_pid
        self._stop = threading.Event()
        self._warmed = threading.Event()  # the training stack is imported (or failed to be)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Block until stopped: heartbeat + reaper in this thread, jobs in the runner thread."""
        threading.Thread(target=self._warm_up, daemon=True).start()
        runner = threading.Thread(target=self._runner, name="runner", daemon=True)
        runner.start()
        next_beat = 0.0
        while not self._stop.is_set():
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                log.warning("engine process %s is gone; worker stops", self.parent_pid)
                self._stop.set()
                break
            if time.monotonic() >= next_beat:
                try:
                    self.store.heartbeat(self.owner, lease_s=LEASE_S)
                    for model_id in self.store.reap(now_ns()):
                        log.info("ended orphaned job tunedModels/%s", model_id)
                except Exception:  # a busy database must not kill the heartbeat
                    log.exception("heartbeat failed")
                next_beat = time.monotonic() + HEARTBEAT_S
            self._stop.wait(0.25)
        runner.join(timeout=30)

    def _warm_up(self) -> None:
        """Import the training stack (torch, transformers' Llama, peft) as the worker starts, while
        the engine and the runner start up, so the first job claimed does not wait for it. A job
        waits for it to finish (Hugging Face's lazy imports are not safe from two threads at once)."""
        try:
            from tunespec.engine import train  # noqa: F401  - first: it sets Hugging Face offline

            _import_training_stack()
        except Exception:
            log.exception("importing the training stack failed")
        finally:
            self._warmed.set()

    def _runner(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.store.claim_next(self.owner)
            except Exception:
                log.exception("claiming a job failed")
                job = None
            if job is None:
                self._stop.wait(POLL_S)
                continue
            try:
                self.run_job(job)
            except Exception:
                log.exception("job %s crashed the runner", job["id"])

    def run_job(self, job: dict[str, Any]) -> None:
        """Train one claimed job to its end (or until stopped/cancelled)."""
        model_id = job["id"]
        work_dir = self.data_dir / "jobs" / model_id
        deadline = time.monotonic() + 600
        while not self._warmed.wait(0.05) and time.monotonic() < deadline:
            if self._stop.is_set():  # stopped while importing: the job goes back to the queue untouched
                self.store.release(model_id, self.owner)
                return
        log.info("training tunedModels/%s (%d steps)", model_id, job["total_steps"])
        from tunespec.engine.gguf_import import ModelError

        try:
            from tunespec.engine import train

            work_dir.mkdir(parents=True, exist_ok=True)
            done = train.checkpoint_step(work_dir)
            self.store.start_attempt(model_id, done)
            if job["start_ns"] is None:
                self.store.update_model(model_id, start_ns=now_ns())
            req = train_request(job, self.store.examples(model_id), self.data_dir, self.extra, self.alias)
        except ModelError as exc:  # the base model cannot be used: say why, do not retry
            self._fail(model_id, f"Tuning failed: {exc}", error_code=9)  # FAILED_PRECONDITION
            return
        except Exception as exc:
            self._fail(model_id, f"Tuning failed while preparing the job: {exc}")
            return

        reason: dict[str, str] = {}
        last_check = [0.0]
        began = [False]  # told the store this attempt's training loop runs

        def on_step(step: int, epoch: int, mean_loss: float) -> None:
            self.store.add_snapshot(model_id, step, epoch, mean_loss, now_ns())

        def should_stop() -> bool:  # called before every step
            if not began[0]:
                self.store.training_began(model_id)
                began[0] = True
            if self._stop.is_set():
                reason.setdefault("why", "shutdown")
                return True
            now = time.monotonic()
            if now - last_check[0] < 0.1:
                return False
            last_check[0] = now
            row = self.store.job_status(model_id)
            if row is None:
                reason["why"] = "deleted"
            elif row["cancel_requested"]:
                reason["why"] = "cancelled"
            elif row["claimed_by"] != self.owner:
                reason["why"] = "lost"
            return "why" in reason

        try:
            out_dir = train.train(req, work_dir, on_step, should_stop,
                                  on_resume=lambda steps: self.store.add_missing_snapshots(model_id, steps))
        except train.TrainingStopped:
            why = reason.get("why", "shutdown")
            if why == "cancelled":
                self.store.finish(
                    model_id,
                    self.owner,
                    state="FAILED",
                    now_ns=now_ns(),
                    error_code=1,
                    error_message=CANCEL_MESSAGE,
                )
                log.info("tunedModels/%s cancelled", model_id)
            elif why == "deleted":
                shutil.rmtree(work_dir, ignore_errors=True)
            elif why == "shutdown":
                self.store.release(model_id, self.owner)
                log.info("tunedModels/%s checkpointed and returned to the queue", model_id)
            return
        except Exception as exc:
            self._fail(model_id, f"Tuning failed: {exc}")
            return
        if self.store.job_status(model_id) is None:  # deleted while finishing
            shutil.rmtree(work_dir, ignore_errors=True)
            return
        weights_dir = str(Path(out_dir).relative_to(self.data_dir))  # moves with the data dir
        self.store.finish(model_id, self.owner, state="ACTIVE", now_ns=now_ns(), weights_dir=weights_dir)
        log.info("tunedModels/%s is ACTIVE", model_id)

    def _fail(self, model_id: str, message: str, error_code: int = 13) -> None:
        log.error("tunedModels/%s: %s", model_id, message)
        self.store.finish(
            model_id, self.owner, state="FAILED", now_ns=now_ns(), error_code=error_code,
            error_message=message,
        )


def preload_finished(store: Store, data_dir: Path, since_ns: int) -> int:
    """Start loading, in this (the engine's) process, each model that turned ACTIVE after `since_ns`:
    the worker that trained it is another process, so its first generate call would wait for the
    load. Returns the newest completion seen."""
    from tunespec.engine import generate

    for complete_ns, weights in store.finished_since(since_ns):
        threading.Thread(target=generate.preload_quietly, args=(data_dir / weights,), daemon=True,
                         name="tunespec-preload").start()
        since_ns = max(since_ns, complete_ns)
    return since_ns


_OOM_COUNTERS = (Path("/proc/vmstat"), Path("/sys/fs/cgroup/memory.events"))


def oom_kills() -> int:
    """How many processes the kernel's OOM killer has killed (system-wide plus this cgroup's)."""
    total = 0
    for path in _OOM_COUNTERS:
        try:
            for line in path.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and value.strip().isdigit():
                    total += int(value)
        except OSError:
            continue
    return total


def crash_cause(returncode: int, oom_before: int, oom_after: int) -> str:
    """Store.charge_crash's cause for a worker that exited with `returncode` unasked."""
    if returncode == -signal.SIGKILL and oom_after <= oom_before:
        return "killed"  # by the job or from outside: charged only when it repeats
    return "crash"


class WorkerSupervisor:
    """Keeps `count` worker processes alive (restarting any that dies) until stopped.

    Concurrency is one process per job: Hugging Face model loading is not thread-safe, and
    separate processes keep one job's crash from taking the others down.
    """

    def __init__(
        self, data_dir: Path, *, count: int, extra_models: Mapping[str, Path], log_path: Path | None,
        alias_model: str | None = None,
    ):
        self.data_dir = data_dir
        self.count = max(1, count)
        self.extra = {k: str(v) for k, v in extra_models.items()}
        self.alias = alias_model
        self.log_path = log_path
        self.procs: list[subprocess.Popen[bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tunespec-worker-supervisor", daemon=True)

    def _spawn(self) -> subprocess.Popen[bytes]:
        cmd = [
            sys.executable,
            "-m",
            "tunespec.engine.worker",
            "--data-dir",
            str(self.data_dir),
            "--models",
            json.dumps(self.extra),
            "--parent-pid",
            str(os.getpid()),
        ]
        if self.alias:
            cmd += ["--alias-model", self.alias]
        env = dict(os.environ)
        if self.count > 1 and "OMP_NUM_THREADS" not in env:  # share the cores instead of oversubscribing
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.count))
        out: Any = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
        finally:
            if out is not None:
                out.close()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def start(self) -> None:
        self.procs = [self._spawn() for _ in range(self.count)]
        self._thread.start()

    def _loop(self) -> None:
        delay = 0.5
        store: Store | None = None
        seen_alive = [oom_kills()] * len(self.procs)  # the OOM count when each worker was last alive
        finished = now_ns()
        while not self._stop.wait(0.5):
            try:
                store = store or Store(self.data_dir)
                finished = preload_finished(store, self.data_dir, finished)
            except Exception:  # a busy database must not stop the supervisor
                supervisor_log.exception("looking for finished jobs failed")
            for i, proc in enumerate(self.procs):
                oom_now = oom_kills()  # read before poll: an OOM kill after it shows as a rise
                if proc.poll() is None:
                    seen_alive[i] = oom_now
                    continue
                if self._stop.is_set():
                    break
                supervisor_log.warning("training worker exited with %s; restarting it", proc.returncode)
                # Charge after the wait: a worker dying with its whole engine is no job's fault.
                self._stop.wait(delay)
                delay = min(delay * 2, 10)
                if self._stop.is_set():
                    break
                try:
                    store = store or Store(self.data_dir)
                    self._charge(store, proc, crash_cause(proc.returncode, seen_alive[i], oom_kills()))
                except Exception:  # a busy database must not stop the supervisor
                    supervisor_log.exception("recording the worker's crash failed")
                self.procs[i] = self._spawn()
                seen_alive[i] = oom_kills()

    @staticmethod
    def _charge(store: Store, proc: subprocess.Popen[bytes], cause: str) -> None:
        """The worker `proc` died unasked: charge the job it held if it was the job's doing (a clean
        exit released its job; charge_crash gives any other back to the queue)."""
        for model_id in store.charge_crash(proc.pid, cause=cause):
            row = store.get_model(model_id) or {}
            supervisor_log.warning(
                "tunedModels/%s crashed its training worker (exit %s; attempt %s of %d)",
                model_id, proc.returncode, row.get("attempts"), MAX_ATTEMPTS,
            )
        for model_id in store.reap(now_ns()):
            supervisor_log.error("ended orphaned job tunedModels/%s", model_id)

    def signal_stop(self) -> None:
        """Ask the workers to stop (they checkpoint their jobs) without waiting for them."""
        self._stop.set()
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()

    def stop(self, timeout: float = 15) -> None:
        """signal_stop(), then wait for the workers (killing one that takes over `timeout` s)."""
        self.signal_stop()
        for proc in self.procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread.is_alive():
            self._thread.join(timeout=2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tunespec.engine.worker")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--models", default="{}", help="JSON object {name: path} of extra base models")
    parser.add_argument("--alias-model", default=None,
                        help="the model serving Google's model names (default: the built-in model)")
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s worker[%(process)d] %(levelname)s %(message)s",
    )
    extra = {k: Path(v) for k, v in json.loads(args.models).items()}
    worker = Worker(
        args.data_dir, extra_models=extra, alias_model=args.alias_model, parent_pid=args.parent_pid
    )
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    worker.run()
    # Everything is committed: skip the interpreter's teardown of torch (about a second), which the
    # engine stopping would wait for.
    logging.shutdown()
    os._exit(0)


if __name__ == "__main__":
    main()
