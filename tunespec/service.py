"""A tuning service as the runner sees it: jobs in, parsed resources (`tunespec.resources`) out.

`TuningService` is the interface every dialect implements; `GenerativeLanguageService` speaks
Google's Generative Language API (v1beta3 PaLM and v1beta Gemini dialects), which the local engine
serves too, over one `TuningClient`. The dialect's JSON is parsed here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from tunespec.client import TuningClient
from tunespec.resources import Operation, Snapshot, Status, TunedModel


class TuningService(Protocol):
    """What the runner, `plan`, `status`, `list` and `delete` ask of a service."""

    dialect: str

    @property
    def shown_url(self) -> str: ...

    def find_tuned_model(self, name: str) -> TunedModel | None: ...

    def get_tuned_model(self, name: str) -> TunedModel: ...

    def list_tuned_models(self) -> list[TunedModel]: ...

    def create_tuned_model(self, body: dict[str, Any], tuned_model_id: str) -> Operation: ...

    def get_operation(self, name: str) -> Operation: ...

    def find_operation(self, tuned_model: str) -> Operation | None: ...

    def delete_tuned_model(self, name: str) -> None: ...

    def tunable_models(self) -> list[str]: ...

    def generate(self, model: str, prompt: str, **options: Any) -> list[str]: ...


def _status(raw: Any) -> Status | None:
    if not isinstance(raw, Mapping):
        return None
    return Status(code=raw.get("code"), message=str(raw.get("message") or ""))


def _snapshots(raw: Any) -> tuple[Snapshot, ...]:
    return tuple(
        Snapshot(
            step=int(s.get("step") or 0), epoch=int(s.get("epoch") or 0), mean_loss=s.get("meanLoss"), raw=s
        )
        for s in raw or ()
        if isinstance(s, Mapping)
    )


def parse_tuned_model(raw: Mapping[str, Any]) -> TunedModel:
    """A Generative Language `TunedModel` (states are already CREATING / ACTIVE / FAILED)."""
    task = raw.get("tuningTask") or {}
    state = str(raw.get("state") or "")
    return TunedModel(
        name=str(raw.get("name") or ""),
        state=state,
        base_model=raw.get("baseModel"),
        display_name=raw.get("displayName"),
        create_time=raw.get("createTime"),
        start_time=task.get("startTime"),
        complete_time=task.get("completeTime"),
        hyperparameters=dict(task.get("hyperparameters") or {}),
        snapshots=_snapshots(task.get("snapshots")),
        raw_state=state,
        raw=raw,
    )


def parse_operation(raw: Mapping[str, Any]) -> Operation:
    """A google.longrunning `Operation` whose metadata is a CreateTunedModelMetadata."""
    meta = raw.get("metadata") or {}
    return Operation(
        name=str(raw.get("name") or ""),
        done=bool(raw.get("done")),
        error=_status(raw.get("error")),
        tuned_model=meta.get("tunedModel"),
        total_steps=int(meta.get("totalSteps") or 0),
        completed_steps=int(meta.get("completedSteps") or 0),
        completed_percent=float(meta.get("completedPercent") or 0.0),
        snapshots=_snapshots(meta.get("snapshots")),
        raw=raw,
        stage=str(meta.get("stage") or ""),  # the engine's; Google's service reports none
    )


class GenerativeLanguageService:
    """Google's Generative Language tuning API (or the local engine) through one client."""

    def __init__(self, client: TuningClient):
        self.client = client
        self.dialect = client.dialect

    @property
    def shown_url(self) -> str:
        return self.client.shown_url

    def find_tuned_model(self, name: str) -> TunedModel | None:
        raw = self.client.find_tuned_model(name)
        return None if raw is None else parse_tuned_model(raw)

    def get_tuned_model(self, name: str) -> TunedModel:
        return parse_tuned_model(self.client.get_tuned_model(name))

    def list_tuned_models(self) -> list[TunedModel]:
        return [parse_tuned_model(m) for m in self.client.list_tuned_models()]

    def create_tuned_model(self, body: dict[str, Any], tuned_model_id: str) -> Operation:
        return parse_operation(self.client.create_tuned_model(body, tuned_model_id))

    def get_operation(self, name: str) -> Operation:
        return parse_operation(self.client.get_operation(name))

    def find_operation(self, tuned_model: str) -> Operation | None:
        raw = self.client.find_operation(tuned_model)
        return None if raw is None else parse_operation(raw)

    def delete_tuned_model(self, name: str) -> None:
        self.client.delete_tuned_model(name)

    def tunable_models(self) -> list[str]:
        """Names of the base models the service can tune."""
        return [
            m["name"]
            for m in self.client.list_models()
            if any(x.startswith("createTuned") for x in m.get("supportedGenerationMethods") or ())
        ]

    def generate(self, model: str, prompt: str, **options: Any) -> list[str]:
        return self.client.generate(model, prompt, **options)
