"""Resource ids the way Google's service makes them (their shape and limit: tunespec.tuning_api)."""

from __future__ import annotations

import re
import secrets
import string

from tunespec.tuning_api import TUNED_MODEL_ID_MAX_LEN

_ALPHABET = string.ascii_lowercase + string.digits


def random_suffix(length: int = 12) -> str:
    """`length` random characters of [a-z0-9]."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def slug(display_name: str) -> str:
    """Lowercase words, characters outside [a-z0-9] dropped inside words, words joined by '-'.

    "number generator model" -> "number-generator-model"; "test_number_generator" -> "testnumbergenerator".
    """
    words = [re.sub(r"[^a-z0-9]", "", w) for w in display_name.lower().split()]
    return "-".join(w for w in words if w)


def tuned_model_id(display_name: str | None) -> str:
    """slug(displayName) + '-' + 12 random [a-z0-9]; fully random (starting with a letter) otherwise.

    The slug is cut so the id stays within the 40-character limit and still starts with a letter.
    """
    base = slug(display_name or "")
    base = base.lstrip("0123456789-")
    suffix = random_suffix(12)
    if not base:
        return secrets.choice(string.ascii_lowercase) + random_suffix(11)
    base = base[: TUNED_MODEL_ID_MAX_LEN - 13].rstrip("-")
    return f"{base}-{suffix}"


def operation_id() -> str:
    """12 random [a-z0-9] (observed: `xvyx09sjxlmh`)."""
    return random_suffix(12)
