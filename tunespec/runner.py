"""Carry a plan out: submit (or attach), wait with progress, evaluate, report.

An unchanged spec never starts a second job: its tuned model id is derived from the spec, so a rerun
finds the model (ACTIVE: just re-evaluate; CREATING: attach to the running operation) instead of
submitting again. `Runner.run` is one job read top to bottom; `run_plan` runs a plan's jobs, one
after another or `parallel` at once. The runner reads the service only through `tunespec.resources`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace

from tunespec import job_errors, sharing
from tunespec.errors import (
    EXIT_EVAL_BELOW_THRESHOLD,
    EXIT_OK,
    EXIT_SERVICE,
    ApiError,
    JobFailedError,
    TunespecError,
)
from tunespec.eval_progress import Counted, Tally, planned_calls
from tunespec.evaluate import LOCAL_CONCURRENCY
from tunespec.github import in_actions, prompt_annotations
from tunespec.heldout import evaluate_job, has_work
from tunespec.identity import base_model_of
from tunespec.planning import LABELS, NOOP, RECREATE, WAIT, JobPlan, Plan
from tunespec.progress import Reporter, next_poll_interval, remaining_seconds
from tunespec.report import build_report, write_reports
from tunespec.request import render_request, spec_steps
from tunespec.resources import (
    ACTIVE,
    FAILED,
    LOADING,
    QUEUED,
    SAVING,
    Operation,
    Progress,
    TunedModel,
    progress_of,
)
from tunespec.results import JobResult
from tunespec.service import TuningService
from tunespec.targets import Targets

STAGE_POLL_S = 0.5  # the longest wait between polls while a job is queued, loading or saving


@dataclass(frozen=True)
class RunOptions:
    """How a run goes: what `apply`'s and `eval`'s options say, set once for every job."""

    timeout: float | None = None  # seconds to wait for the tuning jobs, all together
    prune: bool = False  # delete a job's superseded models once it succeeds
    parallel: int = 1  # jobs at once
    fail_fast: bool = False  # stop the other jobs when one fails
    train: bool = True  # False: evaluate existing models only (`tunespec eval`)
    poll_start: float = 0.2  # seconds between the first progress polls
    poll_cap: float = 10.0  # the longest wait between two polls


class Runner:
    """Applies the jobs of one plan; shared by apply, eval and the library."""

    def __init__(
        self,
        targets: Targets,
        reporter: Reporter,
        options: RunOptions,
        *,
        stop: threading.Event | None = None,
        env: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] | None = None,
    ):
        self.targets = targets
        self.reporter = reporter
        self.options = options
        self.deadline = time.monotonic() + options.timeout if options.timeout else None
        self.stop = stop or threading.Event()
        self.env = env
        self.sleep = sleep or self.stop.wait

    def run(self, job: JobPlan) -> JobResult:
        result = JobResult(plan=job, action=job.action)
        started: float | None = None  # a job the plan could not look up never starts: no time to tell
        try:
            if job.error:
                raise job.error
            started = time.monotonic()
            service = self.targets.service(job.target, job.dialect, job.project)
            model = self._tune(service, job, result)
            result.model, result.state = model, model.state
            result.timings["train_s"] = time.monotonic() - started
            sharing.apply_job(self.targets, job, self.reporter)
            self._evaluate(service, job, result)
            if self.options.prune and job.superseded:
                for name in job.superseded:
                    service.delete_tuned_model(name)
                    result.pruned.append(name)
                    self.reporter.message(f"{job.spec.name}: deleted superseded model {name}")
        except TunespecError as exc:
            result.error = exc
            result.exit_code = exc.exit_code
            result.state = result.state or job.state
        if started is not None:
            result.timings["total_s"] = time.monotonic() - started
        if result.evaluation is not None and result.exit_code == EXIT_OK:
            if result.evaluation.errors:
                result.exit_code = EXIT_SERVICE
                result.error = job_errors.evaluation_calls_failed(result.evaluation)
            elif not result.evaluation.passed:
                result.exit_code = EXIT_EVAL_BELOW_THRESHOLD
                result.error = job_errors.below_threshold(job, result.evaluation)
        self._write(job, result)
        return result

    # -- tuning --

    def _tune(self, service: TuningService, job: JobPlan, result: JobResult) -> TunedModel:
        name = job.spec.name
        if job.action == NOOP:
            self.reporter.message(f"{name}: {job.name} is up to date (ACTIVE); nothing to tune")
            return job.model or service.get_tuned_model(job.name)
        if not self.options.train:
            raise job_errors.nothing_to_evaluate(job)
        operation: Operation | None = None
        if job.action == WAIT:
            operation = service.find_operation(job.name)
            result.attached = True
            self.reporter.message(
                f"{name}: {job.name} is already tuning; attaching"
                + (f" to {operation.name}" if operation else "")
            )
        else:
            if job.action == RECREATE:
                self.reporter.message(f"{name}: {job.name} ended FAILED before; deleting it to tune again")
                service.delete_tuned_model(job.name)
            operation = self._submit(service, job, result)
        result.operation = operation.name if operation else None
        return self._wait(service, job, operation, result)

    def _submit(self, service: TuningService, job: JobPlan, result: JobResult) -> Operation | None:
        body = render_request(job.spec, job.examples, target=job.target)
        try:
            operation = service.create_tuned_model(body, job.model_id)
        except ApiError as exc:
            if exc.http_status == 404:
                raise job_errors.no_such_model(service, job, exc) from None
            if exc.http_status != 409:
                raise
            # Created by an earlier attempt whose answer was lost (or a concurrent apply): attach to it.
            result.attached = True
            self.reporter.message(f"{job.spec.name}: {job.name} already exists; attaching to it")
            return service.find_operation(job.name)
        result.submitted = True
        total = operation.total_steps
        self.reporter.message(
            f"{job.spec.name}: submitted {job.name} ({LABELS[job.action]}; "
            f"{len(job.examples)} examples{f', {total} steps' if total else ''})"
        )
        return operation

    def _wait(
        self, service: TuningService, job: JobPlan, operation: Operation | None, result: JobResult
    ) -> TunedModel:
        """Poll until the job ends: the operation tells the progress, else the model's state does."""
        name = job.spec.name
        started = time.monotonic()
        interval = self.options.poll_start
        total = spec_steps(job.spec, len(job.examples)) or 0
        last = Progress()
        first: int | None = None  # the step the job was at when this run began watching it (ETA)
        watching = operation is not None and bool(operation.name)
        while True:
            model: TunedModel | None = None
            if operation is not None and watching:  # the model is read once the operation is done
                operation = service.get_operation(operation.name)
                if operation.done:
                    model = service.get_tuned_model(job.name)
            else:  # no operation to watch: the model's state tells when the job ends
                model = service.get_tuned_model(job.name)
                if model.state == FAILED:
                    result.model, result.state = model, FAILED
                    raise job_errors.tuning_failed(job, model.error)
            last = progress_of(operation if watching else None, model, total)
            first = last.step if first is None else first
            self.reporter.progress(name, last, started, first)
            if operation is not None and watching and operation.done and model is not None:
                if operation.error:
                    result.model, result.state = model, model.state
                    raise job_errors.tuning_failed(job, operation.error)
                return model
            if not watching and model is not None and model.state == ACTIVE:
                return model
            if self.deadline is not None and time.monotonic() + interval > self.deadline:
                raise JobFailedError(
                    f"{name}: timed out after {self.options.timeout:g}s waiting for {job.name} "
                    f"(step {last.step}/{last.total or '?'}); {self._left_behind(job)}"
                )
            if self.stop.is_set():
                raise job_errors.Stopped(
                    f"{name}: stopped waiting for {job.name} (another job failed and --fail-fast is "
                    f"set); {self._left_behind(job)}"
                )
            self.sleep(interval)
            eta = remaining_seconds(time.monotonic() - started, last, first or 0)
            interval = next_poll_interval(interval, self.options.poll_cap, eta)
            if last.stage in (QUEUED, LOADING, SAVING):  # the next stage may come any moment: look soon
                interval = min(interval, STAGE_POLL_S)

    def _left_behind(self, job: JobPlan) -> str:
        return job_errors.left_behind(self.targets.in_process(job.target, job.project))

    # -- evaluation --

    def _evaluate(self, service: TuningService, job: JobPlan, result: JobResult) -> None:
        ev = job.spec.evaluation
        held_out = job.held_out
        if ev is None or not has_work(ev, held_out):
            return
        if ev.concurrency is None and job.target == "local":  # the engine batches what arrives together
            ev = replace(ev, concurrency=LOCAL_CONCURRENCY)
        t0 = time.monotonic()
        base = None
        if ev.compare_base:
            served = result.model.base_model if result.model else None
            base = job.spec.source_model or base_model_of(job.spec) or served
        models = [job.name, *([base] if base else [])]
        tally = Tally(planned_calls(ev, held_out) * len(models),
                      lambda done, total: self.reporter.evaluating(job.spec.name, done, total, t0))
        tally.on_start()
        # The tuned and the base model are evaluated at once: the service batches their prompts.
        with ThreadPoolExecutor(max_workers=len(models), thread_name_prefix="tunespec-models") as pool:
            runs = [pool.submit(evaluate_job, Counted(service, m, tally), m, ev, held_out,
                                temperature=job.spec.temperature) for m in models]
            evaluations = [r.result() for r in runs]
        result.evaluation = evaluations[0]
        if base:
            result.base_evaluation = evaluations[1]
        result.timings["eval_s"] = time.monotonic() - t0
        r = result.evaluation
        text = (
            f"{job.spec.name}: evaluation pass rate {r.pass_rate:.0%} over {len(r.prompts)} prompt(s) "
            f"(threshold {r.threshold:.0%})"
        )
        if result.base_evaluation:
            text += f"; base model {result.base_evaluation.pass_rate:.0%}"
        if r.accuracy is not None:
            text += f"; held-out accuracy {r.accuracy:.0%} over {len(r.validation.prompts)} example(s)"
        self.reporter.message(text)
        if self.env is not None and in_actions(self.env):
            for line in prompt_annotations(job.spec, r):
                self.reporter.message(line)

    # -- reports --

    def _write(self, job: JobPlan, result: JobResult) -> None:
        result.report = build_report(result, self.targets.describe(job.target, job.project))
        try:
            result.reports = write_reports(
                result.report, job.spec.report.dir, job.spec.report.formats, env=self.env
            )
        except OSError as exc:
            self.reporter.message(f"{job.spec.name}: could not write reports to {job.spec.report.dir}: {exc}")
            if result.exit_code == EXIT_OK:
                result.exit_code = EXIT_SERVICE


def run_plan(
    plan: Plan,
    targets: Targets,
    reporter: Reporter,
    options: RunOptions,
    *,
    env: Mapping[str, str] | None = None,
) -> list[JobResult]:
    """Run every job of `plan`; results in the plan's order. Ctrl-C stops the run and says what
    became of the jobs."""
    stop = threading.Event()
    runner = Runner(targets, reporter, options, stop=stop, env=env)
    results: dict[int, JobResult] = {}

    def one(index: int, job: JobPlan) -> None:
        if stop.is_set():
            why = f"{job.spec.name}: not started (another job failed and --fail-fast is set)"
            skipped = JobResult(job, job.action, exit_code=EXIT_SERVICE, error=job_errors.Stopped(why))
            target = targets.describe(job.target, job.project)
            skipped.report = {**build_report(skipped, target), "skipped": True}
            results[index] = skipped
            return
        results[index] = runner.run(job)
        if options.fail_fast and results[index].exit_code != EXIT_OK:
            stop.set()

    try:
        if options.parallel <= 1 or len(plan.jobs) <= 1:
            for i, job in enumerate(plan.jobs):
                one(i, job)
        else:
            with ThreadPoolExecutor(max_workers=options.parallel, thread_name_prefix="tunespec-job") as pool:
                pending = {pool.submit(one, i, job) for i, job in enumerate(plan.jobs)}
                try:
                    while pending:
                        _, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                except KeyboardInterrupt:
                    stop.set()
                    raise
    except KeyboardInterrupt:
        stop.set()
        reporter.close()
        reporter.message(job_errors.interrupted([targets.in_process(j.target, j.project) for j in plan.jobs]))
        raise
    finally:
        reporter.close()
    return [results[i] for i in sorted(results)]
