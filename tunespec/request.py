"""JobSpec + examples -> the exact CreateTunedModel request body, and the step count it implies.

The body uses the lowerCamelCase JSON of Google's wire format (the service also accepts snake_case);
fields left out of the spec are left out of the body, so the service applies its own defaults.
`render` prints this body and `apply` sends it, for the same target.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunespec.datasets import Example
from tunespec.spec import JobSpec
from tunespec.tuning_api import total_steps

DEFAULT_EPOCHS = {"v1beta3": 10, "v1beta": 5}  # the services' documented defaults
GOOGLE_TARGET = "google"  # Google's service knows no engine extension fields such as tuningMethod


def spec_epochs(spec: JobSpec) -> int:
    """The epochs `spec` trains for: its epoch_count, else the service's default."""
    return spec.hyperparameters.epoch_count or DEFAULT_EPOCHS[spec.dialect]


def spec_steps(spec: JobSpec, n: int) -> int | None:
    """Predicted steps for `spec` with `n` examples; None when the batch size is left to the service."""
    batch_size = spec.hyperparameters.batch_size
    if batch_size is None:
        return None
    return total_steps(n, spec_epochs(spec), batch_size)


def render_request(spec: JobSpec, examples: Sequence[Example], *, target: str = "local") -> dict[str, Any]:
    """The CreateTunedModel body (a TunedModel) for `spec` on `target`, with `examples` as training data.

    `tuningMethod` is the local engine's extension field: it goes to every target but Google's.
    On `vertex` it is a Vertex AI TuningJob instead (`tunespec.request_vertex`).
    """
    if target == "vertex":
        from tunespec.request_vertex import render_tuning_job

        return render_tuning_job(spec, examples)
    body: dict[str, Any] = {}
    if spec.display_name is not None:
        body["displayName"] = spec.display_name
    if spec.description is not None:
        body["description"] = spec.description
    if spec.source_model:
        body["tunedModelSource"] = {"tunedModel": spec.source_model}
    else:
        body["baseModel"] = spec.base_model
    for key, value in (("temperature", spec.temperature), ("topP", spec.top_p), ("topK", spec.top_k)):
        if value is not None:
            body[key] = value
    hp = spec.hyperparameters
    hyperparameters = {key: value for key, value in (
        ("epochCount", hp.epoch_count), ("batchSize", hp.batch_size), ("learningRate", hp.learning_rate),
        ("learningRateMultiplier", hp.learning_rate_multiplier)) if value is not None}
    task: dict[str, Any] = {}
    if hyperparameters:
        task["hyperparameters"] = hyperparameters
    task["trainingData"] = {"examples": {"examples": [
        {"textInput": e.text_input, "output": e.output} for e in examples]}}
    body["tuningTask"] = task
    if spec.tuning_method and target != GOOGLE_TARGET:
        body["tuningMethod"] = spec.tuning_method
    return body
