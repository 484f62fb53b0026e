"""Batched decoding: concurrent requests for one model are decoded together, with a KV cache.

Each loaded model has one `Batcher`. Requests queue on it; its thread takes every queued request
that fits the bounds (MAX_ROWS rows, MAX_CELLS rows x tokens of KV cache), left-pads their prompts
(attention mask and position ids follow the padding, so a row's greedy answer is the one it gets
alone) and decodes them step by step. A row leaves the batch as soon as it ends (a stop id, its
token budget, a stop string, a cancel). Requests that arrive meanwhile join the running batch
between two steps (continuous batching): they are prefilled on their own, then their KV cache is
left-padded to the batch's length (or the batch's to theirs) and stacked on it. Models whose cache
is not a plain per-layer key/value cache (sliding windows, recurrent state) take newcomers in the
next batch instead.
Sampling draws from each row's own generator, seeded per request, so a seed gives the same answer
whatever else is in the batch.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_ROWS = 32  # rows (a request's candidates each take one) decoded together
MAX_CELLS = 64 * 1024  # rows x (longest prompt + longest answer) of a batch: bounds the KV cache
GATHER_S = 0.003  # how long an idle batcher waits for simultaneous requests to join the first one

STOP, MAX_TOKENS, CANCELLED = "STOP", "MAX_TOKENS", "CANCELLED"


@dataclass(eq=False)
class Request:
    """One generation request: `rows` continuations of the prompt `ids`.

    `stopped(row_ids)` says whether a row's new ids already hold a stop string; `on_token(row,
    row_ids)` is told every token as it comes (streaming). Results land in `outputs` (new ids per
    row, a stop id included) and `finish` (STOP, MAX_TOKENS or CANCELLED) once `done` is set.
    """

    ids: list[int]
    max_new: int
    stop_ids: frozenset[int]
    rows: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stopped: Callable[[list[int]], bool] | None = None
    on_token: Callable[[int, list[int]], None] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    outputs: list[list[int]] = field(default_factory=list)
    finish: list[str] = field(default_factory=list)
    error: BaseException | None = None

    @property
    def cells(self) -> int:
        return self.rows * (len(self.ids) + self.max_new)

    def wait(self) -> None:
        """Block until the request is decoded; re-raises what failed the batch."""
        self.done.wait()
        if self.error is not None:
            raise self.error


class Batcher:
    """The decoding queue of one model; its thread runs only while there is work."""

    def __init__(self, model, pad: int):
        self.model = model
        self.pad = pad
        self._queue: deque[Request] = deque()
        self._lock = threading.Lock()
        self._running = False
        self.batches = 0  # how many batches were decoded (for tests and benchmarks)
        self.widest = 0  # the most rows decoded together
        self.joined = 0  # requests that joined a batch already decoding
        self.ended: Counter[str] = Counter()  # rows by how they ended (STOP, MAX_TOKENS, CANCELLED)

    def submit(self, req: Request) -> Request:
        """Queue `req` for decoding; returns it (call `wait()`)."""
        if req.rows < 1 or req.max_new < 1:
            raise ValueError("a request needs at least one row and one new token")
        with self._lock:
            self._queue.append(req)
            if not self._running:
                self._running = True
                threading.Thread(target=self._serve, name="tunespec-batcher", daemon=True).start()
        return req

    def _take(self, rows: int = 0, length: int = 0, budget: int = 0) -> list[Request]:
        """Queued requests in arrival order that fit beside `rows` rows already decoding (their cache
        `length` tokens long, `budget` tokens at most still to come); one at least for a new batch."""
        with self._lock:
            batch: list[Request] = []
            while self._queue:
                req = self._queue[0]
                if req.cancelled.is_set():  # cancelled while queued: never decoded
                    self._queue.popleft()
                    _finish_unstarted(req)
                    self.ended[CANCELLED] += req.rows
                    continue
                length = max(length, len(req.ids))
                budget = max(budget, req.max_new)
                wider = rows + req.rows
                if (batch or rows) and (wider > MAX_ROWS or wider * (length + budget) > MAX_CELLS):
                    break
                batch.append(self._queue.popleft())
                rows = wider
            if not batch and not rows:  # the serving thread ends: the next submit starts another
                self._running = False
            return batch

    def _join(self, rows: int, length: int, budget: int) -> list[Request]:
        """Newcomers for a running batch of `rows` rows (never blocks)."""
        if not self._queue:
            return []
        joining = self._take(max(rows, 1), length, budget)  # rows >= 1: never ends the serving thread
        if joining:
            self.joined += len(joining)
            self.widest = max(self.widest, rows + sum(r.rows for r in joining))
        return joining

    def _serve(self) -> None:
        import time

        time.sleep(GATHER_S)
        while True:
            batch = self._take()
            if not batch:
                return
            try:
                self.batches += 1
                self.widest = max(self.widest, sum(r.rows for r in batch))
                decode(self.model, self.pad, batch, join=self._join)  # appends the requests that join
            except Exception as exc:  # handed to every waiting caller
                for req in batch:
                    if not req.done.is_set():
                        req.error = exc
                        req.done.set()
            self.ended.update(f for req in batch for f in req.finish if f)


def _finish_unstarted(req: Request) -> None:
    req.outputs = [[] for _ in range(req.rows)]
    req.finish = [CANCELLED] * req.rows
    req.done.set()


def _generators(req: Request, device) -> list:
    """One torch generator per row of a sampling request: from its seed, else a random one."""
    import torch

    base = req.seed if req.seed is not None else random.getrandbits(62)
    gens = []
    for row in range(req.rows):
        g = torch.Generator(device=device)
        g.manual_seed((base * 1_000_003 + row) % (1 << 63))
        gens.append(g)
    return gens


def _sample(logits, temperature: float, top_p: float, top_k: int, gen) -> int:
    """One token from a row's logits: temperature, then top-k, then nucleus (top-p)."""
    import torch

    scores = logits / temperature
    if 0 < top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(scores, descending=True)
        cum = ordered.softmax(-1).cumsum(-1)
        drop = cum - ordered.softmax(-1) >= top_p  # keep the smallest prefix reaching top_p
        drop[0] = False
        scores = scores.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    probs = scores.softmax(-1)
    return int(torch.multinomial(probs, 1, generator=gen).item())


@dataclass(frozen=True)
class _Names:
    cache: str  # the forward's KV cache argument: `cache` (newer transformers) or `past_key_values`
    last: dict  # asks for the last position's logits only, where the model can


def _forward_names(model) -> _Names:
    import inspect

    params = inspect.signature(model.forward).parameters
    return _Names("cache" if "cache" in params else "past_key_values",
                  {"logits_to_keep": 1} if "logits_to_keep" in params else {})


class _Rows:
    """The rows decoding together: who they are, their KV cache, attention mask and last positions.

    The mask is as long as the cache: a row's padding (left of its prompt) is 0.
    """

    def __init__(self, rows: list[tuple[Request, int]], cache, mask, last):
        self.rows, self.cache, self.mask, self.last = rows, cache, mask, last
        self.mergeable = _mergeable(cache)  # its layers keep their kind while decoding

    @property
    def length(self) -> int:
        return int(self.mask.shape[1])

    def budget(self) -> int:
        """The most tokens any row may still take."""
        return max((req.max_new - len(req.outputs[r]) for req, r in self.rows), default=0)

    def keep(self, kept: list[int]) -> None:
        """Keep only the rows at indices `kept`; drop cache columns that are padding for every row."""
        import torch

        if not kept:
            self.rows = []
        elif len(kept) < len(self.rows):
            index = torch.tensor(kept, dtype=torch.long, device=self.mask.device)
            self.cache.batch_select_indices(index)
            self.mask, self.last = self.mask[index], self.last[index]
            self.rows = [self.rows[j] for j in kept]
            used = self.mask.any(0).nonzero()
            lead = int(used[0]) if len(used) else 0
            if lead and self.mergeable:
                for layer in self.cache.layers:
                    layer.keys, layer.values = layer.keys[:, :, lead:], layer.values[:, :, lead:]
                self.mask = self.mask[:, lead:]

    def stack(self, other: _Rows) -> None:
        """Append `other`'s rows, left-padding the shorter cache (and mask) to the longer one."""
        import torch
        import torch.nn.functional as F

        length = max(self.length, other.length)

        def padded(t, by: int):  # along the sequence: dim -2 of keys/values, the last dim of a mask
            return t if by == 0 else F.pad(t, (0, 0, by, 0) if t.dim() == 4 else (by, 0))

        mine, theirs = length - self.length, length - other.length
        for a, b in zip(self.cache.layers, other.cache.layers, strict=True):
            a.keys = torch.cat([padded(a.keys, mine), padded(b.keys, theirs)])
            a.values = torch.cat([padded(a.values, mine), padded(b.values, theirs)])
        self.mask = torch.cat([padded(self.mask, mine), padded(other.mask, theirs)])
        self.last = torch.cat([self.last, other.last])
        self.rows += other.rows


def _mergeable(cache) -> bool:
    """Whether `cache` is plain per-layer keys and values, [batch, heads, length, dim], that can be
    padded and stacked (not sliding windows, nor recurrent or quantized state)."""
    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:
        return False
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(
        type(layer) is DynamicLayer and layer.keys is not None and layer.keys.dim() == 4 for layer in layers)


class _Decoder:
    """Prefills requests and decodes their rows one step at a time."""

    def __init__(self, model, pad: int):
        self.model, self.pad = model, pad
        self.device = next(model.parameters()).device
        self.names = _forward_names(model)
        self.gens: dict[int, list] = {}

    def prefill(self, batch: list[Request]):
        """The rows of `batch`, left-padded to its longest prompt, run through the model: (rows, logits)."""
        import torch

        rows = [(req, r) for req in batch for r in range(req.rows)]
        for req in batch:
            req.outputs = [[] for _ in range(req.rows)]
            req.finish = [""] * req.rows
            if req.temperature > 0:
                self.gens[id(req)] = _generators(req, self.device)
        width = max(len(req.ids) for req in batch)
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (req, _) in enumerate(rows):
            ids[i, width - len(req.ids):] = torch.tensor(req.ids, dtype=torch.long)
            mask[i, width - len(req.ids):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         **self.names.last)
        return _Rows(rows, out.past_key_values, mask, positions[:, -1]), out.logits[:, -1, :].float()

    def choose(self, rows: _Rows, logits) -> list[int]:
        """Each row's next token, told to its request; returns the tokens of the rows that go on and
        drops the rows that ended (a stop id or string, the token budget, a cancel)."""
        greedy = logits.argmax(-1).tolist()
        kept: list[int] = []
        chosen: list[int] = []
        for j, (req, r) in enumerate(rows.rows):
            if req.temperature > 0:
                token = _sample(logits[j], req.temperature, req.top_p, req.top_k, self.gens[id(req)][r])
            else:
                token = greedy[j]
            new = req.outputs[r]
            new.append(token)
            if req.on_token is not None:
                req.on_token(r, new)
            if req.cancelled.is_set():
                req.finish[r] = CANCELLED
            elif token in req.stop_ids or (req.stopped is not None and req.stopped(new)):
                req.finish[r] = STOP
            elif len(new) >= req.max_new:
                req.finish[r] = MAX_TOKENS
            else:
                kept.append(j)
                chosen.append(token)
                continue
            if all(req.finish):
                req.done.set()
        rows.keep(kept)
        return chosen

    def step(self, rows: _Rows, chosen: list[int]):
        """Feed each row its chosen token; the logits of the next one."""
        import torch

        ones = torch.ones((len(rows.rows), 1), dtype=rows.mask.dtype, device=self.device)
        rows.mask = torch.cat([rows.mask, ones], dim=1)
        rows.last = rows.last + 1
        step = torch.tensor(chosen, device=self.device).unsqueeze(1)
        out = self.model(input_ids=step, attention_mask=rows.mask, position_ids=rows.last.unsqueeze(1),
                         use_cache=True, **{self.names.cache: rows.cache}, **self.names.last)
        return out.logits[:, -1, :].float()


def decode(model, pad: int, batch: list[Request],
           join: Callable[[int, int, int], list[Request]] | None = None) -> None:
    """Decode `batch` together until every row has ended; fills each request's results.

    Between steps, `join(rows, cache_length, budget)` may hand over newcomers: they are prefilled and
    stacked on the running rows (and appended to `batch`).
    """
    import torch

    from tunespec.engine import modelio

    decoder = _Decoder(model, pad)
    with torch.inference_mode(), modelio.autocast(decoder.device):
        rows, logits = decoder.prefill(batch)
        chosen = decoder.choose(rows, logits)
        while True:
            if join is not None and (not rows.rows or rows.mergeable):
                newcomers = join(len(rows.rows), rows.length, rows.budget())
                if newcomers:
                    batch.extend(newcomers)
                    more, logits = decoder.prefill(newcomers)
                    more_chosen = decoder.choose(more, logits)
                    if not rows.rows:
                        rows, chosen = more, more_chosen
                    elif more.rows:
                        rows.stack(more)
                        chosen += more_chosen
            if not rows.rows:
                return
            chosen = decoder.choose(rows, decoder.step(rows, chosen))
