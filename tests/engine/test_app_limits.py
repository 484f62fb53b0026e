"""Limits and clearing: PATCH that clears sampling defaults, chunked bodies over the cap, and
random JSON into the request parsers (only the engine's API error may come out)."""

from __future__ import annotations

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.engine.engine_helpers import create_body, wait_done
from tunespec.engine import limits, validation
from tunespec.engine.wire import ApiException, parse_body

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
    max_leaves=30,
)
KEYS = st.sampled_from(["prompt", "text", "temperature", "topK", "top_p", "candidateCount",
                        "maxOutputTokens", "stopSequences", "contents", "parts", "generationConfig",
                        "tuningTask", "hyperparameters", "epochCount", "batchSize", "trainingData",
                        "examples", "textInput", "output", "baseModel", "displayName"])
SHAPED = st.recursive(JSON, lambda kids: st.dictionaries(KEYS, kids, max_size=5), max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, SHAPED, max_size=5))
def test_random_bodies_raise_only_api_errors(body: dict) -> None:
    for call in (
        lambda: validation.text_prompt(body),
        lambda: validation.content_prompt(body, "tunedModels", "m"),
        lambda: validation.tuning_request(body, "v1beta", None),
        lambda: validation.patch_fields(body, "temperature,topK,description", "v1beta"),
        lambda: validation.sampling(body, {"temperature": 0.7, "top_p": 0.95, "top_k": 40,
                                           "output_limit": 64}, 2.0),
    ):
        try:
            call()
        except ApiException as exc:
            assert 400 <= exc.http_status < 500


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_random_bytes_parse_or_raise_api_error(raw: bytes) -> None:
    try:
        parse_body(raw)
    except ApiException as exc:
        assert exc.http_status == 400


def test_tree_problem_at_any_depth() -> None:
    deep: object = 1
    for _ in range(10_000):
        deep = [deep]
    assert limits.tree_problem({"a": deep}) is not None
    assert limits.tree_problem({"a": [[1]], "b": "ok"}) is None


@pytest.mark.slow
def test_chunked_body_over_cap_is_413(engine) -> None:
    def chunks():
        for _ in range(40):
            yield b"x" * 65536  # 2.5 MiB, no Content-Length
    resp = requests.post(f"{engine.url}/v1beta3/models/text-bison-001:generateText", data=chunks(),
                         timeout=60)
    assert resp.status_code == 413, resp.text
    assert "exceeds the limit" in resp.json()["error"]["message"]


@pytest.mark.slow
@pytest.mark.parametrize("clear", ["omit", "null"])
def test_patch_clearing_sampling_restores_base_defaults(engine, clear: str) -> None:
    url = engine.url
    body = create_body(display_name=f"clear {clear}")
    body.update(temperature=0.3, topP=0.5, topK=7)
    op = requests.post(f"{url}/v1beta3/tunedModels", json=body, timeout=30).json()
    name = op["metadata"]["tunedModel"]
    wait_done(url, op["name"])
    base = requests.get(f"{url}/v1beta3/models/text-bison-001", timeout=30).json()
    patch = {} if clear == "omit" else {"temperature": None, "topP": None, "topK": None}
    resp = requests.patch(f"{url}/v1beta3/{name}?updateMask=temperature,topP,topK", json=patch, timeout=30)
    assert resp.status_code == 200, resp.text
    got = resp.json()
    for key in ("temperature", "topP", "topK"):
        assert got.get(key) == base.get(key), (key, got, base)
    gen = requests.post(f"{url}/v1beta3/{name}:generateText", json={"prompt": {"text": "1"}}, timeout=120)
    assert gen.status_code == 200, gen.text
