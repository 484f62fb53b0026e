"""Model directories: the marker file, loading tokenizers and models, the prompt format.

A model directory is either a Hugging Face causal LM (config, tokenizer, safetensors weights)
or a LoRA adapter whose `tunespec.json` names the full model directory it applies to (see
resolve). Every engine path to Hugging Face code goes through this module, so importing it runs
runtime.configure() (once per process); it imports no torch itself. The prompt format is the
same for training and generation:

    [bos] + tokens(input) + separator + tokens(output) + [eos]

where the separator is the tokenizer's sep token when it has one (the built-in model) and the
tokens of a newline otherwise. The loss covers the output tokens and the eos only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunespec.engine import runtime

runtime.configure()

META = "tunespec.json"
POSITION_KEYS = ("max_position_embeddings", "n_positions", "seq_length")  # a config's context length
TEXT_SEPARATOR = "\n"
IGNORE = -100


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


@dataclass(frozen=True)
class PromptFormat:
    """Token ids framing every example: bos, separator and eos."""

    bos: list[int]
    sep: list[int]
    eos: int
    pad: int

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
        return cls(bos=bos, sep=list(sep), eos=eos, pad=pad)

    def prompt_ids(self, tokens: list[int], limit: int | None) -> list[int]:
        """bos + input + sep, the input cut from the left to fit `limit` tokens."""
        if limit is not None:
            room = max(0, limit - len(self.bos) - len(self.sep))
            tokens = tokens[len(tokens) - room:] if room else []
        return [*self.bos, *tokens, *self.sep]

    def example(self, inp: list[int], out: list[int], limit: int | None) -> tuple[list[int], list[int]]:
        """(input ids, labels) of one training example, at most `limit` tokens long."""
        target = [*out, self.eos]
        if limit is not None:
            fixed = len(self.bos) + len(self.sep)
            target = target[: max(1, limit - fixed)]
            prompt = self.prompt_ids(inp, limit - len(target))
        else:
            prompt = self.prompt_ids(inp, None)
        return prompt + target, [IGNORE] * len(prompt) + target


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
