"""Resources as Google's service writes them: Model, TunedModel, Operation, generation responses.

Each function turns a store row (or a base model, or generated text) into the response message
with lowerCamelCase keys; wire.compact() then drops the defaults and encodes the enums.
"""

from __future__ import annotations

from typing import Any

from tunespec.engine.wire import Enum, Present, rfc3339

VERSIONS = ("v1beta3", "v1beta")  # the API versions with their own resource types
STATE = {"STATE_UNSPECIFIED": 0, "CREATING": 1, "ACTIVE": 2, "FAILED": 3}
PALM_HARM = (
    "HARM_CATEGORY_DEROGATORY",
    "HARM_CATEGORY_TOXICITY",
    "HARM_CATEGORY_VIOLENCE",
    "HARM_CATEGORY_SEXUAL",
    "HARM_CATEGORY_MEDICAL",
    "HARM_CATEGORY_DANGEROUS",
)
GEMINI_HARM = (
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
)
HARM_NUMBER = {
    **{n: i + 1 for i, n in enumerate(PALM_HARM)},
    "HARM_CATEGORY_HARASSMENT": 7,
    "HARM_CATEGORY_HATE_SPEECH": 8,
    "HARM_CATEGORY_SEXUALLY_EXPLICIT": 9,
    "HARM_CATEGORY_DANGEROUS_CONTENT": 10,
}


def base_model(m: Any) -> dict[str, Any]:
    """A Model resource from a basemodels.BaseModel."""
    return {
        "name": m.name,
        "baseModelId": m.name.removeprefix("models/"),
        "version": m.version,
        "displayName": m.display_name,
        "description": m.description,
        "inputTokenLimit": m.input_token_limit,
        "outputTokenLimit": m.output_token_limit,
        "supportedGenerationMethods": list(m.supported_generation_methods),
        "temperature": m.temperature,
        "topP": m.top_p,
        "topK": m.top_k,
    }


def snapshot(s: dict[str, Any]) -> dict[str, Any]:
    """A TuningSnapshot from a snapshot row."""
    return {
        "step": s["step"],
        "epoch": s["epoch"] or None,
        "meanLoss": s["mean_loss"],
        "computeTime": rfc3339(s["compute_ns"], 9),
    }


def tuned_model(row: dict[str, Any], snaps: list[dict[str, Any]], version: str) -> dict[str, Any]:
    """A TunedModel resource of API `version` from a model row and its snapshots."""
    hp: dict[str, Any] = {"epochCount": row["epoch_count"], "batchSize": row["batch_size"]}
    if version == "v1beta" and row["learning_rate_multiplier"] is not None:
        hp["learningRateMultiplier"] = row["learning_rate_multiplier"]
    else:
        hp["learningRate"] = row["effective_learning_rate"]
    model: dict[str, Any] = {"name": f"tunedModels/{row['id']}"}
    if row["source_tuned_model"]:
        model["tunedModelSource"] = {
            "tunedModel": row["source_tuned_model"],
            "baseModel": row["base_model"],
        }
    else:
        model["baseModel"] = row["base_model"]
    model.update(
        {
            "displayName": row["display_name"],
            "description": row["description"],
            "state": Enum(row["state"], STATE[row["state"]]),
            "createTime": rfc3339(row["create_ns"]),
            "updateTime": rfc3339(row["update_ns"]),
            "tuningTask": {
                "startTime": rfc3339(row["start_ns"], 9),
                "completeTime": rfc3339(row["complete_ns"]),
                "snapshots": [snapshot(s) for s in snaps],
                "hyperparameters": hp,
            },
            "temperature": row["temperature"],
            "topP": row["top_p"],
            "topK": row["top_k"],
        }
    )
    return model


# A running job's, in order; WAITING_FOR_RESOURCES: claimed by an executor that waits for capacity
# (a Ray cluster without a free GPU), what it waits for in the metadata's `stageDetail`.
STAGES = ("QUEUED", "WAITING_FOR_RESOURCES", "LOADING_BASE_MODEL", "TRAINING", "SAVING")


def stage(row: dict[str, Any], done_steps: int) -> str | None:
    """What a CREATING job is doing (None once it has ended): waiting for a worker, loading its base
    model (a claim with no step since it began or resumed), training, or saving the tuned model.
    An extra field of the operation's metadata, for the callers that ask (see operation)."""
    if row["state"] != "CREATING":
        return None
    if not row.get("claimed_by"):
        return "QUEUED"
    if row.get("waiting_for"):
        return "WAITING_FOR_RESOURCES"
    if row.get("resume_step") is None or done_steps <= row["resume_step"]:  # none since the claim
        return "LOADING_BASE_MODEL"
    return "SAVING" if row["total_steps"] and done_steps >= row["total_steps"] else "TRAINING"


STAGE_HEADER = "X-Tunespec-Stages"  # a request with it gets the metadata's `stage` (tunespec's client's)


def operation(row: dict[str, Any], snaps: list[dict[str, Any]], version: str,
              stages: bool = False) -> dict[str, Any]:
    """The CreateTunedModel Operation of a model row; under /v1 its types are the model's version.
    `stages`: add the running job's `stage` (and `stageDetail`) to the metadata, beyond Google's
    fields; GAPIC clients refuse unknown fields there, so only callers that ask get them."""
    tv = version if version in VERSIONS else row["api_version"]
    done_steps = len(snaps) if row["state"] != "ACTIVE" else row["total_steps"]
    meta: dict[str, Any] = {
        "@type": f"type.googleapis.com/google.ai.generativelanguage.{tv}.CreateTunedModelMetadata",
        "totalSteps": row["total_steps"],
        "completedSteps": done_steps or None,
        "completedPercent": (
            round(100.0 * done_steps / row["total_steps"], 4) if done_steps and row["total_steps"] else None
        ),
        "snapshots": [snapshot(s) for s in snaps],
        "tunedModel": f"tunedModels/{row['id']}",
    }
    if stages:
        meta["stage"] = stage(row, len(snaps))
        meta["stageDetail"] = (f"waiting for {row['waiting_for']}"
                               if meta["stage"] == "WAITING_FOR_RESOURCES" else None)
    op: dict[str, Any] = {"name": f"tunedModels/{row['id']}/operations/{row['op_id']}", "metadata": meta}
    if row["state"] == "ACTIVE":
        op["done"] = True
        op["response"] = {
            "@type": f"type.googleapis.com/google.ai.generativelanguage.{tv}.TunedModel",
            **tuned_model(row, snaps, tv),
        }
    elif row["state"] == "FAILED":
        op["done"] = True
        op["error"] = {
            "code": row["error_code"] or 13,
            "message": row["error_message"] or "Tuning failed.",
        }
    return op


def _ratings(categories: tuple[str, ...]) -> list[dict[str, Any]]:
    """Safety ratings: every category NEGLIGIBLE (the engine filters nothing)."""
    return [{"category": Enum(c, HARM_NUMBER[c]), "probability": Enum("NEGLIGIBLE", 1)} for c in categories]


def text_response(outputs: list[str]) -> dict[str, Any]:
    """A GenerateTextResponse (PaLM) holding one candidate per output."""
    ratings = _ratings(PALM_HARM)
    return {"candidates": [{"output": Present(o), "safetyRatings": ratings} for o in outputs]}


def content_response(outputs: list[str], prompt: str, model: str) -> dict[str, Any]:
    """A GenerateContentResponse (Gemini) from `model` holding one candidate per output."""
    ratings = _ratings(GEMINI_HARM)
    prompt_tokens = len(prompt.encode())
    out_tokens = sum(len(o.encode()) for o in outputs)
    return {
        "candidates": [
            {
                "content": {"parts": [{"text": Present(o)}], "role": "model"},
                "finishReason": Enum("STOP", 1),
                "index": i,
                "safetyRatings": ratings,
            }
            for i, o in enumerate(outputs)
        ],
        "promptFeedback": {"safetyRatings": ratings},
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": out_tokens,
            "totalTokenCount": prompt_tokens + out_tokens,
        },
        "modelVersion": model,
    }
