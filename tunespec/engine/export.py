"""Taking a tuned model away: an engine tuned model as a standard Hugging Face directory.

`export` reads the tuned model's row from the engine's data dir (the store, scoped by project as
the API is) and writes one of:

- **full**: a fully fine-tuned model, copied (config, safetensors, tokenizer with its chat template);
- **merged**: a LoRA-tuned model with the adapter merged into its base (peft `merge_and_unload`),
  saved as a plain causal LM;
- **adapter** (`adapter_only`): the peft adapter itself, its `adapter_config.json` naming the
  absolute path of the base model directory it was tuned on (the engine's own copy of the base:
  a GGUF base is dequantised there, so Hub weights of the same name would answer differently).

Every export also holds `tunespec-export.json` and a README.md saying where it came from and how
the engine frames a prompt (the plain-`transformers` recipe for identical greedy answers). The
engine's marker `tunespec.json` is left out. Full and merged exports get a `generation_config.json`
with the engine's stop tokens and the tuned model's sampling defaults. The export is written into
a temporary sibling directory and renamed into place, so a failure leaves nothing behind.

Cheap to import (the store and modelio); transformers, and torch and peft for a merge, load inside
`export`. Merging runs on the CPU in fp32, as the engine generates on a CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunespec.engine import modelio
from tunespec.engine.store import DB_NAME, Store

EXPORT_META = "tunespec-export.json"
EXPORT_FORMAT = 1
LEFT_OUT = {modelio.META, "README.md"}  # the engine's marker; peft's empty model card
DEFAULT_OUTPUT_LIMIT = 512  # the service's fallback for a base model the catalog no longer lists


class ExportError(Exception):
    """An export that cannot be done, as one line naming the fix; `usage` marks bad arguments."""

    def __init__(self, message: str, *, usage: bool = False):
        super().__init__(message)
        self.usage = usage


@dataclass(frozen=True)
class Exported:
    """What `export` wrote."""

    name: str  # tunedModels/ID
    out: Path
    kind: str  # "full" | "merged" | "adapter"
    base_dir: Path | None  # the base an adapter applies to (adapter exports only)


def model_id_of(name: str) -> str:
    """`ID` from `tunedModels/ID` or `ID`."""
    model_id = name.strip().removeprefix("tunedModels/")
    if not model_id or "/" in model_id:
        raise ExportError(f"expected a tuned model name tunedModels/ID, got {name!r}", usage=True)
    return model_id


def find_tuned_model(data_dir: Path, name: str, project: str) -> tuple[dict[str, Any], Path]:
    """The ACTIVE tuned model `name` of `project` in the engine's `data_dir`: (its row, its weights dir)."""
    model_id = model_id_of(name)
    data_dir = Path(data_dir).expanduser()
    if not (data_dir / DB_NAME).is_file():
        raise ExportError(f"{data_dir} holds no engine data (no {DB_NAME}): pass --data-dir, the "
                          "directory `tunespec serve --data-dir` uses (default $TUNESPEC_ENGINE_DIR)")
    store = Store(data_dir)
    try:
        row = store.get_model(model_id)
    finally:
        store.close()
    if row is None:
        raise ExportError(f"tunedModels/{model_id} does not exist in the engine at {data_dir} "
                          "(`tunespec list --target local` shows its tuned models; pass --data-dir "
                          "for another engine)")
    if row["project"] != project:
        raise ExportError(f"tunedModels/{model_id} belongs to project {row['project']!r}, not "
                          f"{project!r}: pass --project {row['project']}")
    if row["state"] != "ACTIVE":
        if row["state"] == "CREATING":
            why = "is still training (CREATING): wait until it is ACTIVE (`tunespec status`), then export"
        else:
            why = (f"is {row['state']} ({row['error_message'] or 'no weights'}): there is nothing to "
                   "export; tune it again")
        raise ExportError(f"tunedModels/{model_id} {why}")
    weights = data_dir / (row["weights_dir"] or "")
    if not row["weights_dir"] or not weights.is_dir():
        raise ExportError(f"tunedModels/{model_id} is ACTIVE but its weights are missing ({weights}): "
                          "the data dir was changed by hand; tune the model again")
    return row, weights


def _check_out(out: Path) -> None:
    if out.is_dir():
        if any(out.iterdir()):
            raise ExportError(f"--out {out} exists and is not empty: name a new directory, or empty "
                              "or remove that one", usage=True)
    elif out.exists() or out.is_symlink():
        raise ExportError(f"--out {out} exists and is not a directory: name a new directory", usage=True)


def export(data_dir: Path, name: str, out: Path, *, project: str, adapter_only: bool = False) -> Exported:
    """Export tuned model `name` (of `project`, in the engine's `data_dir`) into the new dir `out`."""
    out = Path(out).expanduser()
    row, weights = find_tuned_model(data_dir, name, project)
    _check_out(out)
    model_id = row["id"]
    try:
        base_dir, adapter = modelio.resolve(weights)
    except FileNotFoundError as exc:  # an adapter's base dir gone (a `serve --model` dir moved)
        raise ExportError(f"tunedModels/{model_id} cannot be read: {exc}; restore the base model "
                          "directory it was tuned on") from None
    if adapter_only and adapter is None:
        merged = " (a LoRA tune of a tuned model is stored merged)" if row["tuning_method"] != "full" else ""
        raise ExportError(f"tunedModels/{model_id} was fully fine-tuned{merged}: it has no adapter; "
                          "export it without --adapter-only", usage=True)
    kind = "adapter" if adapter_only else ("merged" if adapter is not None else "full")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    try:
        tokenizer = modelio.load_tokenizer(adapter or base_dir)
        fmt = modelio.PromptFormat.of(tokenizer)
        if kind == "full":
            _copy_model_dir(base_dir, tmp)
        elif kind == "adapter":
            _copy_model_dir(adapter, tmp)
            _name_base(tmp, base_dir)
        else:
            _merge(base_dir, adapter, tokenizer, tmp)
        if kind != "adapter":
            _generation_config(tmp, row, fmt)
        info = _export_info(row, kind, tokenizer, fmt, base_dir if kind == "adapter" else None)
        (tmp / EXPORT_META).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
        (tmp / "README.md").write_text(_readme(info))
        _usual_modes(tmp)
        if out.is_dir():
            out.rmdir()  # empty, checked above
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Exported(f"tunedModels/{model_id}", out, kind, base_dir if kind == "adapter" else None)


def _usual_modes(root: Path) -> None:
    """The modes a plain mkdir / open would give (mkdtemp and safetensors make files private)."""
    umask = os.umask(0)
    os.umask(umask)
    root.chmod(0o777 & ~umask)
    for path in root.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _copy_model_dir(source: Path, target: Path) -> None:
    for item in sorted(source.iterdir()):
        if item.name in LEFT_OUT or item.name.startswith("."):
            continue
        if item.is_dir():
            shutil.copytree(item, target / item.name)
        else:
            shutil.copyfile(item, target / item.name)


def _name_base(adapter_dir: Path, base_dir: Path) -> None:
    """Point the adapter's config at its base dir's absolute path (the engine may record it relative)."""
    path = adapter_dir / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = str(Path(base_dir).resolve())
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _merge(base_dir: Path, adapter: Path | None, tokenizer, target: Path) -> None:
    """The base with the adapter merged in, saved as a plain model (fp32, on the CPU, as the engine does)."""
    import torch
    from peft import PeftModel

    model = modelio.load_full(base_dir, torch.device("cpu"))
    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    (target / modelio.META).unlink(missing_ok=True)


def _output_limit(row: dict[str, Any]) -> int:
    from tunespec.engine.basemodels import get_base_model

    base = get_base_model(row["base_model"], row["api_version"])
    return base.output_token_limit if base is not None else DEFAULT_OUTPUT_LIMIT


def _generation_config(model_dir: Path, row: dict[str, Any], fmt: modelio.PromptFormat) -> None:
    """generation_config.json: the engine's stop and pad tokens, the tuned model's sampling defaults."""
    from transformers import GenerationConfig

    path = model_dir / "generation_config.json"
    config = GenerationConfig.from_pretrained(str(model_dir)) if path.is_file() else GenerationConfig()
    config._from_model_config = False
    stop_ids, _ = _stops(fmt)
    config.eos_token_id = stop_ids if len(stop_ids) > 1 else stop_ids[0]
    config.pad_token_id = fmt.pad
    if fmt.bos:
        config.bos_token_id = fmt.bos[0]
    config.max_new_tokens = _output_limit(row)
    temperature = row["temperature"]
    if temperature:
        config.do_sample, config.temperature = True, temperature
        config.top_p, config.top_k = row["top_p"], row["top_k"]
    else:
        config.do_sample = False
    config.validate()
    config.save_pretrained(str(model_dir))


def _export_info(row: dict[str, Any], kind: str, tokenizer, fmt: modelio.PromptFormat,
                 base_dir: Path | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "tuned_model": f"tunedModels/{row['id']}",
        "display_name": row["display_name"],
        "base_model": row["base_model"],
        "tuning_method": row["tuning_method"],
        "export": kind,
        "prompt": prompt_recipe(tokenizer, fmt),
        "sampling": {"temperature": row["temperature"], "top_p": row["top_p"], "top_k": row["top_k"]},
        "max_output_tokens": _output_limit(row),
    }
    if base_dir is not None:
        info["base_model_path"] = str(Path(base_dir).resolve())
    return info


def _stops(fmt: modelio.PromptFormat) -> tuple[list[int], list[int]]:
    """(the ids an answer ends at, the ids of an end-of-turn before its stop token, dropped too)."""
    stop_ids = list(getattr(fmt, "stop_ids", [fmt.eos]))
    return stop_ids, list(getattr(fmt, "end_of_turn", []))[:-1]


def prompt_recipe(tokenizer, fmt: modelio.PromptFormat) -> dict[str, Any]:
    """How the engine turns an input into prompt ids, and where an answer ends, for plain transformers."""
    stop_ids, lead = _stops(fmt)
    end = {
        "stop_token_ids": stop_ids,
        "end_of_turn_lead_ids": lead,
        "answer": "the new tokens up to the first of stop_token_ids (less end_of_turn_lead_ids right "
                  "before it), decoded with skip_special_tokens=True",
    }
    if getattr(fmt, "chat", False):
        return {
            "framing": "chat_template",
            "recipe": "tokenizer.encode(tokenizer.apply_chat_template([{'role': 'user', 'content': INPUT}], "
                      "add_generation_prompt=True, tokenize=False), add_special_tokens=False)",
            **end,
        }
    return {
        "framing": "tokens",
        "recipe": "bos_ids + tokenizer.encode(INPUT, add_special_tokens=False) + separator_ids",
        "bos_ids": list(fmt.bos),
        "separator_ids": list(fmt.sep),
        "separator": tokenizer.decode(fmt.sep),
        **end,
    }


def _readme(info: dict[str, Any]) -> str:
    prompt = info["prompt"]
    library = "peft" if info["export"] == "adapter" else "transformers"
    what = {
        "full": "the fully fine-tuned model",
        "merged": "the LoRA adapter merged into its base model",
        "adapter": "the LoRA adapter alone (peft)",
    }[info["export"]]
    if info["export"] == "adapter":
        load = ("from peft import PeftModel\n"
                "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                "EXPORT_DIR = \".\"  # this directory\n"
                f"base = AutoModelForCausalLM.from_pretrained({info['base_model_path']!r})\n"
                "model = PeftModel.from_pretrained(base, EXPORT_DIR)\n"
                "tokenizer = AutoTokenizer.from_pretrained(EXPORT_DIR)\n")
    else:
        load = ("from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                "EXPORT_DIR = \".\"  # this directory\n"
                "model = AutoModelForCausalLM.from_pretrained(EXPORT_DIR)\n"
                "tokenizer = AutoTokenizer.from_pretrained(EXPORT_DIR)\n")
    if prompt["framing"] == "chat_template":
        frame = ("chat = tokenizer.apply_chat_template([{\"role\": \"user\", \"content\": text}],\n"
                 "                                     add_generation_prompt=True, tokenize=False)\n"
                 "ids = tokenizer.encode(chat, add_special_tokens=False)\n")
    else:
        frame = (f"ids = {prompt['bos_ids']} + tokenizer.encode(text, add_special_tokens=False) + "
                 f"{prompt['separator_ids']}\n")
    if info["export"] == "adapter":
        defaults = ("\n\nThe adapter applies to the engine's own copy of its base model, named in\n"
                    "`adapter_config.json`; take that directory along if you move the adapter elsewhere.")
    else:
        defaults = ("\n`generation_config.json` holds the engine's stop tokens and the tuned model's "
                    "sampling defaults.")
    lead = prompt["end_of_turn_lead_ids"]
    lead_note = f" (less the end-of-turn ids {lead} right before it)" if lead else ""
    cut_lead = (f"new = new[: -{len(lead)}] if ends and new[-{len(lead)}:] == {lead} else new\n"
                if lead else "")
    return f"""---
library_name: {library}
tags:
- tunespec
---

# {info['display_name'] or info['tuned_model']}

{info['tuned_model']} from a tunespec local engine, tuned from `{info['base_model']}`
(tuning method: {info['tuning_method']}); this directory holds {what}.
`{EXPORT_META}` says the same for programs.

## Prompts

The engine frames every input as below ({prompt['framing']}); build the same ids to get its answers.
The answer is the new tokens up to the first stop token {prompt['stop_token_ids']}{lead_note},
decoded with `skip_special_tokens=True`. Greedy decoding (`do_sample=False`) gives the engine's
answers at temperature 0 (the engine on a CPU computes in fp32, as this model loads).{defaults}

```python
import torch
{load}
text = "an input like the training examples"
{frame}out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=64)
new = out[0, len(ids):].tolist()
ends = [i for i, t in enumerate(new) if t in {prompt['stop_token_ids']}]
new = new[: ends[0]] if ends else new
{cut_lead}print(tokenizer.decode(new, skip_special_tokens=True))
```
"""
