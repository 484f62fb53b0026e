"""tunespec: declarative, config-as-code runner for LLM tuning jobs.

The library is two calls: `tunespec.plan(specs)` and `tunespec.apply(specs)` (see `tunespec.api`).
They are imported on first use, so that `import tunespec` (and the CLI's start) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunespec.version import __version__

if TYPE_CHECKING:
    from tunespec.api import apply, plan

__all__ = ["__version__", "apply", "plan"]


def __getattr__(name: str) -> Any:
    if name in ("apply", "plan"):
        from tunespec import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tunespec' has no attribute {name!r}")
