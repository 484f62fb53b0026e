"""Text generation from base and tuned models, with the models loaded lazily and cached.

The prompt is framed exactly as in training (modelio.PromptFormat: bos + input + separator, or
the chat template's user turn; a conversation's turns for generateContent on a chat model); the
answer is the new tokens up to eos or the template's end-of-turn, cut at the first stop sequence.
Uses Hugging Face `generate` (KV cache), under bf16 autocast on CUDA where supported.
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from tunespec.engine import modelio, runtime

CACHE_SIZE = 8
MAX_CANDIDATES = 8

_cache: OrderedDict[str, _Loaded] = OrderedDict()
_load_lock = threading.Lock()
_generate_lock = threading.Lock()  # one generation at a time: seeds use torch's global RNG


@dataclass
class _Loaded:
    model: object
    tokenizer: object
    fmt: modelio.PromptFormat
    positions: int | None


def _load(model_dir: Path) -> _Loaded:
    import torch

    path = Path(model_dir).expanduser().resolve()
    key = f"{path}:{_signature(path)}"  # a dir rewritten in place (an id reused) is loaded anew
    with _load_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        base_dir, adapter = modelio.resolve(path)
        device = runtime.device()
        dtype = torch.float32
        if device.type == "cuda" and adapter is not None and torch.cuda.is_bf16_supported():
            dtype = torch.bfloat16
        model = modelio.load_full(base_dir, device, dtype)
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        model.eval()
        tokenizer = modelio.load_tokenizer(adapter or base_dir)
        loaded = _Loaded(model, tokenizer, modelio.PromptFormat.of(tokenizer), modelio.max_positions(model))
        _cache[key] = loaded
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
        return loaded


def _signature(path: Path) -> str:
    """Identity of the files in a model dir: the newest mtime and inode of its top-level files."""
    try:
        stats = [f.stat() for f in path.iterdir() if f.is_file()]
    except OSError:
        return "missing"
    return ",".join(f"{s.st_ino}-{s.st_mtime_ns}" for s in sorted(stats, key=lambda s: s.st_ino))


def _stop_criteria(tokenizer, stops: list[str], start: int):
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    tail = 4 * max(len(s) for s in stops) + 4  # enough tokens to hold any stop string

    class StopOnStrings(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, max(start, input_ids.shape[1] - tail):],
                                           skip_special_tokens=True)
            return torch.tensor([any(s in t for s in stops) for t in texts], device=input_ids.device)

    return StoppingCriteriaList([StopOnStrings()])


def generate(model_dir: Path, prompt: str, *, temperature: float, top_p: float, top_k: int,
             candidate_count: int, max_output_tokens: int, stop_sequences: list[str],
             seed: int | None = None, messages: list[dict[str, str]] | None = None) -> list[str]:
    """`candidate_count` completions of `prompt` (only the new text). temperature 0 means greedy.

    `messages` ({"role": "system" | "user" | "assistant", "content": ...}) frame the prompt instead
    of the one user turn of `prompt` when the model has a chat template; plain models use `prompt`.
    """
    import torch
    from transformers import GenerationConfig

    if not 1 <= candidate_count <= MAX_CANDIDATES:
        raise ValueError(f"candidate_count must be between 1 and {MAX_CANDIDATES}, got {candidate_count}")
    if max_output_tokens < 1:
        raise ValueError(f"max_output_tokens must be at least 1, got {max_output_tokens}")
    if temperature < 0 or not 0 <= top_p <= 1 or top_k < 0:
        raise ValueError("temperature and top_k must be >= 0 and top_p within [0, 1]")
    loaded = _load(model_dir)
    fmt, tokenizer = loaded.fmt, loaded.tokenizer
    max_new = max_output_tokens
    limit = None
    if loaded.positions:
        max_new = max(1, min(max_new, loaded.positions - fmt.overhead - 1))
        limit = loaded.positions - max_new
    ids = fmt.frame_prompt(prompt, limit, messages)
    device = next(loaded.model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    sample = temperature > 0
    stop_ids = fmt.stop_ids
    config = GenerationConfig(
        max_new_tokens=max_new, do_sample=sample, num_return_sequences=candidate_count if sample else 1,
        eos_token_id=stop_ids if len(stop_ids) > 1 else stop_ids[0], pad_token_id=fmt.pad,
        **({"temperature": temperature, "top_p": top_p, "top_k": top_k} if sample else {}),
    )
    stops = [s for s in stop_sequences if s]
    criteria = _stop_criteria(tokenizer, stops, len(ids)) if stops else None
    devices = [device.index or 0] if device.type == "cuda" else []
    with (_generate_lock, torch.random.fork_rng(devices=devices), torch.inference_mode(),
          modelio.autocast(device)):
        torch.manual_seed(seed if seed is not None else random.getrandbits(63))
        out = loaded.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                    generation_config=config, stopping_criteria=criteria)
    texts = [_finish(tokenizer, row[len(ids):].tolist(), fmt, stops) for row in out]
    return texts if sample else texts * candidate_count


def count_tokens(model_dir: Path, text: str) -> int:
    """How many tokens `text` is for the model in `model_dir` (countTextTokens / countTokens)."""
    return len(modelio.encode(_load(model_dir).tokenizer, text))


def is_chat(model_dir: Path) -> bool:
    """Whether the model in `model_dir` frames prompts with a chat template."""
    return _load(model_dir).fmt.chat


def _finish(tokenizer, new_ids: list[int], fmt: modelio.PromptFormat, stops: list[str]) -> str:
    ends = [i for i, token in enumerate(new_ids) if token in fmt.stop_ids]
    if ends:
        new_ids = new_ids[: ends[0]]
        lead = fmt.end_of_turn[:-1]  # what an end-of-turn puts before its special token
        if lead and new_ids[-len(lead):] == lead:
            new_ids = new_ids[: -len(lead)]
    text = tokenizer.decode(new_ids, skip_special_tokens=True)
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[: min(cuts)] if cuts else text
