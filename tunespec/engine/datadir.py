"""Where the engine keeps its state by default: one rule for `tunespec serve` and `--target local`.

$TUNESPEC_ENGINE_DIR, else ${XDG_DATA_HOME:-~/.local/share}/tunespec/engine. Light on purpose
(standard library only): the client side imports it without the `local` extra.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ENGINE_DIR_ENV = "TUNESPEC_ENGINE_DIR"


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """The engine's data dir by the rule above, read from `env` (default: os.environ)."""
    env = os.environ if env is None else env
    if env.get(ENGINE_DIR_ENV):
        return Path(env[ENGINE_DIR_ENV]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "tunespec" / "engine"
