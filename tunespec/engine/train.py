"""The training loop: a hand-written loop over a Hugging Face causal LM (fp32; bf16 autocast on CUDA).

Read top to bottom: resolve the model (full fine-tuning, or a LoRA adapter via peft), tokenize the
examples once, build the example stream Google's way (E seeded shuffles of the N examples
concatenated, cut into batches of B, so step s ends in epoch floor(s*B/N)), then AdamW with
gradient clipping, the loss on the output tokens only, a checkpoint every few seconds, and the
final weights as safetensors in `work_dir/model`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tunespec.engine import modelio, runtime
from tunespec.tuning_api import total_steps

BF16_BASE_ABOVE_PARAMS = 200_000_000  # on CUDA, a bigger LoRA base is kept frozen in bf16
LORA_RANK, LORA_ALPHA = 8, 16
CLIP_NORM = 1.0
SUBSET_VOCAB_RATIO = 16  # vocab >= 16 x hidden: the loss skips the output layer where no answer is predicted
MAX_TRAIN_TOKENS = 4096  # per example, even for models with longer contexts
CHECKPOINT = "checkpoint"
CHECKPOINT_SHARE = 20  # wait at least 20x as long as the last checkpoint took to write
HISTORY = 2048  # the last steps' (step, epoch, loss, time) a checkpoint keeps, for on_resume
MODEL = "model"


class TrainingStopped(Exception):
    """should_stop() turned true; the state is in work_dir/checkpoint, `train` resumes from it."""


@dataclass
class TrainRequest:
    """One tuning job, as the worker hands it over."""

    base_dir: Path
    examples: list[tuple[str, str]]
    epoch_count: int
    batch_size: int
    learning_rate: float
    tuning_method: str = "auto"  # "full" | "lora" | "auto" (LoRA, but full for the built-in model)
    seed: int = 0
    init_dir: Path | None = None  # a tuned model to continue from
    data_dir: Path | None = None  # the engine's data dir: a LoRA base inside it is recorded relative
    lora_rank: int = LORA_RANK  # a new adapter's rank (alpha is twice it); a continued one keeps its own


def epoch_of(step: int, batch: int, n: int) -> int:
    """Completed epochs after `step` (1-based) steps: floor(step*B/N)."""
    return step * batch // n


def example_stream(n: int, epochs: int, seed: int) -> list[int]:
    """E seeded shuffles of range(n), concatenated: the order examples are trained in."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return [i for _ in range(epochs) for i in torch.randperm(n, generator=generator).tolist()]


def checkpoint_step(work_dir: Path) -> int:
    """The step training would resume after (0 if none; total steps once the model is saved)."""
    work_dir = Path(work_dir)
    meta = modelio.read_meta(work_dir / MODEL) if (work_dir / MODEL).is_dir() else {}
    if "steps" in meta:
        return int(meta["steps"])
    ckpt = _checkpoint_dir(work_dir)
    return json.loads((ckpt / "state.json").read_text())["step"] if ckpt else 0


def train(req: TrainRequest, work_dir: Path, on_step: Callable[[int, int, float], None],
          should_stop: Callable[[], bool], *, checkpoint_every_s: float = 2.0,
          checkpoint_every_steps: int | None = None,
          on_resume: Callable[[list[tuple[int, int, float, int]]], None] | None = None) -> Path:
    """Tune `req` in `work_dir`, resuming from its checkpoint; return the final model dir.

    Calls on_step(step, epoch, mean_loss) after every step. Checkpoints every `checkpoint_every_s`
    seconds of training (but never spending more than 1/CHECKPOINT_SHARE of the time on writing
    them) and, if given, every `checkpoint_every_steps` steps. Raises TrainingStopped (after writing
    a checkpoint) when should_stop() returns true, ValueError for an invalid request.
    on_resume(steps) is told, on resuming, the last HISTORY steps the checkpoint covers as (step,
    epoch, mean_loss, time_ns): a process that trained them may have died before reporting them.
    """
    import torch

    _validate(req)
    work_dir = Path(work_dir)
    final = work_dir / MODEL
    if "steps" in modelio.read_meta(final):
        return final
    work_dir.mkdir(parents=True, exist_ok=True)
    device = runtime.device()
    model, tokenizer, method, base_dir = _prepare_model(req, device)
    fmt = modelio.PromptFormat.of(tokenizer)
    ids_all, labels_all, lengths = _tokenize(req.examples, fmt, _train_limit(model), device)

    n, batch = len(req.examples), req.batch_size
    total = total_steps(n, req.epoch_count, batch)
    order = example_stream(n, req.epoch_count, req.seed)
    batches = [order[s * batch:(s + 1) * batch] for s in range(total)]
    widths = [max(lengths[i] for i in b) for b in batches]
    order_t = torch.tensor(order, device=device)

    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    optimizer = make_optimizer(params, req.learning_rate)
    fingerprint = _fingerprint(req, method, base_dir)
    step, done = _load_checkpoint(work_dir, model, optimizer, fingerprint)
    history = deque(done, maxlen=HISTORY)
    if done and on_resume is not None:
        on_resume(list(done))

    model.train()
    precision = modelio.autocast(device)  # bf16 autocast on CUDA where supported; fp32 on CPU
    subset = _takes_logits_to_keep(model)
    saved_step, saved_at, interval = step, time.monotonic(), checkpoint_every_s
    while step < total:
        if should_stop():
            _save_checkpoint(work_dir, named, optimizer, step, total, fingerprint, history)
            raise TrainingStopped(f"stopped after step {step} of {total}")
        rows = order_t[step * batch:(step + 1) * batch]
        width = widths[step]
        input_ids = ids_all.index_select(0, rows)[:, :width]
        labels = labels_all.index_select(0, rows)[:, :width]
        # Right padding under a causal mask never reaches a real token: no attention mask needed.
        with precision:
            loss = answer_loss(model, input_ids, labels, subset)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        mean_loss = loss.item()
        if not math.isfinite(mean_loss):
            raise RuntimeError(f"training diverged at step {step}: the loss is {mean_loss}; "
                               "lower the learning rate")
        epoch = epoch_of(step, batch, n)
        on_step(step, epoch, mean_loss)
        history.append((step, epoch, mean_loss, time.time_ns()))
        if step < total and (time.monotonic() - saved_at >= interval or (
                checkpoint_every_steps and step - saved_step >= checkpoint_every_steps)):
            began = time.monotonic()
            _save_checkpoint(work_dir, named, optimizer, step, total, fingerprint, history)
            saved_step, saved_at = step, time.monotonic()
            interval = max(checkpoint_every_s, CHECKPOINT_SHARE * (saved_at - began))

    _save_model(final, model, tokenizer, method, base_dir, total, req)
    for leftover in (work_dir / CHECKPOINT, work_dir / f"{CHECKPOINT}.old"):
        shutil.rmtree(leftover, ignore_errors=True)
    return final


def answer_loss(model, input_ids, labels, subset: bool = True):
    """Mean cross-entropy over the answer tokens (labels other than IGNORE), as Hugging Face computes it.

    With `subset`, the output layer runs only at the positions that predict an answer token
    (`logits_to_keep`): with a large vocabulary (SmolLM2's 49k) that is a good part of each step.
    """
    import torch

    if not subset:
        return model(input_ids=input_ids, labels=labels).loss
    targets = labels[:, 1:]  # position t predicts token t + 1
    keep = (targets != modelio.IGNORE).any(0).nonzero().squeeze(1)
    logits = model(input_ids=input_ids, logits_to_keep=keep).logits
    return torch.nn.functional.cross_entropy(
        logits.float().flatten(0, 1), targets[:, keep].flatten(), ignore_index=modelio.IGNORE
    )


def _takes_logits_to_keep(model) -> bool:
    """Whether to compute the logits of the answer positions only: the model's forward can, and its
    vocabulary is large enough (SUBSET_VOCAB_RATIO x the hidden size) for the output layer to matter."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    large = getattr(config, "vocab_size", 0) >= SUBSET_VOCAB_RATIO * getattr(config, "hidden_size", 1 << 30)
    return large and "logits_to_keep" in inspect.signature(base.forward).parameters


def make_optimizer(params, learning_rate: float):
    """AdamW, constant learning rate, no weight decay; the fused kernel where torch has one."""
    import torch

    try:
        return torch.optim.AdamW(params, lr=learning_rate, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                                 fused=True)
    except (RuntimeError, TypeError):  # older torch, or a device without the fused kernel
        return torch.optim.AdamW(params, lr=learning_rate, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)


# --- request and model -------------------------------------------------------------------------

def _validate(req: TrainRequest) -> None:
    if not req.examples:
        raise ValueError("no training examples")
    for name in ("epoch_count", "batch_size"):
        if int(getattr(req, name)) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(req, name)}")
    if not (req.learning_rate > 0 and math.isfinite(req.learning_rate)):
        raise ValueError(f"learning_rate must be a positive number, got {req.learning_rate}")
    if req.tuning_method not in ("full", "lora", "auto", "", None):
        raise ValueError(f"tuning_method must be 'full' or 'lora', got {req.tuning_method!r}")


def _estimate_params(model_dir: Path) -> int:
    """Parameter count from the weight files' sizes (before loading anything)."""
    files = list(model_dir.glob("*.safetensors")) or list(model_dir.glob("*.bin"))
    size = sum(f.stat().st_size for f in files)
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    return size // (2 if ("16" in dtype) else 4)


def _is_builtin(model_dir: Path) -> bool:
    """Whether `model_dir` is the built-in random model or a model fully tuned from it."""
    meta = modelio.read_meta(model_dir)
    return bool(meta.get("builtin")) or meta.get("tokenizer") == "bytes"  # tuned models keep "bytes"


def _resolve_method(requested: str | None, builtin: bool) -> str:
    """The method to tune with: "full" and "lora" as asked; "auto": LoRA for a pretrained base (as
    Google's services tune adapters), full fine-tuning for the built-in model (nothing to keep)."""
    if requested in ("full", "lora"):
        return requested
    return "full" if builtin else "lora"


def _prepare_model(req: TrainRequest, device):
    """(model ready to train, tokenizer, "full"|"lora", full base dir the weights start from)."""
    import torch

    base_dir, adapter = modelio.resolve(Path(req.init_dir or req.base_dir))
    params = _estimate_params(base_dir)
    method = _resolve_method(req.tuning_method, _is_builtin(base_dir))
    dtype = torch.float32
    if (method == "lora" and device.type == "cuda" and params > BF16_BASE_ABOVE_PARAMS
            and torch.cuda.is_bf16_supported()):
        dtype = torch.bfloat16  # frozen base weights only; the adapter trains in fp32
    tokenizer = modelio.load_tokenizer(adapter or base_dir)
    model = modelio.load_full(base_dir, device, dtype)
    if method == "lora":
        from peft import LoraConfig, PeftModel, get_peft_model

        torch.manual_seed(req.seed)
        if adapter is not None:
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
        else:
            config = LoraConfig(r=req.lora_rank, lora_alpha=LORA_ALPHA * req.lora_rank // LORA_RANK,
                                lora_dropout=0.0,
                                target_modules="all-linear", task_type="CAUSAL_LM")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # peft vs transformers 5 deprecation
                warnings.filterwarnings("ignore", message="fan_in_fan_out")  # GPT-2's Conv1D, handled
                model = get_peft_model(model, config)
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    else:
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        for p in model.parameters():
            p.requires_grad_(True)
    return model, tokenizer, method, base_dir


def _train_limit(model) -> int:
    positions = modelio.max_positions(model)
    return min(positions, MAX_TRAIN_TOKENS) if positions else MAX_TRAIN_TOKENS


def _tokenize(examples, fmt: modelio.PromptFormat, limit: int, device):
    """All examples as right-padded [N, Lmax] id and label tensors, plus each one's length.

    Each is framed as generation frames its input (modelio.PromptFormat: the chat template's user
    turn when the tokenizer has one), the loss on the answer and its eos / end-of-turn only."""
    import torch

    rows = [fmt.frame_example(inp, out, limit) for inp, out in examples]
    lengths = [len(ids) for ids, _ in rows]
    width = max(lengths)
    ids_all = torch.full((len(rows), width), fmt.pad, dtype=torch.long)
    labels_all = torch.full((len(rows), width), modelio.IGNORE, dtype=torch.long)
    for i, (ids, labels) in enumerate(rows):
        ids_all[i, :len(ids)] = torch.tensor(ids)
        labels_all[i, :len(labels)] = torch.tensor(labels)
    return ids_all.to(device), labels_all.to(device), lengths


def _fingerprint(req: TrainRequest, method: str, base_dir: Path) -> str:
    blob = json.dumps([req.examples, req.epoch_count, req.batch_size, req.learning_rate, method,
                       req.seed, str(base_dir), str(req.init_dir or "")])
    return hashlib.sha256(blob.encode()).hexdigest()


# --- checkpoints -------------------------------------------------------------------------------

def _checkpoint_dir(work_dir: Path) -> Path | None:
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):  # .old survives a crash between two renames
        if (work_dir / name / "state.json").is_file():
            return work_dir / name
    return None


def _save_checkpoint(work_dir: Path, named, optimizer, step: int, total: int, fingerprint: str,
                     history: Iterable[tuple[int, int, float, int]]) -> None:
    """Trainable weights (safetensors), optimizer + RNG state, step and the last steps' losses:
    written aside, then renamed."""
    import torch
    from safetensors.torch import save_file

    tmp = work_dir / f"{CHECKPOINT}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({name: p.detach().to("cpu").contiguous() for name, p in named}, tmp / "weights.safetensors")
    state = {"optimizer": optimizer.state_dict(), "rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    torch.save(state, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "total": total, "fingerprint": fingerprint,
                                                "history": [list(h) for h in history]}))
    modelio.atomic_dir_swap(tmp, work_dir / CHECKPOINT)


def _load_checkpoint(work_dir: Path, model, optimizer,
                     fingerprint: str) -> tuple[int, list[tuple[int, int, float, int]]]:
    """Restore weights, optimizer and RNG from the checkpoint; the step to continue after (0: none)
    and the steps' history it keeps."""
    import torch
    from safetensors.torch import load_file

    ckpt = _checkpoint_dir(work_dir)
    if ckpt is None:
        return 0, []
    meta = json.loads((ckpt / "state.json").read_text())
    if meta.get("fingerprint") != fingerprint:
        raise ValueError(f"{ckpt} belongs to a different tuning job (other data, hyperparameters or "
                         "base model); delete it to start over")
    weights = load_file(str(ckpt / "weights.safetensors"), device=str(next(model.parameters()).device))
    _, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or set(weights) - {name for name, _ in model.named_parameters()}:
        raise ValueError(f"{ckpt} does not match the model being tuned: unexpected {unexpected[:3]}")
    state = torch.load(ckpt / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    history = [(int(s), int(e), float(loss), int(ns)) for s, e, loss, ns in meta.get("history", [])]
    return int(meta["step"]), history


def _save_model(final: Path, model, tokenizer, method: str, base_dir: Path, total: int,
                req: TrainRequest) -> None:
    """The tuned model as safetensors (full weights, or the adapter naming its base), atomically."""
    tmp = final.with_name(f"{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    base_meta = modelio.read_meta(base_dir)
    kind = method
    if method == "lora" and "steps" in base_meta:
        # The base is itself a tuned model, which can be deleted: keep merged, self-contained weights.
        model, kind = model.merge_and_unload(), "full"
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    meta = {"kind": kind, "method": method, "steps": total, "tokenizer": base_meta.get("tokenizer", "auto"),
            "epoch_count": req.epoch_count, "batch_size": req.batch_size,
            "learning_rate": req.learning_rate, "seed": req.seed}
    if kind == "lora":
        meta["base_dir"] = _recorded_base(base_dir, final, req.data_dir)
    modelio.write_meta(tmp, meta)
    (tmp / "README.md").unlink(missing_ok=True)  # peft's empty model card
    modelio.atomic_dir_swap(tmp, final)


def _recorded_base(base_dir: Path, adapter_dir: Path, data_dir: Path | None) -> str:
    """How an adapter names its base: relative to the adapter dir when both lie in `data_dir`
    (they move together), absolute otherwise (see modelio.resolve)."""
    adapter_dir = adapter_dir.resolve()
    if data_dir is not None:
        root = Path(data_dir).resolve()
        if base_dir.is_relative_to(root) and adapter_dir.is_relative_to(root):
            return os.path.relpath(base_dir, adapter_dir)
    return str(base_dir)
