"""HTTP routes: Google's Generative Language API as its SDKs call it (v1beta3, v1beta and v1).

Each route parses the request (bodies leniently, see wire.py), lets the door name the caller's
project (door.py), calls the service (service.py) in a thread and answers in Google's JSON
dialect; every error becomes a `google.rpc.Status` envelope. A method of Google's API that the
engine does not serve answers 501 UNIMPLEMENTED naming it (`unimplemented`), never a 404 that
clients read as "no such model".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunespec.engine import streaming
from tunespec.engine.door import resolve_project
from tunespec.engine.limits import BODY_LIMIT, CREATE_BODY_LIMIT, DRAIN_LIMIT
from tunespec.engine.render import STAGE_HEADER
from tunespec.engine.service import Ctx, Engine
from tunespec.engine.vertex_routes import include_vertex
from tunespec.engine.wire import ApiException, compact, invalid, parse_body, too_large, wants_int_enums
from tunespec.tuning_api import snake

log = logging.getLogger("tunespec.engine")

OPERATION_PREFIXES = ("v1", "v1beta3", "v1beta")
API_VERSIONS = ("v1beta3", "v1beta", "v1")
GEMINI_VERSIONS = ("v1beta", "v1")  # generateContent, countTokens
PALM_VERSIONS = ("v1beta3", "v1beta")  # generateText, countTextTokens
SHARING_VERSIONS = ("v1beta3", "v1beta")  # permissions, transferOwnership
# Google's collections of these versions: a call into one the engine does not serve is UNIMPLEMENTED.
GOOGLE_COLLECTIONS = ("models", "tunedModels", "corpora", "files", "cachedContents", "batches",
                      "operations", "generatedFiles", "dynamic")
SERVED_METHODS = {"generateContent": GEMINI_VERSIONS, "streamGenerateContent": GEMINI_VERSIONS,
                  "countTokens": GEMINI_VERSIONS,
                  "generateText": PALM_VERSIONS, "countTextTokens": PALM_VERSIONS,
                  "transferOwnership": SHARING_VERSIONS}
_CUSTOM_METHOD = re.compile(r"^/(v1beta3|v1beta2|v1beta|v1)/(.+?):([A-Za-z]+)$")
_COLLECTION = re.compile(r"^/(v1beta3|v1beta2|v1beta|v1)/([A-Za-z]+)(/|$)")


def _json(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


async def _drain(request: Request, seen: int) -> None:
    """Read and drop what is left of a refused body (up to DRAIN_LIMIT), so that the client, still
    sending, reads the 413 instead of a connection reset."""
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > DRAIN_LIMIT:
            return


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 once over `limit` bytes: at once by its Content-Length,
    else while streaming it (chunked), never holding more than `limit` bytes."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise invalid(f"Invalid Content-Length header {length[:40]!r}.")
        if int(length) > limit:
            await _drain(request, 0)
            raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            await _drain(request, size)
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    data_dir: Path,
    *,
    tokens: Mapping[str, str | None] | None = None,
    extra_models: Mapping[str, Path] | None = None,
    alias_model: str | None = None,
) -> FastAPI:
    """The FastAPI app serving one data dir. `tokens` None: any or no credential is accepted.
    `alias_model` serves Google's model names (None: the built-in model)."""
    engine = Engine(Path(data_dir), extra_models, alias_model)
    app = FastAPI(title="tunespec local engine", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine

    @app.exception_handler(ApiException)
    async def _api_error(request: Request, exc: ApiException) -> JSONResponse:
        return _json(exc.body(), exc.http_status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        missing = unimplemented(request.method, request.url.path) if exc.status_code in (404, 405) else None
        if missing is not None:
            err = missing
        elif exc.status_code == 405:
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

    def route(
        method: str, path: str, fn: Callable[..., Any], *, body: bool = False, limit: int = BODY_LIMIT
    ) -> None:
        """Serve `fn(ctx, *path_params[, body])` at `method path` (its first segment is the API version)."""
        version = path.split("/")[1]

        async def endpoint(request: Request) -> JSONResponse:
            query = {snake(k): v for k, v in request.query_params.items()}
            ctx = Ctx(
                project=resolve_project(request.headers, query, tokens),
                version=version,
                int_enums=wants_int_enums(request.url.query),
                query=query,
                stages=STAGE_HEADER in request.headers,
            )
            args: list[Any] = [ctx, *request.path_params.values()]
            if body:
                args.append(parse_body(await read_body(request, limit)))
            result = await run_in_threadpool(fn, *args)
            return _json(compact(result, int_enums=ctx.int_enums))

        app.add_api_route(path, endpoint, methods=[method], include_in_schema=False)

    for v in API_VERSIONS:
        route("GET", f"/{v}/models", engine.list_base_models)
        route("GET", f"/{v}/models/{{name}}", engine.get_base_model)
        route("POST", f"/{v}/tunedModels", engine.create_tuned_model, body=True, limit=CREATE_BODY_LIMIT)
        route("GET", f"/{v}/tunedModels", engine.list_tuned_models)
        route("GET", f"/{v}/tunedModels/{{model_id}}", engine.get_tuned_model)
        route("PATCH", f"/{v}/tunedModels/{{model_id}}", engine.update_tuned_model, body=True)
        route("DELETE", f"/{v}/tunedModels/{{model_id}}", engine.delete_tuned_model)
    for kind, param in (("models", "name"), ("tunedModels", "model_id")):
        for v in PALM_VERSIONS:
            route("POST", f"/{v}/{kind}/{{{param}}}:generateText",
                  partial(engine.generate_text, kind=kind), body=True)
            route("POST", f"/{v}/{kind}/{{{param}}}:countTextTokens",
                  partial(engine.count_text_tokens, kind=kind), body=True)
        for v in GEMINI_VERSIONS:
            route("POST", f"/{v}/{kind}/{{{param}}}:generateContent",
                  partial(engine.generate_content, kind=kind), body=True)
            route("POST", f"/{v}/{kind}/{{{param}}}:countTokens",
                  partial(engine.count_tokens, kind=kind), body=True)
    for v in SHARING_VERSIONS:
        perms = f"/{v}/tunedModels/{{model_id}}/permissions"
        route("POST", perms, engine.create_permission, body=True)
        route("GET", perms, engine.list_permissions)
        route("GET", f"{perms}/{{perm_id}}", engine.get_permission)
        route("PATCH", f"{perms}/{{perm_id}}", engine.update_permission, body=True)
        route("DELETE", f"{perms}/{{perm_id}}", engine.delete_permission)
        route("POST", f"/{v}/tunedModels/{{model_id}}:transferOwnership", engine.transfer_ownership,
              body=True)
    for v in OPERATION_PREFIXES:
        route("GET", f"/{v}/operations", engine.list_operations)
        route("GET", f"/{v}/tunedModels/{{model_id}}/operations", engine.list_operations)
        route(
            "POST",
            f"/{v}/tunedModels/{{model_id}}/operations/{{op_id}}:cancel",
            engine.cancel_operation,
            body=True,
        )
        route("GET", f"/{v}/tunedModels/{{model_id}}/operations/{{op_id}}", engine.get_operation)
    # ---- streaming: streamGenerateContent, server-sent events with alt=sse, else a streamed JSON array
    def stream_route(path: str, kind: str) -> None:
        version = path.split("/")[1]

        async def endpoint(request: Request) -> Response:
            query = {snake(k): v for k, v in request.query_params.items()}
            ctx = Ctx(project=resolve_project(request.headers, query, tokens), version=version,
                      int_enums=wants_int_enums(request.url.query), query=query)
            (name,) = request.path_params.values()
            raw = parse_body(await read_body(request, BODY_LIMIT))
            stream = await run_in_threadpool(engine.stream_generate_content, ctx, name, raw, kind=kind)
            return streaming.response(request, stream, f"{kind}/{name}", sse=query.get("alt") == "sse",
                                      int_enums=ctx.int_enums)

        app.add_api_route(path, endpoint, methods=["POST"], include_in_schema=False)

    for kind, param in (("models", "name"), ("tunedModels", "model_id")):
        for v in GEMINI_VERSIONS:
            stream_route(f"/{v}/{kind}/{{{param}}}:streamGenerateContent", kind)
    # ---- end of streaming

    include_vertex(app, engine, tokens)
    return app


def unimplemented(method: str, path: str) -> ApiException | None:
    """501 UNIMPLEMENTED for a call of Google's API that no route serves: a custom method
    (`models/x:embedContent`) or a collection of Google's (`corpora`) the engine lacks."""
    custom = _CUSTOM_METHOD.match(path)
    if custom and method == "POST":
        version, resource, name = custom.groups()
        collection = resource.split("/")[0]
        served = SERVED_METHODS.get(name)
        if served and version not in served and collection in ("models", "tunedModels"):
            return ApiException(
                "NOT_FOUND",
                f"{name} is not part of API version {version}: the engine serves it on "
                + ", ".join(f"/{v}" for v in served) + ".",
            )
        if collection in GOOGLE_COLLECTIONS:
            return ApiException(
                "UNIMPLEMENTED",
                f"Method {name} ({method} /{version}/{resource}:{name}) is not implemented by the tunespec "
                f"engine. It serves generateContent, streamGenerateContent, countTokens, generateText, "
                f"countTextTokens, tuned models, their permissions and operations.",
            )
    coll = _COLLECTION.match(path)
    served = ("models", "tunedModels", "operations")
    if coll and coll.group(2) in GOOGLE_COLLECTIONS and coll.group(2) not in served:
        return ApiException(
            "UNIMPLEMENTED",
            f"{method} /{coll.group(1)}/{coll.group(2)}: the {coll.group(2)} API is not implemented by the "
            "tunespec engine.",
        )
    return None
