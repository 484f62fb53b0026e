"""The catalog of base models the engine serves, and their directories on disk.

Cheap to import: listing the catalog reads no weights and imports no torch. `materialize` turns a
catalog name into a Hugging Face model directory (building the built-in model on first use).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tunespec.engine.modelio import META, POSITION_KEYS, check_model_dir
from tunespec.engine.runtime import downloads_allowed

BUILTIN = "models/tunespec-byte-tiny"
BUILTIN_DIR = "tunespec-byte-tiny-001"
BUILTIN_INPUT_LIMIT = 1536
BUILTIN_OUTPUT_LIMIT = 512

PALM_METHODS = ("generateText", "countTextTokens", "createTunedTextModel")
GEMINI_METHODS = ("generateContent", "countTokens", "createTunedModel")
_NO_EXTRA: Mapping[str, Path] = {}
_build_lock = threading.Lock()  # threads of one process; processes race on the rename

_TINY = ("a tiny (0.56M-parameter) Llama-style transformer with a byte-level tokenizer, randomly "
         "initialised from a fixed seed and built on this machine without any download. It knows no "
         "language: it only learns what it is tuned on, so tuned models reproduce their training "
         "examples but do not generalise.")


@dataclass(frozen=True)
class BaseModel:
    """One entry of `GET /models` (Google's Model resource, snake_case)."""

    name: str
    display_name: str
    description: str
    version: str
    input_token_limit: int
    output_token_limit: int
    temperature: float
    top_p: float
    top_k: int
    supported_generation_methods: tuple[str, ...]


def _builtin(api_version: str) -> BaseModel:
    return BaseModel(
        name=BUILTIN, display_name="tunespec byte tiny", version="001",
        description=f"The local engine's built-in base model: {_TINY}",
        input_token_limit=BUILTIN_INPUT_LIMIT, output_token_limit=BUILTIN_OUTPUT_LIMIT,
        temperature=0.7, top_p=0.95, top_k=40,
        supported_generation_methods=PALM_METHODS if api_version == "v1beta3" else GEMINI_METHODS,
    )


def _alias(name: str, display: str, temperature: float, top_p: float, top_k: int,
           methods: tuple[str, ...]) -> BaseModel:
    return BaseModel(
        name=name, display_name=display, version="001",
        description=(f"Served locally by the built-in model {BUILTIN} so that code written for "
                     f"Google's {display} runs unchanged; this is not Google's model. It is {_TINY}"),
        input_token_limit=BUILTIN_INPUT_LIMIT, output_token_limit=BUILTIN_OUTPUT_LIMIT,
        temperature=temperature, top_p=top_p, top_k=top_k, supported_generation_methods=methods,
    )


def _aliases(api_version: str) -> list[BaseModel]:
    if api_version == "v1beta3":
        return [_alias("models/text-bison-001", "Text Bison", 0.7, 0.95, 40, PALM_METHODS)]
    return [
        _alias("models/gemini-1.0-pro-001", "Gemini 1.0 Pro", 0.9, 1.0, 1, GEMINI_METHODS),
        _alias("models/gemini-1.5-flash-001-tuning", "Gemini 1.5 Flash 001 Tuning", 1.0, 0.95, 64,
               GEMINI_METHODS),
    ]


def model_name(name: str) -> str:
    """`name` with the `models/` prefix (given with or without it)."""
    return name if name.startswith("models/") else f"models/{name}"


def _positions(model_dir: Path) -> int:
    """The context length recorded in a Hugging Face config (read as JSON, no imports)."""
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return 2048
    for key in POSITION_KEYS:
        if isinstance(config.get(key), int) and config[key] > 0:
            return config[key]
    return 2048


def _extra_entry(name: str, path: Path, api_version: str) -> BaseModel:
    positions = _positions(Path(path))
    return BaseModel(
        name=model_name(name), display_name=name.removeprefix("models/"), version="001",
        description=(f"Hugging Face causal language model from {path}, registered with --model; "
                     "tuned with LoRA unless the spec asks for full fine-tuning of a small model."),
        input_token_limit=positions, output_token_limit=min(2048, max(1, positions // 4)),
        temperature=0.7, top_p=0.95, top_k=40,
        supported_generation_methods=PALM_METHODS if api_version == "v1beta3" else GEMINI_METHODS,
    )


def list_base_models(api_version: str, extra: Mapping[str, Path] = _NO_EXTRA) -> list[BaseModel]:
    """The models `GET /{api_version}/models` lists: built-in, its aliases, registered local models."""
    models = [_builtin(api_version), *_aliases(api_version)]
    models += [_extra_entry(name, path, api_version) for name, path in extra.items()]
    return models


def _hub_id(name: str) -> str | None:
    """`org/repo` (optionally as `models/org/repo`) when downloads are allowed, else None."""
    bare = name.removeprefix("models/")
    if downloads_allowed() and bare.count("/") == 1 and all(bare.split("/")):
        return bare
    return None


def get_base_model(name: str, api_version: str, extra: Mapping[str, Path] = _NO_EXTRA) -> BaseModel | None:
    """The catalog entry for `name` (with or without the `models/` prefix), or None."""
    wanted = model_name(name)
    for model in (_builtin(api_version), *_aliases(api_version)):
        if model.name == wanted:
            return model
    path = _extra_path(name, extra)  # reads only this model's config, not every registered one's
    if path is not None:
        return _extra_entry(name, path, api_version)
    hub = _hub_id(name)
    if hub is not None:
        entry = _extra_entry(hub, Path(hub), api_version)
        return BaseModel(**{**entry.__dict__, "description": f"Hugging Face Hub model {hub} (downloaded "
                            "on first use because TUNESPEC_ALLOW_DOWNLOAD=1), tuned with LoRA."})
    return None


def _extra_path(name: str, extra: Mapping[str, Path]) -> Path | None:
    wanted = model_name(name)
    for key, path in extra.items():
        if model_name(key) == wanted:
            return Path(path)
    return None


def materialize(name: str, data_dir: Path, extra: Mapping[str, Path] = _NO_EXTRA) -> Path:
    """The Hugging Face model dir behind catalog name `name`; builds the built-in one on first use.

    Safe when several processes race: each builds in its own temp dir and the first rename wins.
    """
    wanted = model_name(name)
    path = _extra_path(name, extra)
    if path is not None:
        return check_model_dir(path)
    if wanted == BUILTIN or any(m.name == wanted for m in _aliases("v1beta3") + _aliases("v1beta")):
        return _materialize_builtin(Path(data_dir))
    hub = _hub_id(name)
    if hub is not None:
        return _download(hub, Path(data_dir))
    raise KeyError(f"unknown base model {name!r}; known: "
                   + ", ".join(m.name for m in list_base_models("v1beta3", extra) + _aliases("v1beta")))


def _materialize_builtin(data_dir: Path) -> Path:
    final = data_dir / "models" / BUILTIN_DIR
    if (final / META).is_file():
        return final
    with _build_lock:
        if not (final / META).is_file():
            _build_builtin(final)
    return final


def _build_builtin(final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{BUILTIN_DIR}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        from tunespec.engine import builtin

        builtin.write(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / META).is_file():  # a half-made dir from a crash: replace it
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _download(hub_id: str, data_dir: Path) -> Path:
    from huggingface_hub import snapshot_download

    target = data_dir / "hub" / hub_id.replace("/", "--")
    snapshot_download(repo_id=hub_id, local_dir=str(target),
                      allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"])
    return target
