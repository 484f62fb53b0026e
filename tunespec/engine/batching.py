"""Batched decoding: concurrent requests for one model are decoded together, with a KV cache.

Each loaded model has one `Batcher`. Requests queue on it; its thread takes every queued request
that fits the bounds (MAX_ROWS rows, MAX_CELLS rows x tokens of KV cache), left-pads their prompts
(attention mask and position ids follow the padding, so a row's greedy answer is the one it gets
alone) and decodes them step by step. A row leaves the batch as soon as it ends (a stop id, its
token budget, a stop string, a cancel); requests that arrive meanwhile form the next batch.
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

    def _take(self) -> list[Request]:
        """The next batch: queued requests in arrival order, within the bounds (one at least)."""
        with self._lock:
            batch: list[Request] = []
            rows = 0
            while self._queue:
                req = self._queue[0]
                if req.cancelled.is_set():  # cancelled while queued: never decoded
                    self._queue.popleft()
                    _finish_unstarted(req)
                    self.ended[CANCELLED] += req.rows
                    continue
                longest = max([len(r.ids) for r in batch] + [len(req.ids)])
                budget = max([r.max_new for r in batch] + [req.max_new])
                wider = rows + req.rows
                if batch and (wider > MAX_ROWS or wider * (longest + budget) > MAX_CELLS):
                    break
                batch.append(self._queue.popleft())
                rows += req.rows
            if not batch:
                self._running = False
            return batch

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
                decode(self.model, self.pad, batch)
                self.ended.update(f for req in batch for f in req.finish)
            except Exception as exc:  # handed to every waiting caller
                for req in batch:
                    if not req.done.is_set():
                        req.error = exc
                        req.done.set()


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


def decode(model, pad: int, batch: list[Request]) -> None:
    """Decode `batch` together until every row has ended; fills each request's results."""
    import torch

    from tunespec.engine import modelio

    device = next(model.parameters()).device
    rows = [(req, r) for req in batch for r in range(req.rows)]
    gens = {id(req): _generators(req, device) for req in batch if req.temperature > 0}
    for req in batch:
        req.outputs = [[] for _ in range(req.rows)]
        req.finish = [""] * req.rows
    width = max(len(req.ids) for req in batch)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (req, _) in enumerate(rows):
        ids[i, width - len(req.ids):] = torch.tensor(req.ids, dtype=torch.long)
        mask[i, width - len(req.ids):] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    alive = list(range(len(rows)))
    names = _forward_names(model)
    with torch.inference_mode(), modelio.autocast(device):
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **names.last)
        cache = out.past_key_values
        last = positions[:, -1]
        while True:
            logits = out.logits[:, -1, :].float()
            greedy = logits.argmax(-1).tolist()
            keep: list[int] = []
            chosen: list[int] = []
            for j, i in enumerate(alive):
                req, r = rows[i]
                if req.temperature > 0:
                    token = _sample(logits[j], req.temperature, req.top_p, req.top_k, gens[id(req)][r])
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
                    keep.append(j)
                    chosen.append(token)
                    continue
                if all(req.finish):
                    req.done.set()
            if not keep:
                return
            if len(keep) < len(alive):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                mask, last = mask[index], last[index]
                alive = [alive[j] for j in keep]
            mask = torch.cat([mask, torch.ones((len(alive), 1), dtype=mask.dtype, device=device)], dim=1)
            last = last + 1
            step = torch.tensor(chosen, device=device).unsqueeze(1)
            out = model(input_ids=step, attention_mask=mask, position_ids=last.unsqueeze(1),
                        use_cache=True, **{names.cache: cache}, **names.last)
