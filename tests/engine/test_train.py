"""The training loop and generation, on the real built-in model (and a tiny Hugging Face one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunespec.engine import basemodels, modelio
from tunespec.engine.generate import PromptTooLong, count_tokens, generate
from tunespec.engine.train import (
    TrainingStopped,
    TrainRequest,
    checkpoint_step,
    epoch_of,
    example_stream,
    train,
)
from tunespec.tuning_api import total_steps

QUICKSTART = [
    ("1", "2"), ("3", "4"), ("-3", "-2"), ("twenty two", "twenty three"), ("two hundred", "two hundred one"),
    ("ninety nine", "one hundred"), ("8", "9"), ("-98", "-97"), ("1,000", "1,001"),
    ("10,100,000", "10,100,001"), ("thirteen", "fourteen"), ("eighty", "eighty one"), ("one", "two"),
    ("three", "four"), ("seven", "eight"),
]
GREEDY = {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "candidate_count": 1, "stop_sequences": []}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return basemodels.materialize("models/text-bison-001", tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def memorised(base, tmp_path_factory) -> Path:
    """The quickstart pairs tuned for 50 epochs: enough to reproduce them greedily."""
    req = TrainRequest(base_dir=base, examples=QUICKSTART, epoch_count=50, batch_size=2,
                       learning_rate=1e-3, tuning_method="full")
    return train(req, tmp_path_factory.mktemp("job"), lambda *a: None, lambda: False)


def quick(base: Path, **changes) -> TrainRequest:
    fields = {"base_dir": base, "examples": QUICKSTART, "epoch_count": 3, "batch_size": 2,
              "learning_rate": 1e-3, "tuning_method": "full", **changes}
    return TrainRequest(**fields)


def run(req: TrainRequest, work_dir: Path, stop_after: int | None = None, **kwargs):
    steps: list[tuple[int, int, float]] = []
    stop = (lambda: False) if stop_after is None else (lambda: len(steps) >= stop_after)
    return train(req, work_dir, lambda *s: steps.append(s), stop, **kwargs), steps


def weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    lora = modelio.read_meta(model_dir).get("kind") == "lora"
    name = "adapter_model.safetensors" if lora else "model.safetensors"
    return load_file(model_dir / name)


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def test_step_and_epoch_arithmetic_matches_googles_service():
    assert total_steps(15, 3, 2) == 23
    pairs = [(3, 4), (5, 2), (5, 4), (100, 4), (50, 4)]
    assert [total_steps(15, e, b) for e, b in pairs] == [12, 38, 19, 375, 188]
    assert [epoch_of(s, 4, 15) for s in (3, 4, 19, 40, 81, 188)] == [0, 1, 5, 10, 21, 50]
    stream = example_stream(15, 3, seed=0)
    assert [sorted(stream[i:i + 15]) for i in (0, 15, 30)] == [list(range(15))] * 3
    assert stream[:15] != stream[15:30]  # each epoch is shuffled anew
    assert stream == example_stream(15, 3, seed=0) != example_stream(15, 3, seed=1)


def test_fifteen_examples_three_epochs_batch_two_is_23_steps(base, tmp_path):
    out, steps = run(quick(base), tmp_path)
    assert [s for s, _, _ in steps] == list(range(1, 24))
    assert [e for _, e, _ in steps] == [s * 2 // 15 for s in range(1, 24)]
    assert steps[-1][1] == 3
    assert steps[-1][2] < steps[0][2]
    assert (out / "model.safetensors").is_file() and out == tmp_path / "model"
    assert modelio.read_meta(out)["steps"] == 23
    assert checkpoint_step(tmp_path) == 23 and not (tmp_path / "checkpoint").exists()
    again, more = run(quick(base), tmp_path)  # finished: nothing to redo
    assert again == out and more == []


def test_same_seed_same_losses_other_seed_other_losses(base, tmp_path):
    _, a = run(quick(base), tmp_path / "a")
    _, b = run(quick(base), tmp_path / "b")
    _, c = run(quick(base, seed=1), tmp_path / "c")
    assert a == b
    assert [x[2] for x in a] != [x[2] for x in c]
    assert same_weights(weights(tmp_path / "a" / "model"), weights(tmp_path / "b" / "model"))


def test_stop_checkpoints_and_resume_matches_an_uninterrupted_run(base, tmp_path):
    full, uninterrupted = run(quick(base), tmp_path / "once")
    work = tmp_path / "twice"
    assert checkpoint_step(work) == 0
    with pytest.raises(TrainingStopped):
        run(quick(base), work, stop_after=10)
    assert checkpoint_step(work) == 10
    assert {p.name for p in (work / "checkpoint").iterdir()} == {"weights.safetensors", "optimizer.pt",
                                                                   "state.json"}
    told: list[list] = []
    resumed, rest = run(quick(base), work, on_resume=told.append)
    assert rest == uninterrupted[10:]
    assert same_weights(weights(full), weights(resumed))
    # the checkpoint tells the steps it covers, for a resume to fill reports that died with a process
    assert len(told) == 1 and [t[:3] for t in told[0]] == uninterrupted[:10]


def test_periodic_checkpoints_while_training(base, tmp_path):
    seen: list[int] = []
    train(quick(base), tmp_path, lambda step, *_: seen.append(checkpoint_step(tmp_path)), lambda: False,
          checkpoint_every_steps=5, checkpoint_every_s=3600)
    assert seen[:11] == [0, 0, 0, 0, 0, 5, 5, 5, 5, 5, 10]


def test_time_based_checkpoints(base, tmp_path, monkeypatch):
    from tunespec.engine import train as train_module

    monkeypatch.setattr(train_module, "CHECKPOINT_SHARE", 0)  # no spacing by the cost of writing
    seen: list[int] = []
    train(quick(base), tmp_path, lambda step, *_: seen.append(checkpoint_step(tmp_path)), lambda: False,
          checkpoint_every_s=0.0)
    assert seen == list(range(23))  # each step's checkpoint is there when the next step reports


def test_a_checkpoint_of_another_job_is_refused_with_its_path(base, tmp_path):
    with pytest.raises(TrainingStopped):
        run(quick(base), tmp_path, stop_after=3)
    with pytest.raises(ValueError, match=str(tmp_path / "checkpoint")):
        run(quick(base, learning_rate=5e-4), tmp_path)


@pytest.mark.parametrize(("change", "message"), [
    ({"batch_size": 0}, "batch_size must be at least 1"),
    ({"epoch_count": 0}, "epoch_count must be at least 1"),
    ({"learning_rate": 0.0}, "learning_rate must be a positive number"),
    ({"examples": []}, "no training examples"),
    ({"tuning_method": "qlora"}, "tuning_method must be 'full' or 'lora'"),
])
def test_invalid_requests_name_the_field(base, tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        run(quick(base, **change), tmp_path)


def test_missing_base_dir_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        run(quick(tmp_path / "nowhere"), tmp_path / "job")


@pytest.mark.slow
def test_tuned_builtin_model_reproduces_the_training_outputs(memorised):
    answers = {inp: generate(memorised, inp, max_output_tokens=32, **GREEDY)[0] for inp, _ in QUICKSTART}
    assert answers == dict(QUICKSTART)


def test_stop_sequences_cut_before_the_first_stop(memorised):
    full = generate(memorised, "twenty two", max_output_tokens=32, **GREEDY)[0]
    assert full == "twenty three"
    stops = {**GREEDY, "stop_sequences": ["x", " th"]}
    cut = generate(memorised, "twenty two", max_output_tokens=32, **stops)
    assert cut == ["twenty"]
    assert generate(memorised, "twenty two", max_output_tokens=3, **GREEDY) == ["twe"]


def test_candidate_count_sampling_and_seeds(memorised):
    sampled = dict(temperature=1.0, top_p=0.95, top_k=40, candidate_count=4, max_output_tokens=16,
                   stop_sequences=[])
    first = generate(memorised, "4", seed=7, **sampled)
    assert len(first) == 4 and all(isinstance(c, str) for c in first)
    assert generate(memorised, "4", seed=7, **sampled) == first
    greedy = generate(memorised, "3", max_output_tokens=16, **{**GREEDY, "candidate_count": 2})
    assert greedy == ["4", "4"]
    nucleus_of_one = {**sampled, "top_p": 0.0, "candidate_count": 3}
    assert generate(memorised, "3", seed=1, **nucleus_of_one) == ["4", "4", "4"]
    with pytest.raises(ValueError, match="candidate_count must be between 1 and 8"):
        generate(memorised, "4", seed=7, **{**sampled, "candidate_count": 9})


def test_prompt_longer_than_the_input_limit_is_refused_not_cut(memorised):
    # a model tuned from the built-in keeps its inputTokenLimit (1536); bos + 5010 bytes + sep = 5012
    long_prompt = "x" * 5000 + "twenty two"
    with pytest.raises(PromptTooLong, match=r"The input token count \(5012\) exceeds the maximum number "
                                            r"of tokens allowed \(1536\)\. Shorten the prompt"):
        generate(memorised, long_prompt, max_output_tokens=10_000, **GREEDY)
    # within the limit, an output budget past the context is cut to the room left, not refused
    assert len(generate(memorised, "x" * 100, max_output_tokens=10_000, **GREEDY)) == 1


def test_lora_adapter_trains_saves_and_continues(base, tmp_path):
    out, steps = run(quick(base, tuning_method="lora", epoch_count=6, learning_rate=5e-3), tmp_path / "a")
    files = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json"} <= files
    meta = modelio.read_meta(out)
    assert meta["kind"] == "lora" and Path(meta["base_dir"]) == base.resolve()
    assert sum(x[2] for x in steps[-8:]) < sum(x[2] for x in steps[:8])
    assert len(generate(out, "3", max_output_tokens=8, **GREEDY)) == 1
    # Continuing from a tuned adapter keeps training the same adapter on the same base.
    more, more_steps = run(quick(base, tuning_method="lora", init_dir=out), tmp_path / "b")
    assert modelio.read_meta(more)["base_dir"] == meta["base_dir"]
    assert more_steps[0][2] < steps[0][2]


def test_source_model_continues_from_tuned_weights(base, tmp_path):
    first, steps = run(quick(base), tmp_path / "a")
    _, again = run(quick(base, init_dir=first), tmp_path / "b")
    assert again[0][2] < steps[0][2] and again[0][2] < steps[-1][2] + 0.5
    # LoRA over a fully tuned source is saved merged: it must not depend on the source's files.
    merged, _ = run(quick(base, init_dir=first, tuning_method="lora", epoch_count=1), tmp_path / "c")
    meta = modelio.read_meta(merged)
    assert (meta["kind"], meta["method"]) == ("full", "lora") and (merged / "model.safetensors").is_file()
    assert "lora" not in "".join(weights(merged))


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
    """A tiny GPT-2 with a byte-level tokenizer that has no sep token, as a user's HF directory."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(["<|endoftext|>", *alphabet])}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(["<|endoftext|>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", unk_token=None)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=257, n_embd=64, n_layer=2, n_head=2, n_positions=256,
                                       bos_token_id=0, eos_token_id=0, loss_type="ForCausalLM"))
    target = tmp_path_factory.mktemp("hf") / "tiny-gpt2"
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.mark.parametrize("method", ["lora", "full", "auto"])
def test_registered_hugging_face_dir_tunes_and_generates(hf_dir, tmp_path, method):
    extra = {"tiny-gpt2": hf_dir}
    model_dir = basemodels.materialize("models/tiny-gpt2", tmp_path / "data", extra)
    req = quick(model_dir, tuning_method=method, epoch_count=2, learning_rate=5e-3)
    out, steps = run(req, tmp_path / "job")
    assert len(steps) == 15
    assert modelio.read_meta(out)["kind"] == ("full" if method == "full" else "lora")  # auto: LoRA
    (text,) = generate(out, "3", max_output_tokens=4, **GREEDY)
    assert isinstance(text, str) and len(text.encode()) <= 4 * 4
    tokenizer = modelio.load_tokenizer(out)
    fmt = modelio.PromptFormat.of(tokenizer)
    assert fmt.bos == [] and fmt.sep == tokenizer.encode("\n", add_special_tokens=False)  # no sep token


def test_model_dir_marker_is_json(memorised):
    meta = json.loads((memorised / "tunespec.json").read_text())
    assert meta["kind"] == "full" and meta["tokenizer"] == "bytes" and meta["steps"] == 375


def test_auto_method_is_lora_for_pretrained_bases_and_full_for_the_builtin(base, hf_dir, tmp_path):
    from tunespec.engine import train as train_module

    assert train_module._is_builtin(base) and not train_module._is_builtin(hf_dir)
    assert train_module._resolve_method("auto", builtin=False) == "lora"
    assert train_module._resolve_method(None, builtin=True) == "full"
    assert train_module._resolve_method("full", builtin=False) == "full"
    assert train_module._resolve_method("lora", builtin=True) == "lora"
    tuned, _ = run(quick(base, epoch_count=1), tmp_path / "job")
    assert train_module._is_builtin(tuned)  # a model tuned from the built-in one keeps full tuning


def test_a_model_dir_rewritten_in_place_is_reloaded(base, tmp_path):
    import shutil

    from tunespec.engine import generate as generation

    first, _ = run(quick(base, epoch_count=1), tmp_path / "job")
    generate(first, "3", max_output_tokens=4, **GREEDY)
    loaded = generation._load(first)
    assert generation._load(first) is loaded  # cached
    shutil.rmtree(tmp_path / "job")  # the tuned model is deleted, the same id is tuned again
    again, _ = run(quick(base, epoch_count=1, seed=5), tmp_path / "job")
    assert again == first
    reloaded = generation._load(again)
    assert reloaded is not loaded
    assert not reloaded.model.lm_head.weight.equal(loaded.model.lm_head.weight)


def test_count_tokens_counts_bytes_for_the_builtin_model(base):
    assert count_tokens(base, "héllo") == 6


def test_the_answer_loss_on_a_subset_of_positions_is_hugging_faces_loss():
    """With a large vocabulary the loss computes logits only where an answer token is predicted."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tunespec.engine.modelio import IGNORE
    from tunespec.engine.train import _takes_logits_to_keep, answer_loss

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=4096, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64)
    model = LlamaForCausalLM(config)
    assert _takes_logits_to_keep(model)
    ids = torch.randint(0, 4096, (3, 12))
    labels = torch.full_like(ids, IGNORE)
    labels[0, 5:8], labels[1, 9:12], labels[2, 3:4] = ids[0, 5:8], ids[1, 9:12], ids[2, 3:4]
    full = model(input_ids=ids, labels=labels).loss
    full.backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    subset = answer_loss(model, ids, labels)
    subset.backward()
    assert torch.allclose(subset, full, rtol=1e-5, atol=1e-6)
    assert all(torch.allclose(p.grad, g, rtol=1e-4, atol=1e-6) for p, g in zip(model.parameters(), expected,
                                                                               strict=True))
