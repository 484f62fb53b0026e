"""The plan: what `apply` would do for each job, asked of the service itself.

`make_plan` loads the specs and their datasets, gives each job its identity (`tunespec.identity`) and
asks each job's target what it holds for that id; the action follows from the answer. Nothing is
stored locally: the service holds the state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunespec.errors import EXIT_INVALID, EXIT_SERVICE, Problem, SpecError, TunespecError, worst_exit_code
from tunespec.identity import fingerprint, is_model_of_job, tuned_model_id
from tunespec.resources import ACTIVE, FAILED, TunedModel
from tunespec.service import TuningService
from tunespec.spec import JobSpec
from tunespec.targets import Targets, job_dialect, target_name
from tunespec.validate import problem_json

PLAN_SCHEMA_VERSION = 1

CREATE, NOOP, WAIT, RECREATE, REPLACE, ERROR = "create", "noop", "wait", "recreate", "replace", "error"
LABELS = {
    CREATE: "create",
    NOOP: "up to date",
    WAIT: "in progress",
    RECREATE: "failed (will recreate)",
    REPLACE: "changed (new model)",
    ERROR: "error",
}

Listings = dict[TuningService, list[TunedModel]]  # each service's tuned models, listed once per run


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
    model: TunedModel | None = None  # what the service holds for this id, if anything
    superseded: list[str] = field(default_factory=list)  # earlier models of the job
    error: TunespecError | None = None
    warnings: list[Problem] = field(default_factory=list)
    held_out: list[Any] = field(default_factory=list)  # `dataset.validation_split`'s examples
    sharing: list[Any] = field(default_factory=list)  # sharing.Change: permissions apply would change

    @property
    def name(self) -> str:
        return f"tunedModels/{self.model_id}"

    @property
    def label(self) -> str:
        from tunespec.sharing import summary

        return "; ".join(filter(None, (LABELS[self.action], summary(self.sharing))))

    @property
    def pending(self) -> bool:
        return self.action != NOOP or bool(self.sharing)

    @property
    def state(self) -> str:
        return (self.model.state if self.model else "") or ("-" if self.action != ERROR else "ERROR")

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.spec.name,
            "spec": str(self.spec.path),
            "action": self.action,
            "label": self.label,
            "tuned_model": self.name,
            "fingerprint": self.fingerprint,
            "state": self.model.state if self.model else None,
            "target": self.target,
            "dialect": self.dialect,
            "examples": len(self.examples),
            "superseded": list(self.superseded),
            "error": str(self.error) if self.error else None,
            "sharing": [c.to_json() for c in self.sharing],
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
    target = target_name(spec.target, target, env)
    dialect = job_dialect(spec, target, project, env)
    fp = fingerprint(spec, examples, dialect)
    return JobPlan(
        spec=spec,
        examples=examples,
        fingerprint=fp,
        model_id=tuned_model_id(spec.name, fp),
        target=target,
        dialect=dialect,
        project=project or spec.project,
        warnings=list(getattr(dataset, "warnings", []) or []),
        held_out=list(getattr(dataset, "held_out", []) or []),
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


def refresh(job: JobPlan, targets: Targets, listings: Listings | None = None) -> JobPlan:
    """Ask the job's target what exists and set the action.

    `listings` keeps each service's tuned models, so jobs on one target share one list call.
    """
    listings = {} if listings is None else listings
    try:
        service = targets.service(job.target, job.dialect, job.project)
        job.model = service.find_tuned_model(job.name)
        if service not in listings:
            listings[service] = service.list_tuned_models()
        job.superseded = [
            m.name for m in listings[service] if m.name != job.name and is_model_of_job(m.name, job.spec.name)
        ]
        job.sharing = plan_sharing(job, targets)
    except TunespecError as exc:
        job.action, job.error = ERROR, exc
        return job
    if job.model is None:
        job.action = REPLACE if job.superseded else CREATE
    elif job.model.state == ACTIVE:
        job.action = NOOP
    elif job.model.state == FAILED:
        job.action = RECREATE
    else:
        job.action = WAIT
    job.error = None
    return job


def plan_sharing(job: JobPlan, targets: Targets) -> list[Any]:
    """The permission changes the job's `sharing:` section asks of its model (Generative Language
    targets; the model's current permissions when it exists and stays, none yet otherwise)."""
    from tunespec import sharing

    if job.spec.sharing is None or job.dialect not in ("v1beta3", "v1beta"):
        return []
    client = targets.client(job.target, job.dialect, job.project)
    stays = job.model is not None and job.model.state != FAILED
    return sharing.plan(client, job.name, job.spec.sharing, exists=stays)


def make_plan(
    items: Any,
    targets: Targets,
    *,
    target: str | None = None,
    project: str | None = None,
    env: Mapping[str, str] | None = None,
    listings: Listings | None = None,
) -> Plan:
    """Load, identify and refresh the jobs; `listings` (filled here) keeps each service's tuned models."""
    loaded, invalid = load_jobs(items, env)
    jobs = [identify(spec, data, target=target, project=project, env=targets.env) for spec, data in loaded]
    check_unique_ids(jobs)
    listings = {} if listings is None else listings
    for job in jobs:
        refresh(job, targets, listings)
    return Plan(jobs, invalid)
