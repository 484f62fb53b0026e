"""Which scored assertions need the `eval` extra, and whether it is installed (found, not imported)."""

from __future__ import annotations

import importlib.util

INSTALL = "pip install 'tunespec[eval]'"
# kind -> the modules it imports when a spec uses it
NEEDS = {"similar": ("torch", "transformers", "all_minilm_l6_v2")}


def missing_modules(kind: str) -> list[str]:
    """The modules `kind` needs that are not installed."""
    return [m for m in NEEDS.get(kind, ()) if importlib.util.find_spec(m) is None]
