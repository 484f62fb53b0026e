"""The /v1 surface and PATCH semantics over plain HTTP, as the SDKs' REST transports send them."""

from __future__ import annotations

import pytest
import requests

from tests.engine.engine_helpers import assert_error, create_body, wait_done

pytestmark = pytest.mark.slow
GEMINI = "models/gemini-1.5-flash-001-tuning"


def test_v1_tuned_model_lifecycle_generate_count_and_patch(engine) -> None:
    url = engine.url
    models = requests.get(f"{url}/v1/models").json()["models"]
    gemini = next(m for m in models if m["name"] == GEMINI)
    assert {"generateContent", "countTokens", "createTunedModel"} <= set(gemini["supportedGenerationMethods"])
    assert requests.get(f"{url}/v1/{GEMINI}").json()["name"] == GEMINI

    op = requests.post(f"{url}/v1/tunedModels", params={"tunedModelId": "v1-model"},
                       json=create_body(base_model=GEMINI, epochs=2)).json()
    assert op["metadata"]["@type"].endswith("v1beta.CreateTunedModelMetadata")  # v1 serves v1beta's types
    done = wait_done(url, op["name"], prefix="v1")
    assert done["response"]["name"] == "tunedModels/v1-model"
    base = f"{url}/v1/tunedModels/v1-model"
    assert "tunedModels/v1-model" in [m["name"] for m in requests.get(f"{url}/v1/tunedModels").json()[
        "tunedModels"]]
    assert [o["name"] for o in requests.get(f"{base}/operations").json()["operations"]] == [op["name"]]

    ask = {"contents": [{"role": "user", "parts": [{"text": "1"}]}], "generationConfig": {"temperature": 0}}
    answer = requests.post(f"{base}:generateContent", json=ask).json()
    assert answer["candidates"][0]["finishReason"] == "STOP", answer
    cut = requests.post(f"{url}/v1/{GEMINI}:generateContent",
                        json={**ask, "generationConfig": {"temperature": 0, "maxOutputTokens": 2}}).json()
    assert cut["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert cut["usageMetadata"]["candidatesTokenCount"] == 2
    seeded = {**ask, "generationConfig": {"temperature": 1.0, "seed": 7, "maxOutputTokens": 8}}
    first, again = (requests.post(f"{url}/v1/{GEMINI}:generateContent", json=seeded).json() for _ in "ab")
    assert first["candidates"][0]["content"] == again["candidates"][0]["content"]

    counted = requests.post(f"{base}:countTokens", json={"contents": ask["contents"]}).json()
    assert counted == {"totalTokens": 1}
    inner = {"generateContentRequest": {"model": "tunedModels/v1-model", **ask,
                                        "systemInstruction": {"parts": [{"text": "be brief"}]}}}
    assert requests.post(f"{base}:countTokens", json=inner).json() == {"totalTokens": 1 + len("be brief")}
    assert requests.post(f"{url}/v1beta3/models/text-bison-001:countTextTokens",
                         json={"prompt": {"text": "abc"}}).json() == {"tokenCount": 3}

    # no mask: every updatable field sent; output-only and unchanged immutable fields are ignored
    whole = requests.get(base).json()
    patched = requests.patch(base, json={**whole, "description": "whole resource", "topK": 5}).json()
    assert patched["description"] == "whole resource" and patched["topK"] == 5
    assert patched["createTime"] == whole["createTime"] and patched["state"] == "ACTIVE"
    masked = requests.patch(f"{base}?updateMask=state,createTime,baseModel,tuningTask,topK",
                            json={"state": "FAILED", "baseModel": GEMINI}).json()
    assert masked["state"] == "ACTIVE" and masked["topK"] == gemini["topK"]  # cleared: the base default
    assert_error(requests.patch(f"{base}?updateMask=baseModel", json={"baseModel": "models/other"}),
                 400, "INVALID_ARGUMENT", "base_model", "cannot be updated")
    assert_error(requests.patch(f"{base}?updateMask=tuningTask", json={"tuningTask": {"trainingData": {
        "examples": {"examples": [{"textInput": "a", "output": "b"}]}}}}), 400, "INVALID_ARGUMENT",
        "tuning_task")

    assert_error(requests.post(f"{base}:embedContent", json={}), 501, "UNIMPLEMENTED", "embedContent")
    assert_error(requests.post(f"{url}/v1/{GEMINI}:streamGenerateContentX", json={}), 501, "UNIMPLEMENTED")
    assert_error(requests.get(f"{url}/v1beta/files"), 501, "UNIMPLEMENTED", "files")
    assert requests.delete(base).json() == {}
    assert_error(requests.get(base), 404, "NOT_FOUND", "tunedModels/v1-model does not exist")
