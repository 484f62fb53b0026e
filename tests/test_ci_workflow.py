"""examples/ci/github-actions.yml: its `run:` steps, as written, against the real local engine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tests.cli_helpers import cli_env

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "examples" / "ci" / "github-actions.yml"
pytestmark = pytest.mark.slow


def steps(job: str) -> list[dict]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    return doc["jobs"][job]["steps"]


def test_workflow_shape():
    doc = yaml.safe_load(WORKFLOW.read_text())
    triggers = doc[True] if True in doc else doc["on"]  # YAML 1.1 reads `on:` as a boolean
    assert {"pull_request", "push", "schedule"} <= set(triggers)
    plan_runs = [s["run"] for s in steps("plan") if "run" in s]
    assert "tunespec validate jobs/" in plan_runs
    assert any("tunespec plan jobs/ --detailed-exitcode" in r for r in plan_runs)
    apply_steps = steps("apply")
    assert any("tunespec apply jobs/" in s.get("run", "") for s in apply_steps)
    upload = next(s for s in apply_steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["with"]["path"] == "reports/" and upload["if"] == "always()"
    auth = next(s for s in apply_steps if s.get("uses", "").startswith("google-github-actions/auth"))
    assert "workload_identity_provider" in auth["with"]


def run_job(job: str, repo: Path, env: dict[str, str]) -> list[subprocess.CompletedProcess]:
    """Each `run:` step the way Actions runs it (bash -e -o pipefail), skipping the package install."""
    results = []
    for step in steps(job):
        script = step.get("run")
        if not script or step.get("name") == "Install tunespec":
            continue
        assert "${{" not in script, "run steps must not depend on expressions the test cannot evaluate"
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        results.append(proc)
        if proc.returncode != 0:
            break
    return results


def test_workflow_commands_run_as_written(tmp_path, engine):
    repo = tmp_path / "repo"
    (repo / "jobs").mkdir(parents=True)
    (repo / "examples" / "data").mkdir(parents=True)
    shutil.copy(ROOT / "examples/data/number-generator.csv", repo / "examples/data/number-generator.csv")
    text = (ROOT / "tests/data/number-generator-builtin.yaml").read_text()  # the example, built-in model
    text = text.replace("../../examples/", "../examples/").replace("epoch_count: 60", "epoch_count: 2")
    text = text.replace("threshold: 0.8", "threshold: 0.0")
    (repo / "jobs/number-generator.yaml").write_text(text)
    (repo / "jobs/counter.yaml").write_text(text.replace("name: number-generator", "name: counter"))

    output, summary = tmp_path / "github_output", tmp_path / "step_summary.md"
    env = cli_env({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "TUNESPEC_TARGET": "local",
        "TUNESPEC_ENGINE_URL": engine.url,
    })

    pr = run_job("plan", repo, env)
    assert [p.returncode for p in pr] == [0, 0], [p.stderr for p in pr]
    assert "changes=true" in output.read_text()

    applied = run_job("apply", repo, env)
    assert [p.returncode for p in applied] == [0], applied[-1].stderr
    for job in ("number-generator", "counter"):
        assert sorted(p.name for p in (repo / "reports" / job).iterdir()) == [
            "junit.xml",
            "loss.png",
            "report.json",
            "report.md",
        ]
    suites = ET.parse(repo / "reports" / "junit.xml").getroot().findall("testsuite")
    assert {s.get("name") for s in suites} == {"number-generator", "counter"}
    text = summary.read_text()
    assert "## tunespec: number-generator" in text and "## tunespec: counter" in text

    output.write_text("")
    again = run_job("plan", repo, env)
    assert [p.returncode for p in again] == [0, 0]
    assert "changes=false" in output.read_text()
