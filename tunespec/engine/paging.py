"""List paging: pageSize and the opaque pageToken / nextPageToken of list calls."""

from __future__ import annotations

import base64
from collections.abc import Mapping

from tunespec.engine.validation import read_int
from tunespec.engine.wire import invalid

# ---- list paging -----------------------------------------------------------------------------------


def page_size(query: Mapping[str, str], default: int) -> int:
    """The `pageSize` query parameter: 0 or absent means `default`; at most 1000."""
    size = read_int(query.get("page_size"), "page_size")
    if size is None or size == 0:
        return default
    if size < 0:
        raise invalid(f"page_size must not be negative (got {size})", "page_size")
    return min(size, 1000)


def page_token(query: Mapping[str, str]) -> int:
    """The position a `pageToken` (a previous list's nextPageToken) resumes after; 0 when absent."""
    token = query.get("page_token")
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        kind, n = text.split(":")
        if kind != "after":
            raise ValueError(kind)
        position = int(n)
        if not 0 <= position < 2**63:  # a SQLite integer
            raise ValueError(n)
        return position
    except (ValueError, UnicodeDecodeError):
        raise invalid(
            f"Invalid page_token {token!r}: pass the nextPageToken of a previous list call.", "page_token"
        ) from None


def next_page_token(position: int) -> str:
    """The nextPageToken that resumes a list after `position`."""
    return base64.urlsafe_b64encode(f"after:{position}".encode()).decode().rstrip("=")
