"""The engine's training loop against a minimal plain-PyTorch loop, side by side.

Both loops tune the built-in model on the quickstart's 15 pairs with the same batches (the same
example stream, padding and trimming), the same AdamW and the same clipping. They run in lock
step: after each step of the engine's `train()` (inside its on_step callback) the plain loop does
its own step, so load from other processes hits both alike. A third loop, "textbook", is the plain
loop with torch's default (unfused) AdamW, to show what the engine's optimizer choice buys.
Steps/s come from the median step time over all repetitions (and, as a check, from the summed
step times). Then the small model's
achieved GFLOP/s at batch 16 (6 x params x padded tokens per step) against a measured fp32 matmul
peak (torch.mm, n=1024, sampled between the runs; the best sample is the peak).

    python bench/engine_loop.py [--reps 5] [--epochs 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import QUICKSTART, matmul_peak

from tunespec.engine import basemodels, modelio, train
from tunespec.tuning_api import total_steps

LR = 1e-3


class PlainLoop:
    """The textbook loop: pre-tokenized padded tensors, trim to the batch, forward, backward, clip, step."""

    def __init__(self, base: Path, batch: int, epochs: int, same_optimizer: bool = True):
        import torch

        self.torch = torch
        tokenizer = modelio.load_tokenizer(base)
        self.model = modelio.load_full(base, torch.device("cpu"))
        fmt = modelio.PromptFormat.of(tokenizer)
        rows = [fmt.example(modelio.encode(tokenizer, i), modelio.encode(tokenizer, o), None)
                for i, o in QUICKSTART]
        self.lengths = [len(ids) for ids, _ in rows]
        width = max(self.lengths)
        self.ids = torch.full((len(rows), width), fmt.pad)
        self.labels = torch.full((len(rows), width), -100)
        for n, (ids, labels) in enumerate(rows):
            self.ids[n, :len(ids)], self.labels[n, :len(labels)] = torch.tensor(ids), torch.tensor(labels)
        order = train.example_stream(len(rows), epochs, seed=0)
        self.batches = [order[s:s + batch] for s in range(0, len(order), batch)]
        if same_optimizer:  # the engine's AdamW settings (fused kernel, no weight decay)
            self.optimizer = train.make_optimizer(list(self.model.parameters()), LR)
        else:  # what a textbook loop writes
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=LR, weight_decay=0.0)
        self.model.train()
        self.done = 0
        self.tokens = 0

    def step(self) -> float:
        b = self.batches[self.done]
        width = max(self.lengths[i] for i in b)
        rows = self.torch.tensor(b)
        loss = self.model(input_ids=self.ids[rows, :width], labels=self.labels[rows, :width]).loss
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.done += 1
        self.tokens += width * len(b)
        return loss.item()


def lockstep(base: Path, batch: int, epochs: int, scratch: Path) -> dict:
    """One engine train() run with the plain loop stepping in between; per-step seconds of both."""
    plain = PlainLoop(base, batch, epochs)
    textbook = PlainLoop(base, batch, epochs, same_optimizer=False)
    req = train.TrainRequest(base_dir=base, examples=QUICKSTART, epoch_count=epochs, batch_size=batch,
                             learning_rate=LR, tuning_method="full")
    engine_times: list[float] = []
    plain_times: list[float] = []
    textbook_times: list[float] = []
    resumed = [0.0]
    plain_losses, engine_losses = [], []

    def should_stop() -> bool:
        if not resumed[0]:  # called right before the first step, after loading and tokenizing
            resumed[0] = time.perf_counter()
        return False

    def on_step(step: int, epoch: int, loss: float) -> None:
        now = time.perf_counter()
        engine_times.append(now - resumed[0])
        engine_losses.append(loss)
        plain_losses.append(plain.step())
        plain_times.append(time.perf_counter() - now)
        now = time.perf_counter()
        textbook.step()
        textbook_times.append(time.perf_counter() - now)
        resumed[0] = time.perf_counter()

    start = time.perf_counter()
    train.train(req, Path(tempfile.mkdtemp(dir=scratch)), on_step, should_stop)
    call = time.perf_counter() - start - sum(plain_times) - sum(textbook_times)
    assert engine_losses == plain_losses, "the two loops must compute the same thing"
    return {"engine": engine_times, "plain": plain_times, "textbook": textbook_times,
            "call_sps": len(engine_times) / call, "tokens": plain.tokens / plain.done}


def compare(base: Path, batch: int, epochs: int, reps: int, scratch: Path) -> dict:
    lockstep(base, batch, 1, scratch)  # warm-up
    engine, plain, textbook, calls, peaks, tokens = [], [], [], [], [], 0.0
    for _ in range(reps):
        peaks.append(matmul_peak())
        r = lockstep(base, batch, epochs, scratch)
        engine += r["engine"]
        plain += r["plain"]
        textbook += r["textbook"]
        calls.append(r["call_sps"])
        tokens = r["tokens"]
    e, p = 1 / statistics.median(engine), 1 / statistics.median(plain)
    return {"engine": e, "plain": p, "ratio": e / p, "textbook": 1 / statistics.median(textbook),
            "sum_ratio": sum(plain) / sum(engine),
            "call": statistics.median(calls), "tokens": tokens, "peaks": peaks}


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        base = basemodels.materialize(basemodels.BUILTIN, scratch / "data")
        params = modelio.param_count(modelio.load_full(base, torch.device("cpu")))
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu; built-in model {params:,} "
              f"params; {len(QUICKSTART)} examples; {args.reps} repetitions, loops in lock step")
        print(f"{'batch':>5} {'steps':>6} {'engine steps/s':>15} {'plain steps/s':>14} {'ratio':>6} "
              f"{'textbook steps/s':>17} "
              f"{'ratio (sums)':>13} {'train() call steps/s':>21} {'tokens/step':>12} {'GFLOP/s':>8}")
        results = {}
        for batch in (2, 16):
            epochs = args.epochs if batch == 2 else args.epochs * 2
            r = compare(base, batch, epochs, args.reps, scratch)
            gflops = 6 * params * r["tokens"] * r["engine"] / 1e9
            results[batch] = (r, gflops)
            steps = total_steps(len(QUICKSTART), epochs, batch)
            print(f"{batch:>5} {steps:>6} {r['engine']:>15.1f} {r['plain']:>14.1f} {r['ratio']:>6.2f} "
                  f"{r['textbook']:>17.1f} "
                  f"{r['sum_ratio']:>13.2f} {r['call']:>21.1f} {r['tokens']:>12.1f} {gflops:>8.2f}")
        peaks = results[2][0]["peaks"] + results[16][0]["peaks"]
        peak = max(peaks)
        gflops16 = results[16][1]
        print(f"fp32 matmul peak (torch.mm n=1024, best of {len(peaks)} samples taken between the runs): "
              f"{peak:.1f} GFLOP/s (median {statistics.median(peaks):.1f})")
        print(f"batch 16: {gflops16:.2f} GFLOP/s achieved (6 x params x padded tokens / step time) "
              f"= {100 * gflops16 / peak:.1f} % of the measured peak")
        print(f"engine / plain loop steps/s: {results[2][0]['ratio']:.2f} at batch 2, "
              f"{results[16][0]['ratio']:.2f} at batch 16 (target >= 0.9)")


if __name__ == "__main__":
    main()
