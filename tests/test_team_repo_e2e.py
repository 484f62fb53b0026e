"""End to end: a team repository with five jobs, run by the real CLI against the real local engine.

jobs/alpha.yaml and jobs/beta.yaml extend jobs/_team.yaml (target, hyperparameters, evaluation defaults,
report dir); jobs/strict.yaml cannot meet its evaluation threshold; jobs/solo.yaml is plain; jobs/broken.yaml
has a misspelt key. `validate`, `plan --detailed-exitcode`, `apply --parallel 2` and a second `apply` run
the way a scheduled CI workflow runs them.
"""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests import cli_helpers

pytestmark = pytest.mark.slow

ANSI = re.compile(r"\x1b\[")
VALID = ["alpha", "beta", "solo", "strict"]

TEAM = """\
# Team defaults for every job that extends this file.
target: local
hyperparameters:
  epoch_count: 1
  batch_size: 2
  learning_rate: 0.001
evaluation:
  threshold: 0.0
  temperature: 0
  candidate_count: 1
  max_output_tokens: 4
report:
  dir: ../reports/{name}
  formats: [json, markdown, junit]
"""

ALPHA = """\
extends: _team.yaml
name: alpha
dataset:
  examples:
    - {text_input: "1", output: "2"}
    - {text_input: "2", output: "3"}
evaluation:
  prompts:
    - {input: "1", regex: ".*"}
"""

BETA = """\
extends: _team.yaml
name: beta
hyperparameters:
  batch_size: 1
dataset:
  examples:
    - {text_input: "a", output: "b"}
evaluation:
  prompts:
    - {input: "a", regex: ".*"}
"""

STRICT = """\
name: strict
target: local
hyperparameters: {epoch_count: 1, batch_size: 2, learning_rate: 0.001}
dataset:
  examples:
    - {text_input: "x", output: "y"}
    - {text_input: "y", output: "z"}
evaluation:
  threshold: 1.0
  temperature: 0
  max_output_tokens: 4
  prompts:
    - name: impossible
      input: "x"
      equals: "this answer is far too long for four tokens"
report:
  formats: [json, junit]
"""
STRICT_PROMPT_LINE = 13  # the `- name: impossible` line

SOLO = """\
name: solo
target: local
hyperparameters: {epoch_count: 1, batch_size: 2, learning_rate: 0.001}
dataset:
  examples:
    - {text_input: "p", output: "q"}
    - {text_input: "q", output: "r"}
"""

BROKEN = """\
name: broken
target: local
hyperparameters:
  epoch_cout: 1
dataset:
  examples:
    - {text_input: "m", output: "n"}
"""
BROKEN_LINE = 4


def tunespec(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess, with time to train."""
    return cli_helpers.tunespec(*args, cwd=cwd, env=env, timeout=300)


def engine_state(url: str) -> tuple[list[str], dict[str, list[str]]]:
    """Every tuned model on the engine and every operation of each."""
    from tunespec.client import TuningClient

    client = TuningClient(url)
    models = sorted(m["name"] for m in client.list_tuned_models())
    return models, {m: sorted(o["name"] for o in client.list_operations(m)) for m in models}


@pytest.fixture()
def repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    jobs = root / "jobs"
    jobs.mkdir(parents=True)
    for name, text in {
        "_team": TEAM,
        "alpha": ALPHA,
        "beta": BETA,
        "strict": STRICT,
        "solo": SOLO,
        "broken": BROKEN,
    }.items():
        (jobs / f"{name}.yaml").write_text(text)
    return root


def test_team_repository_validate_plan_apply_and_apply_again(repo, engine):
    env = {"TUNESPEC_ENGINE_URL": engine.url}

    # validate: the four valid jobs pass, the misspelt key is reported with its file and line.
    validated = tunespec("validate", "jobs/", cwd=repo, env=env)
    assert validated.returncode == 2, validated.stderr
    assert re.search(rf"broken\.yaml:{BROKEN_LINE}\b.*epoch_cout", validated.stderr), validated.stderr
    for name in VALID:
        assert re.search(rf"^ok\s+\S*{name}\.yaml", validated.stdout, re.M), validated.stdout
    assert "_team" not in validated.stdout + validated.stderr
    doc = json.loads(tunespec("validate", "jobs/", "--json", cwd=repo, env=env).stdout)
    assert doc["schema_version"] == 1 and doc["kind"] == "tunespec.validate" and doc["valid"] is False
    (bad,) = [f for f in doc["files"] if not f["valid"]]
    assert bad["path"].endswith("broken.yaml") and bad["errors"][0]["line"] == BROKEN_LINE
    annotated = tunespec("validate", "jobs/", cwd=repo, env={**env, "GITHUB_ACTIONS": "true"})
    assert re.search(rf"^::error file=\S*broken\.yaml,line={BROKEN_LINE}\b", annotated.stdout, re.M)

    # plan: changes are pending, but an invalid spec is an error (1), because 2 means "changes pending".
    planned = tunespec("plan", "jobs/", "--detailed-exitcode", cwd=repo, env=env)
    assert planned.returncode == 1, planned.stderr
    for name in VALID:
        assert re.search(rf"^{name}\s+create\s", planned.stdout, re.M), planned.stdout
    assert re.search(r"^broken\s+invalid", planned.stdout, re.M)
    assert f"broken.yaml:{BROKEN_LINE}" in planned.stderr
    plan_doc = json.loads(tunespec("plan", "jobs/", "--json", cwd=repo, env=env).stdout)
    assert plan_doc["schema_version"] == 1 and plan_doc["kind"] == "tunespec.plan"
    assert sorted(j["job"] for j in plan_doc["jobs"]) == VALID
    assert {j["action"] for j in plan_doc["jobs"]} == {"create"}
    (invalid,) = plan_doc["invalid"]
    assert invalid["spec"].endswith("broken.yaml")
    assert engine_state(engine.url) == ([], {})

    # apply --parallel 2 with annotations: the worst exit code of the run is 2 (invalid) over 3 (below).
    applied = tunespec(
        "apply", "jobs/", "--parallel", "2", cwd=repo, env={**env, "GITHUB_ACTIONS": "true"}
    )
    assert applied.returncode == 2, applied.stdout + applied.stderr
    for name in VALID:
        assert applied.stderr.count(f"{name}: submitted tunedModels/{name}-") == 1, applied.stderr
    assert f"broken.yaml:{BROKEN_LINE}" in applied.stderr
    (validate_annotation,) = [x for x in annotated.stdout.splitlines() if x.startswith("::error")]
    assert validate_annotation in applied.stderr.splitlines()
    assert re.search(
        rf"^::error file=\S*strict\.yaml,line={STRICT_PROMPT_LINE}\b.*::impossible", applied.stderr, re.M
    ), applied.stderr
    summary = {line.split()[0]: line.split() for line in applied.stdout.splitlines()[1:]}
    assert sorted(summary) == sorted([*VALID, "broken"]), applied.stdout
    assert summary["strict"][-2] == "3" and summary["broken"][-2] == "2"
    assert all(summary[n][-2] == "0" for n in ("alpha", "beta", "solo")), applied.stdout
    assert summary["alpha"][-1] == "reports/alpha/report.md"
    assert summary["beta"][-1] == "reports/beta/report.md"
    assert summary["broken"][-1] == "jobs/broken.yaml"

    models, ops = engine_state(engine.url)
    assert sorted(m.split("/")[1].rsplit("-", 1)[0] for m in models) == VALID
    assert all(len(o) == 1 for o in ops.values()), ops

    # The shared report dir holds one directory per job; the combined JUnit lists all five.
    for name in ("alpha", "beta"):
        report = json.loads((repo / "reports" / name / "report.json").read_text())
        assert report["job"]["name"] == name and report["state"] == "ACTIVE"
        assert report["hyperparameters"]["requested"]["epoch_count"] == 1
        assert report["evaluation"]["threshold"] == 0.0
    assert json.loads((repo / "reports" / "beta" / "report.json").read_text())["hyperparameters"][
        "requested"
    ]["batch_size"] == 1
    junit = ET.parse(repo / "reports" / "junit.xml").getroot()
    cases = {s.get("name"): s.findall("testcase") for s in junit.iter("testsuite")}
    assert sorted(cases) == sorted([*VALID, "broken"]) and all(cases.values()), cases
    assert [c.get("name") for c in cases["solo"]] == ["tuning"] and not list(cases["solo"][0])
    (impossible,) = cases["strict"]
    assert impossible.find("failure") is not None and impossible.get("line") == str(STRICT_PROMPT_LINE)
    (invalid_case,) = cases["broken"]
    assert invalid_case.get("file").endswith("broken.yaml") and invalid_case.get("line") == str(BROKEN_LINE)
    assert "epoch_cout" in invalid_case.find("error").get("message")

    # A second apply trains nothing: no new model, no new operation.
    again = tunespec("apply", "jobs/", "--json", cwd=repo, env=env)
    assert again.returncode == 2, again.stderr
    assert engine_state(engine.url) == (models, ops)
    apply_doc = json.loads(again.stdout)
    assert apply_doc["schema_version"] == 1 and apply_doc["kind"] == "tunespec.apply"
    assert apply_doc["exit_code"] == 2
    by_job = {j["job"]: j for j in apply_doc["jobs"]}
    assert sorted(by_job) == VALID
    assert {j["action"] for j in by_job.values()} == {"noop"}
    assert not any(j["submitted"] for j in by_job.values())
    assert by_job["strict"]["exit_code"] == 3 and by_job["strict"]["pass_rate"] == 0.0
    assert [i["spec"].endswith("broken.yaml") for i in apply_doc["invalid"]] == [True]
    assert tunespec("plan", "jobs/", "--detailed-exitcode", cwd=repo, env=env).returncode == 1
    clean = tunespec("plan", *(f"jobs/{n}.yaml" for n in VALID), "--detailed-exitcode", cwd=repo, env=env)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    # status and list --json carry their kind and version.
    status = json.loads(tunespec("status", "jobs/", "--json", cwd=repo, env=env).stdout)
    assert status["schema_version"] == 1 and status["kind"] == "tunespec.status"
    assert {j["state"] for j in status["jobs"]} == {"ACTIVE"} and len(status["invalid"]) == 1
    listing = json.loads(tunespec("list", "jobs/", "--json", cwd=repo, env=env).stdout)
    assert listing["schema_version"] == 1 and listing["kind"] == "tunespec.list"
    assert sorted(m["name"] for m in listing["models"]) == models

    # NO_COLOR output is plain text.
    for args in (("plan", "jobs/"), ("status", "jobs/"), ("list", "jobs/"), ("apply", "jobs/")):
        out = tunespec(*args, cwd=repo, env={**env, "NO_COLOR": "1", "CI": ""})
        assert not ANSI.search(out.stdout + out.stderr), args
