"""Text generation from base and tuned models, with the models loaded lazily and cached.

The prompt is framed exactly as in training (modelio.PromptFormat: bos + input + separator, or
the chat template's user turn; a conversation's turns for generateContent on a chat model); the
answer is the new tokens up to eos or the template's end-of-turn, cut at the first stop sequence.
Concurrent requests for one model are decoded together (batching.py, KV cache, bf16 autocast on
CUDA where supported); `stream` hands out an answer's text as its tokens come.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tunespec.engine import batching, modelio, runtime

CACHE_SIZE = 8
MAX_CANDIDATES = 8

_cache: OrderedDict[str, _Loaded] = OrderedDict()
_cache_lock = threading.Lock()  # guards _cache and _loading only; a load runs under its key's lock
_loading: dict[str, threading.Lock] = {}
# Builds run one at a time: transformers' loading (meta-device init, tied weights) patches
# process-wide state, and two models built at once fail with "Cannot copy out of meta tensor".
_build_lock = threading.Lock()


@dataclass
class _Loaded:
    model: object
    tokenizer: object
    fmt: modelio.PromptFormat
    positions: int | None
    input_limit: int | None  # the inputTokenLimit a prompt is held to (_input_limit)
    batcher: batching.Batcher


def _load(model_dir: Path) -> _Loaded:
    """The model of `model_dir`, loaded once and cached; a loaded model's requests never wait for
    another's load (builds themselves run one at a time)."""
    path = Path(model_dir).expanduser().resolve()
    key = f"{path}:{_signature(path)}"  # a dir rewritten in place (an id reused) is loaded anew
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        lock = _loading.setdefault(key, threading.Lock())
    with lock:
        with _cache_lock:
            if key in _cache:
                return _cache[key]
        try:
            with _build_lock:
                loaded = _build(path)
        finally:
            with _cache_lock:
                _loading.pop(key, None)
        with _cache_lock:
            _cache[key] = loaded
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
        return loaded


def _build(path: Path) -> _Loaded:
    _import_stack()
    import torch

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
    fmt = modelio.PromptFormat.of(tokenizer)
    positions = modelio.max_positions(model)
    return _Loaded(model, tokenizer, fmt, positions, _input_limit(path, positions),
                   batching.Batcher(model, fmt.pad))


def warm_up() -> None:
    """Import the generation stack (torch, transformers' Llama causal LM) now, in a daemon thread: an
    engine starting up then answers its first generate call without waiting for the imports."""

    def imports() -> None:
        with contextlib.suppress(Exception):  # only a head start: the first call imports (and reports)
            _import_stack()

    threading.Thread(target=imports, name="tunespec-warm-up", daemon=True).start()


def _import_stack() -> None:
    """Import what loading a model needs, one thread at a time (Hugging Face's lazy imports race)."""
    with runtime.import_lock:
        import torch  # noqa: F401
        import transformers.models.llama.modeling_llama  # noqa: F401  - the built-in and SmolLM2's
        from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast  # noqa: F401


def preload_quietly(model_dir: Path) -> None:
    """Load the model of `model_dir` into the cache now, for a head start only: a failure shows when
    the model is asked for."""
    with contextlib.suppress(Exception):
        _load(model_dir)


def _signature(path: Path) -> str:
    """Identity of the files in a model dir: the newest mtime and inode of its top-level files."""
    try:
        stats = [f.stat() for f in path.iterdir() if f.is_file()]
    except OSError:
        return "missing"
    return ",".join(f"{s.st_ino}-{s.st_mtime_ns}" for s in sorted(stats, key=lambda s: s.st_ino))


@dataclass(frozen=True)
class Completion:
    """One candidate: its text, why it ended (STOP or MAX_TOKENS) and how many tokens it took."""

    text: str
    finish_reason: str
    tokens: int


@dataclass(frozen=True)
class Result:
    """A request's candidates and the length of its framed prompt in tokens."""

    prompt_tokens: int
    completions: list[Completion]


class PromptTooLong(ValueError):
    """A prompt the model cannot take (over its inputTokenLimit, or no room left for the answer):
    the service answers it 400 INVALID_ARGUMENT, as Google does."""

    status = "INVALID_ARGUMENT"


def _input_limit(model_dir: Path, positions: int | None) -> int | None:
    """The inputTokenLimit the catalog advertises for the model of `model_dir` (basemodels): the
    built-in model's, for it and the models tuned from it (they keep its byte tokenizer), else
    its context length."""
    from tunespec.engine.basemodels import BUILTIN_INPUT_LIMIT

    if modelio.read_meta(Path(model_dir)).get("tokenizer") == "bytes":
        return min(BUILTIN_INPUT_LIMIT, positions) if positions else BUILTIN_INPUT_LIMIT
    return positions


def _fit(tokens: int, max_new: int, input_limit: int | None, positions: int | None) -> int:
    """The output budget of a framed prompt of `tokens`: `max_new`, cut to the room the model's
    `positions` leave (the answer then ends MAX_TOKENS with the context full, as a model's does).
    PromptTooLong when the prompt exceeds `input_limit` or leaves no room at all."""
    if input_limit is not None and tokens > input_limit:
        raise PromptTooLong(f"The input token count ({tokens}) exceeds the maximum number of tokens "
                            f"allowed ({input_limit}). Shorten the prompt to at most {input_limit} "
                            "tokens.")
    if positions and tokens >= positions:
        raise PromptTooLong(f"The input token count ({tokens}) leaves no room for an answer in the model's "
                            f"context of {positions} tokens. Shorten the prompt to fewer than {positions} "
                            "tokens.")
    return min(max_new, positions - tokens) if positions else max_new


def _request(model_dir: Path, prompt: str, *, temperature: float, top_p: float, top_k: int,
             candidate_count: int, max_output_tokens: int, stop_sequences: list[str],
             seed: int | None, messages: list[dict[str, str]] | None) -> tuple[_Loaded, batching.Request]:
    if not 1 <= candidate_count <= MAX_CANDIDATES:
        raise ValueError(f"candidate_count must be between 1 and {MAX_CANDIDATES}, got {candidate_count}")
    if max_output_tokens < 1:
        raise ValueError(f"max_output_tokens must be at least 1, got {max_output_tokens}")
    if temperature < 0 or not 0 <= top_p <= 1 or top_k < 0:
        raise ValueError("temperature and top_k must be >= 0 and top_p within [0, 1]")
    loaded = _load(model_dir)
    fmt, tokenizer = loaded.fmt, loaded.tokenizer
    max_new = max_output_tokens
    if loaded.positions:
        max_new = max(1, min(max_new, loaded.positions - fmt.overhead - 1))
    ids = fmt.frame_prompt(prompt, None, messages)  # never cut: too long a prompt is refused
    max_new = _fit(len(ids), max_new, loaded.input_limit, loaded.positions)
    stops = [s for s in stop_sequences if s]
    sample = temperature > 0
    req = batching.Request(
        ids=ids, max_new=max_new, stop_ids=frozenset(fmt.stop_ids), rows=candidate_count if sample else 1,
        temperature=temperature, top_p=top_p, top_k=top_k, seed=seed,
        stopped=_stop_check(tokenizer, stops) if stops else None,
    )
    return loaded, req


def _stop_check(tokenizer, stops: list[str]):
    tail = 4 * max(len(s) for s in stops) + 4  # enough tokens to hold any stop string

    def stopped(new_ids: list[int]) -> bool:
        text = tokenizer.decode(new_ids[-tail:], skip_special_tokens=True)
        return any(s in text for s in stops)

    return stopped


def _result(loaded: _Loaded, req: batching.Request, stops: list[str], candidates: int) -> Result:
    done = [
        Completion(_finish(loaded.tokenizer, row, loaded.fmt, stops), finish,
                   len([t for t in row if t not in req.stop_ids]))
        for row, finish in zip(req.outputs, req.finish, strict=True)
    ]
    return Result(len(req.ids), done if req.rows > 1 else done * candidates)


def complete(model_dir: Path, prompt: str, *, temperature: float, top_p: float, top_k: int,
             candidate_count: int, max_output_tokens: int, stop_sequences: list[str],
             seed: int | None = None, messages: list[dict[str, str]] | None = None) -> Result:
    """`candidate_count` completions of `prompt` with their finish reasons and token counts.

    temperature 0 means greedy (one answer, repeated per candidate). `messages` ({"role": "system" |
    "user" | "assistant", "content": ...}) frame the prompt instead of the one user turn of `prompt`
    when the model has a chat template; plain models use `prompt`. A `seed` makes sampling
    reproducible whatever is decoded beside it.
    """
    loaded, req = _request(model_dir, prompt, temperature=temperature, top_p=top_p, top_k=top_k,
                           candidate_count=candidate_count, max_output_tokens=max_output_tokens,
                           stop_sequences=stop_sequences, seed=seed, messages=messages)
    loaded.batcher.submit(req).wait()
    return _result(loaded, req, [s for s in stop_sequences if s], candidate_count)


def generate(model_dir: Path, prompt: str, *, temperature: float, top_p: float, top_k: int,
             candidate_count: int, max_output_tokens: int, stop_sequences: list[str],
             seed: int | None = None, messages: list[dict[str, str]] | None = None) -> list[str]:
    """`candidate_count` completions of `prompt` (only the new text); see `complete`."""
    result = complete(model_dir, prompt, temperature=temperature, top_p=top_p, top_k=top_k,
                      candidate_count=candidate_count, max_output_tokens=max_output_tokens,
                      stop_sequences=stop_sequences, seed=seed, messages=messages)
    return [c.text for c in result.completions]


@dataclass(frozen=True)
class Delta:
    """New text of candidate `index`; `finish_reason` is set on a candidate's last delta."""

    index: int
    text: str
    finish_reason: str | None = None


class Stream:
    """One request's answer as it is decoded: iterate for `Delta`s, then read `result`.

    `cancel()` (a client gone) ends its rows at the next token and frees their batch places.
    """

    def __init__(self, loaded: _Loaded, req: batching.Request, stops: list[str], candidates: int):
        self._loaded, self._req, self._stops, self._candidates = loaded, req, stops, candidates
        self._events: queue.Queue[tuple[int, list[int]] | None] = queue.Queue()
        self._shown = [""] * req.rows
        self.result: Result | None = None
        self.prompt_tokens = len(req.ids)
        req.on_token = lambda row, ids: self._events.put((row, list(ids)))

    def start(self) -> Stream:
        self._loaded.batcher.submit(self._req)
        threading.Thread(target=self._close_when_done, daemon=True).start()
        return self

    def _close_when_done(self) -> None:
        self._req.done.wait()
        self._events.put(None)

    def cancel(self) -> None:
        self._req.cancelled.set()

    def __iter__(self) -> Iterator[Delta]:
        while (event := self._events.get()) is not None:
            row, ids = event
            text = _visible(self._loaded.tokenizer, ids, self._loaded.fmt, self._stops)
            if text.startswith(self._shown[row]) and len(text) > len(self._shown[row]):
                yield from self._deltas(row, text[len(self._shown[row]):], None)
                self._shown[row] = text
        if self._req.error is not None:
            raise self._req.error
        self.result = _result(self._loaded, self._req, self._stops, self._candidates)
        for row, done in enumerate(self.result.completions[: self._req.rows]):
            shown = self._shown[row]
            rest = done.text[len(shown):] if done.text.startswith(shown) else ""
            yield from self._deltas(row, rest, done.finish_reason)

    def _deltas(self, row: int, text: str, finish: str | None) -> Iterator[Delta]:
        """A row's new text, for every candidate it stands for (a greedy row answers them all)."""
        for index in [row] if self._req.rows > 1 else range(self._candidates):
            yield Delta(index, text, finish)


def stream(model_dir: Path, prompt: str, *, temperature: float, top_p: float, top_k: int,
           candidate_count: int, max_output_tokens: int, stop_sequences: list[str],
           seed: int | None = None, messages: list[dict[str, str]] | None = None) -> Stream:
    """Start decoding `prompt` (as `complete` does) and return its `Stream`."""
    loaded, req = _request(model_dir, prompt, temperature=temperature, top_p=top_p, top_k=top_k,
                           candidate_count=candidate_count, max_output_tokens=max_output_tokens,
                           stop_sequences=stop_sequences, seed=seed, messages=messages)
    return Stream(loaded, req, [s for s in stop_sequences if s], candidate_count).start()


def _visible(tokenizer, new_ids: list[int], fmt: modelio.PromptFormat, stops: list[str]) -> str:
    """The text of an unfinished answer that no later token can take back: held back are a possible
    end-of-turn lead, an unfinished UTF-8 character and the start of a possible stop sequence."""
    if any(t in fmt.stop_ids for t in new_ids):
        return _finish(tokenizer, new_ids, fmt, stops)
    lead = fmt.end_of_turn[:-1]
    if lead:
        new_ids = new_ids[: max(0, len(new_ids) - len(lead))]
    text = tokenizer.decode(new_ids, skip_special_tokens=True).rstrip("\ufffd")
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    if cuts:
        return text[: min(cuts)]
    hold = max([n for s in stops for n in range(1, len(s)) if text.endswith(s[:n])], default=0)
    return text[: len(text) - hold]


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
