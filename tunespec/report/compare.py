"""Base vs tuned: each prompt's answers and scores side by side, and the delta per metric."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _delta(tuned: float | None, base: float | None) -> float | None:
    return None if tuned is None or base is None else round(tuned - base, 4)


def _side(p: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if p is None:
        return None
    trials = p.get("trials") or []
    first = trials[0] if trials else {}
    return {
        "output": first.get("output"),
        "error": first.get("error"),
        "score": p.get("score"),
        "pass_rate": p.get("pass_rate"),
        "passed": bool(trials) and p.get("passes") == len(trials),
    }


def prompt_rows(tuned: Mapping[str, Any] | None, base: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One row per prompt (written ones, then scored examples): tuned and base side by side."""
    rows = []
    for suite in ("prompts", "validation"):
        mine = _prompts(tuned, suite)
        theirs = {p["name"]: p for p in _prompts(base, suite)}
        for p in mine:
            b = theirs.get(p["name"])
            t = _side(p)
            rows.append(
                {
                    "name": p["name"],
                    "input": p.get("input"),
                    "expected": p.get("expected"),
                    "group": p.get("group") or "prompt",
                    "tuned": t,
                    "base": _side(b),
                    "delta": _delta(p.get("score"), b.get("score") if b else None),
                    "problem": problem_of(p),
                }
            )
    return rows


def _prompts(ev: Mapping[str, Any] | None, suite: str) -> list[Mapping[str, Any]]:
    if not ev:
        return []
    source = ev if suite == "prompts" else (ev.get("validation") or {})
    return list(source.get("prompts") or [])


def problem_of(p: Mapping[str, Any]) -> str:
    """The first thing that went wrong in a prompt's trials: a service error, else a failed check."""
    trials = p.get("trials") or []
    return next((t["error"] for t in trials if t.get("error")), None) or next(
        (a["message"] for t in trials for a in t.get("assertions", []) if not a.get("passed")), ""
    )


def comparison(tuned: Mapping[str, Any] | None, base: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The base-vs-tuned summary of two evaluations (report.json's `comparison`); None without a base."""
    if not tuned or not base:
        return None
    metrics = {}
    for name in sorted(set(tuned.get("metrics") or {}) | set(base.get("metrics") or {})):
        t, b = (tuned.get("metrics") or {}).get(name), (base.get("metrics") or {}).get(name)
        metrics[name] = {"tuned": t, "base": b, "delta": _delta(t, b)}
    out = {
        "pass_rate": {
            "tuned": tuned.get("pass_rate"),
            "base": base.get("pass_rate"),
            "delta": _delta(tuned.get("pass_rate"), base.get("pass_rate")),
        },
        "score": {
            "tuned": tuned.get("score"),
            "base": base.get("score"),
            "delta": _delta(tuned.get("score"), base.get("score")),
        },
        "metrics": metrics,
        "prompts": [
            {
                "name": r["name"],
                "group": r["group"],
                "tuned": (r["tuned"] or {}).get("score"),
                "base": (r["base"] or {}).get("score"),
                "delta": r["delta"],
            }
            for r in prompt_rows(tuned, base)
        ],
    }
    if tuned.get("accuracy") is not None or base.get("accuracy") is not None:
        out["accuracy"] = {
            "tuned": tuned.get("accuracy"),
            "base": base.get("accuracy"),
            "delta": _delta(tuned.get("accuracy"), base.get("accuracy")),
        }
    return out
