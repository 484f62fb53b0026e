"""report.md: a job's report as Markdown (verdict, loss sparkline, prompt table), also the step summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunespec.report.compare import problem_of
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
        head = "| prompt | pass rate |" + (" base | score | base score | delta |" if base else " score |")
        align = "|---|---:|" + ("---:|" * 4 if base else "---:|") + "---|---|"
        lines += [head + " output | problem |", align]
        base_prompts = {p["name"]: p for p in (base or {}).get("prompts", [])}
        for p in ev["prompts"]:
            trials = p["trials"]
            output = trials[0]["output"] if trials and trials[0]["output"] is not None else ""
            problem = problem_of(p)
            row = f"| {_cell(p['name'], 60)} | {percent(p['pass_rate'])} |"
            score = p.get("score")
            if base:
                other = base_prompts.get(p["name"], {})
                row += f" {percent(other.get('pass_rate'))} | {_num(score)} | {_num(other.get('score'))} |"
                row += f" {_delta(score, other.get('score'))} |"
            else:
                row += f" {_num(score)} |"
            lines.append(row + f" {_cell(output, 60)} | {_cell(problem, 100)} |")
        lines += _accuracy_lines(ev, base)
        lines += _metric_lines(ev, base)
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _delta(tuned: float | None, base: float | None) -> str:
    return "-" if tuned is None or base is None else f"{tuned - base:+.2f}"


def _accuracy_lines(ev: Mapping[str, Any], base: Mapping[str, Any] | None) -> list[str]:
    """Held-out accuracy per source of scored examples, with the base model's beside it."""
    groups = (ev.get("validation") or {}).get("groups") or {}
    if not groups:
        return []
    base_groups = ((base or {}).get("validation") or {}).get("groups") or {}
    names = {"held_out": "held out (validation_split)", "dataset": "evaluation.dataset"}
    lines = [
        "",
        "### Held-out accuracy",
        "",
        f"Accuracy **{percent(ev.get('accuracy'))}**"
        + (f" (threshold {percent(ev['accuracy_threshold'])})" if ev.get("accuracy_threshold") else "")
        + (f"; base model {percent(base.get('accuracy'))}" if base else ""),
        "",
        "| examples | count | tuned |" + (" base | delta |" if base else ""),
        "|---|---:|---:|" + ("---:|---:|" if base else ""),
    ]
    for key, g in groups.items():
        row = f"| {names.get(key, key)} | {g['count']} | {percent(g['accuracy'])} |"
        if base:
            b = base_groups.get(key)
            other = b["accuracy"] if b else None
            row += f" {percent(other)} | {_delta(g['accuracy'], other)} |"
        lines.append(row)
    return lines


def _metric_lines(ev: Mapping[str, Any], base: Mapping[str, Any] | None) -> list[str]:
    """Each named metric (and the weighted score), tuned vs base with the delta."""
    metrics = dict(ev.get("metrics") or {})
    if not metrics:
        return []
    theirs = (base or {}).get("metrics") or {}
    lines = [
        "",
        "### Metrics",
        "",
        "| metric | tuned |" + (" base | delta |" if base else ""),
        "|---|---:|" + ("---:|---:|" if base else ""),
    ]
    rows = [("weighted score", ev.get("score"), (base or {}).get("score"))]
    rows += [(name, value, theirs.get(name)) for name, value in metrics.items()]
    for name, value, other in rows:
        lines.append(
            f"| {_cell(name, 40)} | {_num(value)} |"
            + (f" {_num(other)} | {_delta(value, other)} |" if base else "")
        )
    return lines


def _spec_key(key: str) -> str:
    """A hyperparameter in the spec's spelling (`epochCount` -> `epoch_count`), whoever reported it."""
    return snake(key).lower()
