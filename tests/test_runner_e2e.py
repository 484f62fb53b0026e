"""End to end: the real `tunespec` CLI applies job specs on the real local engine.

The first test goes the way a user does: `target: local` starts the engine in-process on a persistent
data dir. The others share one engine (TUNESPEC_ENGINE_URL) to keep the suite quick.
"""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests import cli_helpers

ROOT = Path(__file__).resolve().parents[1]
BUILTIN_EXAMPLE = ROOT / "tests" / "data" / "number-generator-builtin.yaml"  # jobs/ tunes SmolLM2
pytestmark = pytest.mark.slow


def quick_copy(
    tmp_path: Path, epochs: int = 5, threshold: float | None = 0.0, name: str | None = None
) -> Path:
    """The example job on the built-in model with fewer epochs (and a threshold the untrained-ish model
    meets)."""
    text = BUILTIN_EXAMPLE.read_text()
    for anchor in ("../../examples/data/number-generator.csv", "epoch_count: 60", "threshold: 0.8"):
        assert anchor in text, f"{BUILTIN_EXAMPLE} changed: {anchor!r} is gone"
    text = text.replace(
        "../../examples/data/number-generator.csv", str(ROOT / "examples/data/number-generator.csv")
    )
    text = text.replace("epoch_count: 60", f"epoch_count: {epochs}")
    if threshold is not None:
        text = text.replace("threshold: 0.8", f"threshold: {threshold}")
    if name:
        text = text.replace("name: number-generator", f"name: {name}")
    path = tmp_path / f"{name or 'number-generator'}.yaml"
    path.write_text(text)
    return path


def tunespec(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess, with time to train."""
    return cli_helpers.tunespec(*args, cwd=cwd, env=env, timeout=500)


def models_on(url: str) -> list[dict]:
    from tunespec.client import TuningClient

    return TuningClient(url).list_tuned_models()


def operations_on(url: str, model: str) -> list[dict]:
    from tunespec.client import TuningClient

    return TuningClient(url).list_operations(model)


def test_apply_on_the_in_process_engine_then_again_trains_nothing(tmp_path):
    spec = quick_copy(tmp_path)
    env = {"TUNESPEC_ENGINE_DIR": str(tmp_path / "engine")}
    first = tunespec("apply", str(spec), cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    reports = tmp_path / "reports" / "number-generator"
    assert sorted(p.name for p in reports.iterdir()) == ["junit.xml", "loss.png", "report.json", "report.md"]
    report = json.loads((reports / "report.json").read_text())
    assert report["submitted"] is True and report["state"] == "ACTIVE"
    assert len(report["snapshots"]) == 38  # ceil(15 * 5 / 2)
    assert len(report["evaluation"]["prompts"]) == 18
    assert "![loss curve](loss.png)" in (reports / "report.md").read_text()
    assert (reports / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert len(ET.parse(reports / "junit.xml").getroot().findall(".//testcase")) == 18

    second = tunespec("apply", str(spec), cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout and "submitted" not in second.stderr
    again = json.loads((reports / "report.json").read_text())
    assert again["submitted"] is False and again["action"] == "noop"
    assert again["tuned_model"] == report["tuned_model"]
    assert again["generated_at"] >= report["generated_at"] and again["evaluation"]["prompts"]
    listing = json.loads(tunespec("list", "--json", cwd=tmp_path, env=env).stdout)
    assert [m["name"] for m in listing["models"]] == [report["tuned_model"]]


def test_the_builtin_example_learns_the_pairs(tmp_path, engine):
    """The example job on the built-in model (60 epochs) passes its own evaluation threshold."""
    env = {"TUNESPEC_ENGINE_URL": engine.url}
    result = tunespec("apply", str(BUILTIN_EXAMPLE), "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    job = doc["jobs"][0]
    assert job["state"] == "ACTIVE" and job["pass_rate"] >= 0.8
    assert (tmp_path / "reports" / "number-generator" / "report.md").exists()
    name = job["tuned_model"]
    ops = operations_on(engine.url, name)
    again = tunespec("apply", str(BUILTIN_EXAMPLE), "--json", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["jobs"][0]["action"] == "noop"
    assert operations_on(engine.url, name) == ops
    assert [
        m["name"] for m in models_on(engine.url) if m["name"].startswith("tunedModels/number-generator-")
    ] == [name]


def test_status_eval_changed_spec_and_prune(tmp_path, engine):
    env = {"TUNESPEC_ENGINE_URL": engine.url}
    spec = quick_copy(tmp_path, epochs=2, name="counter")
    assert tunespec("plan", str(spec), "--detailed-exitcode", cwd=tmp_path, env=env).returncode == 2
    assert tunespec("apply", str(spec), cwd=tmp_path, env=env).returncode == 0
    assert tunespec("plan", str(spec), "--detailed-exitcode", cwd=tmp_path, env=env).returncode == 0
    status = json.loads(tunespec("status", str(spec), "--json", cwd=tmp_path, env=env).stdout)
    entry = status["jobs"][0]
    assert entry["state"] == "ACTIVE" and entry["last_loss"] is not None and entry["completed_steps"] == 15
    evaluated = tunespec("eval", str(spec), cwd=tmp_path, env=env)
    assert evaluated.returncode == 0 and "nothing to tune" in evaluated.stderr
    first = entry["tuned_model"]

    spec.write_text(spec.read_text().replace("epoch_count: 2", "epoch_count: 3"))
    plan = tunespec("plan", str(spec), cwd=tmp_path, env=env)
    assert "changed (new model)" in plan.stdout and first in plan.stderr
    applied = tunespec("apply", str(spec), "--prune", "--json", cwd=tmp_path, env=env)
    assert applied.returncode == 0, applied.stderr
    job = json.loads(applied.stdout)["jobs"][0]
    assert job["pruned"] == [first] and job["tuned_model"] != first
    assert [m["name"] for m in models_on(engine.url) if m["name"].startswith("tunedModels/counter-")] == [
        job["tuned_model"]
    ]
    deleted = tunespec("delete", str(spec), "--yes", cwd=tmp_path, env=env)
    assert deleted.returncode == 0, deleted.stderr
    assert not [m for m in models_on(engine.url) if m["name"].startswith("tunedModels/counter-")]


def test_eval_without_a_model_and_below_threshold(tmp_path, engine):
    env = {"TUNESPEC_ENGINE_URL": engine.url}
    spec = quick_copy(tmp_path, epochs=1, threshold=None, name="untrained")
    missing = tunespec("eval", str(spec), cwd=tmp_path, env=env)
    assert missing.returncode == 1 and "no ACTIVE model to evaluate" in missing.stderr
    below = tunespec("apply", str(spec), cwd=tmp_path, env=env)
    assert below.returncode == 3, below.stderr
    assert "below the threshold 80%" in below.stderr


def test_interrupted_apply_on_the_local_engine_attaches_on_rerun(tmp_path):
    """A timeout or Ctrl-C during the wait stops this process and its in-process engine (the job
    pauses at a checkpoint); the rerun attaches and the job resumes."""
    import signal
    import time

    spec = quick_copy(tmp_path, epochs=40, name="interrupted")
    env = {"TUNESPEC_ENGINE_DIR": str(tmp_path / "engine")}
    # A --timeout stops the in-process engine too: the job pauses, and says so.
    timed_out = tunespec("apply", str(spec), "--timeout", "2", cwd=tmp_path, env=env)
    assert timed_out.returncode == 1, timed_out.stderr
    assert "timed out after 2s" in timed_out.stderr and "keeps its place" not in timed_out.stderr
    assert "the local engine stops with this run, so the tuning job pauses at its last checkpoint: " \
        "run `tunespec apply` again to resume it" in timed_out.stderr
    proc = cli_helpers.start_tunespec("apply", str(spec), cwd=tmp_path, env=env)
    lines = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if "tuning" in line and "step" in line:
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, "".join(lines) + rest
    assert (
        "Interrupted: the local engine stops with this run, so its tuning jobs pause at their last "
        "checkpoint; run `tunespec apply` again to resume them." in rest
    )
    assert "keep their place" not in rest and "Aborted" not in rest
    second = tunespec("apply", str(spec), "--json", cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    job = json.loads(second.stdout)["jobs"][0]
    assert job["attached"] is True and job["submitted"] is False and job["state"] == "ACTIVE"
    assert "already tuning; attaching" in second.stderr


def test_tuning_method_reaches_the_local_engine(tmp_path, engine):
    """`tuning_method: lora` in a spec makes the engine train a LoRA adapter (an engine-only field)."""
    spec = quick_copy(tmp_path, epochs=1, name="lora-counter")
    spec.write_text(spec.read_text().replace("base_model:", "tuning_method: lora\nbase_model:", 1))
    result = tunespec("apply", str(spec), "--json", cwd=tmp_path, env={"TUNESPEC_ENGINE_URL": engine.url})
    assert result.returncode == 0, result.stderr
    model_id = json.loads(result.stdout)["jobs"][0]["tuned_model"].split("/", 1)[1]
    meta = json.loads((Path(engine.data_dir) / "jobs" / model_id / "model" / "tunespec.json").read_text())
    assert meta["kind"] == "lora", meta
