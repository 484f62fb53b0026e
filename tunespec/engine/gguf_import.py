"""GGUF model files as base models: checked from their header, converted once to a Hugging Face dir.

`read_header(path)` parses a GGUF file's header only (no weights, no torch, milliseconds): its
architecture, tensor sizes and parameter count, and whether the file holds all the bytes its tensors
need. `check(path)` adds what can be known before loading anything: an architecture transformers
loads as a causal LM, and enough memory for the fp32 weights (`needed_memory` vs
`available_memory`, which TUNESPEC_MEMORY_LIMIT caps). `materialize(path, target)` converts the file
on first use: transformers dequantises it to fp32 (`from_pretrained(dir, gguf_file=...)`), the
weights are copied into a model built from its config (a GGUF-loaded model refuses
`save_pretrained`) and saved as safetensors with the tokenizer and its chat template. The
conversion runs in a child process (`python -m tunespec.engine.gguf_import SRC DST`), so its memory
peak and any crash stay out of the engine's processes, into a temp dir renamed into place under a
file lock: concurrent processes convert once, and a failure leaves nothing half-converted. The
target's tunespec.json records the source file (path, size, a hash of its ends), so a different
file is converted again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger("tunespec.engine")

MEMORY_LIMIT_ENV = "TUNESPEC_MEMORY_LIMIT"  # bytes (suffix K, M, G or T allowed): caps available_memory()
CONVERTER = 1  # bump to convert existing dirs again
FP32 = 4
MEMORY_FACTOR = 2  # converting holds the fp32 weights and transformers' loading buffers (measured ~1.7x)
MEMORY_OVERHEAD = 512 * 2**20  # Python, torch and the tokenizer
NOT_CAUSAL_LM = {"general", "tokenizer", "t5", "umt5", "t5encoder"}  # in transformers' GGUF list
_SAMPLE = 2**20  # bytes hashed at each end of the file
_MAX_COUNT = 10**8  # above this a header count is corrupt, not big


class ModelError(Exception):
    """A base model that cannot be used as asked; the message is one line that names the fix."""

    status = "FAILED_PRECONDITION"  # the API's answer (400)


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF file's header says."""

    path: Path
    size: int
    architecture: str
    model_name: str
    parameters: int
    context_length: int | None
    data_end: int  # the byte the last tensor ends at


# --- reading the header -----------------------------------------------------------------------------

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
            12: "<d"}
_STRING, _ARRAY = 8, 9


class _Truncated(Exception):
    pass


class _Corrupt(Exception):
    pass


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise _Truncated
    return data


def _unpack(f: BinaryIO, fmt: str) -> Any:
    return struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0]


def _string(f: BinaryIO) -> str:
    n = _unpack(f, "<Q")
    if n > _MAX_COUNT:
        raise _Corrupt(f"a string of {n} bytes")
    return _read(f, n).decode("utf-8", errors="replace")


def _skip(f: BinaryIO, kind: int) -> Any:
    """Read one value of GGUF type `kind`; arrays are skipped (None)."""
    if kind in _SCALARS:
        return _unpack(f, _SCALARS[kind])
    if kind == _STRING:
        return _string(f)
    if kind != _ARRAY:
        raise _Corrupt(f"value type {kind}")
    item, count = _unpack(f, "<I"), _unpack(f, "<Q")
    if count > _MAX_COUNT:
        raise _Corrupt(f"an array of {count} items")
    if item in _SCALARS:
        f.seek(count * struct.calcsize(_SCALARS[item]), os.SEEK_CUR)
    else:
        for _ in range(count):
            _skip(f, item)
    return None


def read_header(path: Path) -> GGUFInfo:
    """The header of GGUF file `path`; ModelError when it is not a whole, readable GGUF file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            return _parse(f, path, size)
    except OSError as exc:
        raise ModelError(f"cannot read GGUF file {path}: {exc.strerror or exc}") from None
    except _Truncated:
        raise ModelError(f"GGUF file {path} is truncated: its header ends early ({size} bytes); "
                         "download or copy it again") from None
    except (_Corrupt, UnicodeError, struct.error, OverflowError, ValueError) as exc:
        raise ModelError(f"GGUF file {path} is corrupt ({exc}); download or copy it again") from None


def _parse(f: BinaryIO, path: Path, size: int) -> GGUFInfo:
    magic = f.read(4)
    if magic != b"GGUF":
        raise ModelError(f"{path} is not a GGUF file (it does not start with the GGUF magic); "
                         "pass a .gguf model file or a Hugging Face model directory")
    version = _unpack(f, "<I")
    if version not in (2, 3):
        raise ModelError(f"GGUF file {path} has format version {version}; this engine reads versions 2 "
                         "and 3 (a big-endian or very old file?): convert it again with llama.cpp")
    tensor_count, kv_count = _unpack(f, "<Q"), _unpack(f, "<Q")
    if tensor_count > _MAX_COUNT or kv_count > _MAX_COUNT:
        raise _Corrupt(f"{tensor_count} tensors, {kv_count} metadata keys")
    fields: dict[str, Any] = {}
    for _ in range(kv_count):
        key = _string(f)
        fields[key] = _skip(f, _unpack(f, "<I"))
    sizes = _type_sizes()
    parameters, ends = 0, [0]
    for _ in range(tensor_count):
        name = _string(f)
        dims = _unpack(f, "<I")
        if dims > 8:
            raise _Corrupt(f"tensor {name} with {dims} dimensions")
        elements = 1
        for _ in range(dims):
            elements *= _unpack(f, "<Q")
        kind, offset = _unpack(f, "<I"), _unpack(f, "<Q")
        if kind not in sizes:
            raise ModelError(f"GGUF file {path}: tensor {name} has tensor type {kind}, unknown to the "
                             "installed gguf package; upgrade it: pip install -U gguf")
        block, type_size = sizes[kind]
        parameters += elements
        ends.append(offset + elements // block * type_size)
    align = fields.get("general.alignment") or 32
    if not isinstance(align, int) or align <= 0:
        raise _Corrupt(f"alignment {align!r}")
    data_start = -(-f.tell() // align) * align
    data_end = data_start + max(ends)
    if size < data_end:
        raise ModelError(f"GGUF file {path} is truncated: it has {size} bytes but its tensors need "
                         f"{data_end}; download or copy it again")
    arch = fields.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise _Corrupt("no general.architecture")
    context = fields.get(f"{arch}.context_length")
    return GGUFInfo(path=path, size=size, architecture=arch, model_name=str(fields.get("general.name") or ""),
                    parameters=parameters, context_length=context if isinstance(context, int) else None,
                    data_end=data_end)


def _type_sizes() -> dict[int, tuple[int, int]]:
    try:
        from gguf import GGML_QUANT_SIZES
    except ImportError:
        raise ModelError("reading GGUF files needs the gguf package: pip install gguf") from None
    return {int(kind): value for kind, value in GGML_QUANT_SIZES.items()}


# --- what can be checked before loading ---------------------------------------------------------------

def _norm(arch: str) -> str:
    return arch.lower().replace("-", "").replace("_", "")


def supported_architectures() -> set[str] | None:
    """GGUF architectures the installed transformers loads as causal LMs (None: cannot tell)."""
    from tunespec.engine import runtime

    runtime.configure()  # before transformers is imported: offline, quiet
    with runtime.import_lock:
        try:  # the mapping GGUF_SUPPORTED_ARCHITECTURES is made of, without importing torch
            from transformers.integrations.ggml import GGUF_CONFIG_MAPPING as supported
        except Exception:
            try:
                from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES as supported
            except Exception:
                return None
    return {a for a in supported if a != "general" and _norm(a) not in {_norm(x) for x in NOT_CAUSAL_LM}}


def check_architecture(info: GGUFInfo, supported: set[str] | None = None) -> None:
    supported = supported_architectures() if supported is None else supported
    if supported is None:
        return
    if _norm(info.architecture) not in {_norm(a) for a in supported}:
        import transformers

        raise ModelError(
            f"GGUF file {info.path} holds a {info.architecture!r} model, an architecture transformers "
            f"{transformers.__version__} cannot load as a causal language model from GGUF (it loads "
            f"{', '.join(sorted(supported))}); use a model of one of those, or a Hugging Face model "
            "directory")


def parse_bytes(text: str) -> int:
    """'8G', '512M', '1000000' -> bytes."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = 1
    if text and text[-1] in "KMGT":
        scale = 1024 ** ("KMGT".index(text[-1]) + 1)
        text = text[:-1]
    return int(float(text) * scale)


def available_memory() -> int | None:
    """Bytes this process may still allocate: MemAvailable, the cgroup's room, TUNESPEC_MEMORY_LIMIT."""
    found: list[int] = []
    setting = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if setting:
        try:
            found.append(parse_bytes(setting))
        except ValueError:
            log.warning("ignoring %s=%r: not a number of bytes", MEMORY_LIMIT_ENV, setting)
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            found.append(max(0, int(limit) - used))
    return min(found) if found else None


def needed_memory(parameters: int) -> int:
    """Bytes converting (and then tuning with LoRA) a model of `parameters` needs: fp32 weights and more."""
    return parameters * FP32 * MEMORY_FACTOR + MEMORY_OVERHEAD


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def check_memory(info: GGUFInfo, available: int | None = None) -> None:
    available = available_memory() if available is None else available
    need = needed_memory(info.parameters)
    if available is not None and need > available:
        raise ModelError(
            f"GGUF file {info.path} holds {info.parameters / 1e9:.2f}B parameters: in fp32 it needs about "
            f"{_gb(need)} of memory, but {_gb(available)} are available; use a smaller model, or free memory")


_checked: dict[tuple[str, int, int], GGUFInfo] = {}  # header() cache
_checked_lock = threading.Lock()


def header(path: Path) -> GGUFInfo:
    """read_header(path), cached while the file's size and mtime stay the same."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise ModelError(f"GGUF file {path}: {exc.strerror or exc}") from None
    if not path.is_file():
        raise ModelError(f"{path} is not a file; pass a .gguf model file or a Hugging Face model directory")
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _checked_lock:
        info = _checked.get(key)
    if info is None:
        info = read_header(path)
        with _checked_lock:
            _checked[key] = info
    return info


def check(path: Path, *, available: int | None = None) -> GGUFInfo:
    """The header of `path` after checking it is whole, loadable and fits in memory; else ModelError."""
    info = header(path)
    check_architecture(info)
    check_memory(info, available)
    return info


# --- conversion -------------------------------------------------------------------------------------

def source_of(path: Path) -> dict[str, Any]:
    """The identity of a GGUF file as tunespec.json records it: path, size, sha256 of its two ends."""
    path = Path(path).resolve()
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(_SAMPLE))
        if size > _SAMPLE:
            f.seek(max(_SAMPLE, size - _SAMPLE))
            digest.update(f.read(_SAMPLE))
    return {"gguf": str(path), "size": size, "ends_sha256": digest.hexdigest(), "converter": CONVERTER}


def is_converted(target: Path, source: dict[str, Any]) -> bool:
    from tunespec.engine.modelio import read_meta

    try:
        return read_meta(target).get("source") == source and (target / "config.json").is_file()
    except (OSError, ValueError):
        return False


_thread_lock = threading.Lock()


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """One converter per target at a time: threads of a process, and processes (flock; POSIX)."""
    with _thread_lock, open(lock_path, "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: threads only
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def materialize(path: Path, target: Path, *, available: int | None = None) -> Path:
    """The Hugging Face dir `target` converted from GGUF file `path` (converting it on first use)."""
    path = Path(path).expanduser().resolve()
    target = Path(target)
    try:
        source = source_of(path)
    except OSError as exc:
        raise ModelError(f"GGUF file {path}: {exc.strerror or exc}") from None
    if is_converted(target, source):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f".{target.name}.lock"):
        if is_converted(target, source):  # another process converted it while we waited
            return target
        for stale in target.parent.glob(f".tmp-{target.name}-*"):  # left by a killed converter
            shutil.rmtree(stale, ignore_errors=True)
        info = check(path, available=available)
        tmp = target.parent / f".tmp-{target.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            began = time.monotonic()
            _convert_in_child(path, tmp)
            from tunespec.engine.modelio import atomic_dir_swap, write_meta

            write_meta(tmp, {"kind": "full", "tokenizer": "auto", "source": source,
                             "architecture": info.architecture, "parameters": info.parameters})
            atomic_dir_swap(tmp, target)
            log.info("converted %s to %s in %.1f s", path, target, time.monotonic() - began)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_in_child(path: Path, out_dir: Path) -> None:
    cmd = [sys.executable, "-m", "tunespec.engine.gguf_import", str(path), str(out_dir)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        out, err = proc.communicate()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode == 0:
        return
    with contextlib.suppress(ValueError, IndexError, KeyError, TypeError):
        raise ModelError(json.loads(out.strip().splitlines()[-1])["error"])
    if proc.returncode < 0:
        raise ModelError(f"converting GGUF file {path} was killed (signal {-proc.returncode}; out of "
                         "memory?); free memory or use a smaller model")
    last = ([line.strip() for line in err.splitlines() if line.strip()] or ["no output"])[-1]
    raise ModelError(f"converting GGUF file {path} failed: {last[:300]}")


def convert(path: Path, out_dir: Path) -> None:
    """Dequantise GGUF file `path` with transformers and save it to `out_dir` as a fp32 HF dir."""
    from tunespec.engine import runtime

    runtime.configure()  # before transformers is imported: offline, quiet
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where, name = str(path.parent), path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
    except MemoryError:
        raise
    except Exception as exc:  # whatever the file holds that transformers cannot turn into a model
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ModelError(f"transformers {transformers.__version__} cannot load GGUF file {path} ({reason}); "
                         "use another GGUF file of a supported architecture, or a Hugging Face model "
                         "directory") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are plain fp32 now
    with torch.device("meta"):  # no second random copy: the loaded tensors are assigned below
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=False, assign=True)
    model.tie_weights()
    missing = [n for n, p in model.named_parameters() if p.is_meta]
    if missing:
        raise ModelError(f"GGUF file {path} lacks weights transformers expects ({', '.join(missing[:3])}); "
                         "convert the model to GGUF again with llama.cpp")
    model.generation_config = loaded.generation_config
    del loaded
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def main(argv: list[str] | None = None) -> None:
    """`python -m tunespec.engine.gguf_import SRC.gguf DST_DIR`: exit 0, or a JSON error line, exit 3."""
    src, dst = argv if argv is not None else sys.argv[1:]
    try:
        convert(Path(src), Path(dst))
    except ModelError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        sys.exit(3)
    except MemoryError:
        print(json.dumps({"error": f"converting GGUF file {src} ran out of memory; free memory or use a "
                                   "smaller model"}), flush=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
