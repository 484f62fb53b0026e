"""`tunespec apply` of the example job, phase by phase, each against the floor it cannot beat.

The example job (the built-in model, 15 examples x 60 epochs = 450 steps, 18 prompts) is applied
cold (a fresh engine data dir: the engine starts in-process, trains, evaluates) and then again up to
date (nothing to train: start-up and evaluation only), each in a fresh `tunespec` process. The phases
come from the process's wall time, report.json's timings and the engine's database (when the job
was claimed, each step's time). Their floors, measured in fresh processes on the same machine:

- start-up + reports (the process outside the job's run: planning starts the in-process engine):
  importing tunespec's CLI, the engine and torch + transformers;
- submitted -> first step: importing torch + transformers and loading the model (the worker imports
  while the runner starts up, so this overlaps the start-up);
- training: the bare PyTorch loop (bench/engine_loop.py's PlainLoop) for the same steps;
- evaluation, and the whole up-to-date apply: a minimal transformers script that imports, loads the
  model and generates the prompts one by one.

    python bench/apply_phases.py
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
EXAMPLE = ROOT / "tests" / "data" / "number-generator-builtin.yaml"
PY = sys.executable

IMPORT_STACK = ("import torch, transformers.models.llama.modeling_llama; "
                "from transformers import AutoModelForCausalLM")
MINIMAL_SCRIPT = """
import sys, time, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()
t = time.perf_counter()
for p in sys.argv[2:]:
    ids = torch.tensor([[tok.bos_token_id, *tok.encode(p, add_special_tokens=False), tok.sep_token_id]])
    with torch.inference_mode():
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=32, do_sample=False,
                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
print(time.perf_counter() - t)
"""


def timed(args: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    t = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode not in (0, 3):  # 3: `apply` ran, its evaluation below the threshold
        raise SystemExit(f"{' '.join(args[:4])}... exited {done.returncode}: {done.stderr[-2000:]}")
    return time.perf_counter() - t, done.stdout


def spec_copy(work: Path) -> Path:
    text = EXAMPLE.read_text().replace("../../examples/data/number-generator.csv",
                                       str(ROOT / "examples/data/number-generator.csv"))
    path = work / "number-generator.yaml"
    path.write_text(text)
    return path


def prompts() -> list[str]:
    import yaml

    return [str(p["input"]) for p in yaml.safe_load(EXAMPLE.read_text())["evaluation"]["prompts"]]


def apply(spec: Path, env: dict[str, str]) -> tuple[float, dict]:
    wall, out = timed([PY, "-m", "tunespec.cli", "apply", str(spec), "--json"], env)
    return wall, json.loads(out)


def engine_phases(data_dir: Path) -> tuple[float, float, int]:
    """(submitted -> first step begins, first -> last step, steps) from the engine's database."""
    db = sqlite3.connect(data_dir / "engine.db")
    (model_id, start_ns), = db.execute("SELECT id, create_ns FROM tuned_models").fetchall()
    steps = [ns for (ns,) in db.execute("SELECT compute_ns FROM snapshots WHERE model_id = ? ORDER BY step",
                                        (model_id,))]
    per_step = (steps[-1] - steps[0]) / max(1, len(steps) - 1)
    return (steps[0] - start_ns - per_step) / 1e9, (steps[-1] - steps[0] + per_step) / 1e9, len(steps)


def bare_training(base: Path, steps: int) -> float:
    sys.path.insert(0, str(ROOT / "bench"))
    from engine_loop import PlainLoop

    loop = PlainLoop(base, batch=2, epochs=60)
    t = time.perf_counter()
    for _ in range(steps):
        loop.step()
    return time.perf_counter() - t


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="tunespec-bench-apply-"))
    data_dir = work / "engine"
    env = {**os.environ, "TUNESPEC_ENGINE_DIR": str(data_dir), "CI": "true"}
    spec = spec_copy(work)

    cold_wall, cold = apply(spec, env)
    up_wall, up = apply(spec, env)
    job_cold, job_up = cold["jobs"][0], up["jobs"][0]
    claim_to_step, training, steps = engine_phases(data_dir)
    base = next((data_dir / "models").glob("*tiny*"))

    import_floor, _ = timed([PY, "-c", IMPORT_STACK])
    cli_floor, _ = timed([PY, "-c", f"import tunespec.cli, tunespec.engine.app; {IMPORT_STACK}"])
    load_floor, _ = timed([PY, "-c", f"{IMPORT_STACK}; AutoModelForCausalLM.from_pretrained({str(base)!r})"])
    script_wall, script_out = timed([PY, "-c", MINIMAL_SCRIPT, str(base), *prompts()])
    script_generate = float(script_out.strip())
    bare = bare_training(base, steps)

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
        ("up to date: evaluation", t(job_up, "eval_s"), script_generate, "a minimal script's generation"),
        ("up to date: apply, whole process", up_wall, script_wall,
         "a minimal script: import, load, generate"),
    ]
    print(f"{'phase':44} {'measured':>9} {'floor':>9} {'ratio':>6}  floor")
    for name, measured, floor, what in rows:
        print(f"{name:44} {measured:8.2f}s {floor:8.2f}s {measured / floor:5.2f}x  {what}")
    print(f"(importing torch+transformers alone: {import_floor:.2f}s; pass rate {job_cold.get('pass_rate')})")
    print(json.dumps({name: {"measured_s": round(m, 3), "floor_s": round(f, 3)} for name, m, f, _ in rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
