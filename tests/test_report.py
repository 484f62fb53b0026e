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
