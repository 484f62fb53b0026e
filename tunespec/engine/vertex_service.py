"""Vertex AI tuning jobs on the engine: the same store, worker and models as the Generative Language
dialect, answered as Vertex's `TuningJob`s.

A tuning job reads its `contents` JSONL from Cloud Storage (an emulator via $STORAGE_EMULATOR_HOST),
becomes one of the engine's tuned models (trained, checkpointed and recovered like any other) and is
remembered in the `vertex_jobs` table beside it: its Vertex name, labels, dataset URIs and the
numeric ids of its tuned model and endpoint. Vertex's tunable model names are served like Google's
Gemini names, by the model behind the engine's aliases; the engine's own model names work too.
"""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunespec.engine import paging
from tunespec.engine.service import Ctx, Engine
from tunespec.engine.wire import ApiException, invalid, now_ns, rfc3339

GEMINI_ALIAS = "models/gemini-1.5-flash-001-tuning"  # the engine's Gemini name that tunable names map to
MAX_DATASET_BYTES = 256 * 1024 * 1024
LABEL_RE = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE_RE = re.compile(r"[a-z0-9_-]{0,63}")
ADAPTER_SIZES = (
    "ADAPTER_SIZE_ONE",
    "ADAPTER_SIZE_TWO",
    "ADAPTER_SIZE_FOUR",
    "ADAPTER_SIZE_EIGHT",
    "ADAPTER_SIZE_SIXTEEN",
    "ADAPTER_SIZE_THIRTY_TWO",
)
LORA_RANKS = dict(zip(ADAPTER_SIZES, (1, 2, 4, 8, 16, 32), strict=True))  # adapter_size: the adapter's rank
FILTER_TERM = re.compile(
    r'\s*(labels\.([a-z][a-z0-9_-]*)\s*(=|:)\s*("([^"]*)"|\*|[a-z0-9_-]+)|state\s*=\s*"?([A-Z_]+)"?)\s*'
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vertex_jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    project TEXT NOT NULL,
    location TEXT NOT NULL,
    model_id TEXT NOT NULL,
    base_model TEXT NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    labels TEXT NOT NULL DEFAULT '{}',
    training_uri TEXT NOT NULL,
    validation_uri TEXT,
    hyperparameters TEXT NOT NULL DEFAULT '{}',
    example_count INTEGER NOT NULL,
    character_count INTEGER NOT NULL,
    model_number TEXT NOT NULL,
    endpoint_number TEXT NOT NULL,
    model_deleted INTEGER NOT NULL DEFAULT 0,
    create_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS vertex_jobs_parent ON vertex_jobs(project, location, seq);
"""


def _number() -> str:
    """A resource number the way Vertex writes them (19 digits)."""
    return str(random.randrange(10**18, 10**19))


@dataclass(frozen=True)
class Dataset:
    examples: list[tuple[str, str]]
    characters: int


def parse_contents_jsonl(uri: str, data: bytes) -> Dataset:
    """A supervised tuning file: one `{"systemInstruction"?, "contents": [user turn, model turn]}` a line.

    The engine tunes single-turn examples; anything else is refused naming the line, as Vertex refuses
    a dataset it cannot read."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise invalid(f"Dataset {uri} is not UTF-8 (byte {exc.start}).", "supervised_tuning_spec") from None
    examples: list[tuple[str, str]] = []
    chars = 0
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue

        def bad(why: str, n: int = n) -> ApiException:
            return invalid(f"Dataset {uri} line {n}: {why}", "supervised_tuning_spec.training_dataset_uri")

        try:
            row = json.loads(line)
        except ValueError as exc:
            raise bad(f"not JSON ({exc.msg} at column {exc.colno}).") from None
        if not isinstance(row, dict) or not isinstance(row.get("contents"), list):
            raise bad('expected {"contents": [{"role": "user", ...}, {"role": "model", ...}]}.')
        turns = []
        for content in row["contents"]:
            parts = content.get("parts") if isinstance(content, dict) else None
            if not isinstance(parts, list) or not all(
                isinstance(p, dict) and isinstance(p.get("text"), str) for p in parts
            ):
                raise bad('each content needs text parts: {"parts": [{"text": ...}]}.')
            turns.append((content.get("role") or "user", "".join(p["text"] for p in parts)))
        if [r for r, _ in turns] != ["user", "model"]:
            raise bad(
                f"the engine tunes one user turn and one model turn; got roles {[r for r, _ in turns]}."
            )
        system = row.get("systemInstruction") or row.get("system_instruction")
        prefix = ""
        if isinstance(system, dict):
            prefix = "".join(p.get("text", "") for p in system.get("parts") or [] if isinstance(p, dict))
            prefix = f"{prefix}\n" if prefix else ""
        text_input, output = prefix + turns[0][1], turns[1][1]
        if not output:
            raise bad("the model turn is empty.")
        examples.append((text_input, output))
        chars += len(text_input) + len(output)
    if not examples:
        raise invalid(f"Dataset {uri} holds no examples.", "supervised_tuning_spec.training_dataset_uri")
    return Dataset(examples, chars)


def read_dataset(uri: str, env: Mapping[str, str] | None = None) -> Dataset:
    """The dataset at gs:// `uri`, from Cloud Storage or the emulator at $STORAGE_EMULATOR_HOST."""
    from tunespec.errors import ApiError
    from tunespec.staging import CloudStorage

    field = "supervised_tuning_spec.training_dataset_uri"
    if not isinstance(uri, str) or not uri.startswith("gs://") or "/" not in uri[5:]:
        raise invalid(f"Dataset URI must be gs://BUCKET/OBJECT, got {str(uri)[:200]!r}.", field)
    storage = CloudStorage(env=os.environ if env is None else env, max_retries=2, timeout=60)
    try:
        data = storage.download(uri, limit=MAX_DATASET_BYTES)
    except ApiError as exc:
        if exc.http_status == 404:
            raise invalid(f"Dataset {uri} does not exist or is not readable.", field) from None
        raise ApiException("FAILED_PRECONDITION", f"Cannot read dataset {uri}: {exc}") from None
    finally:
        storage.close()
    return parse_contents_jsonl(uri, data)


def _state(row: dict[str, Any] | None, deleted: bool) -> str:
    if row is None:
        return "JOB_STATE_SUCCEEDED" if deleted else "JOB_STATE_CANCELLED"
    if row["state"] == "ACTIVE":
        return "JOB_STATE_SUCCEEDED"
    if row["state"] == "FAILED":
        return "JOB_STATE_CANCELLED" if row["error_code"] == 1 else "JOB_STATE_FAILED"
    if row.get("cancel_requested"):
        return "JOB_STATE_CANCELLING"
    return "JOB_STATE_RUNNING" if row.get("start_ns") else "JOB_STATE_PENDING"


class VertexJobs:
    """The Vertex dialect's service: each public method answers one call."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.path = engine.store.path
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @staticmethod
    def _ctx(project: str, query: Mapping[str, str] | None = None) -> Ctx:
        return Ctx(project=project, version="v1beta", int_enums=False, query=dict(query or {}))

    # ---- rendering -------------------------------------------------------------------------------
    def _render(self, job: sqlite3.Row) -> dict[str, Any]:
        parent = f"projects/{job['project']}/locations/{job['location']}"
        row = self.engine.store.get_model(job["model_id"])
        state = _state(row, bool(job["model_deleted"]))
        hp = json.loads(job["hyperparameters"])
        out: dict[str, Any] = {
            "name": f"{parent}/tuningJobs/{job['job_id']}",
            "tunedModelDisplayName": job["display_name"],
            "description": job["description"],
            "baseModel": job["base_model"],
            "state": state,
            "createTime": rfc3339(job["create_ns"]),
            "labels": json.loads(job["labels"]),
        }
        spec: dict[str, Any] = {"trainingDatasetUri": job["training_uri"]}
        if job["validation_uri"]:
            spec["validationDatasetUri"] = job["validation_uri"]
        if row is not None:
            hp.setdefault("epochCount", str(row["epoch_count"]))
            if row["learning_rate_multiplier"] is not None:
                hp.setdefault("learningRateMultiplier", row["learning_rate_multiplier"])
            out["startTime"] = rfc3339(row["start_ns"])
            out["updateTime"] = rfc3339(row["update_ns"])
            if state not in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_CANCELLING"):
                out["endTime"] = rfc3339(row["complete_ns"])
            if state == "JOB_STATE_FAILED":
                out["error"] = {
                    "code": row["error_code"] or 13,
                    "message": row["error_message"] or "Tuning failed.",
                }
            elif state == "JOB_STATE_CANCELLED":
                out["error"] = {"code": 1, "message": row["error_message"] or "Tuning was cancelled."}
            out["tuningDataStats"] = {
                "supervisedTuningDataStats": {
                    "tuningDatasetExampleCount": str(job["example_count"]),
                    "totalTuningCharacterCount": str(job["character_count"]),
                    "totalBillableCharacterCount": str(job["character_count"] * row["epoch_count"]),
                    "tuningStepCount": str(row["total_steps"]),
                }
            }
        spec["hyperParameters"] = hp
        out["supervisedTuningSpec"] = spec
        if state == "JOB_STATE_SUCCEEDED" and not job["model_deleted"]:
            out["tunedModel"] = {
                "model": f"{parent}/models/{job['model_number']}@1",
                "endpoint": f"{parent}/endpoints/{job['endpoint_number']}",
            }
        return out

    def _job(self, project: str, location: str, job_id: str) -> sqlite3.Row:
        job = (
            self._conn()
            .execute(
                "SELECT * FROM vertex_jobs WHERE job_id = ? AND project = ? AND location = ?",
                (job_id, project, location),
            )
            .fetchone()
        )
        if job is None:
            raise ApiException(
                "NOT_FOUND",
                f"TuningJob projects/{project}/locations/{location}/tuningJobs/{job_id} does not exist.",
            )
        return job

    def _by(self, column: str, project: str, location: str, number: str, what: str) -> sqlite3.Row:
        job = (
            self._conn()
            .execute(
                f"SELECT * FROM vertex_jobs WHERE {column} = ? AND project = ? AND location = ?",
                (number.split("@")[0], project, location),
            )
            .fetchone()
        )
        if job is None or job["model_deleted"]:
            raise ApiException(
                "NOT_FOUND",
                f"{what} projects/{project}/locations/{location}/"
                f"{'endpoints' if column == 'endpoint_number' else 'models'}/"
                f"{number} does not exist.",
            )
        return job

    # ---- calls -----------------------------------------------------------------------------------
    def create(self, project: str, location: str, raw: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise invalid("The request body must be a TuningJob object.")
        base = raw.get("baseModel", raw.get("base_model"))
        if not isinstance(base, str) or not base.strip():
            raise invalid("base_model is required (e.g. gemini-2.5-flash).", "base_model")
        spec = raw.get("supervisedTuningSpec", raw.get("supervised_tuning_spec"))
        if not isinstance(spec, dict):
            raise invalid(
                "supervised_tuning_spec is required: {training_dataset_uri: gs://...}.",
                "supervised_tuning_spec",
            )
        labels = raw.get("labels") or {}
        if (
            not isinstance(labels, dict)
            or len(labels) > 64
            or not all(
                isinstance(k, str)
                and LABEL_RE.fullmatch(k)
                and isinstance(v, str)
                and LABEL_VALUE_RE.fullmatch(v)
                for k, v in labels.items()
            )
        ):
            raise invalid(
                "labels: keys and values are lowercase letters, digits, '_' and '-' (keys start "
                "with a letter), at most 63 characters, at most 64 labels.",
                "labels",
            )
        hp = spec.get("hyperParameters", spec.get("hyper_parameters")) or {}
        if not isinstance(hp, dict):
            raise invalid("hyper_parameters must be an object.", "supervised_tuning_spec.hyper_parameters")
        hyper = self._hyperparameters(hp)
        display = raw.get("tunedModelDisplayName", raw.get("tuned_model_display_name")) or ""
        if not isinstance(display, str) or len(display) > 128:
            raise invalid(
                "tuned_model_display_name is a string of at most 128 characters.", "tuned_model_display_name"
            )
        description = raw.get("description") or ""
        training = read_dataset(spec.get("trainingDatasetUri", spec.get("training_dataset_uri")))
        validation_uri = spec.get("validationDatasetUri", spec.get("validation_dataset_uri"))
        if validation_uri:
            read_dataset(validation_uri)  # refused like the training data when unreadable
        engine_base = self._engine_model(base)
        job_id = _number()
        model_id = f"vertex-{job_id}"
        task: dict[str, Any] = {
            "trainingData": {
                "examples": {"examples": [{"textInput": i, "output": o} for i, o in training.examples]}
            }
        }
        engine_hp: dict[str, Any] = {}
        if "epochCount" in hyper:
            engine_hp["epochCount"] = int(hyper["epochCount"])
        if "learningRateMultiplier" in hyper:
            engine_hp["learningRateMultiplier"] = hyper["learningRateMultiplier"]
        if engine_hp:
            task["hyperparameters"] = engine_hp
        body = {"baseModel": engine_base, "displayName": display[:40], "tuningTask": task}
        if description:
            body["description"] = str(description)
        self.engine.create_tuned_model(self._ctx(project, {"tuned_model_id": model_id}), body,
                                       lora_rank=LORA_RANKS.get(hyper.get("adapterSize", "")))
        with self._conn() as db:
            db.execute(
                "INSERT INTO vertex_jobs (job_id, project, location, model_id, base_model, display_name, "
                "description, labels, training_uri, validation_uri, hyperparameters, example_count, "
                "character_count, model_number, endpoint_number, create_ns) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    project,
                    location,
                    model_id,
                    base.strip(),
                    display or model_id,
                    str(description),
                    json.dumps(labels),
                    spec.get("trainingDatasetUri", spec.get("training_dataset_uri")),
                    validation_uri,
                    json.dumps(hyper),
                    len(training.examples),
                    training.characters,
                    _number(),
                    _number(),
                    now_ns(),
                ),
            )
        return self._render(self._job(project, location, job_id))

    @staticmethod
    def _hyperparameters(hp: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        field = "supervised_tuning_spec.hyper_parameters"
        epochs = hp.get("epochCount", hp.get("epoch_count"))
        if epochs is not None:
            try:
                epochs = int(epochs)
            except (TypeError, ValueError):
                raise invalid("epoch_count must be an integer.", f"{field}.epoch_count") from None
            if not 1 <= epochs <= 1000:
                raise invalid("epoch_count must be between 1 and 1000.", f"{field}.epoch_count")
            out["epochCount"] = str(epochs)
        mult = hp.get("learningRateMultiplier", hp.get("learning_rate_multiplier"))
        if mult is not None:
            if isinstance(mult, bool) or not isinstance(mult, (int, float)) or not 0 < mult <= 100:
                raise invalid(
                    "learning_rate_multiplier must be a number in (0, 100].",
                    f"{field}.learning_rate_multiplier",
                )
            out["learningRateMultiplier"] = float(mult)
        size = hp.get("adapterSize", hp.get("adapter_size"))
        if size is not None:
            if size not in ADAPTER_SIZES:
                raise invalid(
                    f"adapter_size must be one of {', '.join(ADAPTER_SIZES)}.", f"{field}.adapter_size"
                )
            out["adapterSize"] = size
        return out

    def _engine_model(self, base: str) -> str:
        """The engine's name for a Vertex base model: Gemini names map to the engine's Gemini alias."""
        name = base.strip().split("/")[-1]
        if name.startswith("gemini-"):
            return GEMINI_ALIAS
        return f"models/{name}"

    def get(self, project: str, location: str, job_id: str) -> dict[str, Any]:
        return self._render(self._job(project, location, job_id))

    def list(self, project: str, location: str, query: Mapping[str, str]) -> dict[str, Any]:
        size = paging.page_size(query, default=100)
        after = paging.page_token(query)
        wanted = self._filter(query.get("filter") or "")
        rows = (
            self._conn()
            .execute(
                "SELECT * FROM vertex_jobs WHERE project = ? AND location = ? AND seq > ? ORDER BY seq",
                (project, location, after),
            )
            .fetchall()
        )
        jobs: list[dict[str, Any]] = []
        last = after
        more = False
        for job in rows:
            rendered = self._render(job)
            if not all(test(rendered) for test in wanted):
                continue
            if len(jobs) == size:
                more = True
                break
            jobs.append(rendered)
            last = job["seq"]
        out: dict[str, Any] = {"tuningJobs": jobs}
        if more:
            out["nextPageToken"] = paging.next_page_token(last)
        return out

    @staticmethod
    def _filter(text: str) -> list[Any]:
        """`labels.KEY="VALUE"`, `labels.KEY:*` and `state="JOB_STATE_..."` terms joined by AND."""
        tests = []
        for term in [t for t in re.split(r"\s+AND\s+", text.strip()) if t]:
            m = FILTER_TERM.fullmatch(term)
            if m is None:
                raise invalid(
                    f'Unsupported filter term {term[:100]!r}: use labels.KEY="VALUE", labels.KEY:* '
                    'or state="JOB_STATE_...", joined by AND.',
                    "filter",
                )
            if m.group(6):
                tests.append(lambda job, s=m.group(6): job["state"] == s)
                continue
            key, op, value = m.group(2), m.group(3), m.group(5) if m.group(5) is not None else m.group(4)
            if op == ":" and value == "*":
                tests.append(lambda job, k=key: k in job["labels"])
            else:
                tests.append(lambda job, k=key, v=value: job["labels"].get(k) == v)
        return tests

    def cancel(self, project: str, location: str, job_id: str, _body: object = None) -> dict[str, Any]:
        job = self._job(project, location, job_id)
        row = self.engine.store.get_model(job["model_id"])
        state = _state(row, bool(job["model_deleted"]))
        if state not in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_CANCELLING"):
            raise ApiException(
                "FAILED_PRECONDITION", f"Cannot cancel tuning job {job_id}: its state is {state}."
            )
        self.engine.store.request_cancel(job["model_id"], now_ns())
        return {}

    def generate(self, project: str, location: str, endpoint: str, raw: dict[str, Any]) -> dict[str, Any]:
        job = self._by("endpoint_number", project, location, endpoint, "Endpoint")
        out = self.engine.generate_content(self._ctx(project), job["model_id"], raw, kind="tunedModels")
        out["modelVersion"] = f"projects/{project}/locations/{location}/models/{job['model_number']}@1"
        return out

    def generate_base(self, project: str, location: str, model: str, raw: dict[str, Any]) -> dict[str, Any]:
        name = self._engine_model(model).removeprefix("models/")
        out = self.engine.generate_content(self._ctx(project), name, raw, kind="models")
        out["modelVersion"] = model
        return out

    def delete_model(self, project: str, location: str, model: str) -> dict[str, Any]:
        job = self._by("model_number", project, location, model, "Model")
        self.engine.delete_tuned_model(self._ctx(project), job["model_id"])
        with self._conn() as db:
            db.execute("UPDATE vertex_jobs SET model_deleted = 1 WHERE job_id = ?", (job["job_id"],))
        parent = f"projects/{project}/locations/{location}"
        return {
            "name": f"{parent}/operations/{_number()}",
            "done": True,
            "metadata": {"@type": "type.googleapis.com/google.cloud.aiplatform.v1.DeleteOperationMetadata"},
            "response": {"@type": "type.googleapis.com/google.protobuf.Empty"},
        }
