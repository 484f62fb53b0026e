"""Job identity and the plan: what `apply` would do for each job, asked of the service itself.

A job's tuned model id is its name plus a 10-character fingerprint (lowercase base32 of a SHA-256) of
everything that changes the trained result: base or source model, tuning method, hyperparameters,
the examples and the API dialect. Nothing else is stored anywhere: the service holds the state.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunespec.client import TuningClient
from tunespec.errors import (
    EXIT_EVAL_BELOW_THRESHOLD,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_SERVICE,
    Problem,
    SpecError,
    TunespecError,
)
from tunespec.spec import DEFAULT_BASE_MODEL, JobSpec
from tunespec.targets import Targets, dialect_for, target_name
from tunespec.validate import problem_json

FINGERPRINT_LEN = 10
MAX_ID_LEN = 40
PLAN_SCHEMA_VERSION = 1
SEVERITY = {EXIT_SERVICE: 3, EXIT_INVALID: 2, EXIT_EVAL_BELOW_THRESHOLD: 1, EXIT_OK: 0}

CREATE, NOOP, WAIT, RECREATE, REPLACE, ERROR = "create", "noop", "wait", "recreate", "replace", "error"
LABELS = {
    CREATE: "create",
    NOOP: "up to date",
    WAIT: "in progress",
    RECREATE: "failed (will recreate)",
    REPLACE: "changed (new model)",
    ERROR: "error",
}


def worst_exit_code(codes: list[int]) -> int:
    """A run's exit code: 1 (service / job failed) over 2 (invalid) over 3 (below threshold) over 0."""
    return max(codes, key=lambda c: SEVERITY.get(c, 3), default=EXIT_OK)


def base_model_of(spec: JobSpec) -> str | None:
    """The base model the job tunes; a JobSpec built in code may leave it to the default."""
    return spec.base_model or (None if spec.source_model else DEFAULT_BASE_MODEL)


def requested_hyperparameters(spec: JobSpec) -> dict[str, Any]:
    """The hyperparameters the spec sets (snake_case), without those left to the service."""
    return {k: v for k, v in asdict(spec.hyperparameters).items() if v is not None}


def fingerprint(spec: JobSpec, examples: Iterable[Any], dialect: str) -> str:
    """10 lowercase base32 characters identifying the trained result of `spec` on `examples`."""
    hyper = requested_hyperparameters(spec)
    doc = {
        "v": 1,
        "dialect": dialect,
        "base_model": base_model_of(spec),
        "source_model": spec.source_model,
        "tuning_method": spec.tuning_method,
        "hyperparameters": hyper,
        "examples": [[e.text_input, e.output] for e in examples],
    }
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).digest()
    return base64.b32encode(digest).decode().lower()[:FINGERPRINT_LEN]


def job_slug(name: str) -> str:
    """The job name as the leading part of a tuned model id (`[a-z][a-z0-9-]*`, at most 29 chars)."""
    slug = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", name.lower())).strip("-")
    if not slug or not slug[0].isalpha():
        slug = f"job-{slug}".rstrip("-")
    return slug[: MAX_ID_LEN - FINGERPRINT_LEN - 1].rstrip("-")


def tuned_model_id(name: str, fp: str) -> str:
    return f"{job_slug(name)}-{fp}"


def is_model_of_job(model_name: str, name: str) -> bool:
    """Whether `tunedModels/...` is one of this job's models (any fingerprint)."""
    return (
        re.fullmatch(rf"tunedModels/{re.escape(job_slug(name))}-[a-z2-7]{{{FINGERPRINT_LEN}}}", model_name)
        is not None
    )


@dataclass
class JobPlan:
    """One job: its identity, the model the service holds for it, and the action apply would take."""

    spec: JobSpec
    examples: list[Any]
    fingerprint: str
    model_id: str
    target: str
    dialect: str
    project: str | None
    action: str = CREATE
    model: dict[str, Any] | None = None  # the service's TunedModel for this id, if any
    superseded: list[str] = field(default_factory=list)  # earlier models of the job
    error: TunespecError | None = None
    warnings: list[Problem] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"tunedModels/{self.model_id}"

    @property
    def label(self) -> str:
        return LABELS[self.action]

    @property
    def pending(self) -> bool:
        return self.action != NOOP

    @property
    def state(self) -> str:
        return (self.model or {}).get("state", "") or ("-" if self.action != ERROR else "ERROR")

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.spec.name,
            "spec": str(self.spec.path),
            "action": self.action,
            "label": self.label,
            "tuned_model": self.name,
            "fingerprint": self.fingerprint,
            "state": (self.model or {}).get("state"),
            "target": self.target,
            "dialect": self.dialect,
            "examples": len(self.examples),
            "superseded": list(self.superseded),
            "error": str(self.error) if self.error else None,
        }


@dataclass
class InvalidJob:
    """A spec (or its dataset) that failed to load: reported, never applied."""

    path: Path
    error: SpecError

    @property
    def name(self) -> str:
        return self.path.stem

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": str(self.path),
            "problems": [problem_json(p) for p in self.error.problems],
        }


@dataclass
class Plan:
    jobs: list[JobPlan]
    invalid: list[InvalidJob] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return any(j.pending for j in self.jobs)

    @property
    def exit_code(self) -> int:
        """1 if the service failed for a job, else 2 if a spec was invalid, else 0."""
        failed = [EXIT_SERVICE for j in self.jobs if j.error]
        return worst_exit_code(failed + [EXIT_INVALID] * len(self.invalid))

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": PLAN_SCHEMA_VERSION,
            "kind": "tunespec.plan",
            "changes": self.has_changes,
            "jobs": [j.to_json() for j in self.jobs],
            "invalid": [i.to_json() for i in self.invalid],
        }


def load_jobs(
    items: Iterable[str | Path | JobSpec] | str | Path | JobSpec, env: Mapping[str, str] | None = None
) -> tuple[list[tuple[JobSpec, Any]], list[InvalidJob]]:
    """Load specs (files, directories, globs or JobSpec values) and their datasets, one file at a time.

    Returns the loaded (spec, DatasetResult) pairs and the invalid files; raises SpecError when a path
    matches nothing or two specs would share a tuned model id.
    """
    from tunespec.datasets import load_examples
    from tunespec.spec import expand_spec_paths, load_spec

    if isinstance(items, (str, Path, JobSpec)):
        items = [items]
    specs: list[JobSpec] = []
    invalid: list[InvalidJob] = []
    paths: list[str | Path] = []
    for item in items:
        if isinstance(item, JobSpec):
            specs.append(item)
        else:
            paths.append(item)
    if paths:
        for path in expand_spec_paths(paths):
            try:
                specs.append(load_spec(Path(path), env=env))
            except SpecError as exc:
                invalid.append(InvalidJob(Path(path), exc))
    loaded = []
    for spec in specs:
        try:
            loaded.append((spec, load_examples(spec)))
        except SpecError as exc:
            invalid.append(InvalidJob(spec.path, exc))
    return loaded, invalid


def identify(
    spec: JobSpec,
    dataset: Any,
    *,
    target: str | None = None,
    project: str | None = None,
    env: Mapping[str, str] | None = None,
) -> JobPlan:
    """The job's identity and target, before asking the service anything."""
    examples = list(dataset.examples)
    dialect = dialect_for(spec.api_version, spec.base_model)
    fp = fingerprint(spec, examples, dialect)
    return JobPlan(
        spec=spec,
        examples=examples,
        fingerprint=fp,
        model_id=tuned_model_id(spec.name, fp),
        target=target_name(spec.target, target, env),
        dialect=dialect,
        project=project or spec.project,
        warnings=list(getattr(dataset, "warnings", []) or []),
    )


def check_unique_ids(jobs: list[JobPlan]) -> None:
    """Before anything starts: no two jobs may share a tuned model (on one target) or a report dir."""
    seen: dict[str, JobPlan] = {}
    problems = []
    for job in jobs:
        key = f"{job.target} {job.model_id}"
        if key in seen:
            other = seen[key]
            problems.append(
                Problem(
                    str(job.spec.path),
                    f"job {job.spec.name!r} would produce the same tuned model "
                    f"{job.name} as {other.spec.path}",
                    line=job.spec.lines.get("name"),
                    key_path="name",
                    hint="give one of the jobs another name",
                )
            )
        else:
            seen[key] = job
    dirs: dict[Path, JobPlan] = {}
    for job in jobs:
        other = dirs.setdefault(job.spec.report.dir, job)
        if other is not job:
            problems.append(
                Problem(
                    str(job.spec.path),
                    f"job {job.spec.name!r} would write its reports to {job.spec.report.dir}, "
                    f"like {other.spec.name!r} ({other.spec.path})",
                    line=job.spec.lines.get("report.dir") or job.spec.lines.get("name"),
                    key_path="report.dir",
                    hint="give each job its own report dir; {name} in report.dir stands for the job's name",
                )
            )
    if problems:
        raise SpecError(problems)


def refresh(
    job: JobPlan, targets: Targets, listings: dict[TuningClient, list[dict[str, Any]]] | None = None
) -> JobPlan:
    """Ask the job's target what exists and set the action.

    `listings` keeps each client's tuned models, so jobs on one target share one list call.
    """
    listings = {} if listings is None else listings
    try:
        client = targets.client(job.target, job.dialect, job.project)
        job.model = client.find_tuned_model(job.name)
        if client not in listings:
            listings[client] = client.list_tuned_models()
        job.superseded = [
            m["name"]
            for m in listings[client]
            if m.get("name") != job.name and is_model_of_job(m.get("name", ""), job.spec.name)
        ]
    except TunespecError as exc:
        job.action, job.error = ERROR, exc
        return job
    state = (job.model or {}).get("state")
    if job.model is None:
        job.action = REPLACE if job.superseded else CREATE
    elif state == "ACTIVE":
        job.action = NOOP
    elif state == "FAILED":
        job.action = RECREATE
    else:
        job.action = WAIT
    job.error = None
    return job


def make_plan(
    items: Any,
    targets: Targets,
    *,
    target: str | None = None,
    project: str | None = None,
    env: Mapping[str, str] | None = None,
    listings: dict[TuningClient, list[dict[str, Any]]] | None = None,
) -> Plan:
    """Load, identify and refresh the jobs; `listings` (filled here) keeps each client's tuned models."""
    loaded, invalid = load_jobs(items, env)
    jobs = [identify(spec, data, target=target, project=project, env=targets.env) for spec, data in loaded]
    check_unique_ids(jobs)
    listings = {} if listings is None else listings
    for job in jobs:
        refresh(job, targets, listings)
    return Plan(jobs, invalid)


def plan_specs(
    specs: Any,
    *,
    target: str | None = None,
    project: str | None = None,
    env: Mapping[str, str] | None = None,
    targets: Targets | None = None,
) -> Plan:
    """Plan job specs (paths, directories, globs or JobSpec values) against their targets; changes nothing.

    `target` overrides every spec's target (like `--target`); `project` is the project (Google's quota
    project, the local engine's scope).
    """
    with nullcontext(targets) if targets is not None else Targets(env=env) as opened:
        return make_plan(specs, opened, target=target, project=project)


def keep_callable(module: str, call: Callable[..., Any]) -> None:
    """Importing `tunespec.plan` or `tunespec.apply` puts the module where the `tunespec.plan(...)` /
    `tunespec.apply(...)` library call was: calling the module keeps making that call."""

    class CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return call(*args, **kwargs)

    sys.modules[module].__class__ = CallableModule


keep_callable(__name__, plan_specs)
