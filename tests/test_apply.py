"""The runner commands through the real CLI against a fault-injecting stand-in for Google's service.

These cover the paths the local engine does not produce on demand: 429 with Retry-After, 503, dropped
connections, a lost create answer, a job that ends FAILED, an interrupted apply that attaches.
"""

from __future__ import annotations

import itertools
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.cli_helpers import invoke, start_tunespec
from tests.fakeservice import Fault, error_body
from tunespec.identity import fingerprint, job_slug, tuned_model_id

SPEC = """\
name: {name}
target: {url}
hyperparameters: {{epoch_count: 2, batch_size: 1}}
dataset:
  examples:
    - {{text_input: "1", output: "2"}}
    - {{text_input: "3", output: "4"}}
    - {{text_input: "5", output: "6"}}
evaluation:
  threshold: {threshold}
  prompts:
    - {{input: "1", equals: "2"}}
    - {{input: "3", equals: "4"}}
    - {{name: held-out, input: "7", equals: "8", repeat: 2}}
"""


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def write_spec(tmp_path: Path, service, name: str = "tiny", threshold: float = 0.5, **extra: str) -> Path:
    text = SPEC.format(name=name, url=service.url, threshold=threshold)
    for key, value in extra.items():
        text += f"{key}: {value}\n"
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_identity_is_stable_and_valid():
    assert job_slug("Number Generator_v2!") == "number-generator-v2"
    assert job_slug("9lives") == "job-9lives"
    mid = tuned_model_id("x" * 60, "abcdefghij")
    assert len(mid) <= 40 and re.fullmatch(r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?", mid)


def test_fingerprint_covers_what_changes_the_result(tmp_path, service):
    from tunespec.datasets import Example
    from tunespec.spec import load_spec

    spec = load_spec(write_spec(tmp_path, service))
    ex = [Example("1", "2")]
    fp = fingerprint(spec, ex, "v1beta3")
    assert re.fullmatch(r"[a-z2-7]{10}", fp)
    assert fingerprint(spec, ex, "v1beta3") == fp
    assert fingerprint(spec, [Example("1", "3")], "v1beta3") != fp
    assert fingerprint(spec, ex, "v1beta") != fp
    import dataclasses

    changed = dataclasses.replace(
        spec, hyperparameters=dataclasses.replace(spec.hyperparameters, epoch_count=3)
    )
    assert fingerprint(changed, ex, "v1beta3") != fp
    assert fingerprint(dataclasses.replace(spec, base_model="models/other"), ex, "v1beta3") != fp
    assert fingerprint(dataclasses.replace(spec, tuning_method="lora"), ex, "v1beta3") != fp
    assert fingerprint(dataclasses.replace(spec, description="other words"), ex, "v1beta3") == fp


def test_apply_rides_out_transient_faults_then_is_idempotent(tmp_path, service):
    spec = write_spec(tmp_path, service)
    service.faults += [
        Fault(
            "POST",
            r"tunedModels$",
            429,
            {"Retry-After": "0.1"},
            error_body(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted"),
        ),
        Fault("POST", r"tunedModels$", None, after=True),  # created, but the answer is lost -> 409 -> attach
        Fault("GET", r"/operations/", 503),
        Fault("GET", r"/operations$", None),
        Fault("POST", r":generateText$", 503, {"Retry-After": "0"}),
    ]
    result = invoke("apply", str(spec))
    assert result.exit_code == 0, result.output
    assert len(service.calls("POST", r"tunedModels$")) == 3  # 429, lost answer, 409
    assert len(service.models) == 1
    (name,) = service.models
    assert service.models[name]["state"] == "ACTIVE"
    assert "already exists; attaching" in result.stderr
    reports = tmp_path / "reports" / "tiny"
    names = ["junit.xml", "loss.png", "report.html", "report.json", "report.md"]
    assert sorted(p.name for p in reports.iterdir()) == names
    report = json.loads((reports / "report.json").read_text())
    assert report["schema_version"] == 1 and report["tuned_model"] == name
    assert report["evaluation"]["pass_rate"] == pytest.approx(2 / 3)
    assert len(report["snapshots"]) == 6
    assert report["target"]["url"] == service.url
    assert "| tiny |" in result.stdout.replace("  ", " ") or "tiny" in result.stdout

    # Unchanged spec: nothing new is submitted, the evaluation runs again.
    generate_calls = len(service.calls("POST", r":generateText$"))
    again = invoke("apply", str(spec), "--json")
    assert again.exit_code == 0, again.output
    doc = json.loads(again.stdout)
    assert doc["schema_version"] == 1 and doc["jobs"][0]["action"] == "noop"
    assert doc["jobs"][0]["submitted"] is False
    assert len(service.calls("POST", r"tunedModels$")) == 3
    assert len(service.calls("POST", r":generateText$")) > generate_calls

    plan = invoke("plan", str(spec), "--detailed-exitcode")
    assert plan.exit_code == 0 and "up to date" in plan.stdout


def test_plan_states_and_detailed_exitcode(tmp_path, service):
    spec = write_spec(tmp_path, service)
    result = invoke("plan", str(spec), "--detailed-exitcode")
    assert result.exit_code == 2 and "create" in result.stdout
    assert invoke("plan", str(spec)).exit_code == 0
    doc = json.loads(invoke("plan", str(spec), "--json").stdout)
    assert doc["schema_version"] == 1 and doc["jobs"][0]["action"] == "create" and doc["changes"] is True
    # in progress
    from tunespec.client import TuningClient

    mid = doc["jobs"][0]["tuned_model"].split("/")[1]
    TuningClient(service.url).create_tuned_model(
        {
            "baseModel": "m",
            "tuningTask": {
                "trainingData": {"examples": {"examples": [{"textInput": "1", "output": "2"}] * 50}}
            },
        },
        mid,
    )
    assert "in progress" in invoke("plan", str(spec)).stdout
    # failed
    service.models[f"tunedModels/{mid}"]["state"] = "FAILED"
    assert "failed (will recreate)" in invoke("plan", str(spec)).stdout
    # changed: another fingerprint of the same job exists
    del service.models[f"tunedModels/{mid}"]
    service.models["tunedModels/tiny-aaaaaaaaaa"] = {"name": "tunedModels/tiny-aaaaaaaaaa", "state": "ACTIVE"}
    out = invoke("plan", str(spec))
    assert "changed (new model)" in out.stdout and "tiny-aaaaaaaaaa" in out.stderr


def test_failed_job_reports_the_service_message_and_exit_1(tmp_path, service):
    service.fail_models = ("doomed",)
    spec = write_spec(tmp_path, service, name="doomed")
    result = invoke("apply", str(spec))
    assert result.exit_code == 1, result.output
    assert "ended FAILED: Tuning failed: the training loss diverged (NaN)." in result.stderr
    junit = ET.parse(tmp_path / "reports" / "doomed" / "junit.xml").getroot()
    assert junit.find(".//testcase/error") is not None
    report = json.loads((tmp_path / "reports" / "doomed" / "report.json").read_text())
    assert report["state"] == "FAILED" and "diverged" in report["error"]
    # Run again: the failed model is deleted and the job resubmitted.
    service.fail_models = ()
    again = invoke("apply", str(spec))
    assert again.exit_code == 0, again.output
    assert "ended FAILED before; deleting it" in again.stderr
    assert len(service.calls("DELETE", r"tunedModels/doomed-")) == 1


def test_without_operations_apply_follows_the_model_state(tmp_path, service):
    def faults() -> list[Fault]:  # a lost create answer -> 409 -> attach, with no operation to find
        return [
            Fault("POST", r"tunedModels$", None, after=True),
            Fault("GET", r"/operations$", 501, body=error_body(501, "UNIMPLEMENTED", "no"), times=99),
        ]

    service.faults += faults()
    spec = write_spec(tmp_path, service)
    result = invoke("apply", str(spec))
    assert result.exit_code == 0, result.output
    assert "already exists; attaching" in result.stderr
    assert [m["state"] for m in service.models.values()] == ["ACTIVE"]

    service.fail_models = ("doomed",)
    service.faults += faults()
    doomed = write_spec(tmp_path, service, name="doomed")
    result = invoke("apply", str(doomed))
    assert result.exit_code == 1, result.output
    assert "ended FAILED: the service gave no reason" in result.stderr
    report = json.loads((tmp_path / "reports" / "doomed" / "report.json").read_text())
    assert report["state"] == "FAILED"


def test_evaluation_below_threshold_exits_3(tmp_path, service):
    spec = write_spec(tmp_path, service, threshold=0.9)
    result = invoke("apply", str(spec), env={"GITHUB_ACTIONS": "true"})
    assert result.exit_code == 3, result.output
    assert "below the threshold 90%" in result.stderr
    assert re.search(r"::error file=.*tiny.yaml,line=14,title=tunespec tiny::held-out", result.stderr)
    junit = ET.parse(tmp_path / "reports" / "tiny" / "junit.xml").getroot()
    cases = junit.findall(".//testcase")
    assert len(cases) == 3
    assert [c.get("name") for c in cases if c.find("failure") is not None] == ["held-out"]


def test_eval_errors_are_service_errors(tmp_path, service):
    spec = write_spec(tmp_path, service)
    assert invoke("apply", str(spec)).exit_code == 0
    service.faults.append(
        Fault(
            "POST",
            r":generateText$",
            403,
            times=99,
            body=error_body(403, "PERMISSION_DENIED", "You do not have permission to access tuned model"),
        )
    )
    result = invoke("eval", str(spec))
    assert result.exit_code == 1
    junit = ET.parse(tmp_path / "reports" / "tiny" / "junit.xml").getroot()
    assert len(junit.findall(".//testcase/error")) == 3


def test_interrupted_apply_attaches_instead_of_resubmitting(tmp_path, service):
    service.steps_per_poll = 1
    spec = write_spec(tmp_path, service)
    first = invoke("apply", str(spec), "--timeout", "0.5")
    assert first.exit_code == 1
    assert "timed out after 0.5s" in first.stderr and "run `tunespec apply` again to attach" in first.stderr
    assert len(service.calls("POST", r"tunedModels$")) == 1
    service.advance_on_model_get = False
    status = invoke("status", str(spec), "--json")
    job = json.loads(status.stdout)["jobs"][0]
    assert job["state"] == "CREATING" and job["total_steps"] == 6 and job["completed_steps"] >= 1
    second = invoke("apply", str(spec))
    assert second.exit_code == 0, second.output
    assert "already tuning; attaching to tunedModels/" in second.stderr
    assert len(service.calls("POST", r"tunedModels$")) == 1


def test_changed_spec_makes_a_new_model_and_prune_deletes_the_old(tmp_path, service):
    spec = write_spec(tmp_path, service)
    assert invoke("apply", str(spec)).exit_code == 0
    (old,) = service.models
    spec.write_text(spec.read_text().replace("epoch_count: 2", "epoch_count: 3"))
    result = invoke("apply", str(spec), "--prune")
    assert result.exit_code == 0, result.output
    assert old not in service.models and len(service.models) == 1
    listing = json.loads(invoke("list", str(spec), "--json").stdout)
    assert [m["current"] for m in listing["models"]] == [True]
    assert invoke("delete", str(spec)).exit_code == 2  # no confirmation possible off a terminal
    assert invoke("delete", str(spec), "--yes").exit_code == 0
    assert service.models == {}


def test_jobs_on_one_target_share_one_list_call(tmp_path, service):
    specs = [str(write_spec(tmp_path, service, name=name)) for name in ("alpha", "beta", "gamma")]
    for command in ("plan", "list"):
        service.requests.clear()
        result = invoke(command, *specs)
        assert result.exit_code == 0, result.output
        assert len(service.calls("GET", r"tunedModels$")) == 1, command


def test_invalid_spec_exit_2_names_the_file(tmp_path, service):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nhyperparameters: {epoch_count: -1}\ndataset: {examples: []}\n")
    result = invoke("apply", str(bad))
    assert result.exit_code == 2
    assert "bad.yaml" in result.stderr
    assert invoke("plan", str(bad), "--detailed-exitcode").exit_code == 1


def test_no_secret_reaches_output_or_reports(tmp_path, service):
    secret = "engine-secret-4f1c"
    service.faults.append(
        Fault("GET", r"tunedModels$", 400, body=error_body(400, "INVALID_ARGUMENT", f"bad token {secret}"))
    )
    spec = write_spec(tmp_path, service)
    env = {"TUNESPEC_ENGINE_TOKEN": secret}
    failed = invoke("apply", str(spec), env=env)
    assert failed.exit_code == 1 and secret not in failed.output and "***" in failed.stderr
    summary = tmp_path / "summary.md"
    ok = invoke("apply", str(spec), env={**env, "GITHUB_STEP_SUMMARY": str(summary)})
    assert ok.exit_code == 0, ok.output
    assert service.requests[-1].headers["authorization"] == f"Bearer {secret}"
    texts = [ok.output, summary.read_text()] + [
        p.read_text() for p in (tmp_path / "reports").rglob("*") if p.suffix in (".json", ".md", ".xml")
    ]
    assert all(secret not in t for t in texts)
    assert "## tunespec: tiny" in summary.read_text()


def test_step_summary_is_capped(tmp_path):
    from tunespec.github import STEP_SUMMARY_LIMIT, append_step_summary

    path = tmp_path / "s.md"
    path.write_text("x" * (STEP_SUMMARY_LIMIT - 1000))
    append_step_summary("y" * 5000, {"GITHUB_STEP_SUMMARY": str(path)})
    text = path.read_text()
    assert len(text.encode()) <= STEP_SUMMARY_LIMIT and "truncated" in text


def test_assertions():
    from tunespec.evaluate import check
    from tunespec.spec import Assertion

    def ok(kind, value, out, negate=False):
        return check(Assertion(kind, value, negate), out).passed

    assert ok("equals", "2", " 2\n") and not ok("equals", "2", "22")
    assert ok("contains", "ab", "xaby") and ok("icontains", "AB", "xaby") and not ok("contains", "AB", "xab")
    assert (
        ok("starts_with", "tw", "twenty") and ok("regex", r"^\d+$", "12") and not ok("regex", r"^\d+$", "a")
    )
    assert ok("one_of", ("a", "b"), "b") and not ok("one_of", ("a", "b"), "c")
    assert ok("equals", "4", "5", negate=True) and not ok("contains", "4", "44", negate=True)
    result = check(Assertion("equals", "2"), "3")
    assert result.message == "expected output to equal '2', got '3'"


def test_many_jobs_parallel_summary_and_combined_junit(tmp_path, service):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    for name in ("alpha", "beta"):
        write_spec(jobs, service, name=name)
    service.fail_models = ("beta",)
    write_spec(jobs, service, name="gamma", threshold=1.0)
    (jobs / "broken.yaml").write_text("name: broken\ndataset: {}\n")
    result = invoke("apply", str(jobs), "--parallel", "2")
    assert result.exit_code == 1, result.output  # worst: beta FAILED
    table = result.stdout
    for name in ("alpha", "beta", "gamma", "broken"):
        assert name in table
    junit = ET.parse(tmp_path / "reports" / "junit.xml").getroot()
    assert {s.get("name") for s in junit.findall("testsuite")} == {"alpha", "beta", "gamma", "broken"}
    again = invoke("apply", str(jobs), "--parallel", "2", "--json")
    doc = json.loads(again.stdout)
    assert {j["job"]: j["action"] for j in doc["jobs"]} == {
        "alpha": "noop",
        "beta": "recreate",
        "gamma": "noop",
    }
    assert doc["invalid"][0]["spec"].endswith("broken.yaml")


def test_two_specs_with_the_same_identity_are_refused(tmp_path, service):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    write_spec(jobs, service, name="same")
    (jobs / "copy.yaml").write_text((jobs / "same.yaml").read_text())
    result = invoke("apply", str(jobs))
    assert result.exit_code == 2
    assert "would produce the same tuned model" in result.stderr
    assert service.calls("POST", r"tunedModels$") == []


def test_missing_engine_extra_message(tmp_path, service):
    """Without the `local` extra, a local target says how to install it (exit 1, no traceback)."""
    import subprocess
    import sys

    spec = write_spec(tmp_path, service)
    spec.write_text(spec.read_text().replace(f"target: {service.url}", "target: local"))
    code = (
        "import sys\nfor m in ('torch', 'fastapi', 'uvicorn', 'transformers'): sys.modules[m] = None\n"
        "from tunespec.cli import main\nmain(['plan', sys.argv[1]])"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("TUNESPEC_")}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert "pip install 'tunespec[local]'" in proc.stderr and "Traceback" not in proc.stderr


def test_polling_starts_quick_and_backs_off(tmp_path, service):
    service.steps_per_poll = 1
    service.advance_on_model_get = False
    spec = write_spec(tmp_path, service)
    spec.write_text(spec.read_text().replace("epoch_count: 2", "epoch_count: 3"))  # 9 steps
    assert invoke("apply", str(spec)).exit_code == 0
    polls = [r.at for r in service.calls("GET", r"/operations/op")]
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert len(gaps) >= 8
    assert gaps[0] < 0.5  # quick at first ...
    assert gaps[7] > 2 * gaps[0]  # ... then backing off (x1.5 per poll)


def test_ctrl_c_leaves_the_job_running_and_a_rerun_attaches(tmp_path, service):
    import signal
    import time

    service.steps_per_poll = 1
    service.advance_on_model_get = False
    spec = write_spec(tmp_path, service)
    spec.write_text(spec.read_text().replace("epoch_count: 2", "epoch_count: 50"))
    proc = start_tunespec("apply", str(spec), cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not service.calls("GET", r"/operations/op") and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "keep their place on the service" in err and "Traceback" not in err
    # one message, the last line: no blank line and "Aborted." after it
    assert err.endswith("run `tunespec apply` again to attach to them.\n") and "Aborted" not in err
    (name,) = service.models
    assert service.models[name]["state"] == "CREATING"
    service.steps_per_poll = 50
    again = invoke("apply", str(spec))
    assert again.exit_code == 0, again.output
    assert "already tuning; attaching" in again.stderr
    assert len(service.calls("POST", r"tunedModels$")) == 1


def test_fail_fast_stops_the_other_jobs(tmp_path, service):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    service.fail_models = ("adoomed",)
    write_spec(jobs, service, name="adoomed")
    write_spec(jobs, service, name="bfine")
    result = invoke("apply", str(jobs), "--fail-fast", "--json")
    doc = json.loads(result.stdout)
    assert result.exit_code == 1
    by_job = {j["job"]: j for j in doc["jobs"]}
    assert "not started" in by_job["bfine"]["error"]
    assert not [m for m in service.models if "bfine" in m]
    junit = ET.parse(tmp_path / "reports" / "junit.xml").getroot()
    assert junit.find(".//testsuite[@name='bfine']/testcase/skipped") is not None


def test_progress_bar_on_a_terminal_and_plain_lines_otherwise():
    import io
    import time

    from tunespec.progress import Progress, Reporter

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Terminal()
    reporter = Reporter(tty, env={"TERM": "xterm"})
    assert reporter.rich
    reporter.progress("job", Progress(step=10, total=10, percent=100.0, epoch=3, loss=0.25), time.monotonic())
    reporter.close()
    assert "step 10/10" in tty.getvalue() and "loss 0.2500" in tty.getvalue() and "ETA" in tty.getvalue()
    for env in ({"TERM": "xterm", "CI": "true"}, {"TERM": "xterm", "NO_COLOR": "1"}):
        plain = Terminal()
        reporter = Reporter(plain, env=env)
        assert not reporter.rich
        reporter.progress(
            "job", Progress(step=5, total=10, percent=50.0, epoch=1, loss=0.5), time.monotonic() - 4
        )
        assert plain.getvalue().startswith(
            "job: tuning  50.0% step 5/10 epoch 1 loss 0.5000 (elapsed 4s, ETA 4s)"
        )
        assert "\x1b[" not in plain.getvalue()
    quiet = Terminal()
    Reporter(quiet, progress=False, env={"TERM": "xterm"}).progress("job", Progress(step=1, total=2), 0)
    assert quiet.getvalue() == ""


def test_poll_interval_backs_off_but_not_past_the_expected_end():
    from tunespec.progress import next_poll_interval

    interval, seen = 0.2, []
    for _ in range(12):
        interval = next_poll_interval(interval, 10.0, None)
        seen.append(interval)
    assert seen[0] == pytest.approx(0.3) and seen == sorted(seen) and seen[-1] == 10.0
    assert next_poll_interval(10.0, 10.0, 3.0) == 3.0  # about 3 s left: look again then
    assert next_poll_interval(10.0, 10.0, 0.1) == 1.0  # overdue: every second, not a busy loop
    assert next_poll_interval(0.2, 10.0, 0.1) == pytest.approx(0.3)  # never faster than the back-off


def test_eta_of_an_attached_job_counts_only_the_steps_seen_by_this_run():
    import io
    import time

    from tunespec.progress import Progress, Reporter

    out = io.StringIO()
    reporter = Reporter(out, env={"CI": "true"})
    started = time.monotonic()
    # attached at step 12 of 305: no ETA until a step has been seen to complete
    reporter.progress("job", Progress(step=12, total=305, percent=3.9), started, from_step=12)
    assert "ETA" not in out.getvalue()
    # 10 steps in 10 seconds since attaching: 283 steps to go take about 283 s (not 10/22 s per step)
    reporter.plain_every = 0
    reporter.progress("job", Progress(step=22, total=305, percent=7.2), started - 10, from_step=12)
    assert out.getvalue().splitlines()[-1].endswith("(elapsed 10s, ETA 283s)")


def test_library_calls(tmp_path, service):
    import io

    import tunespec

    spec = write_spec(tmp_path, service)
    plan = tunespec.plan(str(spec))
    assert [j.action for j in plan.jobs] == ["create"] and plan.has_changes
    stream = io.StringIO()
    result = tunespec.apply(spec, stream=stream, progress=False)
    assert result.ok and result.exit_code == 0
    job = result.jobs[0]
    assert job.submitted and job.state == "ACTIVE" and job.pass_rate == pytest.approx(2 / 3)
    assert set(job.reports) == {"json", "markdown", "junit", "png", "html"}
    assert "submitted tunedModels/tiny-" in stream.getvalue()
    assert tunespec.plan([spec]).has_changes is False
    below = tunespec.apply(spec, stream=io.StringIO(), quiet=True, env={"TUNESPEC_TARGET": ""})
    assert below.ok
    from tunespec.errors import EvaluationBelowThreshold

    spec.write_text(spec.read_text().replace("threshold: 0.5", "threshold: 0.9"))
    failing = tunespec.apply(str(spec), quiet=True)
    assert failing.exit_code == 3
    with pytest.raises(EvaluationBelowThreshold):
        failing.raise_for_errors()


def test_compare_base_reports_the_delta(tmp_path, service):
    spec = write_spec(tmp_path, service)
    text = spec.read_text().replace("  threshold: 0.5\n", "  threshold: 0.5\n  compare_base: true\n")
    spec.write_text(text)
    result = invoke("apply", str(spec))
    assert result.exit_code == 0, result.output
    assert service.calls("POST", r"^/v1beta3/models/text-bison-001:generateText$")
    report = json.loads((tmp_path / "reports" / "tiny" / "report.json").read_text())
    assert report["base_evaluation"]["pass_rate"] == 0.0
    assert report["delta"] == pytest.approx(2 / 3)
    assert "base model 0%, delta +67 points" in (tmp_path / "reports" / "tiny" / "report.md").read_text()
    assert "base model 0%" in result.stderr


def test_a_run_that_fails_before_tuning_replaces_the_report_and_drops_the_stale_loss_curve(tmp_path, service):
    spec = write_spec(tmp_path, service)
    assert invoke("apply", str(spec)).exit_code == 0
    reports = tmp_path / "reports" / "tiny"
    good = json.loads((reports / "report.json").read_text())
    service.faults.append(
        Fault("GET", r"tunedModels/", 403, times=99, body=error_body(403, "PERMISSION_DENIED", "no access"))
    )
    failed = invoke("apply", str(spec))
    assert failed.exit_code == 1, failed.output
    names = ["junit.xml", "report.html", "report.json", "report.md"]
    assert sorted(p.name for p in reports.iterdir()) == names
    assert ET.parse(reports / "junit.xml").getroot().find(".//testcase/error") is not None  # CI still sees it
    report = json.loads((reports / "report.json").read_text())
    assert report["replaced"] == {
        "generated_at": good["generated_at"], "exit_code": 0, "tuned_model": good["tuned_model"],
        "removed": ["loss.png"],
    }
    md = (reports / "report.md").read_text()
    assert "no access" in md and "![loss curve]" not in md and "| Time |" not in md
    assert (
        f"_This report replaces the previous one in this directory ({good['generated_at']}, ✅ passed, "
        f"`{good['tuned_model']}`); removed what no longer applies: loss.png._"
    ) in md
    assert f"| Target | {service.url} |" in md


def test_status_and_plan_show_the_retries_they_ride_out(tmp_path, service):
    spec = write_spec(tmp_path, service)
    for command in ("status", "plan"):
        service.faults += [Fault("GET", r"tunedModels/", 503, {"Retry-After": "0"}, times=2)]
        result = invoke(command, str(spec))
        assert result.exit_code == 0, result.output
        assert result.stderr.count("retrying: GET ") == 2 and "HTTP 503" in result.stderr


def test_paths_outside_the_working_directory_are_shown_absolute_or_as_given(tmp_path, service):
    from tunespec.errors import shown_path

    assert shown_path(tmp_path / "reports" / "x.md") == "reports/x.md"
    assert shown_path(tmp_path.parent / "elsewhere.md") == str(tmp_path.parent / "elsewhere.md")
    spec = write_spec(tmp_path, service, report="{dir: ../out/tiny}")
    result = invoke("apply", str(spec), "--junit", "../out/run.xml")
    assert result.exit_code == 0, result.output
    assert str(tmp_path.parent / "out" / "tiny" / "report.md") in result.stdout and "../" not in result.stdout
    assert "JUnit report for the run: ../out/run.xml\n" in result.stderr


def test_eta_is_the_pace_seen_so_far_and_none_before_a_step_or_after_the_end():
    from tunespec.progress import Progress, remaining_seconds

    assert remaining_seconds(10.0, Progress(step=22, total=305), from_step=12) == pytest.approx(283.0)
    assert remaining_seconds(10.0, Progress(step=12, total=305), from_step=12) is None
    assert remaining_seconds(10.0, Progress(step=305, total=305)) is None
    assert remaining_seconds(10.0, Progress(step=3, total=0)) is None


@pytest.mark.parametrize(
    "extra", [{}, {"tuning_method": "lora"}, {"tuning_method": "full", "api_version": "v1beta"}]
)
def test_render_prints_exactly_the_body_apply_sends(tmp_path, service, extra):
    """`render` and `apply` build one body for the same target (engine-only fields included or not)."""
    spec = write_spec(tmp_path, service, **extra)
    rendered = invoke("render", "--json", str(spec))
    assert rendered.exit_code == 0, rendered.output
    invoke("apply", "--no-progress", str(spec))
    (sent,) = service.calls("POST", r"tunedModels$")
    assert json.loads(rendered.stdout)["request"] == sent.body
