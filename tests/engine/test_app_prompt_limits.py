"""A prompt the model cannot take is refused as Google refuses it (400 INVALID_ARGUMENT naming the
counts and the fix), never cut to fit: over the model's inputTokenLimit, or leaving no room in its
context for maxOutputTokens. The built-in model's own cases are in bad_requests/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.engine.engine_helpers import assert_error
from tests.engine.sdk_helpers import ALICE, train

pytestmark = pytest.mark.slow

PLAIN = "models/tiny-plain"  # the built-in model's weights registered as a plain Hugging Face dir


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An engine serving, besides the built-in model, its weights as a registered model: that one's
    inputTokenLimit is its whole context (2048), as for any pretrained model."""
    pytest.importorskip("torch")
    from tunespec.engine import basemodels
    from tunespec.engine.modelio import META
    from tunespec.engine.server import start_background

    built = basemodels.materialize(basemodels.BUILTIN, tmp_path_factory.mktemp("build"))
    plain = tmp_path_factory.mktemp("plain") / "model"
    shutil.copytree(built, plain)
    (plain / META).unlink()
    with start_background(tmp_path_factory.mktemp("data"), models={PLAIN: plain}) as running:
        yield running


def _content(engine: Any, model: str, text: str, **config: Any) -> requests.Response:
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    if config:
        body["generationConfig"] = config
    return requests.post(f"{engine.url}/v1beta/{model}:generateContent", json=body,
                         headers={"x-goog-api-key": ALICE}, timeout=120)


def test_a_registered_model_advertises_its_context_as_its_input_limit(engine) -> None:
    listed = requests.get(f"{engine.url}/v1beta/{PLAIN}", timeout=30).json()
    assert (listed["inputTokenLimit"], listed["outputTokenLimit"]) == (2048, 512)


def test_an_answer_that_would_overflow_the_context_is_cut_to_the_room_left(engine) -> None:
    # 1800 bytes + bos + sep = 1802 tokens, within the input limit; 512 output tokens would overflow
    # the context of 2048: the answer gets the 246 left and ends MAX_TOKENS, as when a model fills it
    resp = _content(engine, PLAIN, "x" * 1800, maxOutputTokens=512, temperature=0)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["usageMetadata"]["promptTokenCount"] == 1802
    assert body["usageMetadata"].get("candidatesTokenCount", 0) <= 246
    if body["usageMetadata"].get("candidatesTokenCount", 0) == 246:
        assert body["candidates"][0]["finishReason"] == "MAX_TOKENS"


def test_a_prompt_filling_the_whole_context_is_refused(engine) -> None:
    resp = _content(engine, PLAIN, "x" * 2046, maxOutputTokens=1)
    assert_error(resp, 400, "INVALID_ARGUMENT", "The input token count (2048) leaves no room for an answer",
                 "Shorten the prompt to fewer than 2048 tokens.")
    over = _content(engine, PLAIN, "x" * 2047, maxOutputTokens=1)
    assert_error(over, 400, "INVALID_ARGUMENT",
                 "The input token count (2049) exceeds the maximum number of tokens allowed (2048).")


def test_a_stream_is_refused_before_any_chunk(engine) -> None:
    body = {"contents": [{"parts": [{"text": "x" * 2047}]}], "generationConfig": {"maxOutputTokens": 300}}
    resp = requests.post(f"{engine.url}/v1beta/{PLAIN}:streamGenerateContent", params={"alt": "sse"},
                         json=body, timeout=120)
    assert resp.headers["content-type"].startswith("application/json")
    assert_error(resp, 400, "INVALID_ARGUMENT", "exceeds the maximum number of tokens allowed (2048)")


def test_every_turn_of_a_conversation_counts(engine) -> None:
    turns = [{"role": "user", "parts": [{"text": "x" * 1000}]}, {"role": "model", "parts": [{"text": "y"}]},
             {"role": "user", "parts": [{"text": "x" * 1000}]}]
    resp = requests.post(f"{engine.url}/v1beta/models/tunespec-byte-tiny:generateContent",
                         json={"contents": turns}, timeout=120)
    assert_error(resp, 400, "INVALID_ARGUMENT",
                 "The input token count (2005) exceeds the maximum number of tokens allowed (1536).")


def test_a_model_tuned_from_the_built_in_keeps_its_input_limit(engine) -> None:
    tuned = train(engine.url, "limits-tuned")
    assert_error(_content(engine, tuned, "x" * 1600), 400, "INVALID_ARGUMENT",
                 "The input token count (1602) exceeds the maximum number of tokens allowed (1536).")
    text = requests.post(f"{engine.url}/v1beta3/{tuned}:generateText", json={"prompt": {"text": "x" * 1535}},
                         headers={"x-goog-api-key": ALICE}, timeout=120)
    assert_error(text, 400, "INVALID_ARGUMENT", "(1537) exceeds the maximum number of tokens allowed (1536)")
    fits = _content(engine, tuned, "x" * 1534, maxOutputTokens=4)
    assert fits.status_code == 200, fits.text
