"""Vertex AI tuning jobs as a `service.TuningService`: Google's live tuning service, or the engine's
Vertex dialect.

A job's Vertex resource is `projects/{p}/locations/{l}/tuningJobs/{id}`, an id the service picks; the
runner keeps naming the job `tunedModels/<name>-<fingerprint>`, and this service finds its tuning job
by the labels that carry that name and fingerprint (the newest one, when a failed job was tuned
again). Job states map onto the runner's three: queued, pending, running, cancelling -> CREATING;
succeeded -> ACTIVE; failed, cancelled, expired -> FAILED; `raw_state` keeps Vertex's word. The
tuned model answers through its endpoint's generateContent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tunespec.client import TuningClient
from tunespec.errors import ApiError
from tunespec.request_vertex import (
    ADAPTER_ENUM,
    FINGERPRINT_LABEL,
    JOB_LABEL,
    labels_for,
    model_table,
)
from tunespec.resources import ACTIVE, CANCELLED_CODE, CREATING, FAILED, Operation, Status, TunedModel
from tunespec.staging import CloudStorage

API_VERSION = "v1"
RUNNING_STATES = {
    "JOB_STATE_QUEUED",
    "JOB_STATE_PENDING",
    "JOB_STATE_RUNNING",
    "JOB_STATE_CANCELLING",
    "JOB_STATE_PAUSED",
    "JOB_STATE_UPDATING",
    "JOB_STATE_UNSPECIFIED",
}
ENDED_BADLY = {"JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}


def state_of(raw: Mapping[str, Any]) -> str:
    """CREATING / ACTIVE / FAILED from a TuningJob; a succeeded job whose model is gone counts as FAILED."""
    state = str(raw.get("state") or "JOB_STATE_UNSPECIFIED")
    if state == "JOB_STATE_SUCCEEDED":
        return ACTIVE if (raw.get("tunedModel") or {}).get("endpoint") else FAILED
    return FAILED if state in ENDED_BADLY else CREATING


def _status(raw: Mapping[str, Any]) -> Status | None:
    state = raw.get("state")
    error = raw.get("error")
    if isinstance(error, Mapping) and (error.get("code") or error.get("message")):
        return Status(code=error.get("code"), message=str(error.get("message") or ""))
    if state == "JOB_STATE_CANCELLED":
        return Status(code=CANCELLED_CODE, message="The tuning job was cancelled.")
    if state == "JOB_STATE_EXPIRED":
        return Status(code=4, message="The tuning job expired before it ran.")
    if state == "JOB_STATE_SUCCEEDED" and state_of(raw) == FAILED:
        return Status(code=5, message="The tuning job succeeded, but its tuned model was deleted.")
    if state == "JOB_STATE_FAILED":
        return Status(code=13, message="The tuning job failed.")
    return None


def logical_name(raw: Mapping[str, Any]) -> str:
    """`tunedModels/<name>-<fingerprint>` for a job tunespec labelled, else the job's own name."""
    labels = raw.get("labels") or {}
    if labels.get(JOB_LABEL) and labels.get(FINGERPRINT_LABEL):
        return f"tunedModels/{labels[JOB_LABEL]}-{labels[FINGERPRINT_LABEL]}"
    return str(raw.get("name") or "")


def data_stats(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    return (raw.get("tuningDataStats") or {}).get("supervisedTuningDataStats") or {}


def _int(value: Any) -> int:
    try:
        return int(value)  # int64 fields arrive as JSON strings
    except (TypeError, ValueError):
        return 0


def hyperparameters_of(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The job's hyperparameters in the runner's snake_case (adapter size as a number)."""
    hp = (raw.get("supervisedTuningSpec") or {}).get("hyperParameters") or {}
    out: dict[str, Any] = {}
    if "epochCount" in hp:
        out["epoch_count"] = _int(hp["epochCount"])
    if "learningRateMultiplier" in hp:
        out["learning_rate_multiplier"] = hp["learningRateMultiplier"]
    if hp.get("adapterSize") in ADAPTER_ENUM:
        out["adapter_size"] = ADAPTER_ENUM[hp["adapterSize"]]
    return out


def parse_tuning_job(raw: Mapping[str, Any]) -> TunedModel:
    """A Vertex `TuningJob` as the runner's TunedModel (its name: the job's tunespec name)."""
    return TunedModel(
        name=logical_name(raw),
        state=state_of(raw),
        base_model=raw.get("baseModel"),
        display_name=raw.get("tunedModelDisplayName"),
        create_time=raw.get("createTime"),
        start_time=raw.get("startTime"),
        complete_time=raw.get("endTime"),
        hyperparameters=hyperparameters_of(raw),
        error=_status(raw) if state_of(raw) == FAILED else None,
        raw_state=str(raw.get("state") or ""),
        raw=raw,
        data_stats=dict(data_stats(raw)),
    )


def job_operation(raw: Mapping[str, Any]) -> Operation:
    """A TuningJob read as the runner's Operation: done once the job has ended."""
    model = parse_tuning_job(raw)
    return Operation(
        name=str(raw.get("name") or ""),
        done=model.state != CREATING,
        error=model.error,
        tuned_model=model.name,
        total_steps=_int(data_stats(raw).get("tuningStepCount")),
        raw=raw,
    )


def _label_filter(tuned_model: str) -> str:
    labels = labels_for(tuned_model.removeprefix("tunedModels/"))
    return " AND ".join(f'labels.{k}="{v}"' for k, v in labels.items())


class VertexService:
    """Vertex AI tuning jobs of one project and region, through one client; data staged in Cloud Storage."""

    def __init__(
        self,
        client: TuningClient,
        project: str,
        location: str,
        storage: CloudStorage,
        *,
        notify: Callable[[str], None] | None = None,
    ):
        self.client = client
        self.project = project
        self.location = location
        self.storage = storage
        self.notify = notify or (lambda _message: None)
        self.dialect = f"vertex:{project}/{location}"
        self.parent = f"projects/{project}/locations/{location}"

    @property
    def shown_url(self) -> str:
        return f"{self.client.shown_url}/{API_VERSION}/{self.parent}"

    # ---- finding a job ----------------------------------------------------------------------------

    def _list(self, filter: str | None = None) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = []
        token = None
        while True:
            page = self.client.request(
                "GET",
                f"{API_VERSION}/{self.parent}/tuningJobs",
                params={"pageSize": 100, "filter": filter, "pageToken": token},
            )
            jobs += page.get("tuningJobs") or []
            token = page.get("nextPageToken")
            if not token:
                return jobs

    def _latest(self, tuned_model: str) -> dict[str, Any] | None:
        """The newest tuning job labelled with `tuned_model`'s name and fingerprint (running ones first)."""
        wanted = tuned_model if tuned_model.startswith("tunedModels/") else f"tunedModels/{tuned_model}"
        jobs = [j for j in self._list(_label_filter(wanted)) if logical_name(j) == wanted]
        if not jobs:
            return None
        jobs.sort(key=lambda j: (state_of(j) == CREATING, str(j.get("createTime") or "")))
        return jobs[-1]

    def _job(self, name: str) -> dict[str, Any]:
        if name.startswith("projects/"):
            return self.client.request("GET", f"{API_VERSION}/{name}")
        raw = self._latest(name)
        if raw is None:
            raise ApiError(
                f"no Vertex tuning job in {self.parent} is labelled {_label_filter(name)} -> "
                "`tunespec list` shows the jobs this target holds",
                http_status=404,
                status="NOT_FOUND",
            )
        return raw

    def find_tuned_model(self, name: str) -> TunedModel | None:
        raw = self._latest(name)
        return None if raw is None else parse_tuning_job(raw)

    def get_tuned_model(self, name: str) -> TunedModel:
        return parse_tuning_job(self._job(name))

    def list_tuned_models(self) -> list[TunedModel]:
        return [parse_tuning_job(j) for j in self._list()]

    # ---- creating and watching ----------------------------------------------------------------------

    def create_tuned_model(self, body: dict[str, Any], tuned_model_id: str) -> Operation:
        """Stage the body's files (those not there yet), then create the tuning job."""
        for message in getattr(body, "warnings", ()):
            self.notify(f"warning: {message}")
        for uri, data in (getattr(body, "files", None) or {}).items():
            if self.storage.stage(uri, data):
                self.notify(f"note: staged {len(data):,} bytes of training data as {uri}")
            else:
                self.notify(f"note: training data already staged as {uri}")
        job = {**body, "labels": {**(body.get("labels") or {}), **labels_for(tuned_model_id)}}
        raw = self.client.request("POST", f"{API_VERSION}/{self.parent}/tuningJobs", body=job)
        return job_operation(raw)

    def get_operation(self, name: str) -> Operation:
        """The job as an operation; each state it reaches is told once (Vertex reports no step counts)."""
        raw = self.client.request("GET", f"{API_VERSION}/{name}")
        self.notify(f"note: {logical_name(raw).removeprefix('tunedModels/')}: {name} is {raw.get('state')}")
        return job_operation(raw)

    def find_operation(self, tuned_model: str) -> Operation | None:
        raw = self._latest(tuned_model)
        return None if raw is None else job_operation(raw)

    def delete_tuned_model(self, name: str) -> None:
        """Cancel a running job; delete a finished job's tuned model (Vertex keeps the job itself)."""
        raw = self._job(name)
        if state_of(raw) == CREATING:
            self.client.request("POST", f"{API_VERSION}/{raw['name']}:cancel", body={})
            return
        model = (raw.get("tunedModel") or {}).get("model")
        if raw.get("state") == "JOB_STATE_SUCCEEDED" and model:
            self.client.request("DELETE", f"{API_VERSION}/{model}")

    def tunable_models(self) -> list[str]:
        """The base models tunespec's table says Vertex tunes (Vertex has no list call for them)."""
        return list(model_table()["models"])

    # ---- generation -----------------------------------------------------------------------------------

    def _generation_path(self, model: str) -> str:
        if model.startswith("projects/"):
            return model
        if model.startswith("tunedModels/"):
            raw = self._job(model)
            endpoint = (raw.get("tunedModel") or {}).get("endpoint")
            if not endpoint:
                raise ApiError(
                    f"{model}: its tuning job {raw.get('name')} has no endpoint (state "
                    f"{raw.get('state')}); wait until it has SUCCEEDED",
                    http_status=400,
                )
            return endpoint
        return f"{self.parent}/publishers/google/models/{model.removeprefix('models/')}"

    def generate(self, model: str, prompt: str, **options: Any) -> list[str]:
        """Candidates from a tuned model's endpoint (or a base model) via generateContent."""
        return self.client.generate(self._generation_path(model), prompt, **options)
