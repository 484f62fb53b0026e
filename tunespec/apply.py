"""Carry a plan out: submit (or attach), wait with progress, evaluate, report.

`apply_specs(...)` is the library entry point (`tunespec.apply`). An unchanged spec never starts a
second job: its tuned model id is derived from the spec, so a rerun finds the model (ACTIVE: just
re-evaluate; CREATING: attach to the running operation) instead of submitting again.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tunespec import __version__
from tunespec.client import TuningClient
from tunespec.errors import (
    EXIT_EVAL_BELOW_THRESHOLD,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_SERVICE,
    ApiError,
    JobFailedError,
    TunespecError,
)
from tunespec.evaluate import EvalResult, evaluate
from tunespec.plan import (
    CREATE,
    ERROR,
    LABELS,
    NOOP,
    RECREATE,
    REPLACE,
    WAIT,
    JobPlan,
    Plan,
    base_model_of,
    keep_callable,
    make_plan,
    requested_hyperparameters,
    worst_exit_code,
)
from tunespec.progress import Progress, Reporter, next_poll_interval, progress_of, remaining_seconds
from tunespec.report import REPORT_SCHEMA_VERSION, now_rfc3339, write_combined_junit, write_reports
from tunespec.targets import Targets

APPLY_SCHEMA_VERSION = 1
class Stopped(TunespecError):
    """Waiting was abandoned (--fail-fast after another job failed)."""


@dataclass
class JobResult:
    """What happened to one job."""

    plan: JobPlan
    action: str
    state: str = ""
    model: dict[str, Any] | None = None
    operation: str | None = None
    submitted: bool = False  # a new tuning job was started
    attached: bool = False  # waited on a job started earlier
    evaluation: EvalResult | None = None
    base_evaluation: EvalResult | None = None
    error: TunespecError | None = None
    exit_code: int = EXIT_OK
    timings: dict[str, float] = field(default_factory=dict)
    reports: dict[str, Path] = field(default_factory=dict)
    pruned: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.plan.spec.name

    @property
    def pass_rate(self) -> float | None:
        return self.evaluation.pass_rate if self.evaluation and self.evaluation.prompts else None

    @property
    def report_dir(self) -> Path:
        return self.plan.spec.report.dir

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.name,
            "spec": str(self.plan.spec.path),
            "action": self.action,
            "label": LABELS.get(self.action, self.action),
            "tuned_model": self.plan.name,
            "state": self.state,
            "submitted": self.submitted,
            "attached": self.attached,
            "pass_rate": self.pass_rate,
            "threshold": self.evaluation.threshold if self.evaluation else None,
            "exit_code": self.exit_code,
            "error": str(self.error) if self.error else None,
            "reports": {k: str(v) for k, v in self.reports.items()},
            "pruned": self.pruned,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


@dataclass
class ApplyResult:
    plan: Plan
    jobs: list[JobResult]
    junit: Path | None = None

    @property
    def exit_code(self) -> int:
        return worst_exit_code([j.exit_code for j in self.jobs] + [EXIT_INVALID] * len(self.plan.invalid))

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    def raise_for_errors(self) -> None:
        """Raise the first job's error (or SpecError for an invalid spec) when the run did not pass."""
        for job in self.jobs:
            if job.error and job.exit_code == self.exit_code:
                raise job.error
        if self.plan.invalid:
            raise self.plan.invalid[0].error

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": APPLY_SCHEMA_VERSION,
            "kind": "tunespec.apply",
            "exit_code": self.exit_code,
            "jobs": [j.to_json() for j in self.jobs],
            "invalid": [i.to_json() for i in self.plan.invalid],
            "junit": str(self.junit) if self.junit else None,
        }


# ---- one job ----------------------------------------------------------------------------------------


def predicted_total(job: JobPlan) -> int:
    """The steps the job will take when the spec fixes epochs and batch size, else 0 (unknown)."""
    from tunespec.request import predicted_steps

    hp = job.spec.hyperparameters
    if not hp.epoch_count or not hp.batch_size:
        return 0
    return predicted_steps(len(job.examples), hp.epoch_count, hp.batch_size)


def find_operation(client: TuningClient, model_name: str) -> dict[str, Any] | None:
    """The model's running operation (or its latest one), or None when the service lists none."""
    try:
        ops = client.list_operations(model_name)
    except ApiError as exc:
        if exc.http_status in (400, 404, 405, 501):
            return None
        raise
    running = [o for o in ops if not o.get("done")]
    return (running or ops or [None])[-1]


class Runner:
    """Applies the jobs of one plan; shared by apply, eval and the library."""

    def __init__(
        self,
        targets: Targets,
        reporter: Reporter,
        *,
        deadline: float | None,
        timeout: float | None,
        prune: bool,
        train: bool,
        poll_start: float = 0.2,
        poll_cap: float = 10.0,
        stop: threading.Event | None = None,
        env: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] | None = None,
    ):
        self.targets = targets
        self.reporter = reporter
        self.deadline = deadline
        self.timeout = timeout
        self.prune = prune
        self.train = train
        self.poll_start = poll_start
        self.poll_cap = poll_cap
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
            client = self.targets.client(job.target, job.dialect, job.project)
            model = self._tune(client, job, result)
            result.model = model
            result.state = model.get("state", "")
            result.timings["train_s"] = time.monotonic() - started
            self._evaluate(client, job, result)
            if self.prune and job.superseded:
                for name in job.superseded:
                    client.delete_tuned_model(name)
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
                result.error = ApiError(
                    f"{len(result.evaluation.errors)} evaluation call(s) failed: "
                    f"{result.evaluation.errors[0]}"
                )
            elif not result.evaluation.passed:
                result.exit_code = EXIT_EVAL_BELOW_THRESHOLD
                result.error = _below(job, result.evaluation)
        self._write(job, result)
        return result

    # -- tuning --

    def _tune(self, client: TuningClient, job: JobPlan, result: JobResult) -> dict[str, Any]:
        name = job.spec.name
        if job.action == NOOP:
            self.reporter.message(f"{name}: {job.name} is up to date (ACTIVE); nothing to tune")
            return job.model or client.get_tuned_model(job.name)
        if not self.train:
            state = (job.model or {}).get("state") or "absent"
            raise JobFailedError(
                f"{name}: no ACTIVE model to evaluate ({job.name} is {state}); "
                f"run `tunespec apply {job.spec.path}` first"
            )
        operation: dict[str, Any] | None = None
        if job.action == WAIT:
            operation = find_operation(client, job.name)
            result.attached = True
            self.reporter.message(
                f"{name}: {job.name} is already tuning; attaching"
                + (f" to {operation['name']}" if operation else "")
            )
        else:
            if job.action == RECREATE:
                self.reporter.message(f"{name}: {job.name} ended FAILED before; deleting it to tune again")
                client.delete_tuned_model(job.name)
            operation = self._submit(client, job, result)
        result.operation = (operation or {}).get("name")
        return self._wait(client, job, operation, result)

    def _submit(self, client: TuningClient, job: JobPlan, result: JobResult) -> dict[str, Any] | None:
        from tunespec.request import render_request

        body = render_request(job.spec, job.examples)
        if job.spec.tuning_method and job.target != "google":
            # The local engine's extension field; Google's service has no such field and would reject it.
            body["tuningMethod"] = job.spec.tuning_method
        try:
            operation = client.create_tuned_model(body, job.model_id)
        except ApiError as exc:
            if exc.http_status == 404:
                raise _no_such_model(client, job, exc) from None
            if exc.http_status != 409:
                raise
            # Created by an earlier attempt whose answer was lost (or a concurrent apply): attach to it.
            result.attached = True
            self.reporter.message(f"{job.spec.name}: {job.name} already exists; attaching to it")
            return find_operation(client, job.name)
        result.submitted = True
        total = (operation.get("metadata") or {}).get("totalSteps")
        self.reporter.message(
            f"{job.spec.name}: submitted {job.name} ({LABELS[job.action]}; "
            f"{len(job.examples)} examples{f', {total} steps' if total else ''})"
        )
        return operation

    def _wait(
        self, client: TuningClient, job: JobPlan, operation: dict[str, Any] | None, result: JobResult
    ) -> dict[str, Any]:
        name = job.spec.name
        started = time.monotonic()
        interval = self.poll_start
        total = predicted_total(job)
        last = Progress()
        first: int | None = None  # the step the job was at when this run began watching it (ETA)
        watching = operation is not None and bool(operation.get("name"))
        while True:
            model: dict[str, Any] | None = None
            if watching:  # the operation tells the progress; the model is read once it is done
                operation = client.get_operation(operation["name"])
                meta = operation.get("metadata") or {}
                if operation.get("done"):
                    model = client.get_tuned_model(job.name)
            else:  # no operation to watch: the model's state tells when the job ends
                meta, model = {}, client.get_tuned_model(job.name)
                if model.get("state") == "FAILED":
                    result.model, result.state = model, "FAILED"
                    raise _failed(job, None, model)
            last = progress_of(meta, model, total)
            first = last.step if first is None else first
            self.reporter.progress(name, last, started, first)
            if watching and operation.get("done"):
                if operation.get("error"):
                    result.model, result.state = model, model.get("state", "")
                    raise _failed(job, operation["error"], model)
                return model
            if not watching and model.get("state") == "ACTIVE":
                return model
            if self.deadline is not None and time.monotonic() + interval > self.deadline:
                raise JobFailedError(
                    f"{name}: timed out after {self.timeout:g}s waiting for {job.name} "
                    f"(step {last.step}/{last.total or '?'}); {self._left_behind(job)}"
                )
            if self.stop.is_set():
                raise Stopped(
                    f"{name}: stopped waiting for {job.name} (another job failed and --fail-fast is "
                    f"set); {self._left_behind(job)}"
                )
            self.sleep(interval)
            eta = remaining_seconds(time.monotonic() - started, last, first or 0)
            interval = next_poll_interval(interval, self.poll_cap, eta)

    def _left_behind(self, job: JobPlan) -> str:
        """What becomes of a job this run stops watching, and how to pick it up again."""
        if self.targets.in_process(job.target, job.project):
            return (
                "the local engine stops with this run, so the tuning job pauses at its last checkpoint: "
                "run `tunespec apply` again to resume it"
            )
        return "the tuning job keeps its place on the service: run `tunespec apply` again to attach to it"

    # -- evaluation --

    def _evaluate(self, client: TuningClient, job: JobPlan, result: JobResult) -> None:
        ev = job.spec.evaluation
        if ev is None or not ev.prompts:
            return
        t0 = time.monotonic()
        result.evaluation = evaluate(client, job.name, ev, temperature=job.spec.temperature)
        if ev.compare_base:
            base = job.spec.source_model or base_model_of(job.spec) or (result.model or {}).get("baseModel")
            if base:
                result.base_evaluation = evaluate(client, base, ev, temperature=job.spec.temperature)
        result.timings["eval_s"] = time.monotonic() - t0
        r = result.evaluation
        text = (
            f"{job.spec.name}: evaluation pass rate {r.pass_rate:.0%} over {len(r.prompts)} prompt(s) "
            f"(threshold {r.threshold:.0%})"
        )
        if result.base_evaluation:
            text += f"; base model {result.base_evaluation.pass_rate:.0%}"
        self.reporter.message(text)
        if self.env is not None and self.env.get("GITHUB_ACTIONS") == "true":
            for p in r.prompts:
                if p.passes < len(p.trials):
                    where = f"file={p.prompt.source or job.spec.path}"
                    if p.prompt.line:
                        where += f",line={p.prompt.line}"
                    problem = (
                        p.errors
                        or [a.message for t in p.trials for a in t.assertions if not a.passed]
                        or ["failed"]
                    )[0]
                    self.reporter.message(
                        f"::error {where},title=tunespec {job.spec.name}::"
                        f"{p.name}: pass rate {p.pass_rate:.0%}: {_escape(problem)}"
                    )

    # -- reports --

    def _write(self, job: JobPlan, result: JobResult) -> None:
        result.report = build_report(job, result, self.targets)
        try:
            result.reports = write_reports(
                result.report, job.spec.report.dir, job.spec.report.formats, env=self.env
            )
        except OSError as exc:
            self.reporter.message(f"{job.spec.name}: could not write reports to {job.spec.report.dir}: {exc}")
            if result.exit_code == EXIT_OK:
                result.exit_code = EXIT_SERVICE


def _no_such_model(client: TuningClient, job: JobPlan, exc: ApiError) -> ApiError:
    """The service has no such base (or source) model: name the spec line and what it does have."""
    spec = job.spec
    key = "source_model" if spec.source_model else "base_model"
    model = spec.source_model or base_model_of(spec)
    line = spec.lines.get(key)
    where = f"{spec.path}:{line}" if line else str(spec.path)
    try:
        names = [
            m["name"]
            for m in client.list_models()
            if any(x.startswith("createTuned") for x in m.get("supportedGenerationMethods") or ())
        ]
    except (TunespecError, KeyError, TypeError):
        names = []
    hint = (
        f"models it can tune: {', '.join(names)}" if names and key == "base_model"
        else "`tunespec list` shows its tuned models" if key == "source_model"
        else "check the name"
    )
    return ApiError(
        f"{where}: {key}: the {job.target} target has no model {model!r} to tune ({hint}). "
        f"The service said: {str(exc).split(' -> ')[0]}",
        http_status=exc.http_status,
        status=exc.status,
        method=exc.method,
        url=exc.url,
    )


def _escape(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _below(job: JobPlan, ev: EvalResult) -> TunespecError:
    from tunespec.errors import EvaluationBelowThreshold

    failing = [p.name for p in ev.prompts if p.pass_rate < 1.0]
    return EvaluationBelowThreshold(
        f"{job.spec.path}: {job.spec.name}: evaluation pass rate {ev.pass_rate:.0%} is below the threshold "
        f"{ev.threshold:.0%} (failing: {', '.join(failing[:5])}{' ...' if len(failing) > 5 else ''}); "
        "see the report for the outputs"
    )


def _failed(job: JobPlan, error: Mapping[str, Any] | None, model: Mapping[str, Any] | None) -> JobFailedError:
    if error is not None:
        code = error.get("code")
        what = "was cancelled" if code == 1 else "ended FAILED"
        message = error.get("message") or "(no message)"
    else:
        what, message = "ended FAILED", "the service gave no reason"
    return JobFailedError(
        f"{job.spec.name}: tuning job for {job.name} {what}: {message}; "
        "fix the cause and run `tunespec apply` again (it retries the job)"
    )


def build_report(job: JobPlan, result: JobResult, targets: Targets) -> dict[str, Any]:
    model = result.model or job.model or {}
    task = model.get("tuningTask") or {}
    try:
        target = targets.target(job.target, job.project).describe()
    except TunespecError:
        target = {"name": job.target, "url": "", "auth": ""}
    base = result.base_evaluation
    delta = (result.evaluation.pass_rate - base.pass_rate) if result.evaluation and base else None
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "kind": "tunespec.report",
        "tunespec_version": __version__,
        "generated_at": now_rfc3339(),
        "job": {"name": job.spec.name, "spec": str(job.spec.path), "display_name": job.spec.display_name},
        "fingerprint": job.fingerprint,
        "tuned_model": job.name,
        "base_model": model.get("baseModel") or base_model_of(job.spec),
        "source_model": job.spec.source_model,
        "tuning_method": job.spec.tuning_method,
        "target": target,
        "dialect": job.dialect,
        "action": result.action,
        "action_label": LABELS.get(result.action, result.action),
        "submitted": result.submitted,
        "attached": result.attached,
        "state": result.state or model.get("state"),
        "operation": result.operation,
        "examples": len(job.examples),
        "hyperparameters": {
            "requested": requested_hyperparameters(job.spec),
            "resolved": task.get("hyperparameters") or {},
        },
        "timings": {
            **{k: round(v, 3) for k, v in result.timings.items()},
            "create_time": model.get("createTime"),
            "start_time": task.get("startTime"),
            "complete_time": task.get("completeTime"),
        },
        "snapshots": task.get("snapshots") or [],
        "evaluation": result.evaluation.to_json() if result.evaluation else None,
        "base_evaluation": base.to_json() if base else None,
        "delta": delta,
        "pruned": result.pruned,
        "error": str(result.error) if result.error else None,
        "error_type": type(result.error).__name__ if result.error else None,
        "exit_code": result.exit_code,
    }


# ---- many jobs ----------------------------------------------------------------------------------------


def run_plan(
    plan: Plan,
    targets: Targets,
    reporter: Reporter,
    *,
    timeout: float | None = None,
    prune: bool = False,
    parallel: int = 1,
    fail_fast: bool = False,
    train: bool = True,
    env: Mapping[str, str] | None = None,
    poll_cap: float = 10.0,
) -> list[JobResult]:
    deadline = time.monotonic() + timeout if timeout else None
    stop = threading.Event()
    runner = Runner(
        targets,
        reporter,
        deadline=deadline,
        timeout=timeout,
        prune=prune,
        train=train,
        stop=stop,
        env=env,
        poll_cap=poll_cap,
    )
    results: dict[int, JobResult] = {}

    def one(index: int, job: JobPlan) -> None:
        if stop.is_set():
            skipped = JobResult(
                plan=job,
                action=job.action,
                exit_code=EXIT_SERVICE,
                error=Stopped(f"{job.spec.name}: not started (another job failed and --fail-fast is set)"),
            )
            skipped.report = build_report(job, skipped, targets)
            skipped.report["skipped"] = True
            results[index] = skipped
            return
        results[index] = runner.run(job)
        if fail_fast and results[index].exit_code != EXIT_OK:
            stop.set()

    try:
        if parallel <= 1 or len(plan.jobs) <= 1:
            for i, job in enumerate(plan.jobs):
                one(i, job)
        else:
            with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="tunespec-job") as pool:
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
        reporter.message(interrupted_message(plan, targets))
        raise
    finally:
        reporter.close()
    return [results[i] for i in sorted(results)]


def interrupted_message(plan: Plan, targets: Targets) -> str:
    """What an interrupted run leaves behind: jobs keep running on a service; the in-process engine
    stops with the run, so its jobs pause and resume on the next apply."""
    local = [targets.in_process(j.target, j.project) for j in plan.jobs]
    parts = []
    if any(local):
        parts.append(
            "the local engine stops with this run, so its tuning jobs pause at their last checkpoint; "
            "run `tunespec apply` again to resume them"
        )
    if not local or not all(local):
        parts.append(
            "tuning jobs already submitted "
            + ("to other services " if any(local) else "")
            + "keep their place on the service; run `tunespec apply` again to attach to them"
        )
    return "Interrupted: " + "; ".join(parts) + "."


def combined_junit_path(results: list[JobResult], plan: Plan) -> Path | None:
    dirs = [r.report_dir for r in results]
    if len(dirs) + len(plan.invalid) < 2 or not dirs:
        return None
    return (
        Path(os.path.commonpath([str(d) for d in dirs])) / "junit.xml"
        if len(set(dirs)) > 1
        else dirs[0].parent / "junit.xml"
    )


def apply_specs(
    specs: Any,
    *,
    target: str | None = None,
    project: str | None = None,
    timeout: float | None = None,
    prune: bool = False,
    progress: bool | None = None,
    parallel: int = 1,
    fail_fast: bool = False,
    train: bool = True,
    junit: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
    quiet: bool = False,
    targets: Targets | None = None,
) -> ApplyResult:
    """Apply job specs (paths, directories, globs or JobSpec values): tune what changed, evaluate, report.

    Returns an ApplyResult (`.exit_code`, `.jobs`, `.raise_for_errors()`); raises SpecError only when the
    specs cannot be planned at all (a path that matches nothing, two jobs with the same tuned model id).
    `train=False` evaluates existing models only (`tunespec eval`).
    """
    env = dict(os.environ if env is None else env)
    reporter = Reporter(stream, progress=progress, env=env, quiet=quiet)
    with (
        nullcontext(targets)  # the caller's: left open
        if targets is not None
        else Targets(env=env, on_retry=lambda m: reporter.message(f"retrying: {m}"))
    ) as targets:
        plan = make_plan(specs, targets, target=target, project=project)
        for invalid in plan.invalid:
            reporter.message(f"invalid: {invalid.error}")
        for job in plan.jobs:
            if job.action == ERROR or (not train and job.action != NOOP):
                continue  # eval of a job without an ACTIVE model: the job's error says what to do
            reporter.message(f"{job.spec.name}: {job.label} -> {job.name}")
        results = run_plan(
            plan,
            targets,
            reporter,
            timeout=timeout,
            prune=prune,
            parallel=parallel,
            fail_fast=fail_fast,
            train=train,
            env=env,
        )
    outcome = ApplyResult(plan, results)
    path = Path(junit) if junit else combined_junit_path(results, plan)
    if path is not None:
        outcome.junit = write_combined_junit(
            [r.report for r in results], [(str(i.path), i.error.problems) for i in plan.invalid], path
        )
    return outcome


def summary_table(result: ApplyResult) -> str:
    """One line per job: job, action, state, pass rate, report path."""
    rows = [("JOB", "ACTION", "STATE", "PASS RATE", "EXIT", "REPORT")]
    for j in result.jobs:
        rate = "-" if j.pass_rate is None else f"{j.pass_rate:.0%}"
        report = str(j.reports.get("markdown") or j.reports.get("json") or j.report_dir)
        rows.append(
            (
                j.name,
                LABELS.get(j.action, j.action),
                j.state or "-",
                rate,
                str(j.exit_code),
                shown_path(report),
            )
        )
    for i in result.plan.invalid:
        rows.append((i.name, "invalid", "-", "-", str(EXIT_INVALID), shown_path(str(i.path))))
    return format_table(rows)


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """ROWS as left-aligned columns two spaces apart, the first row the header."""
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def shown_path(path: str | os.PathLike[str]) -> str:
    """PATH relative to the working directory when it lies below it, else absolute (never `../..`)."""
    absolute = os.path.abspath(path)
    try:
        relative = os.path.relpath(absolute)
    except ValueError:  # another drive
        return absolute
    return absolute if relative == os.pardir or relative.startswith(os.pardir + os.sep) else relative


__all__ = [
    "CREATE",
    "REPLACE",
    "ApplyResult",
    "JobResult",
    "Progress",
    "Reporter",
    "apply_specs",
    "next_poll_interval",
    "summary_table",
    "worst_exit_code",
]


keep_callable(__name__, apply_specs)
