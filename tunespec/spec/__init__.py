"""YAML job spec -> validated, typed JobSpec, with file:line errors and a did-you-mean.

The path of one spec file through this package:

    located_yaml  YAML -> plain data + the file:line:column of every key and value (interpolation: ${VAR})
    extends       `extends:` bases deep-merged under it, each value keeping the location it came from
    schema_check  the JSON Schema (schemas/tuning-job.schema.json): unknown keys, types, ranges
    checks        what the schema cannot say: exclusive settings, files that must exist, regexes
    build         the typed JobSpec (model), reading a prompts_file (prompts_file)
    load          load_spec / load_specs: all of the above, every problem collected before raising
    paths         files, directories and globs -> spec files

The dataclasses in `model` are the contract the rest of tunespec relies on (plan, apply, evaluate,
report). Add fields if needed; do not rename or remove them.
"""

from tunespec.errors import DatasetError
from tunespec.spec.load import load_spec, load_specs
from tunespec.spec.locations import KeyPath, Loc, format_key_path
from tunespec.spec.model import (
    ASSERTION_KEYS,
    ASSERTION_KINDS,
    DEFAULT_BASE_MODEL,
    ID_SUFFIX_CHARS,
    MAX_TUNED_MODEL_ID,
    Assertion,
    DatasetSpec,
    EvalPrompt,
    Evaluation,
    Hyperparameters,
    JobSpec,
    ReportSpec,
)
from tunespec.spec.paths import SPEC_SUFFIXES, expand_spec_paths
from tunespec.spec.schema_check import schema

__all__ = [
    "ASSERTION_KEYS", "ASSERTION_KINDS", "DEFAULT_BASE_MODEL", "ID_SUFFIX_CHARS", "MAX_TUNED_MODEL_ID",
    "SPEC_SUFFIXES", "Assertion", "DatasetError", "DatasetSpec", "EvalPrompt", "Evaluation",
    "Hyperparameters", "JobSpec", "KeyPath", "Loc", "ReportSpec", "expand_spec_paths", "format_key_path",
    "load_spec", "load_specs", "schema",
]
