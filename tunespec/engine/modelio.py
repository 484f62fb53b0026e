"""Model directories: the marker file, loading tokenizers and models, the prompt format.

A model directory is either a Hugging Face causal LM (config, tokenizer, safetensors weights)
or a LoRA adapter whose `tunespec.json` names the full model directory it applies to (see
resolve). Every engine path to Hugging Face code goes through this module, so importing it runs
runtime.configure() (once per process); it imports no torch itself. The prompt format is the
same for training and generation (PromptFormat). A model whose tokenizer has no chat template:

    [bos] + tokens(input) + separator + tokens(output) + [eos]

where the separator is the tokenizer's sep token when it has one (the built-in model) and the
tokens of a newline otherwise. A model with a chat template: the input as one user turn,

    tokens(template([user: input], add_generation_prompt)) + tokens(output) + end_of_turn

where end_of_turn is what the template puts right after an answer, through its first special
token (ChatML's `<|im_end|>`), where generation stops. Either way the loss covers the output
tokens and the eos / end-of-turn only, and the input is cut from the left to fit the context.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from tunespec.engine import runtime

runtime.configure()

META = "tunespec.json"
POSITION_KEYS = ("max_position_embeddings", "n_positions", "seq_length")  # a config's context length
TEXT_SEPARATOR = "\n"
IGNORE = -100
ANSWER_MARK = "TUNESPEC_ANSWER_MARK"  # an answer's place in a rendered chat template


def read_meta(model_dir: Path) -> dict[str, Any]:
    """The engine's marker in a model dir ({} for a plain Hugging Face directory)."""
    path = Path(model_dir) / META
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def write_meta(model_dir: Path, meta: dict[str, Any]) -> None:
    Path(model_dir, META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def check_model_dir(model_dir: Path) -> Path:
    """The absolute dir, or a clear error when it holds no model (never a hub lookup)."""
    model_dir = Path(model_dir).expanduser().resolve()
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model directory {model_dir} does not exist")
    if not (model_dir / "config.json").is_file() and not (model_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{model_dir} holds no model: no config.json or adapter_config.json")
    return model_dir


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    model_dir = check_model_dir(model_dir)
    if read_meta(model_dir).get("tokenizer") == "bytes":
        return PreTrainedTokenizerFast.from_pretrained(str(model_dir))
    return AutoTokenizer.from_pretrained(str(model_dir))


def load_full(model_dir: Path, device, dtype=None):
    """A full causal LM from `model_dir` on `device` (fp32 unless `dtype` says otherwise)."""
    import torch
    from transformers import AutoModelForCausalLM

    model_dir = check_model_dir(model_dir)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype or torch.float32)
    return model.to(device)


def resolve(model_dir: Path) -> tuple[Path, Path | None]:
    """(the full model dir, the LoRA adapter dir applied to it or None) behind `model_dir`, both checked.

    An adapter records its base as `base_dir`, absolute or relative to the adapter dir (a base
    inside the engine's data dir is recorded relative, so moving the data dir keeps it working).
    """
    source = check_model_dir(model_dir)
    meta = read_meta(source)
    if meta.get("kind") != "lora":
        return source, None
    return check_model_dir(source / meta["base_dir"]), source


def param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def max_positions(model) -> int | None:
    config = model.config
    for key in POSITION_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": text}


@dataclass(frozen=True)
class PromptFormat:
    """How examples and prompts become token ids, the same in training and generation.

    Plain (no chat template): bos, separator and eos. Chat: the tokenizer's template, and the
    end-of-turn ids that close an answer (`end_of_turn`; empty for a plain format).
    """

    bos: list[int]
    sep: list[int]
    eos: int
    pad: int
    end_of_turn: list[int] = field(default_factory=list)
    tokenizer: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, tokenizer) -> PromptFormat:
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ValueError("the model's tokenizer defines no eos token; outputs need one to end")
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        if getattr(tokenizer, "sep_token_id", None) is not None:
            sep = [tokenizer.sep_token_id]
        else:
            sep = tokenizer.encode(TEXT_SEPARATOR, add_special_tokens=False)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        eot = _end_of_turn(tokenizer, eos) if getattr(tokenizer, "chat_template", None) else []
        return cls(bos=bos, sep=list(sep), eos=eos, pad=pad, end_of_turn=eot, tokenizer=tokenizer)

    @property
    def chat(self) -> bool:
        return bool(self.end_of_turn)

    @property
    def stop_ids(self) -> list[int]:
        """The ids that end an answer: eos, and for chat the end-of-turn's last (special) token."""
        return list(dict.fromkeys([*self.end_of_turn[-1:], self.eos]))

    @cached_property
    def overhead(self) -> int:
        """Tokens framing an empty single-turn prompt."""
        return len(self._render([_user("")])) if self.chat else len(self.bos) + len(self.sep)

    # ---- text level: what training and generation call ----------------------------------------
    def frame_example(self, inp: str, out: str, limit: int | None) -> tuple[list[int], list[int]]:
        """(input ids, labels) of one training example: the prompt generation would see for `inp`,
        then the answer (for chat: plus the end-of-turn), at most `limit` tokens long."""
        if not self.chat:
            return self.example(encode(self.tokenizer, inp), encode(self.tokenizer, out), limit)
        target = [*encode(self.tokenizer, out), *self.end_of_turn]
        if limit is not None:
            target = target[: max(1, limit - self.overhead)]
        prompt = self.frame_prompt(inp, None if limit is None else max(0, limit - len(target)))
        return prompt + target, [IGNORE] * len(prompt) + target

    def frame_prompt(self, text: str, limit: int | None, messages: list[Message] | None = None) -> list[int]:
        """The ids generation continues from, at most `limit`: `text` as one user turn (plain: bos +
        text + sep). For chat, `messages` replace that turn; the oldest turns are dropped first, then
        the last one's text is cut from the left."""
        if not self.chat:
            return self.prompt_ids(encode(self.tokenizer, text), limit)
        messages = list(messages or [_user(text)])
        ids = self._render(messages)
        if limit is None or len(ids) <= limit:
            return ids
        head = messages[:1] if messages[0]["role"] == "system" else []
        turns = messages[len(head):]
        while len(turns) > 1:  # the conversation keeps opening with a user turn
            turns = turns[1:]
            while len(turns) > 1 and turns[0]["role"] != "user":
                turns = turns[1:]
            ids = self._render([*head, *turns])
            if len(ids) <= limit:
                return ids
        last, text = turns[0], turns[0]["content"]
        while text:  # drop as many leading tokens as the frame overflows by (a character at least)
            starts = _token_starts(self.tokenizer, text)
            over = len(ids) - limit
            text = text[max(1, starts[over] if over < len(starts) else len(text)):]
            ids = self._render([*head, {**last, "content": text}])
            if len(ids) <= limit:
                return ids
        return ids[len(ids) - limit:] if len(ids) > limit else ids  # not even the frame fits: its tail

    def _render(self, messages: list[Message]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return encode(self.tokenizer, text)

    # ---- token level: the plain format --------------------------------------------------------
    def prompt_ids(self, tokens: list[int], limit: int | None) -> list[int]:
        """bos + input + sep, the input cut from the left to fit `limit` tokens."""
        if limit is not None:
            room = max(0, limit - len(self.bos) - len(self.sep))
            tokens = tokens[len(tokens) - room:] if room else []
        return [*self.bos, *tokens, *self.sep]

    def example(self, inp: list[int], out: list[int], limit: int | None) -> tuple[list[int], list[int]]:
        """(input ids, labels) of one plain training example, at most `limit` tokens long."""
        target = [*out, self.eos]
        if limit is not None:
            fixed = len(self.bos) + len(self.sep)
            target = target[: max(1, limit - fixed)]
            prompt = self.prompt_ids(inp, limit - len(target))
        else:
            prompt = self.prompt_ids(inp, None)
        return prompt + target, [IGNORE] * len(prompt) + target


def _user(text: str) -> Message:
    return {"role": "user", "content": text}


def _end_of_turn(tokenizer, eos: int) -> list[int]:
    """The ids a chat template puts right after an answer, through its first special token (the
    token generation stops at); [eos] when the template puts none."""
    try:
        text = tokenizer.apply_chat_template([_user("1"), {"role": "assistant", "content": ANSWER_MARK}],
                                             tokenize=False)
    except Exception as e:  # jinja's TemplateError and whatever a template raises
        raise ValueError(f"the model's chat template cannot frame a user and a model turn: {e}") from e
    after = text[text.rfind(ANSWER_MARK) + len(ANSWER_MARK):] if ANSWER_MARK in text else ""
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    special = {*tokenizer.all_special_ids, *(i for i, t in decoder.items() if t.special), eos}
    ids = encode(tokenizer, after)
    for n, token in enumerate(ids):
        if token in special:
            return ids[: n + 1]
    return [eos]


def _token_starts(tokenizer, text: str) -> list[int]:
    """Where each token of `text` begins (its character offset); every character when the
    tokenizer gives no offsets."""
    try:
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    except (NotImplementedError, KeyError, TypeError, ValueError):
        return list(range(len(text)))
    return [start for start, _ in offsets]


def autocast(device):
    """The training step's and generation's compute precision: bf16 autocast on a CUDA device
    that supports it (weights stay as loaded), else nothing (fp32 as loaded: CPU numerics unchanged)."""
    import contextlib

    import torch

    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def atomic_dir_swap(tmp: Path, final: Path) -> None:
    """Replace `final` by the finished `tmp` dir; a crash leaves either the old or the new one."""
    import shutil

    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
