"""report.md: a job's report as Markdown (verdict, loss sparkline, prompt table), also the step summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunespec.report.document import losses, percent
from tunespec.tuning_api import snake

SPARKS = "▁▂▃▄▅▆▇█"
VERDICTS = {0: "✅ passed", 1: "❌ failed", 2: "❌ invalid", 3: "❌ below threshold"}


def sparkline(values: Sequence[float], width: int = 60) -> str:
    """A one-line text plot of `values` (resampled to at most `width` points)."""
    if not values:
        return ""
    if len(values) > width:
        values = [values[round(i * (len(values) - 1) / (width - 1))] for i in range(width)]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(
        SPARKS[min(len(SPARKS) - 1, int((v - lo) / span * (len(SPARKS) - 1) + 0.5))] for v in values
    )


def _cell(text: Any, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|").replace("`", "'")


def _target(target: Mapping[str, Any]) -> str:
    """The target's name, and its URL when that says more (`local` -> its address)."""
    name, url = target.get("name") or "", target.get("url") or ""
    return f"{name} ({url})" if url and url != name else name or url or "-"


def render_markdown(report: Mapping[str, Any], *, png_name: str | None = "loss.png") -> str:
    job = report["job"]["name"]
    lines = [f"## tunespec: {job}", ""]
    verdict = VERDICTS.get(report["exit_code"], "")
    lines += [
        "| | |",
        "|---|---|",
        f"| Result | {verdict} (exit {report['exit_code']}) |",
        f"| Tuned model | `{report['tuned_model']}` |",
        f"| State | {report.get('state') or '-'} |",
        f"| Action | {report.get('action_label', report.get('action'))} |",
        f"| Base model | `{report.get('source_model') or report.get('base_model')}` |",
        f"| Target | {_target(report['target'])} |",
        f"| Fingerprint | `{report['fingerprint']}` |",
        f"| Examples | {report.get('examples')} |",
    ]
    hp = (
        (report.get("hyperparameters") or {}).get("resolved")
        or (report.get("hyperparameters") or {}).get("requested")
        or {}
    )
    if hp:
        lines.append("| Hyperparameters | " + ", ".join(f"{_spec_key(k)}={v}" for k, v in hp.items()) + " |")
    timings = report.get("timings") or {}
    spent = [
        f"{label} {timings[key]:.1f}s"
        for key, label in (("total_s", "total"), ("train_s", "tuning"), ("eval_s", "evaluation"))
        if timings.get(key) is not None
    ]
    if spent:
        lines.append(f"| Time | {', '.join(spent)} |")
    if report.get("error"):
        lines += ["", f"**Error:** {_cell(report['error'], 2000)}"]
    replaced = report.get("replaced")
    if replaced is not None:
        earlier = ", ".join(
            part
            for part in (
                replaced.get("generated_at"),
                VERDICTS.get(replaced.get("exit_code"), ""),
                f"`{replaced['tuned_model']}`" if replaced.get("tuned_model") else "",
            )
            if part
        )
        removed = replaced.get("removed") or []
        lines += [
            "",
            "_This report replaces the previous one in this directory"
            + (f" ({earlier})" if earlier else "")
            + (f"; removed what no longer applies: {', '.join(removed)}" if removed else "")
            + "._",
        ]
    points = losses(report)
    if points:
        lines += ["", "### Loss", ""]
        if png_name:
            lines += [f"![loss curve]({png_name})", ""]
        elif report.get("loss_plot_skipped"):
            lines += [f"_loss.png not written: {report['loss_plot_skipped']}._", ""]
        lines += [
            f"`{sparkline([p[1] for p in points])}`",
            "",
            f"first {points[0][1]:.4f} at step {points[0][0]} → last {points[-1][1]:.4f} "
            f"at step {points[-1][0]} (min {min(p[1] for p in points):.4f})",
            "",
        ]
        picks = (
            sorted({round(i * (len(points) - 1) / 7) for i in range(8)})
            if len(points) > 8
            else range(len(points))
        )
        lines += ["| step | mean loss |", "|---:|---:|"] + [
            f"| {points[i][0]} | {points[i][1]:.4f} |" for i in picks
        ]
    ev = report.get("evaluation")
    if ev:
        base = report.get("base_evaluation")
        lines += [
            "",
            "### Evaluation",
            "",
            f"Pass rate **{percent(ev['pass_rate'])}** (threshold {percent(ev['threshold'])})"
            + (
                f"; base model {percent(base['pass_rate'])}, delta {report['delta'] * 100:+.0f} points"
                if base and report.get("delta") is not None
                else ""
            ),
            "",
        ]
        head = "| prompt | pass rate |" + (" base |" if base else "") + " output | problem |"
        lines += [head, "|---|---:|" + ("---:|" if base else "") + "---|---|"]
        base_prompts = {p["name"]: p for p in (base or {}).get("prompts", [])}
        for p in ev["prompts"]:
            trials = p["trials"]
            output = trials[0]["output"] if trials and trials[0]["output"] is not None else ""
            problem = next((t["error"] for t in trials if t["error"]), None) or next(
                (a["message"] for t in trials for a in t["assertions"] if not a["passed"]), ""
            )
            row = f"| {_cell(p['name'], 60)} | {percent(p['pass_rate'])} |"
            if base:
                row += f" {percent(base_prompts.get(p['name'], {}).get('pass_rate'))} |"
            lines.append(row + f" {_cell(output, 60)} | {_cell(problem, 100)} |")
    return "\n".join(lines) + "\n"


def _spec_key(key: str) -> str:
    """A hyperparameter in the spec's spelling (`epochCount` -> `epoch_count`), whoever reported it."""
    return snake(key).lower()
