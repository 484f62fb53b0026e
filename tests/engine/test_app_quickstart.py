"""Google's PaLM tuning quickstart, run verbatim (only base_url changed) against `tunespec serve`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.engine.engine_helpers import ServeProcess, wait_done

pytestmark = pytest.mark.slow

# The curl calls exactly as the quickstart prints them (trailing commas included).
CURL_LIST = """curl -X GET ${base_url}/v1beta3/tunedModels \\
    -H 'Content-Type: application/json' \\
    -H "Authorization: Bearer ${access_token}" \\
    -H "x-goog-user-project: ${project_id}" | grep name"""

CURL_CREATE = """curl -X POST ${base_url}/v1beta3/tunedModels \\
    -H 'Content-Type: application/json' \\
    -H "Authorization: Bearer ${access_token}" \\
    -H "x-goog-user-project: ${project_id}" \\
    -d '
      {
        "display_name": "number generator model",
        "base_model": "models/text-bison-001",
        "tuning_task": {
          "hyperparameters": {
            "batch_size": 2,
            "learning_rate": 0.001,
            "epoch_count":3,
          },
          "training_data": {
            "examples": {
              "examples": [
                {
                    "text_input": "1",
                    "output": "2",
                },{
                    "text_input": "3",
                    "output": "4",
                },{
                    "text_input": "-3",
                    "output": "-2",
                },{
                    "text_input": "twenty two",
                    "output": "twenty three",
                },{
                    "text_input": "two hundred",
                    "output": "two hundred one",
                },{
                    "text_input": "ninety nine",
                    "output": "one hundred",
                },{
                    "text_input": "8",
                    "output": "9",
                },{
                    "text_input": "-98",
                    "output": "-97",
                },{
                    "text_input": "1,000",
                    "output": "1,001",
                },{
                    "text_input": "10,100,000",
                    "output": "10,100,001",
                },{
                    "text_input": "thirteen",
                    "output": "fourteen",
                },{
                    "text_input": "eighty",
                    "output": "eighty one",
                },{
                    "text_input": "one",
                    "output": "two",
                },{
                    "text_input": "three",
                    "output": "four",
                },{
                    "text_input": "seven",
                    "output": "eight",
                }
              ]
            }
          }
        }
      }' | tee tunemodel.json"""

CURL_GET = """curl -X GET ${base_url}/v1beta3/${modelname} \\
    -H 'Content-Type: application/json' \\
    -H "Authorization: Bearer ${access_token}" \\
    -H "x-goog-user-project: ${project_id}" \\ | grep state"""

CURL_GENERATE = """curl -X POST ${base_url}/v1beta3/${modelname}:generateText \\
    -H 'Content-Type: application/json' \\
    -H "Authorization: Bearer ${access_token}" \\
    -H "x-goog-user-project: ${project_id}" \\
    -d '{
        "prompt": {
              "text": "4"
              },
        "temperature": 1.0,
        "candidate_count": 2}'"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    server = ServeProcess(tmp_path_factory.mktemp("quickstart") / "data")
    yield server
    server.stop()


def _sh(script: str, cwd: Path, env: dict[str, str]) -> str:
    return subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    ).stdout


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl binary")
def test_curl_sequence_verbatim(served: ServeProcess, tmp_path: Path) -> None:
    env = {**os.environ, "base_url": served.url, "access_token": "ya29.local", "project_id": "project-id"}
    _sh(CURL_LIST, tmp_path, env)  # an empty list greps nothing; it must simply answer

    created = _sh(CURL_CREATE, tmp_path, env)
    op = json.loads(created)
    assert op == json.loads((tmp_path / "tunemodel.json").read_text())
    assert op["metadata"]["totalSteps"] == 23
    assert op["metadata"]["@type"] == (
        "type.googleapis.com/google.ai.generativelanguage.v1beta3.CreateTunedModelMetadata"
    )
    name = op["metadata"]["tunedModel"]
    assert (
        name.startswith("tunedModels/number-generator-model-")
        and len(name) == len("tunedModels/number-generator-model-") + 12
    )
    assert op["name"].startswith(f"{name}/operations/")
    env["modelname"] = name

    assert '"state":' in _sh(CURL_GET, tmp_path, env)
    assert name in _sh(CURL_LIST, tmp_path, env)

    done = wait_done(served.url, op["name"], headers={"x-goog-user-project": "project-id"})
    assert done["response"]["state"] == "ACTIVE"
    assert len(done["metadata"]["snapshots"]) == 23

    gen = json.loads(_sh(CURL_GENERATE, tmp_path, env))
    assert len(gen["candidates"]) == 2
    assert all("output" in c for c in gen["candidates"])


def test_python_requests_sequence_verbatim(served: ServeProcess) -> None:
    access_token = "ya29.local"
    project = "project-id"
    base_url = served.url

    headers = {
        "Authorization": "Bearer " + access_token,
        "Content-Type": "application/json",
        "x-goog-user-project": project,
    }
    result = requests.get(
        url=f"{base_url}/v1beta3/tunedModels",
        headers=headers,
    )
    assert result.status_code == 200
    result.json()

    operation = requests.post(
        url=f"{base_url}/v1beta3/tunedModels",
        headers=headers,
        json={
            "display_name": "number generator",
            "base_model": "models/text-bison-001",
            "tuning_task": {
                "hyperparameters": {
                    "batch_size": 4,
                    "learning_rate": 0.001,
                    "epoch_count": 3,
                },
                "training_data": {
                    "examples": {
                        "examples": [
                            {"text_input": "1", "output": "2"},
                            {"text_input": "3", "output": "4"},
                            {"text_input": "-3", "output": "-2"},
                            {"text_input": "twenty two", "output": "twenty three"},
                            {"text_input": "two hundred", "output": "two hundred one"},
                            {"text_input": "ninety nine", "output": "one hundred"},
                            {"text_input": "8", "output": "9"},
                            {"text_input": "-98", "output": "-97"},
                            {"text_input": "1,000", "output": "1,001"},
                            {"text_input": "10,100,000", "output": "10,100,001"},
                            {"text_input": "thirteen", "output": "fourteen"},
                            {"text_input": "eighty", "output": "eighty one"},
                            {"text_input": "one", "output": "two"},
                            {"text_input": "three", "output": "four"},
                            {"text_input": "seven", "output": "eight"},
                        ]
                    }
                },
            },
        },
    )
    assert operation.status_code == 200
    assert operation.json()["metadata"]["totalSteps"] == 12

    name = operation.json()["metadata"]["tunedModel"]
    tuned_model = requests.get(
        url=f"{base_url}/v1beta3/{name}",
        headers=headers,
    )
    tm = tuned_model.json()
    assert tm["displayName"] == "number generator"
    assert tm["tuningTask"]["hyperparameters"] == {"epochCount": 3, "batchSize": 4, "learningRate": 0.001}
    assert "trainingData" not in tm["tuningTask"]

    op_json = operation.json()
    response = op_json.get("response")
    error = op_json.get("error")
    printed = []
    while response is None and error is None:
        time.sleep(0.2)  # the quickstart sleeps 31 s here
        operation = requests.get(
            url=f"{base_url}/v1/{op_json['name']}",
            headers=headers,
        )
        op_json = operation.json()
        response = op_json.get("response")
        error = op_json.get("error")
        percent = op_json["metadata"].get("completedPercent")
        if percent is not None:
            printed.append(f"{percent:.2f}% - {op_json['metadata']['snapshots'][-1]}")
    assert error is None
    assert printed[-1].startswith("100.00% - {'step': 12, 'epoch': 3, 'meanLoss': ")

    m = requests.post(
        url=f"{base_url}/v1beta3/{name}:generateText",
        headers=headers,
        json={
            "prompt": {"text": "9"},
        },
    )
    assert isinstance(m.json()["candidates"][0]["output"], str)
