"""Report writers: report.json (versioned), report.md, junit.xml and loss.png for each job.

`write_reports(report)` writes the formats the spec asks for into its report dir; `append_step_summary`
adds the Markdown to $GITHUB_STEP_SUMMARY (at most 1 MiB, as GitHub allows); `write_combined_junit`
writes one JUnit file for a whole run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPORT_SCHEMA_VERSION = 1
STEP_SUMMARY_LIMIT = 1024 * 1024
SPARKS = "▁▂▃▄▅▆▇█"
VERDICTS = {0: "✅ passed", 1: "❌ failed", 2: "❌ invalid", 3: "❌ below threshold"}
FILES = {"json": "report.json", "markdown": "report.md", "junit": "junit.xml", "png": "loss.png"}


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def losses(report: Mapping[str, Any]) -> list[tuple[int, float]]:
    return [(int(s.get("step", 0)), float(s.get("meanLoss", 0.0))) for s in report.get("snapshots") or []]


# ---- Markdown -----------------------------------------------------------------------------------------


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.0f}%"


def _cell(text: Any, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|").replace("`", "'")


def _target(target: Mapping[str, Any]) -> str:
    """The target's name, and its URL when that says more (`local` -> its address)."""
    name, url = target.get("name") or "", target.get("url") or ""
    return f"{name} ({url})" if url and url != name else name or url or "-"


def _snake(key: str) -> str:
    """A hyperparameter in the spec's spelling (`epochCount` -> `epoch_count`), whoever reported it."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()


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
        lines.append("| Hyperparameters | " + ", ".join(f"{_snake(k)}={v}" for k, v in hp.items()) + " |")
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
            f"Pass rate **{_pct(ev['pass_rate'])}** (threshold {_pct(ev['threshold'])})"
            + (
                f"; base model {_pct(base['pass_rate'])}, delta {report['delta'] * 100:+.0f} points"
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
            row = f"| {_cell(p['name'], 60)} | {_pct(p['pass_rate'])} |"
            if base:
                row += f" {_pct(base_prompts.get(p['name'], {}).get('pass_rate'))} |"
            lines.append(row + f" {_cell(output, 60)} | {_cell(problem, 100)} |")
    return "\n".join(lines) + "\n"


# ---- JUnit --------------------------------------------------------------------------------------------


def junit_suite(report: Mapping[str, Any]) -> ET.Element:
    """One <testsuite> for a job: a <testcase> per prompt; failures and service errors kept apart."""
    job = report["job"]["name"]
    suite = ET.Element("testsuite", name=job, timestamp=report.get("generated_at", now_rfc3339()))
    cases = failures = errors = skipped = 0
    total = 0.0
    ev = report.get("evaluation")
    error = report.get("error")
    # A job without evaluation prompts still shows up in a run's results, as one test: passed, or
    # the error that ended it before an evaluation.
    if (not error and not (ev or {}).get("prompts")) or (error and not ev):
        case = ET.SubElement(
            suite,
            "testcase",
            classname=job,
            name="tuning",
            time=f"{(report.get('timings') or {}).get('total_s', 0):.3f}",
        )
        cases += 1
        if error:
            kind = "failure" if report.get("exit_code") == 3 else "error"
            if report.get("skipped"):
                kind = "skipped"
                skipped += 1
            ET.SubElement(case, kind, message=str(error)[:1000], type=report.get("error_type") or "Error")
            errors += kind == "error"
            failures += kind == "failure"
    for p in (ev or {}).get("prompts", []):
        cases += 1
        total += p["seconds"]
        case = ET.SubElement(suite, "testcase", classname=job, name=p["name"], time=f"{p['seconds']:.3f}")
        if p.get("source"):
            case.set("file", str(p["source"]))
        if p.get("line"):
            case.set("line", str(p["line"]))
        errs = [t["error"] for t in p["trials"] if t["error"]]
        missed = [a["message"] for t in p["trials"] for a in t["assertions"] if not a["passed"]]
        if errs:
            errors += 1
            el = ET.SubElement(case, "error", message=errs[0][:1000], type="ApiError")
            el.text = "\n".join(errs)
        elif p["passes"] < len(p["trials"]):
            failures += 1
            el = ET.SubElement(
                case,
                "failure",
                type="AssertionError",
                message=(
                    f"pass rate {_pct(p['pass_rate'])} ({p['passes']}/{len(p['trials'])}): "
                    f"{missed[0] if missed else ''}"
                )[:1000],
            )
            el.text = "\n".join(missed)
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join(
            f"[{i + 1}] {t['output'] if t['output'] is not None else '<error>'}"
            for i, t in enumerate(p["trials"])
        )
    suite.set("tests", str(cases))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    suite.set("time", f"{total:.3f}")
    return suite


def invalid_suite(path: str, problems: Sequence[Any]) -> ET.Element:
    suite = ET.Element(
        "testsuite",
        name=Path(path).stem,
        tests="1",
        failures="0",
        errors="1",
        skipped="0",
        time="0",
        timestamp=now_rfc3339(),
    )
    case = ET.SubElement(suite, "testcase", classname=Path(path).stem, name="validate", file=str(path))
    line = next((p.line for p in problems if getattr(p, "line", None)), None)
    if line:
        case.set("line", str(line))
    text = "\n".join(str(p) for p in problems)
    el = ET.SubElement(
        case, "error", message=text.splitlines()[0][:1000] if text else "invalid", type="SpecError"
    )
    el.text = text
    return suite


def _write_xml(suites: Sequence[ET.Element], path: Path) -> None:
    root = ET.Element("testsuites", name="tunespec")
    for key in ("tests", "failures", "errors"):
        root.set(key, str(sum(int(s.get(key, "0")) for s in suites)))
    root.extend(suites)
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def write_combined_junit(
    reports: Sequence[Mapping[str, Any]], invalid: Sequence[tuple[str, Sequence[Any]]], path: Path
) -> Path:
    _write_xml([junit_suite(r) for r in reports] + [invalid_suite(p, probs) for p, probs in invalid], path)
    return path


# ---- loss.png -----------------------------------------------------------------------------------------


def write_loss_png(report: Mapping[str, Any], path: Path) -> Path | None:
    points = losses(report)
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2), dpi=100)
    ax = fig.add_subplot()
    ax.plot([p[0] for p in points], [p[1] for p in points], color="#1f77b4", linewidth=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("mean loss")
    ax.set_title(f"{report['job']['name']}: {report['tuned_model']}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path


# ---- all of them ----------------------------------------------------------------------------------------


def write_reports(
    report: Mapping[str, Any],
    directory: Path,
    formats: Sequence[str] = tuple(FILES),
    *,
    env: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Write the requested formats into `directory`; returns {format: path}."""
    env = os.environ if env is None else env
    directory.mkdir(parents=True, exist_ok=True)
    previous = previous_report(directory) if report.get("error") else None
    # Files of an earlier run that this one does not rewrite would no longer match it: remove them.
    keep = {f for f in formats if f in FILES and (f != "png" or losses(report))}
    removed = []
    for fmt, name in FILES.items():
        if fmt not in keep and (directory / name).exists():
            (directory / name).unlink()
            removed.append(name)
    if previous is not None:  # a failed run replaces a report: say so where the old one was read
        report = {**report, "replaced": {**previous, "removed": removed}}
    written: dict[str, Path] = {}
    png = write_loss_png(report, directory / FILES["png"]) if "png" in keep else None
    if png:
        written["png"] = png
    if "json" in formats:
        path = directory / FILES["json"]
        path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written["json"] = path
    if "markdown" in formats:
        path = directory / FILES["markdown"]
        path.write_text(render_markdown(report, png_name=FILES["png"] if png else None), encoding="utf-8")
        written["markdown"] = path
    if "junit" in formats:
        path = directory / FILES["junit"]
        _write_xml([junit_suite(report)], path)
        written["junit"] = path
    if env.get("GITHUB_STEP_SUMMARY"):
        append_step_summary(render_markdown(report, png_name=None), env)
    return written


def previous_report(directory: Path) -> dict[str, Any] | None:
    """What the report in DIRECTORY says of the run that wrote it; None when there is none."""
    try:
        old = json.loads((directory / FILES["json"]).read_text(encoding="utf-8"))
        return {
            "generated_at": old.get("generated_at"),
            "exit_code": old.get("exit_code"),
            "tuned_model": old.get("tuned_model"),
        }
    except (OSError, ValueError, AttributeError):
        return {} if any((directory / name).exists() for name in FILES.values()) else None


def append_step_summary(markdown: str, env: Mapping[str, str] | None = None) -> None:
    """Append to $GITHUB_STEP_SUMMARY when set, keeping the file within GitHub's 1 MiB limit."""
    env = os.environ if env is None else env
    target = env.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    path = Path(target)
    used = path.stat().st_size if path.exists() else 0
    note = "\n> tunespec: summary truncated at GitHub's 1 MiB step-summary limit; see report.md.\n"
    room = STEP_SUMMARY_LIMIT - used
    data = markdown.encode("utf-8")
    if len(data) > room:
        keep = max(0, room - len(note.encode()))
        if keep <= 0:
            return
        data = data[:keep].decode("utf-8", "ignore").encode("utf-8") + note.encode()
    with path.open("ab") as fh:
        fh.write(data)
