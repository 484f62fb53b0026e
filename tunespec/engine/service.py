"""The tuning service behind the routes: tuned models, their operations, base models, generation.

Requests arrive validated (validation.py) and leave as resources (render.py); this module holds
what happens in between: ownership, defaults, the store. Training runs in the worker process
(worker.py): creating a tuned model only queues its job, and a cancel only asks for it to stop.
Generation runs in the caller's thread, through the generate module's model cache.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunespec.engine import ids, paging, render, validation
from tunespec.engine.store import AlreadyExists, Store
from tunespec.engine.wire import ApiException, invalid, now_ns
from tunespec.tuning_api import total_steps

FALLBACK_SAMPLING = {"temperature": 0.7, "top_p": 0.95, "top_k": 40}  # base model gone: text-bison's
SMALL_DATASET = 500  # examples; below it the smaller-dataset defaults apply


@dataclass(frozen=True)
class Ctx:
    """Who asks and how to answer: the caller's project, the API version, enum encoding."""

    project: str
    version: str
    int_enums: bool
    query: Mapping[str, str]


def _model_not_found(name: str, version: str, method: str = "") -> ApiException:
    unsupported = f", or is not supported for {method}" if method else ""
    return ApiException(
        "NOT_FOUND",
        f"{name} is not found for API version {version}{unsupported}. Call ListModels "
        "to see the list of available models and their supported methods.",
    )


def _hyperparameter_defaults(version: str, n: int) -> tuple[int, int, float]:
    """The service's (epoch_count, batch_size, learning rate) for `n` examples."""
    small = n < SMALL_DATASET
    if version == "v1beta3":
        return 10, (16 if small else 64), (0.002 if small else 0.0002)
    return 5, (4 if small else 16), (0.001 if small else 0.0002)


class Engine:
    """The service of one data dir; each public method answers one API call."""

    def __init__(self, data_dir: Path, extra_models: Mapping[str, Path] | None = None,
                 alias_model: str | None = None):
        from tunespec.engine.basemodels import BUILTIN

        self.data_dir = Path(data_dir)
        self.store = Store(self.data_dir)
        self.extra = dict(extra_models or {})
        self.alias = alias_model or BUILTIN  # the model serving Google's names (basemodels.resolve_alias)
        self._gen_lock = threading.Lock()

    # ---- base models -----------------------------------------------------------------------------
    def _base_model(self, name: str, version: str) -> Any:
        from tunespec.engine.basemodels import get_base_model

        return get_base_model(name, version, self.extra, self.alias)

    def _check_base(self, name: str) -> None:
        """A 400 naming the fix when base model `name` cannot be used (not installed, bad file, too big)."""
        from tunespec.engine.basemodels import check
        from tunespec.engine.gguf_import import ModelError

        try:
            check(name, self.extra, self.alias)
        except ModelError as exc:
            raise ApiException(exc.status, str(exc)) from None

    def _materialize(self, name: str) -> Path:
        from tunespec.engine.basemodels import materialize
        from tunespec.engine.gguf_import import ModelError

        try:
            return materialize(name, self.data_dir, self.extra, self.alias)
        except ModelError as exc:
            raise ApiException(exc.status, str(exc)) from None
        except FileNotFoundError as exc:  # a registered directory gone or emptied
            raise ApiException("FAILED_PRECONDITION", f"base model {name}: {exc}") from None

    def list_base_models(self, ctx: Ctx) -> dict[str, Any]:
        from tunespec.engine.basemodels import list_base_models

        size = paging.page_size(ctx.query, default=50)
        start = paging.page_token(ctx.query)
        models = list_base_models(ctx.version, self.extra, self.alias)
        out: dict[str, Any] = {"models": [render.base_model(m) for m in models[start : start + size]]}
        if start + size < len(models):
            out["nextPageToken"] = paging.next_page_token(start + size)
        return out

    def get_base_model(self, ctx: Ctx, name: str) -> dict[str, Any]:
        base = self._base_model(name, ctx.version)
        if base is None:
            raise _model_not_found(f"models/{name}", ctx.version)
        return render.base_model(base)

    # ---- tuned models ------------------------------------------------------------------------------
    def _owned(self, ctx: Ctx, model_id: str) -> dict[str, Any]:
        """The caller's tuned model: 404 if absent, 403 if it belongs to another project."""
        row = self.store.get_model(model_id)
        if row is None:
            raise ApiException("NOT_FOUND", f"Tuned model tunedModels/{model_id} does not exist.")
        return self._check_project(ctx, row)

    @staticmethod
    def _check_project(ctx: Ctx, row: dict[str, Any]) -> dict[str, Any]:
        if row["project"] != ctx.project:
            raise ApiException(
                "PERMISSION_DENIED",
                f"You do not have permission to access tuned model tunedModels/{row['id']}.",
            )
        return row

    def _render(
        self, fn: Callable[..., dict[str, Any]], rows: list[dict[str, Any]], version: str
    ) -> list[dict[str, Any]]:
        """render.tuned_model or render.operation of each row, with its snapshots."""
        snaps = self.store.snapshots([r["id"] for r in rows])
        return [fn(r, snaps[r["id"]], version) for r in rows]

    def _tuned_model(self, row: dict[str, Any], version: str) -> dict[str, Any]:
        return self._render(render.tuned_model, [row], version)[0]

    def _operation(self, row: dict[str, Any], version: str) -> dict[str, Any]:
        return self._render(render.operation, [row], version)[0]

    def create_tuned_model(self, ctx: Ctx, raw: dict[str, Any]) -> dict[str, Any]:
        v = ctx.version
        req = validation.tuning_request(raw, v, ctx.query.get("tuned_model_id"))
        base_name, source_name, init_dir = req.base_model, req.source_model, None
        if source_name:
            src = self._owned(ctx, source_name.removeprefix("tunedModels/"))
            if src["state"] != "ACTIVE":
                raise ApiException(
                    "FAILED_PRECONDITION",
                    f"Tuned model tunedModels/{src['id']} is "
                    f"{src['state']}, not ACTIVE: it cannot be tuned further yet.",
                )
            base_name, init_dir = src["base_model"], src["weights_dir"]
            source_name = f"tunedModels/{src['id']}"
        assert base_name is not None  # validation requires a base model or a source model
        from tunespec.engine.basemodels import model_name

        base_name = model_name(base_name)
        base = self._base_model(base_name, v)
        method_name = "createTunedTextModel" if v == "v1beta3" else "createTunedModel"
        if base is None or method_name not in base.supported_generation_methods:
            raise _model_not_found(base_name, v, method_name)
        if not source_name:  # a source model's weights are already on disk
            self._check_base(base_name)

        n = len(req.examples)
        default_epochs, default_batch, recommended = _hyperparameter_defaults(v, n)
        epochs = req.epoch_count or default_epochs
        batch = req.batch_size or default_batch
        lr, mult = req.learning_rate, req.learning_rate_multiplier
        effective = lr if lr is not None else recommended * (mult if mult is not None else 1.0)
        now = now_ns()
        row = {
            "project": ctx.project,
            "api_version": v,
            "op_id": ids.operation_id(),
            "base_model": base_name,
            "source_tuned_model": source_name,
            "display_name": req.display_name,
            "description": req.description,
            "temperature": req.temperature if req.temperature is not None else base.temperature,
            "top_p": req.top_p if req.top_p is not None else base.top_p,
            "top_k": req.top_k if req.top_k is not None else base.top_k,
            "state": "CREATING",
            "create_ns": now,
            "update_ns": now,
            "start_ns": None,
            "epoch_count": epochs,
            "batch_size": batch,
            "learning_rate": lr if mult is None else None,
            "learning_rate_multiplier": mult,
            "effective_learning_rate": effective,
            # "auto": the trainer tunes LoRA for a pretrained base, full for the built-in model
            "tuning_method": req.tuning_method or "auto",
            "example_count": n,
            "total_steps": total_steps(n, epochs, batch),
            "examples": req.examples,
            "init_dir": init_dir,
        }
        for _ in range(5):
            row["id"] = req.tuned_model_id or ids.tuned_model_id(req.display_name)
            try:
                self.store.insert_model(row)
                break
            except AlreadyExists:
                if req.tuned_model_id:
                    raise ApiException(
                        "ALREADY_EXISTS", f"Tuned model tunedModels/{req.tuned_model_id} already exists."
                    ) from None
        else:  # pragma: no cover - 36^12 ids
            raise ApiException("INTERNAL", "Could not allocate a tuned model id.")
        created = self.store.get_model(row["id"])
        assert created is not None
        op = self._operation(created, v)
        op["metadata"] = {k: op["metadata"][k] for k in ("@type", "totalSteps", "tunedModel")}
        return op

    def list_tuned_models(self, ctx: Ctx) -> dict[str, Any]:
        size = paging.page_size(ctx.query, default=10)
        flt = (ctx.query.get("filter") or "").strip().lower()
        words = [w for w in flt.split() if ":" not in w]
        rows: list[dict[str, Any]] = []
        cursor = paging.page_token(ctx.query)
        while len(rows) < size + 1:
            batch = self.store.list_models(ctx.project, after_seq=cursor, limit=200)
            if not batch:
                break
            cursor = batch[-1]["seq"]
            for r in batch:
                text = f"{r['display_name']} {r['description']}".lower()
                if all(w in text for w in words):
                    rows.append(r)
        return self._page("tunedModels", render.tuned_model, rows, size, ctx.version)

    def _page(
        self, key: str, fn: Callable[..., dict[str, Any]], rows: list[dict[str, Any]], size: int, version: str
    ) -> dict[str, Any]:
        """A list response of the first `size` rows; a nextPageToken when more rows follow."""
        page = rows[:size]
        out: dict[str, Any] = {key: self._render(fn, page, version)}
        if len(rows) > size:
            out["nextPageToken"] = paging.next_page_token(page[-1]["seq"])
        return out

    def get_tuned_model(self, ctx: Ctx, model_id: str) -> dict[str, Any]:
        return self._tuned_model(self._owned(ctx, model_id), ctx.version)

    def update_tuned_model(self, ctx: Ctx, model_id: str, raw: dict[str, Any]) -> dict[str, Any]:
        row = self._owned(ctx, model_id)
        fields = validation.patch_fields(raw, ctx.query.get("update_mask"), ctx.version)
        cleared = [f for f in ("temperature", "top_p", "top_k") if f in fields and fields[f] is None]
        if cleared:  # a cleared sampling default is the base model's again
            base = self._base_model(row["base_model"], row["api_version"])
            for f in cleared:
                fields[f] = getattr(base, f) if base else FALLBACK_SAMPLING[f]
        if fields:
            self.store.update_model(model_id, **fields, update_ns=max(now_ns(), row["update_ns"]))
        return self.get_tuned_model(ctx, model_id)

    def delete_tuned_model(self, ctx: Ctx, model_id: str) -> dict[str, Any]:
        row = self._owned(ctx, model_id)
        if row["state"] == "CREATING":
            self.store.request_cancel(model_id, now_ns())
        self.store.delete_model(model_id)
        if not row["claimed_by"]:  # a running job's worker removes its own files when it sees the row gone
            shutil.rmtree(self.data_dir / "jobs" / model_id, ignore_errors=True)
        return {}

    # ---- operations ---------------------------------------------------------------------------------
    def _op_row(self, ctx: Ctx, model_id: str, op_id: str) -> dict[str, Any]:
        row = self.store.get_model(model_id)
        if row is None or row["op_id"] != op_id:
            raise ApiException(
                "NOT_FOUND", f"Operation tunedModels/{model_id}/operations/{op_id} does not exist."
            )
        return self._check_project(ctx, row)

    def get_operation(self, ctx: Ctx, model_id: str, op_id: str) -> dict[str, Any]:
        return self._operation(self._op_row(ctx, model_id, op_id), ctx.version)

    def list_operations(self, ctx: Ctx, model_id: str | None = None) -> dict[str, Any]:
        """All the caller's operations (paged), or the one of tuned model `model_id`."""
        if model_id is not None:
            rows, size = [self._owned(ctx, model_id)], 1
        else:
            size = paging.page_size(ctx.query, default=10)
            rows = self.store.list_models(
                ctx.project, after_seq=paging.page_token(ctx.query), limit=size + 1
            )
        return self._page("operations", render.operation, rows, size, ctx.version)

    def cancel_operation(self, ctx: Ctx, model_id: str, op_id: str, _body: object = None) -> dict[str, Any]:
        self._op_row(ctx, model_id, op_id)
        self.store.request_cancel(model_id, now_ns())
        return {}

    # ---- generation ----------------------------------------------------------------------------------
    def _model_dir_for(self, ctx: Ctx, kind: str, name: str, method: str) -> tuple[Path, dict[str, Any]]:
        """The weights of `kind/name` and its sampling defaults, if it serves `method`."""
        if kind == "tunedModels":
            row = self._owned(ctx, name)
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
            base = self._base_model(row["base_model"], row["api_version"]) or self._base_model(
                row["base_model"], ctx.version
            )
            limits = {  # a NULL (a row cleared before clearing restored defaults): the base's
                f: row[f] if row[f] is not None else getattr(base, f, FALLBACK_SAMPLING[f])
                for f in ("temperature", "top_p", "top_k")
            } | {
                "output_limit": base.output_token_limit if base else 512,
            }
            return self.data_dir / row["weights_dir"], limits
        base = self._base_model(name, ctx.version)
        if base is None or method not in base.supported_generation_methods:
            raise _model_not_found(f"models/{name}", ctx.version, method)
        with self._gen_lock:  # a GGUF file is checked and converted here on first use
            path = self._materialize(base.name)
        return path, {
            "temperature": base.temperature,
            "top_p": base.top_p,
            "top_k": base.top_k,
            "output_limit": base.output_token_limit,
        }

    def _generate(
        self,
        model_dir: Path,
        prompt: str,
        sampling: dict[str, Any],
        messages: list[dict[str, str]] | None = None,
    ) -> list[str]:
        """Completions of `prompt` (plain models) or of `messages` (models with a chat template; by
        default `prompt` as one user turn)."""
        from tunespec.engine import generate

        with self._gen_lock:
            return generate.generate(model_dir, prompt, **sampling, messages=messages)

    def generate_text(self, ctx: Ctx, name: str, raw: dict[str, Any], *, kind: str) -> dict[str, Any]:
        """generateText on `kind/name` ("models" or "tunedModels")."""
        prompt, body = validation.text_prompt(raw)
        model_dir, defaults = self._model_dir_for(ctx, kind, name, "generateText")
        sampling = validation.sampling(body, defaults, validation.max_temperature(ctx.version))
        return render.text_response(self._generate(model_dir, prompt, sampling))

    def generate_content(self, ctx: Ctx, name: str, raw: dict[str, Any], *, kind: str) -> dict[str, Any]:
        """generateContent on `kind/name` ("models" or "tunedModels")."""
        prompt, messages, body = validation.content_prompt(raw, kind, name)
        model_dir, defaults = self._model_dir_for(ctx, kind, name, "generateContent")
        sampling = validation.sampling(body.get("generation_config"), defaults, 2.0, "generation_config")
        if kind == "tunedModels" and messages[0]["role"] == "system":
            from tunespec.engine import generate

            with self._gen_lock:
                if not generate.is_chat(model_dir):  # as Google's tuned models answer; a template has turns
                    raise invalid(f"Developer instruction is not enabled for tunedModels/{name}",
                                  "system_instruction")
        outputs = self._generate(model_dir, prompt, sampling, messages)
        return render.content_response(outputs, prompt, f"{kind}/{name}")
