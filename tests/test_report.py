"""JUnit suites of a run: every job and every invalid spec shows up with a test case."""

from __future__ import annotations

from pathlib import Path

from tunespec.errors import Problem
from tunespec.report import invalid_suite, junit_suite


def report(**extra) -> dict:
    return {"job": {"name": "solo"}, "generated_at": "2026-01-01T00:00:00Z", "timings": {"total_s": 1.5},
            "evaluation": None, "error": None, "exit_code": 0, **extra}


def test_a_job_without_evaluation_prompts_is_one_passed_tuning_case():
    suite = junit_suite(report())
    (case,) = suite.findall("testcase")
    assert (case.get("name"), case.get("time"), list(case)) == ("tuning", "1.500", [])
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "0")


def test_a_failed_job_without_evaluation_is_one_error_case():
    failed = report(error="solo: tuning job ended FAILED", exit_code=1, error_type="JobFailedError")
    suite = junit_suite(failed)
    (case,) = suite.findall("testcase")
    assert case.get("name") == "tuning" and case.find("error") is not None and suite.get("errors") == "1"


def test_an_invalid_spec_case_names_its_file_and_line(tmp_path: Path):
    spec = str(tmp_path / "jobs" / "broken.yaml")
    problems = [Problem(spec, "unknown key 'epoch_cout'", line=4, column=3, key_path="hyperparameters.x")]
    (case,) = invalid_suite(spec, problems).findall("testcase")
    assert (case.get("file"), case.get("line")) == (spec, "4")
    assert f"{spec}:4:3" in case.find("error").get("message")


def summary(**extra) -> dict:
    fields = {"tuned_model": "tunedModels/solo-abc", "fingerprint": "abc", "examples": 2, "timings": {},
              "target": {"name": "http://127.0.0.1:1", "url": "http://127.0.0.1:1", "auth": "none"}}
    return report(**{**fields, **extra})


def test_markdown_names_a_url_target_once_and_a_named_one_with_its_address():
    from tunespec.report import render_markdown

    assert "| Target | http://127.0.0.1:1 |" in render_markdown(summary())
    local = summary(target={"name": "local", "url": "http://127.0.0.1:8765", "auth": "none"})
    assert "| Target | local (http://127.0.0.1:8765) |" in render_markdown(local)


def test_markdown_shows_only_the_times_it_knows():
    from tunespec.report import render_markdown

    assert "| Time |" not in render_markdown(summary(error="unreachable", exit_code=1))
    text = render_markdown(summary(timings={"total_s": 12.34, "train_s": 10.0}))
    assert "| Time | total 12.3s, tuning 10.0s |" in text


def test_markdown_hyperparameters_read_the_same_whoever_reported_them():
    from tunespec.report import render_markdown

    requested = summary(hyperparameters={"requested": {"epoch_count": 2, "batch_size": 1}, "resolved": {}})
    resolved = summary(hyperparameters={"requested": {}, "resolved": {"epochCount": 2, "batchSize": 1}})
    line = "| Hyperparameters | epoch_count=2, batch_size=1 |"
    assert line in render_markdown(requested) and line in render_markdown(resolved)


SNAPSHOTS = [{"step": 1, "epoch": 0, "meanLoss": 2.5}, {"step": 2, "epoch": 1, "meanLoss": 1.25}]


def test_loss_png_is_drawn_when_the_plot_extra_is_installed(tmp_path: Path):
    import json

    from tunespec.report import write_reports

    written = write_reports(summary(snapshots=SNAPSHOTS), tmp_path, env={})
    assert written["png"].read_bytes()[:4] == b"\x89PNG"
    assert "loss_plot_skipped" not in json.loads((tmp_path / "report.json").read_text())


def test_without_matplotlib_the_reports_say_why_loss_png_is_missing(tmp_path: Path, monkeypatch):
    """The light install has no matplotlib: every format says the plot was skipped and how to get it."""
    import json
    import sys

    from tunespec.report import write_reports

    (tmp_path / "loss.png").write_bytes(b"\x89PNG from an earlier run")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    written = write_reports(summary(snapshots=SNAPSHOTS), tmp_path, env={})
    assert "png" not in written and not (tmp_path / "loss.png").exists()
    doc = json.loads((tmp_path / "report.json").read_text())
    assert "matplotlib is not installed" in doc["loss_plot_skipped"]
    assert "tunespec[plot]" in doc["loss_plot_skipped"]
    markdown = (tmp_path / "report.md").read_text()
    assert "![loss curve]" not in markdown
    assert "_loss.png not written: matplotlib is not installed" in markdown
    assert "### Loss" in markdown  # the sparkline still shows the curve
