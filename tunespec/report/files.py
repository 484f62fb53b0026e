"""A job's report dir: write the formats the spec asks for, and replace an earlier run's files."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tunespec.github import append_step_summary
from tunespec.report.document import losses
from tunespec.report.html import render_html
from tunespec.report.junit import junit_suite, write_xml
from tunespec.report.markdown import render_markdown
from tunespec.report.plot import MISSING, plot_available, write_loss_png

FILES = {
    "json": "report.json",
    "markdown": "report.md",
    "junit": "junit.xml",
    "png": "loss.png",
    "html": "report.html",
}


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
    wants_png = "png" in formats and bool(losses(report))
    if wants_png and not plot_available():  # say why, in every format, rather than leave it out silently
        report = {**report, "loss_plot_skipped": MISSING}
        wants_png = False
    # Files of an earlier run that this one does not rewrite would no longer match it: remove them.
    keep = {f for f in formats if f in FILES and (f != "png" or wants_png)}
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
        write_xml([junit_suite(report)], path)
        written["junit"] = path
    if "html" in formats:
        path = directory / FILES["html"]
        path.write_text(render_html(report), encoding="utf-8")
        written["html"] = path
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
