"""Process setup shared by the engine's PyTorch code: offline Hugging Face, device choice.

`configure()` must run before transformers / huggingface_hub are imported. It runs once per
process: modelio, the module every engine path to Hugging Face goes through, calls it when it is
imported, and later calls return at once. The network stays off unless the user opts in with
TUNESPEC_ALLOW_DOWNLOAD=1.
"""

from __future__ import annotations

import os
import threading
import warnings

ALLOW_DOWNLOAD_ENV = "TUNESPEC_ALLOW_DOWNLOAD"
_configured = False
_lock = threading.Lock()
# Held while a thread imports transformers' modules: Hugging Face's lazy imports race between threads.
import_lock = threading.Lock()


def downloads_allowed() -> bool:
    """Whether the user opted in to fetching models from the Hugging Face Hub."""
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes")


def configure() -> None:
    """Keep transformers offline (unless opted in), quiet and free of telemetry; once per process."""
    global _configured
    with _lock:
        if _configured:
            return
        offline = "0" if downloads_allowed() else "1"  # the explicit opt-in wins over an inherited setting
        os.environ["HF_HUB_OFFLINE"] = offline
        os.environ["TRANSFORMERS_OFFLINE"] = offline
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        # peft still asks for a name transformers 5 deprecates: not the user's to act on
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        _configured = True


def device():
    """CUDA when present, CPU otherwise."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
