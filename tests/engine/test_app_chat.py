"""A chat model over HTTP: tuned through its template, answering generateText (one user turn) and
generateContent (turns, systemInstruction) as it was trained; models without a template unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.engine.chat_helpers import SYSTEM, write_chat_model
from tests.engine.engine_helpers import assert_error, create_body, wait_done
from tunespec.engine import basemodels
from tunespec.engine import generate as generation
from tunespec.engine.server import start_background

pytestmark = pytest.mark.slow

PAIRS = [("1", "2"), ("3", "4"), ("twenty two", "twenty three"), ("eighty", "eighty one"),
         ("-98", "-97"), ("seven", "eight")]


@pytest.fixture(scope="module")
def chat_engine(tmp_path_factory) -> Iterator[Any]:
    model = write_chat_model(tmp_path_factory.mktemp("chat") / "tiny-chat")
    with start_background(tmp_path_factory.mktemp("data"), models={"tiny-chat": model}) as eng:
        chat = {**create_body(epochs=60, batch=2, lr=2e-3, base_model="models/tiny-chat", pairs=PAIRS),
                "tuningMethod": "full"}
        plain = create_body(epochs=1, batch=4, base_model=basemodels.BUILTIN, pairs=PAIRS)
        create = f"{eng.url}/v1beta/tunedModels?tunedModelId="
        ops = [requests.post(create + name, json=body, timeout=30).json()
               for name, body in (("chat", chat), ("plain", plain))]
        for op in ops:
            assert wait_done(eng.url, op["name"], timeout=300)["response"]["state"] == "ACTIVE", op
        yield eng


def content(url: str, model: str, contents: list[dict[str, Any]], **extra: Any) -> requests.Response:
    body = {"contents": contents, "generationConfig": {"temperature": 0, "maxOutputTokens": 64}, **extra}
    return requests.post(f"{url}/v1beta/{model}:generateContent", json=body, timeout=60)


def answer(resp: requests.Response, finishes: tuple[str, ...] = ("STOP",)) -> str:
    assert resp.status_code == 200, resp.text
    cand = resp.json()["candidates"][0]
    assert cand["content"]["role"] == "model" and cand["finishReason"] in finishes
    return "".join(p["text"] for p in cand["content"]["parts"])


def test_a_tuned_chat_model_answers_its_pairs_through_generate_text_and_content(chat_engine):
    url = chat_engine.url
    for inp, out in PAIRS:
        gen = requests.post(f"{url}/v1beta3/tunedModels/chat:generateText",
                            json={"prompt": {"text": inp}, "temperature": 0, "maxOutputTokens": 64},
                            timeout=60).json()
        assert gen["candidates"][0]["output"] == out, gen
        assert answer(content(url, "tunedModels/chat", [{"role": "user", "parts": [{"text": inp}]}])) == out
        # the template's default system turn, sent as systemInstruction, is the prompt it was trained on
        system = {"parts": [{"text": SYSTEM}]}
        assert answer(content(url, "tunedModels/chat", [{"parts": [{"text": inp}]}],
                              systemInstruction=system)) == out


def test_generate_content_maps_turns_and_system_instruction_onto_the_template(chat_engine, monkeypatch):
    seen: list[dict[str, Any]] = []
    real = generation.complete
    monkeypatch.setattr(generation, "complete", lambda model_dir, prompt, **kw: seen.append(
        {"prompt": prompt, "messages": kw.get("messages")}) or real(model_dir, prompt, **kw))
    turns = [{"role": "user", "parts": [{"text": "1"}]}, {"role": "model", "parts": [{"text": "2"}]},
             {"role": "user", "parts": [{"text": "3"}]}]
    system = {"parts": [{"text": "Count on."}]}
    for model in ("tunedModels/chat", "models/tiny-chat"):
        reply = content(chat_engine.url, model, turns, systemInstruction=system)
        assert isinstance(answer(reply, ("STOP", "MAX_TOKENS")), str)  # an untrained turn may run long
        assert seen[-1]["messages"] == [
            {"role": "system", "content": "Count on."}, {"role": "user", "content": "1"},
            {"role": "assistant", "content": "2"}, {"role": "user", "content": "3"},
        ]
    assert_error(content(chat_engine.url, "tunedModels/chat", [{"role": "tool", "parts": [{"text": "1"}]}]),
                 400, "INVALID_ARGUMENT", "valid role")


def test_models_without_a_template_keep_todays_prompts(chat_engine, monkeypatch):
    seen: list[str] = []
    real = generation.complete
    monkeypatch.setattr(generation, "complete", lambda model_dir, prompt, **kw: seen.append(prompt)
                        or real(model_dir, prompt, **kw))
    turns = [{"role": "user", "parts": [{"text": "1"}]}, {"role": "model", "parts": [{"text": "2"}]},
             {"parts": [{"text": "3"}, {"text": "4"}]}]
    answer(content(chat_engine.url, "tunedModels/plain", turns))
    assert seen == ["1\n2\n3\n4"]  # the text parts joined, framed [bos] text <sep>
    assert not generation.is_chat(Path(chat_engine.data_dir) / "jobs" / "plain" / "model")
    # as Google's tuned models do, a tuned model without a chat template refuses a system instruction
    system = {"parts": [{"text": "x"}]}
    assert_error(content(chat_engine.url, "tunedModels/plain", turns, systemInstruction=system), 400,
                 "INVALID_ARGUMENT", "Developer instruction is not enabled for tunedModels/plain")
