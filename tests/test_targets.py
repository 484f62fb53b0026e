"""Targets against a real local engine: the project (--project, the spec's `project:`, or
$GOOGLE_CLOUD_PROJECT) scopes the tuned models the runner sees, as it does for the quickstart's curl."""

from __future__ import annotations

import json

import pytest
import requests

from tests.cli_helpers import invoke

pytestmark = pytest.mark.slow

SPEC = """\
name: scoped
project: team-x
hyperparameters: {epoch_count: 1, batch_size: 1}
dataset:
  examples:
    - {text_input: "1", output: "2"}
"""


def create_as_curl(url: str, model_id: str, project: str) -> None:
    """What the quickstart does: POST tunedModels with an `x-goog-user-project` header."""
    body = {
        "baseModel": "models/text-bison-001",
        "tuningTask": {
            "hyperparameters": {"epochCount": 1, "batchSize": 1},
            "trainingData": {"examples": {"examples": [{"textInput": "1", "output": "2"}]}},
        },
    }
    answer = requests.post(f"{url}/v1beta3/tunedModels", params={"tunedModelId": model_id}, json=body,
                           headers={"x-goog-user-project": project}, timeout=30)
    assert answer.status_code == 200, answer.text


def listed(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [m["name"] for m in json.loads(result.stdout)["models"]]


def test_project_scopes_tuned_models_on_the_local_engine(tmp_path, engine):
    spec = tmp_path / "scoped.yaml"
    spec.write_text(SPEC)
    env = {"TUNESPEC_ENGINE_URL": engine.url}
    create_as_curl(engine.url, "made-by-curl", "team-x")
    assert listed(invoke("list", "--json", "--project", "team-x", env=env)) == ["tunedModels/made-by-curl"]
    assert listed(invoke("list", "--json", env={**env, "GOOGLE_CLOUD_PROJECT": "team-x"})) == [
        "tunedModels/made-by-curl"
    ]
    assert listed(invoke("list", "--json", env=env)) == []  # the "default" project holds none

    # The spec's `project:` scopes plan/apply; --project overrides it (tuned model ids are global,
    # so another project's model is refused, as Google's service does).
    plan = json.loads(invoke("plan", str(spec), "--json", env=env).stdout)["jobs"][0]
    assert plan["action"] == "create"
    create_as_curl(engine.url, plan["tuned_model"].split("/", 1)[1], "team-x")
    again = json.loads(invoke("plan", str(spec), "--json", env=env).stdout)["jobs"][0]
    assert again["action"] != "create", again
    other = json.loads(invoke("plan", str(spec), "--json", "--project", "team-y", env=env).stdout)["jobs"][0]
    assert other["action"] == "error" and "PERMISSION_DENIED" in other["error"], other
