"""Progress says what is happening: the engine reports a running job's stage (queued, loading the
base model, training, saving) in its operation's metadata to callers that ask (tunespec's client; the
fields Google's clients parse stay as Google's), the runner shows it in the bar, the plain CI lines
and `status`, and evaluation shows "evaluating n/N prompts"."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
import requests

from tunespec.progress import Reporter
from tunespec.resources import LOADING, QUEUED, SAVING, TRAINING, Progress, progress_of
from tunespec.service import parse_operation

ROOT = Path(__file__).resolve().parents[1]


def _row(**fields) -> dict:
    return {"state": "CREATING", "claimed_by": "worker-1", "resume_step": 0, "total_steps": 10, **fields}


def test_the_engine_names_the_stage_from_the_job_row():
    pytest.importorskip("fastapi")
    from tunespec.engine.render import stage

    assert stage(_row(claimed_by=None), 0) == QUEUED
    assert stage(_row(resume_step=None), 0) == LOADING  # just claimed
    assert stage(_row(), 0) == LOADING
    assert stage(_row(resume_step=4), 4) == LOADING  # resumed from a checkpoint, no step yet
    assert stage(_row(), 3) == TRAINING
    assert stage(_row(), 10) == SAVING  # every step done, the tuned model being written
    assert stage(_row(state="ACTIVE"), 10) is None and stage(_row(state="FAILED"), 2) is None


def test_the_stage_is_parsed_into_progress_and_dropped_once_done():
    running = parse_operation({"name": "op", "metadata": {"totalSteps": 10, "stage": LOADING}})
    assert progress_of(running, None).stage == LOADING
    done = parse_operation({"name": "op", "done": True, "metadata": {"totalSteps": 10, "stage": SAVING}})
    assert progress_of(done, None).stage == ""
    google = parse_operation({"name": "op", "metadata": {"totalSteps": 10, "completedSteps": 2}})
    assert progress_of(google, None).stage == ""  # Google's service reports none: steps as before


def test_plain_lines_say_each_stage_at_once_then_the_steps():
    out = io.StringIO()
    reporter = Reporter(out, env={"CI": "true"}, plain_every=3600)
    started = time.monotonic()
    reporter.progress("job", Progress(total=10, stage=QUEUED), started)
    reporter.progress("job", Progress(total=10, stage=QUEUED), started)  # nothing new: no line
    reporter.progress("job", Progress(total=10, stage=LOADING), started)
    reporter.progress("job", Progress(step=1, total=10, percent=10.0, stage=TRAINING), started)
    reporter.progress("job", Progress(step=10, total=10, percent=100.0, stage=SAVING), started)
    lines = out.getvalue().splitlines()
    assert [line.split(" (elapsed")[0] for line in lines] == [
        "job: queued",
        "job: loading the base model",
        "job: tuning  10.0% step 1/10 epoch 0",
        "job: saving the tuned model, step 10/10",
    ]


def test_evaluation_lines_count_the_prompts():
    out = io.StringIO()
    reporter = Reporter(out, env={"CI": "true"}, plain_every=3600)
    for done in range(4):
        reporter.evaluating("job", done, 3, time.monotonic())
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("job: evaluating 0/3 prompts") and lines[-1].startswith("job: evaluating 3/3")
    assert len(lines) == 2  # the first and the last; the others within plain_every


def test_the_bar_shows_the_stage_and_the_evaluation():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Terminal()
    reporter = Reporter(tty, env={"TERM": "xterm"})
    reporter.progress("job", Progress(total=450, stage=LOADING), time.monotonic())
    reporter.evaluating("job", 5, 18, time.monotonic())
    reporter.close()
    text = tty.getvalue()
    assert "loading the base model" in text and "step 0/450" in text and "evaluating 5/18 prompts" in text


@pytest.mark.slow
def test_the_engine_reports_stages_and_apply_and_status_show_them(engine, tmp_path: Path):
    from tests import cli_helpers
    from tests.engine.engine_helpers import create_body, wait_done

    resp = requests.post(f"{engine.url}/v1beta3/tunedModels", json=create_body(epochs=3), timeout=30)
    assert resp.status_code == 200, resp.text
    name, seen = resp.json()["name"], []
    asks = {"X-Tunespec-Stages": "1"}
    assert "stage" not in requests.get(f"{engine.url}/v1/{name}", timeout=10).json()["metadata"]  # Google's
    while not (op := requests.get(f"{engine.url}/v1/{name}", headers=asks, timeout=10).json()).get("done"):
        stage = op["metadata"]["stage"]
        if not seen or seen[-1] != stage:
            seen.append(stage)
        time.sleep(0.02)
    assert "stage" not in op["metadata"]
    order = [QUEUED, LOADING, TRAINING, SAVING]
    assert seen == sorted(seen, key=order.index) and LOADING in seen  # in order, loading seen
    wait_done(engine.url, name)

    spec = tmp_path / "job.yaml"
    text = (ROOT / "tests/data/number-generator-builtin.yaml").read_text()
    spec.write_text(text.replace("../../examples/data/number-generator.csv",
                                 str(ROOT / "examples/data/number-generator.csv"))
                    .replace("epoch_count: 60", "epoch_count: 2").replace("threshold: 0.8", "threshold: 0.0"))
    env = {"TUNESPEC_ENGINE_URL": engine.url, "CI": "true"}
    result = cli_helpers.tunespec("apply", str(spec), cwd=tmp_path, env=env, timeout=500)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert any(": queued (elapsed" in line or ": loading the base model (elapsed" in line for line in lines)
    evaluating = [line for line in lines if ": evaluating " in line]
    assert evaluating and evaluating[-1].split(": evaluating ")[1].startswith(
        "{0}/{0} prompts".format(evaluating[-1].split("/")[1].split(" ")[0]))
    status = cli_helpers.tunespec("status", str(spec), "--json", cwd=tmp_path, env=env)
    assert status.returncode == 0 and '"stage": null' in status.stdout  # ACTIVE: no stage
