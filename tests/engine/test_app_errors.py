"""Every error path of the engine's HTTP API: status, envelope, and a message naming the location."""

from __future__ import annotations

import copy

import pytest
import requests

from tests.engine.engine_helpers import assert_error, create_body, wait_done

pytestmark = pytest.mark.slow


def _post(url: str, path: str, body: object = None, data: bytes | None = None, **kw: object):
    return requests.post(f"{url}{path}", json=body, data=data, timeout=30, **kw)  # type: ignore[arg-type]


def _with(hp: dict | None = None, **top: object) -> dict:
    body = create_body()
    body["tuningTask"]["hyperparameters"].update(hp or {})
    body.update(top)
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_with({"batchSize": 0}), "tuned_model.tuning_task.hyperparameters.batch_size"),
        (_with({"batchSize": 5000}), "tuned_model.tuning_task.hyperparameters.batch_size"),
        (_with({"epochCount": 0}), "tuned_model.tuning_task.hyperparameters.epoch_count"),
        (_with({"epochCount": 2.5}), "tuned_model.tuning_task.hyperparameters.epoch_count"),
        (_with({"learningRate": -1}), "tuned_model.tuning_task.hyperparameters.learning_rate"),
        (_with({"learningRate": "fast"}), "tuned_model.tuning_task.hyperparameters.learning_rate"),
        (_with(displayName="x" * 41), "tuned_model.display_name"),
        (_with(temperature=3), "tuned_model.temperature"),
        (_with(tuningMethod="qlora"), "tuned_model.tuning_method"),
    ],
)
def test_invalid_hyperparameters_name_the_field(engine, body: dict, field: str) -> None:
    err = assert_error(_post(engine.url, "/v1beta3/tunedModels", body), 400, "INVALID_ARGUMENT", field)
    violations = err["details"][0]["fieldViolations"]
    assert violations[0]["field"] == field


def test_learning_rate_and_multiplier_are_exclusive(engine) -> None:
    body = _with({"learningRateMultiplier": 2.0})
    err = assert_error(
        _post(engine.url, "/v1beta/tunedModels", body),
        400,
        "INVALID_ARGUMENT",
        "mutually exclusive",
        "learning_rate",
    )
    assert err["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    # v1beta3 has no multiplier at all
    assert_error(
        _post(engine.url, "/v1beta3/tunedModels", body), 400, "INVALID_ARGUMENT", "learning_rate_multiplier"
    )


def test_examples_empty_missing_and_too_long(engine) -> None:
    body = create_body()
    body["tuningTask"]["trainingData"]["examples"]["examples"] = []
    assert_error(
        _post(engine.url, "/v1beta3/tunedModels", body),
        400,
        "INVALID_ARGUMENT",
        "tuned_model.tuning_task.training_data.examples.examples",
        "at least one example",
    )
    body = create_body()
    del body["tuningTask"]["trainingData"]
    assert_error(_post(engine.url, "/v1beta3/tunedModels", body), 400, "INVALID_ARGUMENT", "training_data")
    body = create_body()
    exs = body["tuningTask"]["trainingData"]["examples"]["examples"]
    exs[2]["textInput"] = "x" * 40_001
    exs[4]["output"] = ""
    err = assert_error(
        _post(engine.url, "/v1beta3/tunedModels", body),
        400,
        "INVALID_ARGUMENT",
        "examples[2].text_input",
        "40001 characters",
        "examples[4].output",
    )
    assert len(err["details"][0]["fieldViolations"]) == 2


def test_bad_tuned_model_id_and_duplicates(engine) -> None:
    for bad in ("1abc", "Upper", "a" * 41, "ends-"):
        assert_error(
            _post(engine.url, f"/v1beta3/tunedModels?tunedModelId={bad}", create_body()),
            400,
            "INVALID_ARGUMENT",
            "tunedModelId",
            bad,
        )
    ok = _post(engine.url, "/v1beta3/tunedModels?tunedModelId=dup-check", create_body())
    assert ok.status_code == 200 and ok.json()["metadata"]["tunedModel"] == "tunedModels/dup-check"
    assert_error(
        _post(engine.url, "/v1beta3/tunedModels?tuned_model_id=dup-check", create_body()),
        409,
        "ALREADY_EXISTS",
        "tunedModels/dup-check",
    )
    wait_done(engine.url, ok.json()["name"])


def test_unknown_base_model_is_not_found(engine) -> None:
    body = _with(baseModel="models/no-such-model")
    assert_error(
        _post(engine.url, "/v1beta3/tunedModels", body), 404, "NOT_FOUND", "models/no-such-model", "v1beta3"
    )
    # a Gemini name is a v1beta model, not a v1beta3 one
    body = _with(baseModel="models/gemini-1.0-pro-001")
    assert_error(_post(engine.url, "/v1beta3/tunedModels", body), 404, "NOT_FOUND", "gemini-1.0-pro-001")
    del body["baseModel"]
    assert_error(
        _post(engine.url, "/v1beta3/tunedModels", body), 400, "INVALID_ARGUMENT", "tuned_model.base_model"
    )
    assert_error(requests.get(f"{engine.url}/v1beta3/models/nope"), 404, "NOT_FOUND", "models/nope")


def test_unknown_fields_and_malformed_json(engine) -> None:
    body = copy.deepcopy(create_body())
    body["tuningTask"]["hyperparameters"]["epoch_cont"] = 3
    assert_error(
        _post(engine.url, "/v1beta3/tunedModels", body),
        400,
        "INVALID_ARGUMENT",
        'Unknown name "epoch_cont"',
        "tuned_model.tuning_task.hyperparameters",
    )
    assert_error(
        _post(engine.url, "/v1beta3/tunedModels", data=b'{"display_name": '),
        400,
        "INVALID_ARGUMENT",
        "Invalid JSON payload",
        "line 1",
    )
    assert_error(
        _post(engine.url, "/v1beta3/tunedModels", data=b"[1, 2]"), 400, "INVALID_ARGUMENT", "JSON object"
    )
    assert_error(
        _post(engine.url, "/v1beta3/tunedModels", data=b"{'single': 'quotes'}"),
        400,
        "INVALID_ARGUMENT",
        "Invalid JSON payload",
    )


def test_unknown_routes_and_methods_answer_404_envelopes(engine) -> None:
    assert_error(requests.get(f"{engine.url}/nothing/here"), 404, "NOT_FOUND", "/nothing/here")
    assert_error(requests.put(f"{engine.url}/v1beta3/tunedModels"), 404, "NOT_FOUND", "PUT")
    assert_error(
        requests.get(f"{engine.url}/v1beta3/tunedModels/absent"),
        404,
        "NOT_FOUND",
        "Tuned model tunedModels/absent does not exist.",
    )
    assert_error(requests.delete(f"{engine.url}/v1beta3/tunedModels/absent"), 404, "NOT_FOUND", "absent")
    assert_error(
        requests.get(f"{engine.url}/v1/tunedModels/absent/operations/abc"),
        404,
        "NOT_FOUND",
        "tunedModels/absent/operations/abc",
    )


def test_list_paging_errors(engine) -> None:
    assert_error(
        requests.get(f"{engine.url}/v1beta3/tunedModels?pageToken=garbage!"),
        400,
        "INVALID_ARGUMENT",
        "page_token",
    )
    assert_error(
        requests.get(f"{engine.url}/v1beta3/tunedModels?pageSize=-1"), 400, "INVALID_ARGUMENT", "page_size"
    )
    assert_error(
        requests.get(f"{engine.url}/v1beta3/tunedModels?pageSize=abc"), 400, "INVALID_ARGUMENT", "page_size"
    )


def test_generate_on_creating_model_is_failed_precondition_and_bad_params(engine) -> None:
    body = create_body(epochs=400, batch=1)  # long enough to still be training
    op = _post(engine.url, "/v1beta3/tunedModels?tunedModelId=still-training", body).json()
    resp = _post(engine.url, "/v1beta3/tunedModels/still-training:generateText", {"prompt": {"text": "1"}})
    assert_error(resp, 400, "FAILED_PRECONDITION", "tunedModels/still-training", "CREATING")
    # bad generation parameters are checked before the state? no: state first, like Google's
    cancel = _post(engine.url, f"/v1/{op['name']}:cancel", {})
    assert cancel.status_code == 200 and cancel.json() == {}
    done = wait_done(engine.url, op["name"])
    assert done["error"] == {"code": 1, "message": "Tuning was cancelled."}
    model = requests.get(f"{engine.url}/v1beta3/tunedModels/still-training").json()
    assert model["state"] == "FAILED"
    resp = _post(engine.url, "/v1beta3/tunedModels/still-training:generateText", {"prompt": {"text": "1"}})
    assert_error(resp, 400, "FAILED_PRECONDITION", "FAILED", "cancelled")


def test_generate_parameter_validation(engine) -> None:
    url = f"{engine.url}/v1beta3/models/text-bison-001:generateText"
    assert_error(
        _post(engine.url, "/v1beta3/models/text-bison-001:generateText", {}),
        400,
        "INVALID_ARGUMENT",
        "prompt.text",
    )
    for params, field in [
        ({"candidateCount": 9}, "candidate_count"),
        ({"candidate_count": 0}, "candidate_count"),
        ({"temperature": 1.5}, "temperature"),
        ({"topP": 2}, "top_p"),
        ({"topK": -1}, "top_k"),
        ({"maxOutputTokens": 0}, "max_output_tokens"),
        ({"stopSequences": ["a"] * 6}, "stop_sequences"),
        ({"bogus": 1}, "bogus"),
    ]:
        resp = requests.post(url, json={"prompt": {"text": "1"}, **params}, timeout=30)
        assert_error(resp, 400, "INVALID_ARGUMENT", field)
    assert_error(
        _post(engine.url, "/v1beta3/models/nope:generateText", {"prompt": {"text": "1"}}),
        404,
        "NOT_FOUND",
        "models/nope",
    )
    assert_error(
        _post(
            engine.url,
            "/v1beta/tunedModels/absent:generateContent",
            {"contents": [{"parts": [{"text": "1"}]}]},
        ),
        404,
        "NOT_FOUND",
        "tunedModels/absent",
    )
    assert_error(
        _post(engine.url, "/v1beta/models/gemini-1.0-pro-001:generateContent", {"contents": []}),
        400,
        "INVALID_ARGUMENT",
        "contents",
    )


def test_patch_errors(engine) -> None:
    op = _post(engine.url, "/v1beta3/tunedModels?tunedModelId=patch-errors", create_body()).json()
    base = f"{engine.url}/v1beta3/tunedModels/patch-errors"
    assert_error(requests.patch(base, json={"description": "x"}), 400, "INVALID_ARGUMENT", "update_mask")
    assert_error(
        requests.patch(f"{base}?updateMask=baseModel", json={"baseModel": "models/x"}),
        400,
        "INVALID_ARGUMENT",
        "base_model",
        "cannot be updated",
    )
    assert_error(
        requests.patch(f"{base}?updateMask=displayName", json={"displayName": "y" * 41}),
        400,
        "INVALID_ARGUMENT",
        "display_name",
    )
    # Sampling defaults keep the ranges they have at create time: PaLM temperatures stop at 1.
    assert_error(
        requests.patch(f"{base}?updateMask=temperature", json={"temperature": 1.5}),
        400,
        "INVALID_ARGUMENT",
        "temperature must be in [0, 1]",
    )
    assert_error(
        requests.patch(f"{base}?updateMask=topK", json={"topK": -1}), 400, "INVALID_ARGUMENT", "top_k"
    )
    assert_error(
        requests.patch(f"{base}?updateMask=topP", json={"topP": 1.5}), 400, "INVALID_ARGUMENT", "top_p"
    )
    wait_done(engine.url, op["name"])
