"""The CreateTunedModel body and the step prediction."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunespec.datasets import Example, load_examples
from tunespec.request import render_request, spec_steps
from tunespec.spec import load_spec
from tunespec.tuning_api import total_steps as predicted_steps

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("n", "e", "b", "steps"), [
    (15, 3, 2, 23), (15, 3, 4, 12), (15, 5, 2, 38), (15, 5, 4, 19), (15, 100, 4, 375), (15, 50, 4, 188),
    (0, 3, 2, 0), (4, 1, 4, 1),
])
def test_predicted_steps_match_the_service(n: int, e: int, b: int, steps: int):
    assert predicted_steps(n, e, b) == steps


def test_predicted_steps_rejects_nonsense():
    with pytest.raises(ValueError):
        predicted_steps(15, 0, 2)


def test_example_job_body():
    spec = load_spec(REPO / "jobs" / "number-generator.yaml")
    examples = load_examples(spec).examples
    body = render_request(spec, examples)
    assert body["baseModel"] == "models/smollm2-135m-instruct"
    assert body["displayName"] == "number generator model"
    task = body["tuningTask"]
    assert task["hyperparameters"] == {"epochCount": 3, "batchSize": 2, "learningRate": 0.001}
    sent = task["trainingData"]["examples"]["examples"]
    assert len(sent) == 15 and sent[0] == {"textInput": "1", "output": "2"}
    assert sent[9] == {"textInput": "10,100,000", "output": "10,100,001"}
    assert spec_steps(spec, len(examples)) == 23
    assert spec.dialect == "v1beta3"


def test_body_omits_unset_fields_and_uses_tuned_model_source(tmp_path: Path):
    path = tmp_path / "job.yaml"
    path.write_text("name: j\nsource_model: tunedModels/abc-123\ntop_k: 5\ntemperature: 0.5\n"
                    "hyperparameters: {learning_rate_multiplier: 2}\napi_version: v1beta\n"
                    "dataset:\n  examples: [{text_input: a, output: b}]\n", "utf-8")
    spec = load_spec(path, env={})
    body = render_request(spec, [Example("a", "b")])
    assert body == {
        "tunedModelSource": {"tunedModel": "tunedModels/abc-123"},
        "temperature": 0.5, "topK": 5,
        "tuningTask": {"hyperparameters": {"learningRateMultiplier": 2.0},
                       "trainingData": {"examples": {"examples": [{"textInput": "a", "output": "b"}]}}},
    }
    assert spec_steps(spec, 1) is None  # batch size left to the service


def test_api_version_follows_the_base_model(tmp_path: Path):
    path = tmp_path / "job.yaml"
    path.write_text("name: j\nbase_model: models/gemini-1.5-flash-001-tuning\n"
                    "hyperparameters: {batch_size: 4}\n"
                    "dataset:\n  examples: [{text_input: a, output: b}]\n", "utf-8")
    spec = load_spec(path, env={})
    assert spec.dialect == "v1beta"
    assert spec_steps(spec, 15) == 19  # default 5 epochs on v1beta


def test_tuning_method_is_sent_to_every_target_but_googles():
    """`tuningMethod` is the local engine's extension field: Google's service would reject it."""
    import dataclasses

    spec = load_spec(REPO / "jobs" / "number-generator.yaml")
    examples = load_examples(spec).examples
    assert "tuningMethod" not in render_request(spec, examples, target="local")  # unset: not sent
    spec = dataclasses.replace(spec, tuning_method="full")
    assert render_request(spec, examples, target="local")["tuningMethod"] == "full"
    assert render_request(spec, examples, target="http://127.0.0.1:8765")["tuningMethod"] == "full"
    assert "tuningMethod" not in render_request(spec, examples, target="google")
