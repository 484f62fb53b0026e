"""The door: who may call the engine, and on behalf of which project.

An engine listens on a loopback address only, unless a token file names who may call
(`load_tokens`). With no token file every caller is let in (the project comes from
`x-goog-user-project`, else `default`). With one, each request must carry a listed token as a
bearer token, an `access_token`, or an API key (`x-goog-api-key` / `key`), answered with Google's
errors when it does not.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from pathlib import Path

from tunespec.engine.wire import ApiException

DEFAULT_PROJECT = "default"


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_tokens(host: str, token_file: Path | str | None) -> dict[str, str | None] | None:
    """The door's rule for listening on `host`: the token file's tokens, or None (open) on loopback.

    Raises ValueError for a non-loopback address without a token file, or a token file that
    cannot be read or parsed.
    """
    if token_file is None:
        if not is_loopback(host):
            raise ValueError(
                f"refusing to listen on {host} without --token-file: any address other than 127.0.0.1 "
                "is reachable from other machines. Pass --token-file FILE (lines 'TOKEN [PROJECT]') or "
                "bind 127.0.0.1."
            )
        return None
    return parse_token_file(Path(token_file))


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
    """Whether `given` is a listed token, and its project (compared in constant time)."""
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
