"""The tuning service behind the routes: tuned models, their operations, base models, generation.

Requests arrive validated (validation.py) and leave as resources (render.py); this module holds
what happens in between: ownership, defaults, the store. Training runs in the worker process
(worker.py): creating a tuned model only queues its job, and a cancel only asks for it to stop.
Generation runs in the caller's thread, through the generate module's model cache.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from tunespec.engine import ids, paging, permissions, render, validation
from tunespec.engine.store import AlreadyExists, Store
from tunespec.engine.wire import ApiException, Enum, invalid, now_ns
from tunespec.tuning_api import total_steps

FALLBACK_SAMPLING = {"temperature": 0.7, "top_p": 0.95, "top_k": 40}  # base model gone: text-bison's
SMALL_DATASET = 500  # examples; below it the smaller-dataset defaults apply


def catalog_version(version: str) -> str:
    """The API version whose resource types a request of `version` uses: /v1 serves v1beta's."""
    return "v1beta" if version == "v1" else version


FINISH_REASONS = {"STOP": 1, "MAX_TOKENS": 2}  # google.ai.generativelanguage Candidate.FinishReason


def finished(response: dict[str, Any], result: Any) -> dict[str, Any]:
    """A GenerateContentResponse told how generation went (a generate.Result): each candidate's
    finishReason (MAX_TOKENS when maxOutputTokens cut it) and the token counts of the usage."""
    for candidate, completion in zip(response["candidates"], result.completions, strict=True):
        reason = completion.finish_reason
        candidate["finishReason"] = Enum(reason, FINISH_REASONS.get(reason, 0))
    out_tokens = sum(c.tokens for c in result.completions)
    response["usageMetadata"] = {
        "promptTokenCount": result.prompt_tokens,
        "candidatesTokenCount": out_tokens,
        "totalTokenCount": result.prompt_tokens + out_tokens,
    }
    return response


@contextlib.contextmanager
def _prompt_fits() -> Iterator[None]:
    """A prompt the model cannot take (generate.PromptTooLong) answered as Google answers it:
    400 INVALID_ARGUMENT naming the token counts and the fix, before any output."""
    from tunespec.engine.generate import PromptTooLong

    try:
        yield
    except PromptTooLong as exc:
        raise ApiException(exc.status, str(exc)) from None


@dataclass(frozen=True)
class Ctx:
    """Who asks and how to answer: the caller's project, the API version, enum encoding."""

    project: str
    version: str
    int_enums: bool
    query: Mapping[str, str]
    stages: bool = False  # the caller asked for running jobs' stages (render.STAGE_HEADER)


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

        return get_base_model(name, catalog_version(version), self.extra, self.alias)

    def _check_base(self, name: str) -> None:
        """A 400 naming the fix when base model `name` cannot be used (not installed, bad file, too big)."""
        from tunespec.engine.basemodels import check
        from tunespec.engine.gguf_import import ModelError

        try:
            check(name, self.extra, self.alias)
        except ModelError as exc:
            raise ApiException(exc.status, str(exc)) from None

    def _materialize(self, name: str) -> Path:
        from tunespec.engine import generate
        from tunespec.engine.basemodels import materialize
        from tunespec.engine.gguf_import import ModelError

        generate._import_stack()  # building the built-in model imports transformers: not beside the warm-up
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
        models = list_base_models(catalog_version(ctx.version), self.extra, self.alias)
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
    def _owned(self, ctx: Ctx, model_id: str, needed: str = permissions.USE) -> dict[str, Any]:
        """A tuned model the caller holds role `needed` on (its own, or shared with it): 404 if
        absent, 403 if its project has not granted the caller that role."""
        row = self.store.get_model(model_id)
        if row is None:
            raise ApiException("NOT_FOUND", f"Tuned model tunedModels/{model_id} does not exist.")
        return self._check_project(ctx, row, needed)

    def _check_project(self, ctx: Ctx, row: dict[str, Any], needed: str = permissions.USE) -> dict[str, Any]:
        if row["project"] == ctx.project:
            return row
        role = permissions.role_of(row, self.store.permissions(row["id"]), ctx.project)
        if not permissions.allows(role, needed):
            raise permissions.denied(row["id"], role, needed)
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

    def create_tuned_model(self, ctx: Ctx, raw: dict[str, Any], *,
                           lora_rank: int | None = None) -> dict[str, Any]:
        """CreateTunedModel; `lora_rank` (the Vertex dialect's adapter_size) tunes a LoRA adapter of
        that rank."""
        v = catalog_version(ctx.version)
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
            "tuning_method": "lora" if lora_rank else req.tuning_method or "auto",
            "lora_rank": lora_rank,
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
            batch = self.store.list_models(ctx.project, after_seq=cursor, limit=200, shared=True)
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
        row = self._owned(ctx, model_id, permissions.UPDATE)
        fields = validation.patch_fields(
            raw, ctx.query.get("update_mask"), catalog_version(ctx.version), row
        )
        cleared = [f for f in ("temperature", "top_p", "top_k") if f in fields and fields[f] is None]
        if cleared:  # a cleared sampling default is the base model's again
            base = self._base_model(row["base_model"], row["api_version"])
            for f in cleared:
                fields[f] = getattr(base, f) if base else FALLBACK_SAMPLING[f]
        if fields:
            self.store.update_model(model_id, **fields, update_ns=max(now_ns(), row["update_ns"]))
        return self.get_tuned_model(ctx, model_id)

    def delete_tuned_model(self, ctx: Ctx, model_id: str) -> dict[str, Any]:
        row = self._owned(ctx, model_id, permissions.DELETE)
        if row["state"] == "CREATING":
            self.store.request_cancel(model_id, now_ns())
        self.store.delete_model(model_id)
        if not row["claimed_by"]:  # a running job's worker removes its own files when it sees the row gone
            shutil.rmtree(self.data_dir / "jobs" / model_id, ignore_errors=True)
        return {}

    # ---- operations ---------------------------------------------------------------------------------
    def _op_row(self, ctx: Ctx, model_id: str, op_id: str, needed: str = permissions.USE) -> dict[str, Any]:
        row = self.store.get_model(model_id)
        if row is None or row["op_id"] != op_id:
            raise ApiException(
                "NOT_FOUND", f"Operation tunedModels/{model_id}/operations/{op_id} does not exist."
            )
        return self._check_project(ctx, row, needed)

    def get_operation(self, ctx: Ctx, model_id: str, op_id: str) -> dict[str, Any]:
        row = self._op_row(ctx, model_id, op_id)
        return self._render(partial(render.operation, stages=ctx.stages), [row], ctx.version)[0]

    def list_operations(self, ctx: Ctx, model_id: str | None = None) -> dict[str, Any]:
        """All the caller's operations (paged), or the one of tuned model `model_id`."""
        if model_id is not None:
            rows, size = [self._owned(ctx, model_id)], 1
        else:
            size = paging.page_size(ctx.query, default=10)
            rows = self.store.list_models(
                ctx.project, after_seq=paging.page_token(ctx.query), limit=size + 1
            )
        return self._page("operations", partial(render.operation, stages=ctx.stages), rows, size, ctx.version)

    def cancel_operation(self, ctx: Ctx, model_id: str, op_id: str, _body: object = None) -> dict[str, Any]:
        self._op_row(ctx, model_id, op_id, permissions.UPDATE)
        self.store.request_cancel(model_id, now_ns())
        return {}

    # ---- sharing ---------------------------------------------------------------------------------------
    def _grant(
        self, ctx: Ctx, model_id: str, perm_id: str, needed: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The model row and its permission `perm_id` (the owner's is `owner`), for a caller with `needed`."""
        row = self._owned(ctx, model_id, needed)
        if perm_id == permissions.OWNER_ID:
            return row, permissions.owner_grant(row)
        for grant in self.store.permissions(model_id):
            if grant["id"] == perm_id:
                return row, grant
        raise ApiException(
            "NOT_FOUND", f"Permission tunedModels/{model_id}/permissions/{perm_id} does not exist."
        )

    def create_permission(self, ctx: Ctx, model_id: str, raw: dict[str, Any]) -> dict[str, Any]:
        row = self._owned(ctx, model_id, permissions.SHARE)
        grant = permissions.grant_from_request(raw, row["project"])
        try:
            self.store.add_permission(model_id, grant)
        except AlreadyExists:
            who = "everyone" if grant["grantee"] == permissions.EVERYONE else grant["grantee"]
            raise ApiException(
                "ALREADY_EXISTS",
                f"tunedModels/{model_id} already has a permission for {who}: update its role instead.",
            ) from None
        return permissions.render(model_id, grant)

    def list_permissions(self, ctx: Ctx, model_id: str) -> dict[str, Any]:
        row = self._owned(ctx, model_id, permissions.SHARE)
        grants = [permissions.owner_grant(row), *self.store.permissions(model_id)]
        size = paging.page_size(ctx.query, default=10)
        start = paging.page_token(ctx.query)
        out: dict[str, Any] = {
            "permissions": [permissions.render(model_id, g) for g in grants[start : start + size]]
        }
        if start + size < len(grants):
            out["nextPageToken"] = paging.next_page_token(start + size)
        return out

    def get_permission(self, ctx: Ctx, model_id: str, perm_id: str) -> dict[str, Any]:
        return permissions.render(model_id, self._grant(ctx, model_id, perm_id, permissions.SHARE)[1])

    def update_permission(self, ctx: Ctx, model_id: str, perm_id: str, raw: dict[str, Any]) -> dict[str, Any]:
        _, grant = self._grant(ctx, model_id, perm_id, permissions.SHARE)
        if grant["role"] == "OWNER":
            raise invalid("The owner's permission cannot change: call transferOwnership.", "permission.role")
        role = permissions.role_from_patch(raw, ctx.query.get("update_mask"))
        self.store.set_permission_role(model_id, perm_id, role)
        return permissions.render(model_id, {**grant, "role": role})

    def delete_permission(self, ctx: Ctx, model_id: str, perm_id: str) -> dict[str, Any]:
        _, grant = self._grant(ctx, model_id, perm_id, permissions.SHARE)
        if grant["role"] == "OWNER":
            raise invalid("The owner's permission cannot be deleted: call transferOwnership.", "name")
        self.store.delete_permission(model_id, perm_id)
        return {}

    def transfer_ownership(self, ctx: Ctx, model_id: str, raw: dict[str, Any]) -> dict[str, Any]:
        """Hand a tuned model to another project; its former owner keeps a writer permission."""
        row = self._owned(ctx, model_id, permissions.TRANSFER)
        email = validation.transfer_target(raw)
        if email == row["project"]:
            raise invalid(f"{email} owns tunedModels/{model_id} already.", "email_address")
        former = {"id": ids.random_suffix(12), "grantee_type": "USER", "grantee": row["project"],
                  "role": "WRITER"}
        self.store.transfer_ownership(model_id, email, former)
        return {}

    # ---- token counts and embeddings -------------------------------------------------------------------
    def count_tokens(self, ctx: Ctx, name: str, raw: dict[str, Any], *, kind: str) -> dict[str, Any]:
        """countTokens (Gemini): the tokens of `contents` for the model's own tokenizer."""
        from tunespec.engine import generate

        texts = validation.count_tokens_texts(raw, kind, name)
        model_dir, _ = self._model_dir_for(ctx, kind, name, "countTokens")
        return {"totalTokens": sum(generate.count_tokens(model_dir, t) for t in texts)}

    def count_text_tokens(self, ctx: Ctx, name: str, raw: dict[str, Any], *, kind: str) -> dict[str, Any]:
        """countTextTokens (PaLM): the tokens of `prompt.text`."""
        from tunespec.engine import generate

        text = validation.count_text_tokens_prompt(raw)
        model_dir, _ = self._model_dir_for(ctx, kind, name, "countTextTokens")
        return {"tokenCount": generate.count_tokens(model_dir, text)}

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

        with _prompt_fits():
            return generate.generate(model_dir, prompt, **sampling, messages=messages)  # batched, no lock

    def generate_text(self, ctx: Ctx, name: str, raw: dict[str, Any], *, kind: str) -> dict[str, Any]:
        """generateText on `kind/name` ("models" or "tunedModels")."""
        prompt, body = validation.text_prompt(raw)
        model_dir, defaults = self._model_dir_for(ctx, kind, name, "generateText")
        sampling = validation.sampling(body, defaults, validation.max_temperature(ctx.version))
        return render.text_response(self._generate(model_dir, prompt, sampling))

    def _content_request(
        self, ctx: Ctx, name: str, raw: dict[str, Any], kind: str, method: str
    ) -> tuple[Path, str, list[dict[str, str]], dict[str, Any]]:
        """A GenerateContentRequest checked: (weights, prompt, messages, sampling)."""
        from tunespec.engine import generate

        prompt, messages, body = validation.content_prompt(raw, kind, name)
        model_dir, defaults = self._model_dir_for(ctx, kind, name, method)
        sampling = validation.sampling(body.get("generation_config"), defaults, 2.0, "generation_config")
        if kind == "tunedModels" and messages[0]["role"] == "system" and not generate.is_chat(model_dir):
            # as Google's tuned models answer; a template has turns
            raise invalid(f"Developer instruction is not enabled for tunedModels/{name}",
                          "system_instruction")
        return model_dir, prompt, messages, sampling

    def generate_content(self, ctx: Ctx, name: str, raw: dict[str, Any], *, kind: str) -> dict[str, Any]:
        """generateContent on `kind/name` ("models" or "tunedModels")."""
        from tunespec.engine import generate

        model_dir, prompt, messages, sampling = self._content_request(ctx, name, raw, kind, "generateContent")
        with _prompt_fits():
            result = generate.complete(model_dir, prompt, **sampling, messages=messages)  # batched, no lock
        outputs = [c.text for c in result.completions]
        return finished(render.content_response(outputs, prompt, f"{kind}/{name}"), result)

    def stream_generate_content(self, ctx: Ctx, name: str, raw: dict[str, Any], *, kind: str) -> Any:
        """streamGenerateContent on `kind/name`: the request checked and its decoding started; the
        route writes the generate.Stream's chunks (streaming.py). Bad requests raise before any chunk."""
        from tunespec.engine import generate

        model_dir, prompt, messages, sampling = self._content_request(ctx, name, raw, kind, "generateContent")
        with _prompt_fits():  # refused before the stream starts: a 400, not an error chunk
            return generate.stream(model_dir, prompt, **sampling, messages=messages)
