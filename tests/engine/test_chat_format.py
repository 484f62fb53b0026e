"""Chat-aware prompts: a model whose tokenizer has a chat template is trained and queried through
it (one user turn, one model turn), identically; models without one keep the plain format."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.engine.chat_helpers import IM_END, SYSTEM, chat_tokenizer, write_chat_model
from tunespec.engine import basemodels, builtin, modelio, validation
from tunespec.engine import generate as generation
from tunespec.engine.train import TrainRequest, _tokenize, _train_limit, train
from tunespec.engine.wire import ApiException

PAIRS = [("1", "2"), ("3", "4"), ("twenty two", "twenty three"), ("eighty", "eighty one"),
         ("-98", "-97"), ("seven", "eight")]
GREEDY = {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "candidate_count": 1, "stop_sequences": []}
FRAME_END = f"{IM_END}\n<|im_start|>assistant\n"  # how every ChatML generation prompt ends
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="<|"), max_size=40)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

CHAT_TOKENIZER = chat_tokenizer()
CHAT = modelio.PromptFormat.of(CHAT_TOKENIZER)
PLAIN = modelio.PromptFormat.of(builtin.build_tokenizer())


def template_ids(messages, generation_prompt: bool = True) -> list[int]:
    """What the template itself produces, tokenized as Hugging Face does (apply_chat_template)."""
    return list(CHAT_TOKENIZER.apply_chat_template(messages, add_generation_prompt=generation_prompt,
                                                   tokenize=True, return_dict=True)["input_ids"])


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def decode(ids: list[int]) -> str:
    return CHAT_TOKENIZER.decode(ids, skip_special_tokens=False)


# ---- the framing rule ---------------------------------------------------------------------------------

def test_chatml_end_of_turn_and_stop_ids():
    assert CHAT.chat and not PLAIN.chat
    assert CHAT.end_of_turn == [CHAT_TOKENIZER.convert_tokens_to_ids(IM_END)]
    assert CHAT.stop_ids == [*CHAT.end_of_turn, CHAT_TOKENIZER.eos_token_id]  # <|im_end|>, then <eos>
    assert PLAIN.stop_ids == [PLAIN.eos] and PLAIN.end_of_turn == []
    assert CHAT.overhead == len(template_ids(user("")))


def test_a_chat_example_is_the_generation_prompt_then_the_answer_and_end_of_turn():
    ids, labels = CHAT.frame_example("twenty two", "twenty three", None)
    prompt = template_ids(user("twenty two"))
    assert ids[: len(prompt)] == prompt == CHAT.frame_prompt("twenty two", None)
    assert decode(prompt) == (f"<|im_start|>system\n{SYSTEM}{IM_END}\n<|im_start|>user\ntwenty two"
                              f"{FRAME_END}")
    assert labels[: len(prompt)] == [modelio.IGNORE] * len(prompt)  # the loss: answer + end-of-turn only
    assert labels[len(prompt):] == ids[len(prompt):]
    assert decode(ids[len(prompt):]) == f"twenty three{IM_END}"
    # prompt + answer + end-of-turn is exactly what the template makes of the two turns (a prefix:
    # ChatML puts a newline after the end-of-turn, which is never trained nor generated)
    full = template_ids([*user("twenty two"), {"role": "assistant", "content": "twenty three"}], False)
    assert full[: len(ids)] == ids and decode(full[len(ids):]) == "\n"


@FAST
@given(inp=TEXT, out=TEXT)
def test_chat_framing_invariants(inp, out):
    ids, labels = CHAT.frame_example(inp, out, None)
    prompt = CHAT.frame_prompt(inp, None)
    assert prompt == template_ids(user(inp)) and ids[: len(prompt)] == prompt
    assert labels == [modelio.IGNORE] * len(prompt) + ids[len(prompt):]
    assert ids[len(prompt):] == [*modelio.encode(CHAT_TOKENIZER, out), *CHAT.end_of_turn]
    full = template_ids([*user(inp), {"role": "assistant", "content": out}], False)
    assert full[: len(ids)] == ids


@FAST
@given(inp=TEXT.filter(bool), out=TEXT, data=st.data())
def test_chat_truncation_cuts_the_input_from_the_left_and_keeps_the_frame(inp, out, data):
    whole, _ = CHAT.frame_example(inp, out, None)
    limit = data.draw(st.integers(CHAT.overhead + 1, len(whole) + 2))
    ids, labels = CHAT.frame_example(inp, out, limit)
    assert len(ids) == len(labels) <= limit
    target = [t for t in labels if t != modelio.IGNORE]
    answer = [*modelio.encode(CHAT_TOKENIZER, out), *CHAT.end_of_turn]
    assert target == answer[: len(target)] and target  # the answer is cut last, from the right
    prompt = ids[: len(ids) - len(target)]
    text = decode(prompt)
    head = f"<|im_start|>system\n{SYSTEM}{IM_END}\n<|im_start|>user\n"
    assert text.startswith(head) and text.endswith(FRAME_END)
    kept = text[len(head): -len(FRAME_END)]
    assert inp.endswith(kept)
    if len(whole) <= limit:
        assert ids == whole
    if kept != inp:  # cut as little as fits: one more character of the input would not have fit
        assert len(CHAT.frame_prompt(inp[len(inp) - len(kept) - 1:], None)) > limit - len(target)


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_chat_limits_below_the_frame_still_fit(limit):
    ids, labels = CHAT.frame_example("abc", "def", limit)
    assert len(ids) == len(labels) <= limit and labels[-1] != modelio.IGNORE
    assert len(CHAT.frame_prompt("abc", limit)) <= limit


def plain_reference(inp: list[int], out: list[int], limit: int | None):
    """The format before chat templates: [bos] input <sep> output [eos], the input cut from the left."""
    bos, sep, eos = [1], [3], 2  # the built-in tokenizer's <bos>, <sep>, <eos>
    target = [*out, eos]
    if limit is not None:
        target = target[: max(1, limit - 2)]
        room = max(0, limit - len(target) - 2)
        inp = inp[len(inp) - room:] if room else []
    prompt = [*bos, *inp, *sep]
    return prompt + target, [modelio.IGNORE] * len(prompt) + target


@FAST
@given(inp=TEXT, out=TEXT, limit=st.one_of(st.none(), st.integers(1, 100)))
def test_models_without_a_template_keep_bos_input_sep_output_eos(inp, out, limit):
    tokenizer = PLAIN.tokenizer
    inp_ids, out_ids = modelio.encode(tokenizer, inp), modelio.encode(tokenizer, out)
    assert len(inp_ids) == len(inp.encode())  # one token a byte
    assert PLAIN.frame_example(inp, out, limit) == plain_reference(inp_ids, out_ids, limit)
    prompt_limit = None if limit is None else limit + 1  # the prompt of an empty output, less its eos
    assert PLAIN.frame_prompt(inp, limit) == plain_reference(inp_ids, [], prompt_limit)[0][:-1]
    system = [{"role": "system", "content": "ignored"}, {"role": "user", "content": "ignored"}]
    assert PLAIN.frame_prompt(inp, None, system) == [1, *inp_ids, 3]  # messages are for templates only


# ---- generateContent's conversation -------------------------------------------------------------------

def conversation(**extra):
    raw = {"contents": [{"role": "user", "parts": [{"text": "1"}]},
                        {"role": "model", "parts": [{"text": "2"}]},
                        {"parts": [{"text": "3"}, {"text": "and 4"}]}], **extra}
    return validation.content_prompt(raw, "tunedModels", "m")


def test_contents_and_system_instruction_become_chat_messages():
    prompt, messages, _ = conversation(systemInstruction={"parts": [{"text": "Count."}]})
    assert prompt == "1\n2\n3\nand 4"  # what a model without a template is asked, as before
    assert messages == [{"role": "system", "content": "Count."}, {"role": "user", "content": "1"},
                        {"role": "assistant", "content": "2"}, {"role": "user", "content": "3\nand 4"}]
    ids = CHAT.frame_prompt(prompt, None, messages)
    assert ids == template_ids(messages)
    assert decode(ids).startswith("<|im_start|>system\nCount.<|im_end|>\n<|im_start|>user\n1<|im_end|>")
    _, plain_messages, _ = conversation()
    assert plain_messages[0] == {"role": "user", "content": "1"}  # no system: the template's default
    with pytest.raises(ApiException, match="valid role"):
        validation.content_prompt({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "models", "m")


def test_a_long_conversation_drops_its_oldest_turns_then_cuts_the_last_from_the_left():
    _, messages, _ = conversation(systemInstruction={"parts": [{"text": "Count."}]})
    last_two = [messages[0], messages[-1]]
    fits = len(template_ids(last_two))
    assert CHAT.frame_prompt("", fits, messages) == template_ids(last_two)  # system kept, user turn last
    cut = CHAT.frame_prompt("", fits - 2, messages)
    assert cut == template_ids([messages[0], {"role": "user", "content": "and 4"}])


# ---- training and generation through the template ----------------------------------------------------

@pytest.fixture(scope="module")
def chat_base(tmp_path_factory) -> Path:
    return write_chat_model(tmp_path_factory.mktemp("chat") / "tiny-chat")


@pytest.fixture(scope="module")
def chat_tuned(chat_base, tmp_path_factory) -> Path:
    req = TrainRequest(base_dir=chat_base, examples=PAIRS, epoch_count=60, batch_size=2,
                       learning_rate=2e-3, tuning_method="full")
    return train(req, tmp_path_factory.mktemp("chat-job"), lambda *a: None, lambda: False)


def test_training_labels_cover_only_the_answer_and_the_end_of_turn(chat_base):
    tokenizer = modelio.load_tokenizer(chat_base)
    fmt = modelio.PromptFormat.of(tokenizer)
    ids, labels, lengths = _tokenize(PAIRS, fmt, 4096, "cpu")
    for row, (inp, out) in enumerate(PAIRS):
        n = lengths[row]
        kept = [t for t in labels[row, :n].tolist() if t != modelio.IGNORE]
        assert tokenizer.decode(kept, skip_special_tokens=False) == out + IM_END
        assert labels[row, n:].eq(modelio.IGNORE).all()  # padding is never learned
        prompt = fmt.frame_prompt(inp, None)
        assert ids[row, : len(prompt)].tolist() == prompt
        assert labels[row, : len(prompt)].eq(modelio.IGNORE).all()


def spy_on_prompts(loaded, monkeypatch) -> list[list[int]]:
    """The prompt ids each later generation on `loaded` hands the model (its batcher), in order."""
    seen: list[list[int]] = []
    real = generation._request

    def spy(*args, **kwargs):
        got, req = real(*args, **kwargs)
        if got is loaded:
            seen.append(list(req.ids))
        return got, req

    monkeypatch.setattr(generation, "_request", spy)
    return seen


def test_the_trained_prompt_is_the_prompt_generation_sees(chat_tuned, monkeypatch):
    loaded = generation._load(chat_tuned)
    seen = spy_on_prompts(loaded, monkeypatch)
    ids, labels, _ = _tokenize(PAIRS, loaded.fmt, _train_limit(loaded.model), "cpu")
    for row, (inp, _) in enumerate(PAIRS):
        generation.generate(chat_tuned, inp, max_output_tokens=16, **GREEDY)
        answer_starts = labels[row].ne(modelio.IGNORE).nonzero()[0].item()
        assert seen[-1] == ids[row, :answer_starts].tolist()


def test_a_tuned_chat_model_answers_its_training_pairs_and_stops_at_the_end_of_turn(chat_tuned):
    assert modelio.PromptFormat.of(modelio.load_tokenizer(chat_tuned)).chat  # the template is kept
    for inp, out in PAIRS:
        assert generation.generate(chat_tuned, inp, max_output_tokens=64, **GREEDY) == [out]
        # the template's default system turn, given explicitly, is the same prompt
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": inp}]
        answer = generation.generate(chat_tuned, inp, max_output_tokens=64, messages=messages, **GREEDY)
        assert answer == [out]


def test_a_prompt_longer_than_the_context_is_refused_counting_the_chat_frame(chat_tuned):
    long_prompt = "x" * 5000 + "twenty two"
    framed = generation._load(chat_tuned).fmt.frame_prompt(long_prompt, None)
    assert decode(framed).startswith(f"<|im_start|>system\n{SYSTEM}")  # the template's turns count
    refused = (rf"The input token count \({len(framed)}\) exceeds the maximum number of tokens allowed "
               rf"\({builtin.MAX_POSITIONS}\)")
    with pytest.raises(generation.PromptTooLong, match=refused):
        generation.generate(chat_tuned, long_prompt, max_output_tokens=8, **GREEDY)


def test_registered_chat_model_materializes_and_frames_with_its_template(chat_base, tmp_path):
    model_dir = basemodels.materialize("models/tiny-chat", tmp_path, {"tiny-chat": chat_base})
    assert generation.is_chat(model_dir) and not generation.is_chat(
        basemodels.materialize(basemodels.BUILTIN, tmp_path))


# ---- precision ------------------------------------------------------------------------------------------

def test_autocast_is_bf16_on_cuda_only(monkeypatch):
    import contextlib

    import torch

    assert isinstance(modelio.autocast(torch.device("cpu")), contextlib.nullcontext)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert isinstance(modelio.autocast(torch.device("cuda")), contextlib.nullcontext)  # fp32 there
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available": this machine has none
        ctx = modelio.autocast(torch.device("cuda"))
    assert isinstance(ctx, torch.autocast) and (ctx.device, ctx.fast_dtype) == ("cuda", torch.bfloat16)
    assert isinstance(modelio.autocast(torch.device("cpu")), contextlib.nullcontext)


def test_training_and_generation_run_under_the_devices_precision(tmp_path, monkeypatch):
    import contextlib

    devices = []
    monkeypatch.setattr(modelio, "autocast", lambda device: devices.append(device.type)
                        or contextlib.nullcontext())
    base = basemodels.materialize(basemodels.BUILTIN, tmp_path / "data")
    req = TrainRequest(base_dir=base, examples=PAIRS[:2], epoch_count=1, batch_size=2, learning_rate=1e-3,
                       tuning_method="full")
    out = train(req, tmp_path / "job", lambda *a: None, lambda: False)
    assert devices == ["cpu"]
    generation.generate(out, "1", max_output_tokens=2, **GREEDY)
    assert devices == ["cpu", "cpu"]
