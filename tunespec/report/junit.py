"""junit.xml: a job's prompts as test cases (misses are failures, service errors errors)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tunespec.report.document import now_rfc3339, percent


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
                    f"pass rate {percent(p['pass_rate'])} ({p['passes']}/{len(p['trials'])}): "
                    f"{missed[0] if missed else ''}"
                )[:1000],
            )
            el.text = "\n".join(missed)
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join(
            f"[{i + 1}] {t['output'] if t['output'] is not None else '<error>'}"
            for i, t in enumerate(p["trials"])
        )
    accuracy = (ev or {}).get("accuracy")
    if accuracy is not None:  # the held-out examples: one test, failing below accuracy_threshold
        cases += 1
        validation = ev.get("validation") or {}
        case = ET.SubElement(
            suite,
            "testcase",
            classname=job,
            name="held-out accuracy",
            time=f"{validation.get('seconds', 0):.3f}",
        )
        wanted = ev.get("accuracy_threshold")
        if wanted is not None and accuracy < wanted - 1e-9:
            failures += 1
            ET.SubElement(
                case,
                "failure",
                type="AccuracyBelowThreshold",
                message=f"held-out accuracy {percent(accuracy)} is below {percent(wanted)}",
            )
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join(
            f"{p['name']}: {'pass' if p['passes'] == len(p['trials']) else 'fail'} "
            f"(expected {p.get('expected')!r}, got {(p['trials'][0]['output'] if p['trials'] else None)!r})"
            for p in validation.get("prompts", [])
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


def write_xml(suites: Sequence[ET.Element], path: Path) -> None:
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
    write_xml([junit_suite(r) for r in reports] + [invalid_suite(p, probs) for p, probs in invalid], path)
    return path


def combined_junit_path(report_dirs: Sequence[Path], invalid_count: int) -> Path | None:
    """Where a run of several jobs writes its combined junit.xml: next to the jobs' report dirs."""
    if len(report_dirs) + invalid_count < 2 or not report_dirs:
        return None
    if len(set(report_dirs)) > 1:
        return Path(os.path.commonpath([str(d) for d in report_dirs])) / "junit.xml"
    return report_dirs[0].parent / "junit.xml"
