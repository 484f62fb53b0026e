"""tunespec: declarative, config-as-code runner for LLM tuning jobs."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "apply", "plan"]


def apply(*args: Any, **kwargs: Any) -> Any:
    """Apply job specs (see `tunespec.apply.apply_specs`)."""
    from tunespec.apply import apply_specs

    return apply_specs(*args, **kwargs)


def plan(*args: Any, **kwargs: Any) -> Any:
    """Plan job specs without changing anything (see `tunespec.plan.plan_specs`)."""
    from tunespec.plan import plan_specs

    return plan_specs(*args, **kwargs)
