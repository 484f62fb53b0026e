"""streamGenerateContent on models/* and tunedModels/*, v1beta and v1: server-sent events with
alt=sse, else a streamed JSON array; chunks as the tokens come, finishReason and the usage on the
last chunk; a client that disconnects stops the generation; Google's SDKs stream through it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from tests.engine.engine_helpers import assert_error, create_body, wait_done

GEMINI = "models/gemini-1.5-flash-001-tuning"


@pytest.fixture(scope="module")
def tuned(engine) -> str:
    """A tuned model that answers the quickstart's prompts (greedy "twenty two" -> "twenty three")."""
    body = create_body(epochs=40, batch=4, lr=0.003, base_model=GEMINI)
    resp = requests.post(f"{engine.url}/v1beta/tunedModels", params={"tunedModelId": "streamed"},
                         json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    op = wait_done(engine.url, resp.json()["name"], timeout=600)
    assert "error" not in op, op
    return "tunedModels/streamed"


def _content(text: str, **config: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], "generationConfig": config}


def _sse(url: str, model: str, body: dict[str, Any], version: str = "v1beta") -> list[tuple[float, dict]]:
    """The events of one SSE stream, each with the time it arrived."""
    events = []
    with requests.post(f"{url}/{version}/{model}:streamGenerateContent", params={"alt": "sse"}, json=body,
                       stream=True, timeout=120) as resp:
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith(b"data: "):
                events.append((time.monotonic(), json.loads(line[6:])))
    return events


def _text(chunks: list[dict], index: int = 0) -> str:
    return "".join(p.get("text", "") for c in chunks for cand in c.get("candidates", [])
                   if cand.get("index", 0) == index for p in cand["content"]["parts"])


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_sse_chunks_add_up_to_the_answer_and_the_last_one_says_how_it_ended(engine, tuned, version):
    body = _content("twenty two", temperature=0, maxOutputTokens=32)
    whole = requests.post(f"{engine.url}/{version}/{tuned}:generateContent", json=body, timeout=60).json()
    answer = whole["candidates"][0]["content"]["parts"][0]["text"]
    chunks = [c for _, c in _sse(engine.url, tuned, body, version)]
    assert answer and _text(chunks) == answer
    assert len(chunks) > 2  # token by token, not one block
    assert all("finishReason" not in cand for c in chunks[:-1] for cand in c["candidates"])
    last = chunks[-1]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"] == whole["usageMetadata"]
    assert last["usageMetadata"]["candidatesTokenCount"] == len(answer.encode())  # one token a byte
    assert all(c["modelVersion"] == tuned for c in chunks)


def test_without_alt_the_stream_is_one_json_array(engine, tuned):
    body = _content("twenty two", temperature=0, maxOutputTokens=3)
    for model in (tuned, GEMINI):
        resp = requests.post(f"{engine.url}/v1beta/{model}:streamGenerateContent", json=body, timeout=60)
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
        chunks = json.loads(resp.text)
        assert isinstance(chunks, list) and chunks
        assert chunks[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"  # maxOutputTokens cut it
        assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == 3
    assert _text(json.loads(requests.post(f"{engine.url}/v1/{tuned}:streamGenerateContent", json=body,
                                          timeout=60).text)) == "twe"


def test_candidates_stream_under_their_own_index(engine, tuned):
    body = _content("twenty two", temperature=0, maxOutputTokens=8, candidateCount=2)
    chunks = [c for _, c in _sse(engine.url, tuned, body)]
    assert _text(chunks, 0) == _text(chunks, 1) == "twenty t"
    assert sorted(c["index"] for c in chunks[-1]["candidates"]) == [0, 1]
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == 16


def test_chunks_come_while_the_answer_is_decoded(engine):
    # Sampling the untrained model gives a long answer of random bytes: its chunks spread over time.
    body = _content("hello", temperature=1.0, topK=0, topP=1.0, maxOutputTokens=400)
    events = max((_sse(engine.url, GEMINI, body) for _ in range(3)), key=len)
    assert len(events) > 20
    first, last = events[0][0], events[-1][0]
    assert last - first > 0.05  # sent as decoded, not all at the end


def test_a_client_that_disconnects_stops_its_generation(engine):
    from tunespec.engine import generate

    # Greedy, the untrained model never ends a turn: it would decode all 512 tokens.
    body = _content("hello", temperature=0, maxOutputTokens=512)
    requests.post(f"{engine.url}/v1beta/{GEMINI}:generateContent", json=_content("warm", maxOutputTokens=1),
                  timeout=60)
    batcher = next(reversed(generate._cache.values())).batcher
    before = batcher.ended["CANCELLED"]
    resp = requests.post(f"{engine.url}/v1beta/{GEMINI}:streamGenerateContent", params={"alt": "sse"},
                         json=body, stream=True, timeout=60)
    assert resp.status_code == 200
    resp.close()  # gone after the headers
    deadline = time.monotonic() + 30
    while batcher.ended["CANCELLED"] == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert batcher.ended["CANCELLED"] == before + 1


def test_bad_streaming_requests_answer_before_any_chunk(engine):
    url = f"{engine.url}/v1beta"
    assert_error(requests.post(f"{url}/models/no-such-model:streamGenerateContent", json=_content("hi"),
                               timeout=30), 404, "NOT_FOUND", "no-such-model")
    assert_error(requests.post(f"{url}/{GEMINI}:streamGenerateContent", params={"alt": "sse"},
                               json={"contents": []}, timeout=30), 400, "INVALID_ARGUMENT", "contents")
    assert_error(requests.post(f"{url}/tunedModels/absent:streamGenerateContent", json=_content("hi"),
                               timeout=30), 404, "NOT_FOUND", "absent")


@pytest.mark.parametrize("version", [None, "v1beta"], ids=["default-v1", "v1beta"])
def test_google_genai_streams(engine, tuned, version):
    genai = pytest.importorskip("google.genai")
    from google.genai import types

    options = {"base_url": engine.url} | ({"api_version": version} if version else {})
    client = genai.Client(api_key="local-key", http_options=options)
    config = types.GenerateContentConfig(temperature=0, max_output_tokens=32)
    whole = client.models.generate_content(model=tuned, contents="twenty two", config=config)
    chunks = list(client.models.generate_content_stream(model=tuned, contents="twenty two", config=config))
    assert len(chunks) > 1 and "".join(c.text or "" for c in chunks) == whole.text
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.total_token_count == whole.usage_metadata.total_token_count
    chat = client.chats.create(model=GEMINI, config=types.GenerateContentConfig(max_output_tokens=4))
    streamed = list(chat.send_message_stream("hello"))
    assert streamed[-1].candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


def test_google_generativeai_streams(engine, tuned):
    genai = pytest.importorskip("google.generativeai")

    genai.configure(api_key="local-key", transport="rest", client_options={"api_endpoint": engine.url})
    try:
        model = genai.GenerativeModel(tuned)
        config = {"temperature": 0, "max_output_tokens": 32}
        whole = model.generate_content("twenty two", generation_config=config)
        reply = model.generate_content("twenty two", generation_config=config, stream=True)
        parts = [chunk.text for chunk in reply]
        assert len(parts) > 1 and "".join(parts) == whole.text
        assert reply.candidates[0].finish_reason.name == "STOP"
    finally:
        genai.configure(api_key=None, transport=None, client_options=None)


def test_gapic_rest_client_streams(engine, tuned):
    glm = pytest.importorskip("google.ai.generativelanguage_v1beta")
    from google.auth.credentials import AnonymousCredentials

    client = glm.GenerativeServiceClient(transport="rest", credentials=AnonymousCredentials(),
                                         client_options={"api_endpoint": engine.url})
    request = glm.GenerateContentRequest(
        model=tuned, contents=[glm.Content(role="user", parts=[glm.Part(text="twenty two")])],
        generation_config=glm.GenerationConfig(temperature=0, max_output_tokens=32),
    )
    whole = client.generate_content(request)
    chunks = list(client.stream_generate_content(request))
    assert len(chunks) > 1
    text = "".join(p.text for c in chunks for cand in c.candidates for p in cand.content.parts)
    assert text == whole.candidates[0].content.parts[0].text
    assert chunks[-1].candidates[0].finish_reason == glm.Candidate.FinishReason.STOP
    assert chunks[-1].usage_metadata.total_token_count == whole.usage_metadata.total_token_count
