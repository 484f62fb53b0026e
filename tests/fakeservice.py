"""A small stand-in for Google's tuning service on 127.0.0.1, with scripted faults.

It speaks the wire format (camelCase JSON, google.rpc.Status errors, LRO operations) closely enough for
the client and the runner, records every request (method, path, query, headers, body) and injects the
faults the tests ask for: an HTTP status with headers, or a dropped connection, once per matching call.
Tuned models "train" a few steps per poll and answer generateText from their training examples.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Fault:
    method: str
    path_regex: str
    status: int | None = None  # None: drop the connection without an answer
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    times: int = 1
    after: bool = False  # do the real work first, then drop the answer (a lost response)
    delay: float = 0.0  # seconds to stall before acting


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    at: float = 0.0  # time.monotonic() when received


def error_body(code: int, status: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status, **extra}}


class FakeService:
    def __init__(self, *, steps_per_poll: int = 4, fail_models: tuple[str, ...] = ()):
        self.models: dict[str, dict[str, Any]] = {}
        self.examples: dict[str, dict[str, str]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.steps_per_poll = steps_per_poll
        self.fail_models = fail_models  # ids containing one of these end FAILED
        self.generate_hook: Callable[[str, str], str] | None = None
        self.advance_on_model_get = True  # False: only operation polls make progress
        self._lock = threading.RLock()
        self._ids = 0
        self._server: ThreadingHTTPServer | None = None

    # ---- life cycle -------------------------------------------------------------------------------

    def start(self) -> str:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                service._dispatch(self)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def calls(self, method: str, path_regex: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and re.search(path_regex, r.path)]

    # ---- dispatch ---------------------------------------------------------------------------------

    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        with self._lock:
            self.requests.append(
                Recorded(
                    h.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in h.headers.items()},
                    body,
                    time.monotonic(),
                )
            )
            fault = next(
                (
                    f
                    for f in self.faults
                    if f.times > 0 and f.method == h.command and re.search(f.path_regex, parts.path)
                ),
                None,
            )
            if fault:
                fault.times -= 1
        if fault and fault.delay:
            time.sleep(fault.delay)
        if fault and fault.status is None and not fault.after:
            h.close_connection = True
            return
        if fault and fault.status is not None:
            return self._send(
                h,
                fault.status,
                fault.body or error_body(fault.status, "UNAVAILABLE", "injected"),
                fault.headers,
            )
        with self._lock:
            status, payload = self._route(h.command, parts.path, parse_qs(parts.query), body)
        if fault and fault.after:
            h.close_connection = True
            return
        self._send(h, status, payload)

    def _send(
        self, h: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(data)

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        m = re.fullmatch(r"/(v1|v1beta|v1beta3)/(.+)", path)
        if not m:
            return 404, error_body(404, "NOT_FOUND", f"no route {path}")
        version, rest = m.groups()
        if rest == "tunedModels" and method == "POST":
            return self._create(version, query, body)
        if rest == "tunedModels" and method == "GET":
            return 200, {"tunedModels": [self._advance(n) for n in sorted(self.models)]}
        if rest == "models" and method == "GET":
            return 200, {"models": [{"name": "models/text-bison-001"}]}
        mm = re.fullmatch(r"(models/[^:]+|tunedModels/[a-z0-9-]+):generate(Text|Content)", rest)
        if mm and method == "POST":
            return self._generate(mm.group(1), mm.group(2), body)
        mm = re.fullmatch(r"tunedModels/([a-z0-9-]+)/operations", rest)
        if mm and method == "GET":
            ops = [
                self._op_view(o)
                for o in self.operations.values()
                if o["model"] == f"tunedModels/{mm.group(1)}"
            ]
            return 200, {"operations": ops}
        mm = re.fullmatch(r"(tunedModels/[a-z0-9-]+/operations/[a-z0-9]+)(:cancel)?", rest)
        if mm:
            op = self.operations.get(mm.group(1))
            if op is None:
                return 404, error_body(404, "NOT_FOUND", f"Operation {mm.group(1)} does not exist.")
            if mm.group(2):
                self.models[op["model"]]["state"] = "FAILED"
                op["error"] = {"code": 1, "message": "Operation cancelled."}
                return 200, {}
            self._advance(op["model"])
            return 200, self._op_view(op)
        mm = re.fullmatch(r"(tunedModels/[a-z0-9-]+)", rest)
        if mm:
            name = mm.group(1)
            if name not in self.models:
                return 404, error_body(404, "NOT_FOUND", f"Tuned model {name} does not exist.")
            if method == "DELETE":
                del self.models[name]
                for key in [k for k, o in self.operations.items() if o["model"] == name]:
                    del self.operations[key]
                return 200, {}
            if method == "PATCH":
                self.models[name].update(body or {})
            return 200, self._advance(name) if self.advance_on_model_get else self.models[name]
        return 404, error_body(404, "NOT_FOUND", f"no route {path}")

    def _create(self, version: str, query: dict[str, list[str]], body: dict[str, Any]) -> tuple[int, Any]:
        model_id = (query.get("tunedModelId") or [None])[0]
        if not model_id:
            self._ids += 1
            model_id = f"model-{self._ids:012d}"
        name = f"tunedModels/{model_id}"
        if name in self.models:
            return 409, error_body(409, "ALREADY_EXISTS", f"Tuned model {name} already exists.")
        task = body.get("tuningTask") or body.get("tuning_task") or {}
        data = task.get("trainingData") or task.get("training_data") or {}
        examples = (data.get("examples") or {}).get("examples") or []
        hp = dict(task.get("hyperparameters") or {})
        hp.setdefault("epochCount", 10)
        hp.setdefault("batchSize", 4)
        total = max(1, math.ceil(len(examples) * hp["epochCount"] / hp["batchSize"]))
        self.examples[name] = {e.get("textInput", e.get("text_input")): e["output"] for e in examples}
        self.models[name] = {
            "name": name,
            "baseModel": body.get("baseModel"),
            "state": "CREATING",
            "createTime": "2026-11-26T10:00:00Z",
            "updateTime": "2026-11-26T10:00:00Z",
            "tuningTask": {"hyperparameters": hp, "snapshots": []},
            "displayName": body.get("displayName", ""),
        }
        self._ids += 1
        op_name = f"{name}/operations/op{self._ids:010d}"
        self.operations[op_name] = {
            "name": op_name,
            "model": name,
            "total": total,
            "version": version,
            "error": None,
        }
        return 200, {
            "name": op_name,
            "metadata": {
                "@type": f"type.googleapis.com/google.ai.generativelanguage.{version}"
                ".CreateTunedModelMetadata",
                "totalSteps": total,
                "tunedModel": name,
            },
        }

    def _advance(self, name: str) -> dict[str, Any]:
        model = self.models[name]
        if model["state"] == "CREATING":
            op = next(o for o in self.operations.values() if o["model"] == name)
            snaps = model["tuningTask"]["snapshots"]
            for _ in range(self.steps_per_poll):
                if len(snaps) >= op["total"]:
                    break
                step = len(snaps) + 1
                snaps.append(
                    {
                        "step": step,
                        "epoch": step // 2,
                        "meanLoss": round(3.0 / step, 4),
                        "computeTime": "2026-11-26T10:00:01Z",
                    }
                )
            if any(f in name for f in self.fail_models) and len(snaps) >= 2:
                model["state"] = "FAILED"
                op["error"] = {"code": 13, "message": "Tuning failed: the training loss diverged (NaN)."}
            elif len(snaps) >= op["total"]:
                model["state"] = "ACTIVE"
                model["tuningTask"]["completeTime"] = "2026-11-26T10:01:00Z"
        return model

    def _op_view(self, op: dict[str, Any]) -> dict[str, Any]:
        model = self.models[op["model"]]
        snaps = model["tuningTask"]["snapshots"]
        meta = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta3.CreateTunedModelMetadata",
            "totalSteps": op["total"],
            "tunedModel": op["model"],
            "snapshots": snaps,
        }
        if snaps:
            meta["completedSteps"] = len(snaps)
            meta["completedPercent"] = 100.0 * len(snaps) / op["total"]
        view: dict[str, Any] = {"name": op["name"], "metadata": meta}
        if op["error"]:
            view.update(done=True, error=op["error"])
        elif model["state"] == "ACTIVE":
            view.update(done=True, response={"@type": "TunedModel", **model})
        return view

    def _generate(self, model: str, method: str, body: dict[str, Any]) -> tuple[int, Any]:
        if model.startswith("tunedModels/"):
            if model not in self.models:
                return 404, error_body(404, "NOT_FOUND", f"Tuned model {model} does not exist.")
            if self.models[model]["state"] != "ACTIVE":
                return 400, error_body(400, "FAILED_PRECONDITION", f"Tuned model {model} is not ACTIVE.")
        if method == "Text":
            prompt = body["prompt"]["text"]
            count = body.get("candidateCount") or body.get("candidate_count") or 1
        else:
            prompt = body["contents"][0]["parts"][0]["text"]
            count = (body.get("generationConfig") or {}).get("candidateCount") or 1
        if self.generate_hook:
            out = self.generate_hook(model, prompt)
        else:
            out = self.examples.get(model, {}).get(prompt, "?") if model.startswith("tunedModels/") else "?"
        if method == "Text":
            return 200, {"candidates": [{"output": out}] * count}
        return 200, {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": out}]}, "finishReason": "STOP", "index": i}
                for i in range(count)
            ]
        }
