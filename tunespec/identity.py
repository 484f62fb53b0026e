"""A job's identity: the tuned model id `<name>-<fingerprint>` that names its trained result.

The 10-character fingerprint (lowercase base32 of a SHA-256) covers everything that changes the
result: base or source model, tuning method, hyperparameters, the examples, the API dialect and the
validation split. A rerun of an unchanged spec therefore finds its model on the service instead of
tuning again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from tunespec.spec import DEFAULT_BASE_MODEL, ID_SUFFIX_CHARS, JobSpec
from tunespec.tuning_api import TUNED_MODEL_ID_MAX_LEN

FINGERPRINT_LEN = ID_SUFFIX_CHARS - 1  # the spec's name leaves room for "-" + the fingerprint


def base_model_of(spec: JobSpec) -> str | None:
    """The base model the job tunes; a JobSpec built in code may leave it to the default."""
    return spec.base_model or (None if spec.source_model else DEFAULT_BASE_MODEL)


def requested_hyperparameters(spec: JobSpec) -> dict[str, Any]:
    """The hyperparameters the spec sets (snake_case), without those left to the service."""
    return {k: v for k, v in asdict(spec.hyperparameters).items() if v is not None}


def fingerprint(spec: JobSpec, examples: Iterable[Any], dialect: str) -> str:
    """10 lowercase base32 characters identifying the trained result of `spec` on `examples`."""
    doc = {
        "v": 1,
        "dialect": dialect,
        "base_model": base_model_of(spec),
        "source_model": spec.source_model,
        "tuning_method": spec.tuning_method,
        "hyperparameters": requested_hyperparameters(spec),
        "examples": [[e.text_input, e.output] for e in examples],
    }
    split = spec.dataset.validation_split
    if split is not None:  # only when set, so that the ids of specs without one stay as they were
        doc["validation_split"] = asdict(split)
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).digest()
    return base64.b32encode(digest).decode().lower()[:FINGERPRINT_LEN]


def job_slug(name: str) -> str:
    """The job name as the leading part of a tuned model id (`[a-z][a-z0-9-]*`, at most 29 chars)."""
    slug = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", name.lower())).strip("-")
    if not slug or not slug[0].isalpha():
        slug = f"job-{slug}".rstrip("-")
    return slug[: TUNED_MODEL_ID_MAX_LEN - ID_SUFFIX_CHARS].rstrip("-")


def tuned_model_id(name: str, fp: str) -> str:
    return f"{job_slug(name)}-{fp}"


def is_model_of_job(model_name: str, name: str) -> bool:
    """Whether `tunedModels/...` is one of this job's models (any fingerprint)."""
    pattern = rf"tunedModels/{re.escape(job_slug(name))}-[a-z2-7]{{{FINGERPRINT_LEN}}}"
    return re.fullmatch(pattern, model_name) is not None
