"""Google's JSON wire format: lenient parsing, timestamps, enums, errors.

Requests may use lowerCamelCase or snake_case keys, even mixed (tunespec.tuning_api.to_snake maps
them), and may carry trailing commas (Google's parser accepts the quickstart's `"epoch_count":3, }`).
Responses use lowerCamelCase, omit default values, write timestamps as RFC 3339 UTC and enums as
names, or as numbers when the request carries `$alt=json;enum-encoding=int`.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

from tunespec.engine.limits import MAX_DEPTH, too_large_message, tree_problem

STATUS_HTTP = {
    "CANCELLED": 499,
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


class ApiException(Exception):
    """An error answered as `{"error": {code, message, status, details?}}`."""

    def __init__(
        self, status: str, message: str, *, violations: list[tuple[str, str]] | None = None, reason: str = "",
        http_status: int | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.http_status = http_status or STATUS_HTTP.get(status, 500)
        self.violations = violations or []
        self.reason = reason

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.http_status, "message": self.message, "status": self.status}
        details = []
        if self.reason:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": self.reason,
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            )
        if self.violations:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": f, "description": d} for f, d in self.violations],
                }
            )
        if details:
            err["details"] = details
        return {"error": err}


def invalid(
    message: str, field: str = "", *, violations: list[tuple[str, str]] | None = None
) -> ApiException:
    """400 INVALID_ARGUMENT naming the offending field."""
    if violations is None and field:
        violations = [(field, message)]
    return ApiException("INVALID_ARGUMENT", message, violations=violations)


# ---- lenient JSON --------------------------------------------------------------------------------


def _strip_trailing_commas(text: str) -> str:
    """Drop commas that directly follow a value and precede `}` or `]` (outside strings)."""
    out: list[str] = []
    i, n = 0, len(text)
    in_str = False
    last = ""  # the last significant character written outside strings
    while i < n:
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_str = False
                last = '"'
        elif c == '"':
            in_str = True
            out.append(c)
        elif c == ",":
            j = i + 1
            while j < n and text[j] in " \t\r\n":
                j += 1
            if j < n and text[j] in "}]" and last and last not in "{[,:":
                i += 1
                continue
            out.append(c)
            last = c
        else:
            out.append(c)
            if c not in " \t\r\n":
                last = c
        i += 1
    return "".join(out)


def too_large(limit: int) -> ApiException:
    """413 for a request body over `limit` bytes, in Google's envelope."""
    return ApiException("INVALID_ARGUMENT", too_large_message(limit), http_status=413)


def parse_body(raw: bytes) -> dict[str, Any]:
    """Parse a request body like Google does: JSON object, trailing commas tolerated; empty is `{}`.

    Nesting beyond limits.MAX_DEPTH, lone surrogates and numbers Python cannot hold are 400s."""
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid(f"Invalid JSON payload received. Request body is not UTF-8 ({exc.reason}).") from None
    try:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = json.loads(_strip_trailing_commas(text))
    except json.JSONDecodeError as exc:
        raise invalid(
            f"Invalid JSON payload received. {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from None
    except RecursionError:
        message = f"Invalid JSON payload received. Nesting exceeds the limit of {MAX_DEPTH} levels."
        raise invalid(message) from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise invalid(f"Invalid JSON payload received. Invalid number: {exc}") from None
    if not isinstance(value, dict):
        raise invalid("Invalid JSON payload received. Expected a JSON object at the top level.")
    problem = tree_problem(value)
    if problem:
        raise invalid(problem[1], problem[0])
    return value


# ---- enums and response encoding -----------------------------------------------------------------


class Enum(str):
    """An enum value in a response: its name, with its number for `enum-encoding=int`."""

    number: int

    def __new__(cls, name: str, number: int) -> Enum:
        obj = super().__new__(cls, name)
        obj.number = number
        return obj


class Present(str):
    """A string written even when empty (e.g. a candidate's `output`, which clients index)."""


def compact(value: Any, *, int_enums: bool = False) -> Any:
    """Drop None / empty values (proto3 JSON omits defaults) and encode enums."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            v = compact(v, int_enums=int_enums)
            if v is None or (v == "" and not isinstance(v, Present)) or v == [] or v == {} or v is False:
                continue
            out[k] = v
        return out
    if isinstance(value, (list, tuple)):
        return [compact(v, int_enums=int_enums) for v in value]
    if isinstance(value, Enum):
        return value.number if int_enums else str(value)
    if isinstance(value, Present):
        return value  # kept as Present so the parent keeps it even when empty
    return value


def wants_int_enums(query: str) -> bool:
    """True when the query string carries `$alt=json;enum-encoding=int` (GAPIC REST transport)."""
    from urllib.parse import unquote

    return "enum-encoding=int" in unquote(query)


# ---- timestamps ----------------------------------------------------------------------------------


def now_ns() -> int:
    return time.time_ns()


def rfc3339(ns: int | None, digits: int = 6) -> str | None:
    """Nanoseconds since the epoch -> `2023-09-19T19:56:25.999303Z` (digits fractional digits)."""
    if ns is None:
        return None
    secs, frac = divmod(int(ns), 1_000_000_000)
    base = datetime.fromtimestamp(secs, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if digits <= 0:
        return base + "Z"
    return f"{base}.{frac:09d}"[: len(base) + 1 + digits] + "Z"
