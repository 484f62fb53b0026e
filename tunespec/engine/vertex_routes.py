"""HTTP routes of the Vertex AI dialect, under /v1 and /v1beta1 (google-genai's default).

`projects/{p}/locations/{l}/tuningJobs` create / list (label filters, paging) / get / `:cancel`,
`endpoints/{id}:generateContent` for a tuned model, `publishers/google/models/{m}:generateContent` for
a base model, and `DELETE models/{id}` for a tuned model. The door checks the credential as for the
other dialects; the project is the one in the path (a token bound to another project is refused).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tunespec.engine.door import resolve_project
from tunespec.engine.limits import BODY_LIMIT
from tunespec.engine.service import Engine
from tunespec.engine.vertex_service import VertexJobs
from tunespec.engine.wire import compact, parse_body
from tunespec.tuning_api import snake

VERTEX_VERSIONS = ("v1", "v1beta1")


def _check_project(
    headers: Mapping[str, str],
    query: Mapping[str, str],
    tokens: Mapping[str, str | None] | None,
    project: str,
) -> None:
    """The credential (when a token file is in force) must be valid and, if bound to a project, to the one
    in the path: the door checks it as it checks the quota project header."""
    if tokens is None:
        return
    asked = {k: v for k, v in headers.items() if k.lower() != "x-goog-user-project"}
    resolve_project({**asked, "x-goog-user-project": project}, query, tokens)


def include_vertex(app: FastAPI, engine: Engine, tokens: Mapping[str, str | None] | None) -> None:
    """Add the Vertex dialect's routes to `app`, over `engine`'s store."""
    from tunespec.engine.app import read_body

    jobs = VertexJobs(engine)
    app.state.vertex = jobs

    def route(method: str, path: str, fn: Callable[..., Any], *, body: bool = False) -> None:
        async def endpoint(request: Request) -> JSONResponse:
            query = {snake(k): v for k, v in request.query_params.items()}
            params = dict(request.path_params)
            _check_project(request.headers, query, tokens, params["project"])
            args: list[Any] = list(params.values())
            if method == "GET" and path.endswith("/tuningJobs"):
                args.append(query)
            if body:
                args.append(parse_body(await read_body(request, BODY_LIMIT)))
            result = await run_in_threadpool(fn, *args)
            return JSONResponse(compact(result))

        app.add_api_route(path, endpoint, methods=[method], include_in_schema=False)

    for v in VERTEX_VERSIONS:
        parent = f"/{v}/projects/{{project}}/locations/{{location}}"
        route("POST", f"{parent}/tuningJobs", jobs.create, body=True)
        route("GET", f"{parent}/tuningJobs", jobs.list)
        route("GET", f"{parent}/tuningJobs/{{job_id}}", jobs.get)
        route("POST", f"{parent}/tuningJobs/{{job_id}}:cancel", jobs.cancel, body=True)
        route("POST", f"{parent}/endpoints/{{endpoint}}:generateContent", jobs.generate, body=True)
        route(
            "POST",
            f"{parent}/publishers/google/models/{{model}}:generateContent",
            jobs.generate_base,
            body=True,
        )
        route("DELETE", f"{parent}/models/{{model}}", jobs.delete_model)
