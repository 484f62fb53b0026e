"""HTTP routes: Google's Generative Language tuning API (v1beta3 + v1beta, v1 operations).

The routes read like the API reference they implement; request bodies are parsed leniently
(see wire.py), validated with field violations, and answered in Google's JSON dialect. Training
runs in the worker process (worker.py); this module only writes jobs to the store and reads
their progress. Generation runs here, in a thread pool, through the train module's model cache.
"""

from __future__ import annotations

import base64
import hmac
import logging
import math
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunespec.engine import ids
from tunespec.engine.store import AlreadyExists, Store
from tunespec.engine.wire import (
    ApiException,
    Enum,
    Present,
    compact,
    invalid,
    now_ns,
    parse_body,
    rfc3339,
    snake,
    to_snake,
    wants_int_enums,
)

log = logging.getLogger("tunespec.engine")

VERSIONS = ("v1beta3", "v1beta")
OPERATION_PREFIXES = ("v1", "v1beta3", "v1beta")
STATE = {"STATE_UNSPECIFIED": 0, "CREATING": 1, "ACTIVE": 2, "FAILED": 3}
DEFAULT_PROJECT = "default"
MAX_DISPLAY_NAME = 40
MAX_INPUT_CHARS = 40_000
MAX_OUTPUT_CHARS = 5_000
MAX_EPOCHS = 1000
MAX_BATCH = 1024
SMALL_DATASET = 500  # examples; below it the smaller-dataset defaults apply
PATCHABLE = ("display_name", "description", "temperature", "top_p", "top_k")
PALM_HARM = (
    "HARM_CATEGORY_DEROGATORY",
    "HARM_CATEGORY_TOXICITY",
    "HARM_CATEGORY_VIOLENCE",
    "HARM_CATEGORY_SEXUAL",
    "HARM_CATEGORY_MEDICAL",
    "HARM_CATEGORY_DANGEROUS",
)
GEMINI_HARM = (
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
)
HARM_NUMBER = {
    **{n: i + 1 for i, n in enumerate(PALM_HARM)},
    "HARM_CATEGORY_HARASSMENT": 7,
    "HARM_CATEGORY_HATE_SPEECH": 8,
    "HARM_CATEGORY_SEXUALLY_EXPLICIT": 9,
    "HARM_CATEGORY_DANGEROUS_CONTENT": 10,
}
CANCEL_MESSAGE = "Tuning was cancelled."

# ---- request schemas (snake_case field names; None = scalar, dict = message, [x] = repeated) ------
_EXAMPLE = {"text_input": None, "output": None}
_TUNED_MODEL = {
    "name": None,
    "base_model": None,
    "display_name": None,
    "description": None,
    "temperature": None,
    "top_p": None,
    "top_k": None,
    "state": None,
    "create_time": None,
    "update_time": None,
    "tuned_model_source": {"tuned_model": None, "base_model": None},
    "reader_project_numbers": None,
    "tuning_method": None,  # engine extension: "full" | "lora"
    "tuning_task": {
        "start_time": None,
        "complete_time": None,
        "snapshots": None,
        "training_data": {"examples": {"examples": [_EXAMPLE]}},
        "hyperparameters": {
            "epoch_count": None,
            "batch_size": None,
            "learning_rate": None,
            "learning_rate_multiplier": None,
        },
    },
}
_SAMPLING = {
    "temperature": None,
    "top_p": None,
    "top_k": None,
    "candidate_count": None,
    "max_output_tokens": None,
    "stop_sequences": None,
    "safety_settings": None,
}
_GENERATE_TEXT = {"prompt": {"text": None}, "model": None, **_SAMPLING}
_GENERATE_CONTENT = {
    "model": None,
    "contents": [{"role": None, "parts": [{"text": None}]}],
    "safety_settings": None,
    "system_instruction": None,
    "tools": None,
    "tool_config": None,
    "cached_content": None,
    "generation_config": {
        **_SAMPLING,
        "response_mime_type": None,
        "response_schema": None,
        "presence_penalty": None,
        "frequency_penalty": None,
        "seed": None,
        "response_logprobs": None,
        "logprobs": None,
    },
}


def _check_fields(value: Any, schema: Any, where: str) -> None:
    """Google rejects unknown field names: `Unknown name "x" at 'where': Cannot find field.`"""
    if isinstance(schema, list):
        if isinstance(value, list):
            for item in value:
                _check_fields(item, schema[0], where)
        return
    if not isinstance(schema, dict) or not isinstance(value, dict):
        return
    for key, sub in value.items():
        name = snake(key)
        if name not in schema:
            raise invalid(
                f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field.",
                f"{where}.{key}" if where else key,
            )
        _check_fields(sub, schema[name], f"{where}.{name}" if where else name)


# ---- typed readers ---------------------------------------------------------------------------------


def _number(value: Any, field: str, kind: str = "TYPE_FLOAT") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise invalid(f"Invalid value at '{field}' ({kind}), {value!r}", field)
    try:
        number = float(value)
    except ValueError:
        raise invalid(f"Invalid value at '{field}' ({kind}), \"{value}\"", field) from None
    if math.isnan(number) or math.isinf(number):
        raise invalid(f"Invalid value at '{field}' ({kind}), {value!r}", field)
    return number


def _int(value: Any, field: str) -> int | None:
    number = _number(value, field, "TYPE_INT32")
    if number is None:
        return None
    if number != int(number):
        raise invalid(f"Invalid value at '{field}' (TYPE_INT32), {value!r}", field)
    return int(number)


def _string(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(f"Invalid value at '{field}' (TYPE_STRING), {value!r}", field)
    return value


def _message(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"Invalid value at '{field}': expected an object, got {value!r}", field)
    return value


@dataclass(frozen=True)
class Ctx:
    """Who asks and how to answer: the caller's project, the API version, enum encoding."""

    project: str
    version: str
    int_enums: bool
    query: Mapping[str, str]


class Engine:
    """The service behind the routes: store access, validation, rendering."""

    def __init__(self, data_dir: Path, extra_models: Mapping[str, Path] | None = None):
        self.data_dir = Path(data_dir)
        self.store = Store(self.data_dir)
        self.extra = dict(extra_models or {})
        self._gen_lock = threading.Lock()

    # ---- base models -----------------------------------------------------------------------------
    def base_models(self, version: str) -> list[Any]:
        from tunespec.engine.basemodels import list_base_models

        return list_base_models(version, self.extra)

    def base_model(self, name: str, version: str) -> Any:
        from tunespec.engine.basemodels import get_base_model

        return get_base_model(name, version, self.extra)

    @staticmethod
    def render_base(m: Any) -> dict[str, Any]:
        return {
            "name": m.name,
            "baseModelId": m.name.removeprefix("models/"),
            "version": m.version,
            "displayName": m.display_name,
            "description": m.description,
            "inputTokenLimit": m.input_token_limit,
            "outputTokenLimit": m.output_token_limit,
            "supportedGenerationMethods": list(m.supported_generation_methods),
            "temperature": m.temperature,
            "topP": m.top_p,
            "topK": m.top_k,
        }

    # ---- tuned models: lookup and rendering -------------------------------------------------------
    def owned(self, ctx: Ctx, model_id: str) -> dict[str, Any]:
        """The caller's tuned model: 404 if absent, 403 if it belongs to another project."""
        row = self.store.get_model(model_id)
        if row is None:
            raise ApiException("NOT_FOUND", f"Tuned model tunedModels/{model_id} does not exist.")
        if row["project"] != ctx.project:
            raise ApiException(
                "PERMISSION_DENIED",
                f"You do not have permission to access tuned model tunedModels/{model_id}.",
            )
        return row

    def render_model(self, row: dict[str, Any], version: str) -> dict[str, Any]:
        snaps = self.store.snapshots(row["id"])
        hp: dict[str, Any] = {"epochCount": row["epoch_count"], "batchSize": row["batch_size"]}
        if version == "v1beta" and row["learning_rate_multiplier"] is not None:
            hp["learningRateMultiplier"] = row["learning_rate_multiplier"]
        else:
            hp["learningRate"] = row["effective_learning_rate"]
        model: dict[str, Any] = {"name": f"tunedModels/{row['id']}"}
        if row["source_tuned_model"]:
            model["tunedModelSource"] = {
                "tunedModel": row["source_tuned_model"],
                "baseModel": row["base_model"],
            }
        else:
            model["baseModel"] = row["base_model"]
        model.update(
            {
                "displayName": row["display_name"],
                "description": row["description"],
                "state": Enum(row["state"], STATE[row["state"]]),
                "createTime": rfc3339(row["create_ns"]),
                "updateTime": rfc3339(row["update_ns"]),
                "tuningTask": {
                    "startTime": rfc3339(row["start_ns"], 9),
                    "completeTime": rfc3339(row["complete_ns"]),
                    "snapshots": [self.render_snapshot(s) for s in snaps],
                    "hyperparameters": hp,
                },
                "temperature": row["temperature"],
                "topP": row["top_p"],
                "topK": row["top_k"],
            }
        )
        return model

    @staticmethod
    def render_snapshot(s: dict[str, Any]) -> dict[str, Any]:
        return {
            "step": s["step"],
            "epoch": s["epoch"] or None,
            "meanLoss": s["mean_loss"],
            "computeTime": rfc3339(s["compute_ns"], 9),
        }

    def render_operation(self, row: dict[str, Any], version: str) -> dict[str, Any]:
        tv = version if version in VERSIONS else row["api_version"]
        snaps = self.store.snapshots(row["id"])
        done_steps = len(snaps) if row["state"] != "ACTIVE" else row["total_steps"]
        meta: dict[str, Any] = {
            "@type": f"type.googleapis.com/google.ai.generativelanguage.{tv}.CreateTunedModelMetadata",
            "totalSteps": row["total_steps"],
            "completedSteps": done_steps or None,
            "completedPercent": (
                round(100.0 * done_steps / row["total_steps"], 4)
                if done_steps and row["total_steps"]
                else None
            ),
            "snapshots": [self.render_snapshot(s) for s in snaps],
            "tunedModel": f"tunedModels/{row['id']}",
        }
        op: dict[str, Any] = {"name": f"tunedModels/{row['id']}/operations/{row['op_id']}", "metadata": meta}
        if row["state"] == "ACTIVE":
            op["done"] = True
            op["response"] = {
                "@type": f"type.googleapis.com/google.ai.generativelanguage.{tv}.TunedModel",
                **self.render_model(row, tv),
            }
        elif row["state"] == "FAILED":
            op["done"] = True
            op["error"] = {
                "code": row["error_code"] or 13,
                "message": row["error_message"] or "Tuning failed.",
            }
        return op

    # ---- create ------------------------------------------------------------------------------------
    def create(self, ctx: Ctx, raw: dict[str, Any]) -> dict[str, Any]:
        _check_fields(raw, _TUNED_MODEL, "tuned_model")
        body = to_snake(raw)
        v = ctx.version
        violations: list[tuple[str, str]] = []

        def bad(field: str, message: str) -> None:
            violations.append((field, message))

        tuned_model_id = ctx.query.get("tuned_model_id")
        if tuned_model_id is not None and not ids.valid_tuned_model_id(tuned_model_id):
            bad(
                "tuned_model_id",
                f"tunedModelId {tuned_model_id!r} is invalid: it must match "
                "[a-z]([a-z0-9-]{0,38}[a-z0-9])? (1-40 characters, lowercase letters, digits and '-', "
                "starting with a letter)",
            )
        display_name = _string(body.get("display_name"), "tuned_model.display_name") or ""
        if len(display_name) > MAX_DISPLAY_NAME:
            bad(
                "tuned_model.display_name",
                f"display_name must be at most {MAX_DISPLAY_NAME} characters (got {len(display_name)})",
            )
        description = _string(body.get("description"), "tuned_model.description") or ""
        max_temp = 1.0 if v == "v1beta3" else 2.0
        temperature = _number(body.get("temperature"), "tuned_model.temperature")
        if temperature is not None and not 0 <= temperature <= max_temp:
            bad("tuned_model.temperature", f"temperature must be in [0, {max_temp:g}] (got {temperature:g})")
        top_p = _number(body.get("top_p"), "tuned_model.top_p")
        if top_p is not None and not 0 <= top_p <= 1:
            bad("tuned_model.top_p", f"top_p must be in [0, 1] (got {top_p:g})")
        top_k = _int(body.get("top_k"), "tuned_model.top_k")
        if top_k is not None and top_k < 0:
            bad("tuned_model.top_k", f"top_k must be >= 0 (got {top_k})")
        method = _string(body.get("tuning_method"), "tuned_model.tuning_method")
        if method is not None and method not in ("full", "lora"):
            bad("tuned_model.tuning_method", f"tuning_method must be 'full' or 'lora' (got {method!r})")

        task = _message(body.get("tuning_task"), "tuned_model.tuning_task")
        hp = _message(task.get("hyperparameters"), "tuned_model.tuning_task.hyperparameters")
        hpf = "tuned_model.tuning_task.hyperparameters"
        epochs = _int(hp.get("epoch_count"), f"{hpf}.epoch_count")
        if epochs is not None and not 1 <= epochs <= MAX_EPOCHS:
            bad(f"{hpf}.epoch_count", f"epoch_count must be between 1 and {MAX_EPOCHS} (got {epochs})")
        batch = _int(hp.get("batch_size"), f"{hpf}.batch_size")
        if batch is not None and not 1 <= batch <= MAX_BATCH:
            bad(f"{hpf}.batch_size", f"batch_size must be between 1 and {MAX_BATCH} (got {batch})")
        lr = _number(hp.get("learning_rate"), f"{hpf}.learning_rate")
        if lr is not None and not 0 < lr <= 1:
            bad(f"{hpf}.learning_rate", f"learning_rate must be > 0 and <= 1 (got {lr:g})")
        mult = _number(hp.get("learning_rate_multiplier"), f"{hpf}.learning_rate_multiplier")
        if mult is not None and v == "v1beta3":
            raise invalid(
                f'Invalid JSON payload received. Unknown name "learning_rate_multiplier" at '
                f"'{hpf}': Cannot find field (learningRateMultiplier is a v1beta field).",
                f"{hpf}.learning_rate_multiplier",
            )
        if mult is not None and not 0 < mult <= 100:
            bad(
                f"{hpf}.learning_rate_multiplier",
                f"learning_rate_multiplier must be > 0 and <= 100 (got {mult:g})",
            )
        if lr is not None and mult is not None:
            bad(
                f"{hpf}.learning_rate",
                "learning_rate and learning_rate_multiplier are mutually exclusive "
                "(oneof learning_rate_option): set only one",
            )

        examples = self._examples(task, bad)

        source = _message(body.get("tuned_model_source"), "tuned_model.tuned_model_source")
        source_name = _string(source.get("tuned_model"), "tuned_model.tuned_model_source.tuned_model")
        base_name = _string(body.get("base_model"), "tuned_model.base_model")
        if not source_name and not base_name:
            bad(
                "tuned_model.base_model",
                "base_model is required (e.g. models/text-bison-001), or "
                "tuned_model_source.tuned_model to tune a tuned model further",
            )
        if violations:
            raise invalid(
                "Invalid tuning request: " + "; ".join(f"{f}: {m}" for f, m in violations),
                violations=violations,
            )

        init_dir = None
        if source_name:
            src = self.owned(ctx, source_name.removeprefix("tunedModels/"))
            if src["state"] != "ACTIVE":
                raise ApiException(
                    "FAILED_PRECONDITION",
                    f"Tuned model tunedModels/{src['id']} is "
                    f"{src['state']}, not ACTIVE: it cannot be tuned further yet.",
                )
            base_name, init_dir = src["base_model"], src["weights_dir"]
            source_name = f"tunedModels/{src['id']}"
        base_name = base_name if base_name.startswith("models/") else f"models/{base_name}"
        base = self.base_model(base_name, v)
        method_name = "createTunedTextModel" if v == "v1beta3" else "createTunedModel"
        if base is None or method_name not in base.supported_generation_methods:
            raise ApiException(
                "NOT_FOUND",
                f"{base_name} is not found for API version {v}, or is not "
                f"supported for {method_name}. Call ListModels to see the list of "
                "available models and their supported methods.",
            )

        n = len(examples)
        small = n < SMALL_DATASET
        if v == "v1beta3":
            epochs = epochs or 10
            batch = batch or (16 if small else 64)
            recommended = 0.002 if small else 0.0002
        else:
            epochs = epochs or 5
            batch = batch or (4 if small else 16)
            recommended = 0.001 if small else 0.0002
        effective = lr if lr is not None else recommended * (mult if mult is not None else 1.0)
        method = method or "auto"  # the trainer picks: full for small models, LoRA for large ones
        total = math.ceil(n * epochs / batch)
        now = now_ns()
        row = {
            "project": ctx.project,
            "api_version": v,
            "op_id": ids.operation_id(),
            "base_model": base_name,
            "source_tuned_model": source_name,
            "display_name": display_name,
            "description": description,
            "temperature": temperature if temperature is not None else base.temperature,
            "top_p": top_p if top_p is not None else base.top_p,
            "top_k": top_k if top_k is not None else base.top_k,
            "state": "CREATING",
            "create_ns": now,
            "update_ns": now,
            "start_ns": None,
            "epoch_count": epochs,
            "batch_size": batch,
            "learning_rate": lr if mult is None else None,
            "learning_rate_multiplier": mult,
            "effective_learning_rate": effective,
            "tuning_method": method,
            "example_count": n,
            "total_steps": total,
            "examples": examples,
            "init_dir": init_dir,
        }
        for _ in range(5):
            row["id"] = tuned_model_id or ids.tuned_model_id(display_name)
            try:
                self.store.insert_model(row)
                break
            except AlreadyExists:
                if tuned_model_id:
                    raise ApiException(
                        "ALREADY_EXISTS", f"Tuned model tunedModels/{tuned_model_id} already exists."
                    ) from None
        else:  # pragma: no cover - 36^12 ids
            raise ApiException("INTERNAL", "Could not allocate a tuned model id.")
        created = self.store.get_model(row["id"])
        assert created is not None
        op = self.render_operation(created, v)
        op["metadata"] = {k: op["metadata"][k] for k in ("@type", "totalSteps", "tunedModel")}
        return op

    @staticmethod
    def _examples(task: dict[str, Any], bad: Callable[[str, str], None]) -> list[tuple[str, str]]:
        field = "tuned_model.tuning_task.training_data.examples.examples"
        data = _message(task.get("training_data"), "tuned_model.tuning_task.training_data")
        wrapper = _message(data.get("examples"), "tuned_model.tuning_task.training_data.examples")
        items = wrapper.get("examples")
        if items is None or items == []:
            bad(field, "training_data must hold at least one example")
            return []
        if not isinstance(items, list):
            bad(field, "examples must be a list of {text_input, output}")
            return []
        out = []
        for i, ex in enumerate(items):
            at = f"{field}[{i}]"
            if not isinstance(ex, dict):
                bad(at, "each example must be an object {text_input, output}")
                continue
            text, output = ex.get("text_input"), ex.get("output")
            if not isinstance(text, str) or not text:
                bad(f"{at}.text_input", "text_input is required and must be a non-empty string")
            elif len(text) > MAX_INPUT_CHARS:
                bad(
                    f"{at}.text_input",
                    f"text_input is {len(text)} characters; the limit is {MAX_INPUT_CHARS}",
                )
            if not isinstance(output, str) or not output:
                bad(f"{at}.output", "output is required and must be a non-empty string")
            elif len(output) > MAX_OUTPUT_CHARS:
                bad(f"{at}.output", f"output is {len(output)} characters; the limit is {MAX_OUTPUT_CHARS}")
            if isinstance(text, str) and isinstance(output, str):
                out.append((text, output))
        return out

    # ---- list / get / patch / delete ----------------------------------------------------------------
    def list_models(self, ctx: Ctx) -> dict[str, Any]:
        size = self._page_size(ctx, default=10)
        after = self._page_token(ctx)
        flt = (ctx.query.get("filter") or "").strip().lower()
        words = [w for w in flt.split() if ":" not in w]
        rows: list[dict[str, Any]] = []
        cursor = after
        while len(rows) < size + 1:
            batch = self.store.list_models(ctx.project, after_seq=cursor, limit=200)
            if not batch:
                break
            cursor = batch[-1]["seq"]
            for r in batch:
                text = f"{r['display_name']} {r['description']}".lower()
                if all(w in text for w in words):
                    rows.append(r)
        page, more = rows[:size], len(rows) > size
        out: dict[str, Any] = {"tunedModels": [self.render_model(r, ctx.version) for r in page]}
        if more:
            out["nextPageToken"] = self._token(page[-1]["seq"])
        return out

    def list_base(self, ctx: Ctx) -> dict[str, Any]:
        size = self._page_size(ctx, default=50)
        start = self._page_token(ctx)
        models = self.base_models(ctx.version)
        page = models[start : start + size]
        out: dict[str, Any] = {"models": [self.render_base(m) for m in page]}
        if start + size < len(models):
            out["nextPageToken"] = self._token(start + size)
        return out

    @staticmethod
    def _page_size(ctx: Ctx, default: int) -> int:
        size = _int(ctx.query.get("page_size"), "page_size")
        if size is None or size == 0:
            return default
        if size < 0:
            raise invalid(f"page_size must not be negative (got {size})", "page_size")
        return min(size, 1000)

    @staticmethod
    def _token(n: int) -> str:
        return base64.urlsafe_b64encode(f"after:{n}".encode()).decode().rstrip("=")

    @staticmethod
    def _page_token(ctx: Ctx) -> int:
        token = ctx.query.get("page_token")
        if not token:
            return 0
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            kind, n = text.split(":")
            if kind != "after":
                raise ValueError(kind)
            return int(n)
        except (ValueError, UnicodeDecodeError):
            raise invalid(
                f"Invalid page_token {token!r}: pass the nextPageToken of a previous list call.", "page_token"
            ) from None

    def patch(self, ctx: Ctx, model_id: str, raw: dict[str, Any]) -> dict[str, Any]:
        row = self.owned(ctx, model_id)
        _check_fields(raw, _TUNED_MODEL, "tuned_model")
        body = to_snake(raw)
        mask = ctx.query.get("update_mask")
        if not mask:
            raise invalid(
                "update_mask is required: name the fields to change, e.g. "
                "?updateMask=description,displayName",
                "update_mask",
            )
        fields: dict[str, Any] = {}
        for path in (snake(p.strip()) for p in mask.split(",") if p.strip()):
            if path not in PATCHABLE:
                raise invalid(
                    f"update_mask path {path!r} cannot be updated; updatable fields: " + ", ".join(PATCHABLE),
                    "update_mask",
                )
            value = body.get(path)
            at = f"tuned_model.{path}"
            if path == "display_name":
                value = _string(value, at) or ""
                if len(value) > MAX_DISPLAY_NAME:
                    raise invalid(
                        f"display_name must be at most {MAX_DISPLAY_NAME} characters (got {len(value)})", at
                    )
            elif path == "description":
                value = _string(value, at) or ""
            elif path == "top_k":
                value = _int(value, at)
            else:
                value = _number(value, at)
                if value is not None and not 0 <= value <= (1 if path == "top_p" else 2):
                    raise invalid(f"{path} out of range (got {value:g})", at)
            fields[path] = value
        if fields:
            self.store.update_model(model_id, **fields, update_ns=max(now_ns(), row["update_ns"]))
        return self.render_model(self.owned(ctx, model_id), ctx.version)

    def delete(self, ctx: Ctx, model_id: str) -> dict[str, Any]:
        row = self.owned(ctx, model_id)
        if row["state"] == "CREATING":
            self.store.request_cancel(model_id, now_ns(), CANCEL_MESSAGE)
        self.store.delete_model(model_id)
        if not row["claimed_by"]:  # a running job's worker removes its own files when it sees the row gone
            shutil.rmtree(self.data_dir / "jobs" / model_id, ignore_errors=True)
        return {}

    # ---- operations ---------------------------------------------------------------------------------
    def operation(self, ctx: Ctx, model_id: str, op_id: str) -> dict[str, Any]:
        row = self._op_row(ctx, model_id, op_id)
        return self.render_operation(row, ctx.version)

    def _op_row(self, ctx: Ctx, model_id: str, op_id: str) -> dict[str, Any]:
        row = self.store.get_model(model_id)
        if row is None or row["op_id"] != op_id:
            raise ApiException(
                "NOT_FOUND", f"Operation tunedModels/{model_id}/operations/{op_id} does not exist."
            )
        if row["project"] != ctx.project:
            raise ApiException(
                "PERMISSION_DENIED",
                f"You do not have permission to access tuned model tunedModels/{model_id}.",
            )
        return row

    def list_operations(self, ctx: Ctx, model_id: str | None) -> dict[str, Any]:
        if model_id is not None:
            rows = [self.owned(ctx, model_id)]
            page_rows, more = rows, False
        else:
            size = self._page_size(ctx, default=10)
            rows = self.store.list_models(ctx.project, after_seq=self._page_token(ctx), limit=size + 1)
            page_rows, more = rows[:size], len(rows) > size
        out: dict[str, Any] = {"operations": [self.render_operation(r, ctx.version) for r in page_rows]}
        if more:
            out["nextPageToken"] = self._token(page_rows[-1]["seq"])
        return out

    def cancel(self, ctx: Ctx, model_id: str, op_id: str, _body: object = None) -> dict[str, Any]:
        self._op_row(ctx, model_id, op_id)
        self.store.request_cancel(model_id, now_ns(), CANCEL_MESSAGE)
        return {}

    # ---- generation ----------------------------------------------------------------------------------
    def _model_dir_for(self, ctx: Ctx, kind: str, name: str, method: str) -> tuple[Path, Any]:
        if kind == "tunedModels":
            row = self.owned(ctx, name)
            if row["state"] != "ACTIVE":
                raise ApiException(
                    "FAILED_PRECONDITION",
                    f"Tuned model tunedModels/{name} is not ready for {method}: its state is "
                    f"{row['state']}"
                    + (
                        " (wait until it is ACTIVE)."
                        if row["state"] == "CREATING"
                        else f" ({row['error_message']})."
                    ),
                )
            base = self.base_model(row["base_model"], row["api_version"]) or self.base_model(
                row["base_model"], ctx.version
            )
            limits = {
                "temperature": row["temperature"],
                "top_p": row["top_p"],
                "top_k": row["top_k"],
                "output_limit": base.output_token_limit if base else 512,
            }
            return Path(row["weights_dir"]), limits
        base = self.base_model(name, ctx.version)
        if base is None or method not in base.supported_generation_methods:
            raise ApiException(
                "NOT_FOUND",
                f"models/{name} is not found for API version {ctx.version}, or is "
                f"not supported for {method}. Call ListModels to see the list of available "
                "models and their supported methods.",
            )
        from tunespec.engine.basemodels import materialize

        with self._gen_lock:
            path = materialize(base.name, self.data_dir, self.extra)
        return path, {
            "temperature": base.temperature,
            "top_p": base.top_p,
            "top_k": base.top_k,
            "output_limit": base.output_token_limit,
        }

    def _sampling(
        self, params: dict[str, Any], defaults: dict[str, Any], where: str, max_temp: float
    ) -> dict[str, Any]:
        def p(f):
            return f"{where}{f}"

        temperature = _number(params.get("temperature"), p("temperature"))
        top_p = _number(params.get("top_p"), p("top_p"))
        top_k = _int(params.get("top_k"), p("top_k"))
        count = _int(params.get("candidate_count"), p("candidate_count"))
        max_out = _int(params.get("max_output_tokens"), p("max_output_tokens"))
        stops = params.get("stop_sequences") or []
        if temperature is not None and not 0 <= temperature <= max_temp:
            raise invalid(f"temperature must be in [0, {max_temp:g}] (got {temperature:g})", p("temperature"))
        if top_p is not None and not 0 <= top_p <= 1:
            raise invalid(f"top_p must be in [0, 1] (got {top_p:g})", p("top_p"))
        if top_k is not None and top_k < 0:
            raise invalid(f"top_k must be >= 0 (got {top_k})", p("top_k"))
        if count is not None and not 1 <= count <= 8:
            raise invalid(f"candidate_count must be between 1 and 8 (got {count})", p("candidate_count"))
        if max_out is not None and max_out < 1:
            raise invalid(f"max_output_tokens must be >= 1 (got {max_out})", p("max_output_tokens"))
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise invalid("stop_sequences must be a list of strings", p("stop_sequences"))
        if len(stops) > 5:
            raise invalid(f"at most 5 stop_sequences are allowed (got {len(stops)})", p("stop_sequences"))
        return {
            "temperature": temperature if temperature is not None else defaults["temperature"],
            "top_p": top_p if top_p is not None else defaults["top_p"],
            "top_k": top_k if top_k is not None else defaults["top_k"],
            "candidate_count": count or 1,
            "max_output_tokens": min(max_out or defaults["output_limit"], defaults["output_limit"]),
            "stop_sequences": [s for s in stops if s],
        }

    def _generate(self, model_dir: Path, prompt: str, sampling: dict[str, Any]) -> list[str]:
        from tunespec.engine import train

        with self._gen_lock:
            return train.generate(model_dir, prompt, **sampling)

    def generate_text(self, ctx: Ctx, kind: str, name: str, raw: dict[str, Any]) -> dict[str, Any]:
        _check_fields(raw, _GENERATE_TEXT, "")
        body = to_snake(raw)
        prompt = _message(body.get("prompt"), "prompt")
        text = _string(prompt.get("text"), "prompt.text")
        if not text:
            raise invalid("prompt.text is required", "prompt.text")
        model_dir, defaults = self._model_dir_for(ctx, kind, name, "generateText")
        sampling = self._sampling(body, defaults, "", 1.0 if ctx.version == "v1beta3" else 2.0)
        outputs = self._generate(model_dir, text, sampling)
        ratings = [
            {"category": Enum(c, HARM_NUMBER[c]), "probability": Enum("NEGLIGIBLE", 1)} for c in PALM_HARM
        ]
        return {"candidates": [{"output": Present(o), "safetyRatings": ratings} for o in outputs]}

    def generate_content(self, ctx: Ctx, kind: str, name: str, raw: dict[str, Any]) -> dict[str, Any]:
        _check_fields(raw, _GENERATE_CONTENT, "")
        body = to_snake(raw)
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise invalid('contents is required: [{"parts": [{"text": ...}]}]', "contents")
        texts = []
        for i, c in enumerate(contents):
            for j, part in enumerate(_message(c, f"contents[{i}]").get("parts") or []):
                t = _string(
                    _message(part, f"contents[{i}].parts[{j}]").get("text"), f"contents[{i}].parts[{j}].text"
                )
                if t is None:
                    raise invalid(
                        "only text parts are supported by tuned models", f"contents[{i}].parts[{j}]"
                    )
                texts.append(t)
        prompt = "\n".join(texts)
        if not prompt:
            raise invalid("contents holds no text", "contents")
        if kind == "tunedModels" and body.get("system_instruction"):
            raise invalid(
                f"Developer instruction is not enabled for tunedModels/{name}", "system_instruction"
            )
        if len(prompt) > MAX_INPUT_CHARS:
            raise invalid(f"input is {len(prompt)} characters; the limit is {MAX_INPUT_CHARS}", "contents")
        model_dir, defaults = self._model_dir_for(ctx, kind, name, "generateContent")
        config = _message(body.get("generation_config"), "generation_config")
        sampling = self._sampling(config, defaults, "generation_config.", 2.0)
        outputs = self._generate(model_dir, prompt, sampling)
        ratings = [
            {"category": Enum(c, HARM_NUMBER[c]), "probability": Enum("NEGLIGIBLE", 1)} for c in GEMINI_HARM
        ]
        prompt_tokens = len(prompt.encode())
        out_tokens = sum(len(o.encode()) for o in outputs)
        return {
            "candidates": [
                {
                    "content": {"parts": [{"text": Present(o)}], "role": "model"},
                    "finishReason": Enum("STOP", 1),
                    "index": i,
                    "safetyRatings": ratings,
                }
                for i, o in enumerate(outputs)
            ],
            "promptFeedback": {"safetyRatings": ratings},
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": out_tokens,
                "totalTokenCount": prompt_tokens + out_tokens,
            },
            "modelVersion": f"{kind}/{name}",
        }


# ---- the door: credentials and projects -----------------------------------------------------------


def parse_token_file(path: Path) -> dict[str, str | None]:
    """Lines `TOKEN [PROJECT]` ('#' comments, blank lines ignored) -> {token: project or None}."""
    tokens: dict[str, str | None] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the token file ({exc.strerror})") from None
    for n, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split()
        if len(parts) > 2:
            raise ValueError(f"{path}:{n}: expected 'TOKEN [PROJECT]', got {len(parts)} fields")
        tokens[parts[0]] = parts[1] if len(parts) == 2 else None
    if not tokens:
        raise ValueError(f"{path}: the token file holds no tokens (one 'TOKEN [PROJECT]' per line)")
    return tokens


def _lookup(tokens: Mapping[str, str | None], given: str) -> tuple[bool, str | None]:
    found, project = False, None
    for token, proj in tokens.items():
        if hmac.compare_digest(token.encode(), given.encode()):
            found, project = True, proj
    return found, project


def resolve_project(
    headers: Mapping[str, str], query: Mapping[str, str], tokens: Mapping[str, str | None] | None
) -> str:
    """The caller's project; raises ApiException when a token file is in force and the credential fails."""
    header_project = (headers.get("x-goog-user-project") or "").strip() or None
    if tokens is None:
        return header_project or DEFAULT_PROJECT
    auth = headers.get("authorization") or ""
    bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
    key = headers.get("x-goog-api-key") or query.get("key")
    access = query.get("access_token")
    if bearer or access:
        found, project = _lookup(tokens, bearer or access or "")
        if not found:
            raise ApiException(
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected "
                "OAuth 2 access token, login cookie or other valid authentication credential.",
                reason="ACCESS_TOKEN_TYPE_UNSUPPORTED",
            )
    elif key:
        found, project = _lookup(tokens, key)
        if not found:
            raise ApiException(
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                reason="API_KEY_INVALID",
            )
    else:
        raise ApiException(
            "UNAUTHENTICATED",
            "Request is missing required authentication credential. "
            "Expected OAuth 2 access token, API key or other valid authentication credential "
            "(this engine reads them from its --token-file).",
            reason="CREDENTIALS_MISSING",
        )
    if project and header_project and header_project != project:
        raise ApiException(
            "PERMISSION_DENIED",
            f"Caller does not have required permission to use project "
            f"{header_project}: the credential belongs to project {project}.",
            reason="USER_PROJECT_DENIED",
        )
    return project or header_project or DEFAULT_PROJECT


# ---- the app --------------------------------------------------------------------------------------


def _json(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def create_app(
    data_dir: Path,
    *,
    tokens: Mapping[str, str | None] | None = None,
    extra_models: Mapping[str, Path] | None = None,
) -> FastAPI:
    """The FastAPI app serving one data dir. `tokens` None: any or no credential is accepted."""
    engine = Engine(Path(data_dir), extra_models)
    app = FastAPI(title="tunespec local engine", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine

    @app.exception_handler(ApiException)
    async def _api_error(request: Request, exc: ApiException) -> JSONResponse:
        return _json(exc.body(), exc.http_status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            err = ApiException(
                "NOT_FOUND", f"Method {request.method} is not supported for {request.url.path}."
            )
        else:
            err = ApiException(
                "NOT_FOUND", f"The requested URL {request.url.path} was not found on this server."
            )
        return _json(err.body(), err.http_status)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        err = ApiException("INTERNAL", f"Internal error: {type(exc).__name__}: {exc}")
        return _json(err.body(), 500)

    def route(method: str, path: str, version: str, fn: Callable[..., Any], *, body: bool = False) -> None:
        async def endpoint(request: Request) -> JSONResponse:
            query = {snake(k): v for k, v in request.query_params.items()}
            ctx = Ctx(
                project=resolve_project(request.headers, query, tokens),
                version=version,
                int_enums=wants_int_enums(request.url.query),
                query=query,
            )
            args: list[Any] = [ctx, *request.path_params.values()]
            if body:
                args.append(parse_body(await request.body()))
            result = await run_in_threadpool(fn, *args)
            return _json(compact(result, int_enums=ctx.int_enums))

        app.add_api_route(path, endpoint, methods=[method], include_in_schema=False)

    for v in VERSIONS:
        route("GET", f"/{v}/models", v, engine.list_base)
        route(
            "GET",
            f"/{v}/models/{{name}}",
            v,
            lambda ctx, name: Engine.render_base(_get_base(engine, ctx, name)),
        )
        route(
            "POST",
            f"/{v}/models/{{name}}:generateText",
            v,
            lambda ctx, name, b: engine.generate_text(ctx, "models", name, b),
            body=True,
        )
        route("POST", f"/{v}/tunedModels", v, engine.create, body=True)
        route("GET", f"/{v}/tunedModels", v, engine.list_models)
        route(
            "POST",
            f"/{v}/tunedModels/{{model_id}}:generateText",
            v,
            lambda ctx, m, b: engine.generate_text(ctx, "tunedModels", m, b),
            body=True,
        )
        route(
            "GET",
            f"/{v}/tunedModels/{{model_id}}",
            v,
            lambda ctx, m: engine.render_model(engine.owned(ctx, m), ctx.version),
        )
        route("PATCH", f"/{v}/tunedModels/{{model_id}}", v, engine.patch, body=True)
        route("DELETE", f"/{v}/tunedModels/{{model_id}}", v, engine.delete)
    route(
        "POST",
        "/v1beta/models/{name}:generateContent",
        "v1beta",
        lambda ctx, name, b: engine.generate_content(ctx, "models", name, b),
        body=True,
    )
    route(
        "POST",
        "/v1beta/tunedModels/{model_id}:generateContent",
        "v1beta",
        lambda ctx, m, b: engine.generate_content(ctx, "tunedModels", m, b),
        body=True,
    )
    for v in OPERATION_PREFIXES:
        route("GET", f"/{v}/operations", v, lambda ctx: engine.list_operations(ctx, None))
        route(
            "GET",
            f"/{v}/tunedModels/{{model_id}}/operations",
            v,
            lambda ctx, m: engine.list_operations(ctx, m),
        )
        route(
            "POST", f"/{v}/tunedModels/{{model_id}}/operations/{{op_id}}:cancel", v, engine.cancel, body=True
        )
        route("GET", f"/{v}/tunedModels/{{model_id}}/operations/{{op_id}}", v, engine.operation)
    return app


def _get_base(engine: Engine, ctx: Ctx, name: str) -> Any:
    base = engine.base_model(name, ctx.version)
    if base is None:
        raise ApiException(
            "NOT_FOUND",
            f"models/{name} is not found for API version {ctx.version}. Call "
            "ListModels to see the list of available models and their supported methods.",
        )
    return base
