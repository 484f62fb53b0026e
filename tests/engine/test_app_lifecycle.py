"""A tuning job's life over HTTP: progress arithmetic, wire format, listing, patch, delete, queueing."""

from __future__ import annotations

import re
import time

import pytest
import requests

from tests.engine.engine_helpers import NUMBERS, create_body, wait_done

pytestmark = pytest.mark.slow

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


def test_fifteen_examples_three_epochs_batch_two(engine) -> None:
    body = create_body(epochs=3, batch=2, display_name="Number Generator_v2!")
    resp = requests.post(f"{engine.url}/v1beta3/tunedModels", json=body, timeout=30)
    assert resp.status_code == 200
    op = resp.json()
    assert set(op) == {"name", "metadata"}
    assert op["metadata"]["totalSteps"] == 23
    assert re.fullmatch(r"tunedModels/number-generatorv2-[a-z0-9]{12}", op["metadata"]["tunedModel"])
    assert re.fullmatch(r"tunedModels/[a-z0-9-]+/operations/[a-z0-9]{12}", op["name"])

    seen_running = False
    while True:
        cur = requests.get(f"{engine.url}/v1/{op['name']}", timeout=10).json()
        meta = cur["metadata"]
        if not cur.get("done") and meta.get("completedSteps"):
            seen_running = True
            assert meta["completedPercent"] == pytest.approx(100 * meta["completedSteps"] / 23, abs=1e-3)
        if cur.get("done"):
            break
        time.sleep(0.02)
    assert "error" not in cur
    meta = cur["metadata"]
    assert meta["completedSteps"] == 23 and meta["completedPercent"] == 100
    snaps = meta["snapshots"]
    assert [s["step"] for s in snaps] == list(range(1, 24))
    for s in snaps:
        epoch = s["step"] * 2 // 15
        assert s.get("epoch") == (epoch or None)  # omitted while 0
        assert isinstance(s["meanLoss"], float)
        assert RFC3339.match(s["computeTime"]) and len(s["computeTime"].split(".")[1]) == 10
    model = cur["response"]
    assert model["@type"] == "type.googleapis.com/google.ai.generativelanguage.v1beta3.TunedModel"
    assert model["state"] == "ACTIVE"
    assert model["tuningTask"]["completeTime"] == model["updateTime"]
    assert "trainingData" not in model["tuningTask"]
    assert "description" not in model  # default values are omitted
    assert (model["temperature"], model["topP"], model["topK"]) == (0.7, 0.95, 40)
    for key in ("createTime", "updateTime"):
        assert RFC3339.match(model[key])
    assert seen_running or len(snaps) == 23

    # the same operation under every prefix; @type follows the path's version (v1 keeps the model's)
    name = model["name"]
    for prefix, version in (("v1beta3", "v1beta3"), ("v1beta", "v1beta"), ("v1", "v1beta3")):
        again = requests.get(f"{engine.url}/{prefix}/{op['name']}").json()
        assert again["response"]["@type"].endswith(f"{version}.TunedModel")
        listed = requests.get(f"{engine.url}/{prefix}/{name}/operations").json()
        assert [o["name"] for o in listed["operations"]] == [op["name"]]

    # enums as integers for the GAPIC REST transport
    as_int = requests.get(f"{engine.url}/v1beta3/{name}?%24alt=json%3Benum-encoding%3Dint").json()
    assert as_int["state"] == 2


def test_defaults_are_resolved_and_echoed(engine) -> None:
    body = create_body()
    body["tuningTask"]["hyperparameters"] = {}
    op = requests.post(f"{engine.url}/v1beta3/tunedModels", json=body).json()
    model = requests.get(f"{engine.url}/v1beta3/{op['metadata']['tunedModel']}").json()
    assert model["tuningTask"]["hyperparameters"] == {
        "epochCount": 10,
        "batchSize": 16,
        "learningRate": 0.002,
    }
    assert op["metadata"]["totalSteps"] == 10  # ceil(15 * 10 / 16)

    body = create_body(base_model="models/gemini-1.5-flash-001-tuning")
    body["tuningTask"]["hyperparameters"] = {"learningRateMultiplier": 0.5}
    op2 = requests.post(f"{engine.url}/v1beta/tunedModels", json=body).json()
    assert op2["metadata"]["@type"].endswith("v1beta.CreateTunedModelMetadata")
    model = requests.get(f"{engine.url}/v1beta/{op2['metadata']['tunedModel']}").json()
    assert model["tuningTask"]["hyperparameters"] == {
        "epochCount": 5,
        "batchSize": 4,
        "learningRateMultiplier": 0.5,
    }
    assert (model["temperature"], model["topP"], model["topK"]) == (1.0, 0.95, 64)
    wait_done(engine.url, op["name"])
    wait_done(engine.url, op2["name"])


def test_jobs_queue_in_order_and_api_stays_fast(engine) -> None:
    ops = [
        requests.post(
            f"{engine.url}/v1beta3/tunedModels?tunedModelId=queued-{i}", json=create_body(epochs=4, batch=1)
        ).json()
        for i in range(3)
    ]
    slowest = 0.0
    for _ in range(20):
        t0 = time.perf_counter()
        requests.get(f"{engine.url}/v1beta3/tunedModels?pageSize=2").raise_for_status()
        slowest = max(slowest, time.perf_counter() - t0)
        time.sleep(0.02)
    assert slowest < 0.5, f"a list call took {slowest:.3f}s while training"
    finished = [wait_done(engine.url, op["name"]) for op in ops]
    ends = [o["response"]["tuningTask"]["completeTime"] for o in finished]
    assert ends == sorted(ends)  # one worker thread: first in, first out


def test_list_pages_patch_and_delete(engine) -> None:
    names = []
    for i in range(3):
        body = create_body(display_name=f"page {i}")
        op = requests.post(f"{engine.url}/v1beta3/tunedModels", json=body).json()
        names.append(op["metadata"]["tunedModel"])
        wait_done(engine.url, op["name"])
    seen, token = [], None
    while True:
        page = requests.get(
            f"{engine.url}/v1beta3/tunedModels",
            params={"pageSize": 2, **({"pageToken": token} if token else {})},
        ).json()
        assert len(page["tunedModels"]) <= 2
        seen += [m["name"] for m in page["tunedModels"]]
        token = page.get("nextPageToken")
        if not token:
            break
    assert set(names) <= set(seen) and len(seen) == len(set(seen))
    filtered = requests.get(f"{engine.url}/v1beta/tunedModels", params={"filter": "page 1"}).json()
    assert [m["name"] for m in filtered["tunedModels"]] == [names[1]]

    patched = requests.patch(
        f"{engine.url}/v1beta3/{names[0]}?updateMask=description,display_name,temperature",
        json={"description": "new words", "displayName": "renamed", "temperature": 0.1},
    ).json()
    assert (patched["description"], patched["displayName"], patched["temperature"]) == (
        "new words",
        "renamed",
        0.1,
    )
    assert patched["updateTime"] >= patched["createTime"]
    assert requests.get(f"{engine.url}/v1beta3/{names[0]}").json()["description"] == "new words"

    assert requests.delete(f"{engine.url}/v1beta3/{names[0]}").json() == {}
    assert requests.get(f"{engine.url}/v1beta3/{names[0]}").status_code == 404


def test_memorises_training_outputs_greedy(engine) -> None:
    body = create_body(epochs=50, batch=2, lr=0.001)
    op = requests.post(f"{engine.url}/v1beta3/tunedModels?tunedModelId=memorised", json=body).json()
    done = wait_done(engine.url, op["name"], timeout=300)
    assert done["response"]["state"] == "ACTIVE"
    hits = 0
    for text_input, output in NUMBERS:
        gen = requests.post(
            f"{engine.url}/v1beta3/tunedModels/memorised:generateText",
            json={"prompt": {"text": text_input}, "temperature": 0, "maxOutputTokens": 32},
        ).json()
        hits += gen["candidates"][0]["output"] == output
    assert hits >= 13, f"{hits}/15 training outputs reproduced"
    content = requests.post(
        f"{engine.url}/v1beta/tunedModels/memorised:generateContent",
        json={
            "contents": [{"role": "user", "parts": [{"text": "thirteen"}]}],
            "generationConfig": {"temperature": 0},
        },
    ).json()
    cand = content["candidates"][0]
    assert cand["content"] == {"parts": [{"text": "fourteen"}], "role": "model"}
    assert cand["finishReason"] == "STOP" and cand["index"] == 0
    two = requests.post(
        f"{engine.url}/v1beta3/tunedModels/memorised:generateText",
        json={"prompt": {"text": "eighty"}, "temperature": 1.0, "candidate_count": 3, "stopSequences": [" "]},
    ).json()
    assert len(two["candidates"]) == 3
    assert all(" " not in c["output"] for c in two["candidates"])
