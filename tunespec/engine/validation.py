"""Request validation: field names, types and ranges, answered as Google answers them.

Unknown field names and values of the wrong type fail at once, like Google's JSON parser; range
and consistency problems of a CreateTunedModel request are collected and answered together, one
field violation each.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tunespec.engine.limits import (
    FLOAT32_MAX,
    INT32_MAX,
    INT32_MIN,
    MAX_EXAMPLES_BYTES,
    MAX_PROMPT_CHARS,
    examples_bytes,
)
from tunespec.engine.wire import invalid
from tunespec.tuning_api import TUNED_MODEL_ID_RULE, snake, to_snake, valid_tuned_model_id

MAX_DISPLAY_NAME = 40
MAX_INPUT_CHARS = 40_000
MAX_OUTPUT_CHARS = 5_000
MAX_EPOCHS = 1000
MAX_BATCH = 1024
MAX_CANDIDATES = 8
MAX_STOP_SEQUENCES = 5
PATCHABLE = ("display_name", "description", "temperature", "top_p", "top_k")

# ---- request schemas ------------------------------------------------------------------------------
# snake_case field names; None: a field not looked into further, dict: a message, [x]: repeated.
# They follow Google's protos (tests/engine/test_field_tables.py checks them against them).
_EXAMPLE = {"text_input": None, "output": None}
_TUNED_MODEL = {
    "name": None,
    "base_model": None,
    "display_name": None,
    "description": None,
    "temperature": None,
    "top_p": None,
    "top_k": None,
    "state": None,
    "create_time": None,
    "update_time": None,
    "tuned_model_source": {"tuned_model": None, "base_model": None},
    "reader_project_numbers": None,
    "tuning_method": None,  # engine extension: "full" | "lora"
    "tuning_task": {
        "start_time": None,
        "complete_time": None,
        "snapshots": None,
        "training_data": {"examples": {"examples": [_EXAMPLE]}},
        "hyperparameters": {
            "epoch_count": None,
            "batch_size": None,
            "learning_rate": None,
            "learning_rate_multiplier": None,
        },
    },
}
_SAMPLING = {
    "temperature": None,
    "top_p": None,
    "top_k": None,
    "candidate_count": None,
    "max_output_tokens": None,
    "stop_sequences": None,
}
_GENERATE_TEXT = {"prompt": {"text": None}, "model": None, "safety_settings": None, **_SAMPLING}
_GENERATE_CONTENT = {
    "model": None,
    "contents": [{"role": None, "parts": [{"text": None}]}],
    "safety_settings": None,
    "system_instruction": None,
    "tools": None,
    "tool_config": None,
    "cached_content": None,
    "generation_config": {
        **_SAMPLING,
        "response_mime_type": None,
        "response_schema": None,
        "presence_penalty": None,
        "frequency_penalty": None,
        "seed": None,
        "response_logprobs": None,
        "logprobs": None,
    },
}


def _check_fields(value: Any, schema: Any, where: str) -> None:
    """Google rejects unknown field names: `Unknown name "x" at 'where': Cannot find field.`"""
    if isinstance(schema, list):
        if isinstance(value, list):
            for item in value:
                _check_fields(item, schema[0], where)
        return
    if not isinstance(schema, dict) or not isinstance(value, dict):
        return
    for key, sub in value.items():
        name = snake(key)
        if name not in schema:
            raise invalid(
                f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field.",
                f"{where}.{key}" if where else key,
            )
        _check_fields(sub, schema[name], f"{where}.{name}" if where else name)


# ---- typed readers ---------------------------------------------------------------------------------


def read_number(value: Any, field: str, kind: str = "TYPE_FLOAT") -> float | None:
    """A finite number (JSON number or numeric string), or None when absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise invalid(f"Invalid value at '{field}' ({kind}), {value!r}", field)
    try:
        number = float(value)
    except (ValueError, OverflowError):  # not a number; an integer beyond any float
        raise invalid(f"Invalid value at '{field}' ({kind}), {_shown(value)}", field) from None
    if math.isnan(number) or math.isinf(number) or (kind == "TYPE_FLOAT" and abs(number) > FLOAT32_MAX):
        raise invalid(f"Invalid value at '{field}' ({kind}), {_shown(value)}", field)
    return number


def _shown(value: Any) -> str:
    """A value in a message: a string quoted, a number as written, at most 40 characters."""
    text = f'"{value}"' if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_int(value: Any, field: str) -> int | None:
    """A whole number, or None when absent."""
    number = read_number(value, field, "TYPE_INT32")
    if number is None:
        return None
    if number != int(number) or not INT32_MIN <= int(number) <= INT32_MAX:
        raise invalid(f"Invalid value at '{field}' (TYPE_INT32), {_shown(value)}", field)
    return int(number)


def read_string(value: Any, field: str) -> str | None:
    """A string, or None when absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(f"Invalid value at '{field}' (TYPE_STRING), {value!r}", field)
    return value


def read_message(value: Any, field: str) -> dict[str, Any]:
    """An object, or {} when absent."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"Invalid value at '{field}': expected an object, got {value!r}", field)
    return value


# ---- sampling parameters ---------------------------------------------------------------------------


def max_temperature(version: str) -> float:
    """PaLM (v1beta3) temperatures stop at 1, Gemini's (v1beta) at 2."""
    return 1.0 if version == "v1beta3" else 2.0


def _sampling_problems(
    temperature: float | None, top_p: float | None, top_k: int | None, max_temp: float
) -> list[tuple[str, str]]:
    """(field, message) for each of temperature, top_p, top_k out of its range."""
    problems = []
    if temperature is not None and not 0 <= temperature <= max_temp:
        problems.append(("temperature", f"temperature must be in [0, {max_temp:g}] (got {temperature:g})"))
    if top_p is not None and not 0 <= top_p <= 1:
        problems.append(("top_p", f"top_p must be in [0, 1] (got {top_p:g})"))
    if top_k is not None and top_k < 0:
        problems.append(("top_k", f"top_k must be >= 0 (got {top_k})"))
    return problems


def sampling(params: Any, defaults: Mapping[str, Any], max_temp: float, where: str = "") -> dict[str, Any]:
    """Sampling keyword arguments for generation from the message `where` ("" for the request itself).

    `defaults` holds the model's temperature, top_p, top_k and output_limit.
    """
    params = read_message(params, where)
    prefix = f"{where}." if where else ""

    def p(f: str) -> str:
        return f"{prefix}{f}"

    temperature = read_number(params.get("temperature"), p("temperature"))
    top_p = read_number(params.get("top_p"), p("top_p"))
    top_k = read_int(params.get("top_k"), p("top_k"))
    count = read_int(params.get("candidate_count"), p("candidate_count"))
    max_out = read_int(params.get("max_output_tokens"), p("max_output_tokens"))
    stops = params.get("stop_sequences") or []
    for field, message in _sampling_problems(temperature, top_p, top_k, max_temp):
        raise invalid(message, p(field))
    if count is not None and not 1 <= count <= MAX_CANDIDATES:
        raise invalid(
            f"candidate_count must be between 1 and {MAX_CANDIDATES} (got {count})", p("candidate_count")
        )
    if max_out is not None and max_out < 1:
        raise invalid(f"max_output_tokens must be >= 1 (got {max_out})", p("max_output_tokens"))
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise invalid("stop_sequences must be a list of strings", p("stop_sequences"))
    if len(stops) > MAX_STOP_SEQUENCES:
        raise invalid(
            f"at most {MAX_STOP_SEQUENCES} stop_sequences are allowed (got {len(stops)})", p("stop_sequences")
        )
    seed = read_int(params.get("seed"), p("seed"))
    return {
        **({"seed": seed} if seed is not None else {}),  # generateContent's: a repeatable sample
        "temperature": temperature if temperature is not None else defaults["temperature"],
        "top_p": top_p if top_p is not None else defaults["top_p"],
        "top_k": top_k if top_k is not None else defaults["top_k"],
        "candidate_count": count or 1,
        "max_output_tokens": min(max_out or defaults["output_limit"], defaults["output_limit"]),
        "stop_sequences": [s for s in stops if s],
    }


# ---- generation prompts ------------------------------------------------------------------------------


def text_prompt(raw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A GenerateTextRequest -> (prompt text, the request with snake_case keys)."""
    _check_fields(raw, _GENERATE_TEXT, "")
    body = to_snake(raw)
    refuse_unsupported(body)
    prompt = read_message(body.get("prompt"), "prompt")
    text = read_string(prompt.get("text"), "prompt.text")
    if not text:
        raise invalid("prompt.text is required", "prompt.text")
    if len(text) > MAX_PROMPT_CHARS:
        message = f"prompt.text is {len(text)} characters; the limit is {MAX_PROMPT_CHARS}"
        raise invalid(message, "prompt.text")
    return text, body


CHAT_ROLES = {"user": "user", "model": "assistant"}  # Gemini's roles -> chat-template roles


def _refuse(field: str, what: str) -> None:
    raise invalid(f"{field} is not supported by this engine: {what}. Remove it from the request.", field)


def refuse_unsupported(body: dict[str, Any], config_field: str = "generation_config") -> None:
    """400 for options the engine cannot honour (rather than ignoring them): safety settings, tools,
    cached content, structured output, penalties, log probabilities."""
    if body.get("safety_settings"):
        _refuse("safety_settings", "it runs no safety classifier (every rating it returns is NEGLIGIBLE)")
    for field, what in (("tools", "function calling and code execution are not implemented"),
                        ("tool_config", "function calling is not implemented"),
                        ("cached_content", "context caching is not implemented")):
        if body.get(field):
            _refuse(field, what)
    config = body.get(config_field)
    if not isinstance(config, dict):
        return
    at = f"{config_field}."
    if config.get("response_schema"):
        _refuse(at + "response_schema", "it cannot constrain answers to a schema")
    mime = config.get("response_mime_type")
    if mime not in (None, "", "text/plain"):
        _refuse(at + "response_mime_type", f"it answers text/plain only (got {mime!r})")
    for field in ("presence_penalty", "frequency_penalty"):
        if read_number(config.get(field), at + field):
            _refuse(at + field, "generation applies no penalties")
    if config.get("response_logprobs") or config.get("logprobs"):
        _refuse(at + "response_logprobs", "it does not return log probabilities")


def content_prompt(
    raw: dict[str, Any], kind: str, name: str
) -> tuple[str, list[dict[str, str]], dict[str, Any]]:
    """A GenerateContentRequest to `kind/name` -> (its text parts joined by newlines: the prompt of a
    model without a chat template; the conversation as chat messages; the request snake_cased).

    Each content is one turn (role `user`, the default, or `model`: the template's `assistant`; its
    parts joined by newlines); system_instruction's text is a system message before them."""
    _check_fields(raw, _GENERATE_CONTENT, "")
    body = to_snake(raw)
    refuse_unsupported(body)
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise invalid('contents is required: [{"parts": [{"text": ...}]}]', "contents")
    texts: list[str] = []
    messages: list[dict[str, str]] = []
    for i, c in enumerate(contents):
        content = read_message(c, f"contents[{i}]")
        turn = _text_parts(content, f"contents[{i}]")
        role = read_string(content.get("role"), f"contents[{i}].role") or "user"
        if role not in CHAT_ROLES:
            raise invalid("Please use a valid role: user, model.", f"contents[{i}].role")
        texts += turn
        if turn:
            messages.append({"role": CHAT_ROLES[role], "content": "\n".join(turn)})
    prompt = "\n".join(texts)
    if not prompt:
        raise invalid("contents holds no text", "contents")
    system = "\n".join(_text_parts(read_message(body.get("system_instruction"), "system_instruction"),
                                   "system_instruction"))
    if system:
        messages.insert(0, {"role": "system", "content": system})
    if len(prompt) + len(system) > MAX_PROMPT_CHARS:
        raise invalid(f"input is {len(prompt) + len(system)} characters; the limit is {MAX_PROMPT_CHARS}",
                      "contents")
    return prompt, messages, body


def _text_parts(content: dict[str, Any], where: str) -> list[str]:
    texts = []
    for j, part in enumerate(content.get("parts") or []):
        t = read_string(read_message(part, f"{where}.parts[{j}]").get("text"), f"{where}.parts[{j}].text")
        if t is None:
            raise invalid("only text parts are supported by tuned models", f"{where}.parts[{j}]")
        texts.append(t)
    return texts


# ---- token counts -----------------------------------------------------------------------------------

_COUNT_TOKENS = {"contents": _GENERATE_CONTENT["contents"], "generate_content_request": _GENERATE_CONTENT}
_COUNT_TEXT_TOKENS = {"prompt": {"text": None}}


def count_tokens_texts(raw: dict[str, Any], kind: str, name: str) -> list[str]:
    """A CountTokensRequest -> the texts to count: its `contents`, or its `generateContentRequest`'s
    contents and system instruction."""
    _check_fields(raw, _COUNT_TOKENS, "")
    body = to_snake(raw)
    if body.get("contents") and body.get("generate_content_request"):
        raise invalid("Set either contents or generate_content_request, not both.", "contents")
    request = body.get("generate_content_request")
    if request is not None:
        inner = read_message(request, "generate_content_request")
        refuse_unsupported(inner)
        content = {k: v for k, v in inner.items() if k in ("contents", "system_instruction")}
    else:
        content = {"contents": body.get("contents")}
    if not content.get("contents"):
        raise invalid('contents is required: [{"parts": [{"text": ...}]}]', "contents")
    _, messages, _ = content_prompt(content, kind, name)
    return [m["content"] for m in messages]


def count_text_tokens_prompt(raw: dict[str, Any]) -> str:
    """A CountTextTokensRequest -> its prompt text."""
    _check_fields(raw, _COUNT_TEXT_TOKENS, "")
    prompt = read_message(to_snake(raw).get("prompt"), "prompt")
    text = read_string(prompt.get("text"), "prompt.text")
    if not text:
        raise invalid("prompt.text is required", "prompt.text")
    return text


# ---- CreateTunedModel ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TuningRequest:
    """A valid CreateTunedModel request; None where the caller left a value to the service."""

    tuned_model_id: str | None
    display_name: str
    description: str
    temperature: float | None
    top_p: float | None
    top_k: int | None
    tuning_method: str | None
    epoch_count: int | None
    batch_size: int | None
    learning_rate: float | None
    learning_rate_multiplier: float | None
    examples: list[tuple[str, str]]
    source_model: str | None  # tuned_model_source.tuned_model, as given
    base_model: str | None  # as given, with or without "models/"


def tuning_request(raw: dict[str, Any], version: str, tuned_model_id: str | None) -> TuningRequest:
    """Validate a CreateTunedModel body (and its `tunedModelId` query parameter) for API `version`."""
    _check_fields(raw, _TUNED_MODEL, "tuned_model")
    body = to_snake(raw)
    violations: list[tuple[str, str]] = []

    def bad(field: str, message: str) -> None:
        violations.append((field, message))

    if tuned_model_id is not None and not valid_tuned_model_id(tuned_model_id):
        message = f"tunedModelId {tuned_model_id!r} is invalid: it must match {TUNED_MODEL_ID_RULE}"
        bad("tuned_model_id", message)
    display_name = read_string(body.get("display_name"), "tuned_model.display_name") or ""
    if len(display_name) > MAX_DISPLAY_NAME:
        bad(
            "tuned_model.display_name",
            f"display_name must be at most {MAX_DISPLAY_NAME} characters (got {len(display_name)})",
        )
    description = read_string(body.get("description"), "tuned_model.description") or ""
    temperature = read_number(body.get("temperature"), "tuned_model.temperature")
    top_p = read_number(body.get("top_p"), "tuned_model.top_p")
    top_k = read_int(body.get("top_k"), "tuned_model.top_k")
    for field, message in _sampling_problems(temperature, top_p, top_k, max_temperature(version)):
        bad(f"tuned_model.{field}", message)
    method = read_string(body.get("tuning_method"), "tuned_model.tuning_method")
    if method is not None and method not in ("full", "lora"):
        bad("tuned_model.tuning_method", f"tuning_method must be 'full' or 'lora' (got {method!r})")

    task = read_message(body.get("tuning_task"), "tuned_model.tuning_task")
    hpf = "tuned_model.tuning_task.hyperparameters"
    hp = read_message(task.get("hyperparameters"), hpf)
    epochs = read_int(hp.get("epoch_count"), f"{hpf}.epoch_count")
    if epochs is not None and not 1 <= epochs <= MAX_EPOCHS:
        bad(f"{hpf}.epoch_count", f"epoch_count must be between 1 and {MAX_EPOCHS} (got {epochs})")
    batch = read_int(hp.get("batch_size"), f"{hpf}.batch_size")
    if batch is not None and not 1 <= batch <= MAX_BATCH:
        bad(f"{hpf}.batch_size", f"batch_size must be between 1 and {MAX_BATCH} (got {batch})")
    lr = read_number(hp.get("learning_rate"), f"{hpf}.learning_rate")
    if lr is not None and not 0 < lr <= 1:
        bad(f"{hpf}.learning_rate", f"learning_rate must be > 0 and <= 1 (got {lr:g})")
    mult = read_number(hp.get("learning_rate_multiplier"), f"{hpf}.learning_rate_multiplier")
    if mult is not None and version == "v1beta3":
        raise invalid(
            f'Invalid JSON payload received. Unknown name "learning_rate_multiplier" at '
            f"'{hpf}': Cannot find field (learningRateMultiplier is a v1beta field).",
            f"{hpf}.learning_rate_multiplier",
        )
    if mult is not None and not 0 < mult <= 100:
        bad(
            f"{hpf}.learning_rate_multiplier",
            f"learning_rate_multiplier must be > 0 and <= 100 (got {mult:g})",
        )
    if lr is not None and mult is not None:
        bad(
            f"{hpf}.learning_rate",
            "learning_rate and learning_rate_multiplier are mutually exclusive "
            "(oneof learning_rate_option): set only one",
        )

    examples = _examples(task, bad)

    source = read_message(body.get("tuned_model_source"), "tuned_model.tuned_model_source")
    source_name = read_string(source.get("tuned_model"), "tuned_model.tuned_model_source.tuned_model")
    base_name = read_string(body.get("base_model"), "tuned_model.base_model")
    if not source_name and not base_name:
        bad(
            "tuned_model.base_model",
            "base_model is required (e.g. models/text-bison-001), or "
            "tuned_model_source.tuned_model to tune a tuned model further",
        )
    if violations:
        raise invalid(
            "Invalid tuning request: " + "; ".join(f"{f}: {m}" for f, m in violations),
            violations=violations,
        )
    return TuningRequest(
        tuned_model_id=tuned_model_id,
        display_name=display_name,
        description=description,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        tuning_method=method,
        epoch_count=epochs,
        batch_size=batch,
        learning_rate=lr,
        learning_rate_multiplier=mult,
        examples=examples,
        source_model=source_name,
        base_model=base_name,
    )


def _examples(task: dict[str, Any], bad: Callable[[str, str], None]) -> list[tuple[str, str]]:
    """The (text_input, output) pairs of tuning_task.training_data; each problem goes to `bad`."""
    field = "tuned_model.tuning_task.training_data.examples.examples"
    data = read_message(task.get("training_data"), "tuned_model.tuning_task.training_data")
    wrapper = read_message(data.get("examples"), "tuned_model.tuning_task.training_data.examples")
    items = wrapper.get("examples")
    if items is None or items == []:
        bad(field, "training_data must hold at least one example")
        return []
    if not isinstance(items, list):
        bad(field, "examples must be a list of {text_input, output}")
        return []
    out = []
    for i, ex in enumerate(items):
        at = f"{field}[{i}]"
        if not isinstance(ex, dict):
            bad(at, "each example must be an object {text_input, output}")
            continue
        text, output = ex.get("text_input"), ex.get("output")
        if not isinstance(text, str) or not text:
            bad(f"{at}.text_input", "text_input is required and must be a non-empty string")
        elif len(text) > MAX_INPUT_CHARS:
            bad(f"{at}.text_input", f"text_input is {len(text)} characters; the limit is {MAX_INPUT_CHARS}")
        if not isinstance(output, str) or not output:
            bad(f"{at}.output", "output is required and must be a non-empty string")
        elif len(output) > MAX_OUTPUT_CHARS:
            bad(f"{at}.output", f"output is {len(output)} characters; the limit is {MAX_OUTPUT_CHARS}")
        if isinstance(text, str) and isinstance(output, str):
            out.append((text, output))
    size = examples_bytes(out)
    if size > MAX_EXAMPLES_BYTES:
        bad(field, f"the examples make a {size / 2**20:.1f} MiB request; the limit is "
                   f"{MAX_EXAMPLES_BYTES / 2**20:g} MiB")
    return out


# ---- UpdateTunedModel ------------------------------------------------------------------------------

OUTPUT_ONLY = ("name", "state", "create_time", "update_time")  # in a mask: ignored, as Google ignores them
IMMUTABLE = ("base_model", "tuned_model_source", "tuning_task", "reader_project_numbers", "tuning_method")


def _mask_paths(update_mask: str | None, body: dict[str, Any], version: str) -> list[str]:
    """The top-level fields a PATCH names: its mask's (v1beta3 requires one), else every field sent."""
    if update_mask:
        return [snake(p.strip()).split(".")[0] for p in update_mask.split(",") if p.strip()]
    if version == "v1beta3":  # v1beta3's UpdateTunedModelRequest.update_mask is REQUIRED
        raise invalid(
            "update_mask is required: name the fields to change, e.g. ?updateMask=description,displayName",
            "update_mask",
        )
    return [k for k in body if k in PATCHABLE]  # v1beta and v1: every updatable field sent


def _unchanged(path: str, value: Any, row: Mapping[str, Any]) -> bool:
    """Whether an immutable field sent in a PATCH leaves the model as it is: empty, or its own value."""
    if not value:
        return True
    if path == "base_model":
        return value == row.get("base_model")
    if path == "tuned_model_source" and isinstance(value, dict):
        return value.get("tuned_model") in (None, "", row.get("source_tuned_model"))
    if path == "tuning_task" and isinstance(value, dict):  # output-only parts; hyperparameters as stored
        hp = value.get("hyperparameters") or {}
        same = all(hp.get(k) in (None, 0, row.get(k)) for k in ("epoch_count", "batch_size"))
        return same and not value.get("training_data")
    return False


def patch_fields(
    raw: dict[str, Any], update_mask: str | None, version: str, current: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The fields an UpdateTunedModel request sets: {snake_case name: new value (None: cleared)}.

    The mask is optional on v1beta and v1 (then every updatable field sent is updated). Output-only
    paths in a mask are ignored; immutable ones too when the value sent is empty or the model's own
    (`current`, the stored row), as clients that diff whole resources send them. Sampling defaults get
    the ranges they have at create time (temperature up to 1 on v1beta3, 2 on v1beta).
    """
    _check_fields(raw, _TUNED_MODEL, "tuned_model")
    body = to_snake(raw)
    fields: dict[str, Any] = {}
    for path in dict.fromkeys(_mask_paths(update_mask, body, version)):
        if path in OUTPUT_ONLY:
            continue
        if path in IMMUTABLE and _unchanged(path, body.get(path), current or {}):
            continue
        if path not in PATCHABLE:
            raise invalid(
                f"update_mask path {path!r} cannot be updated; updatable fields: " + ", ".join(PATCHABLE),
                "update_mask",
            )
        value = body.get(path)
        at = f"tuned_model.{path}"
        if path == "display_name":
            value = read_string(value, at) or ""
            if len(value) > MAX_DISPLAY_NAME:
                raise invalid(
                    f"display_name must be at most {MAX_DISPLAY_NAME} characters (got {len(value)})", at
                )
        elif path == "description":
            value = read_string(value, at) or ""
        else:
            value = read_int(value, at) if path == "top_k" else read_number(value, at)
            given = {"temperature": None, "top_p": None, "top_k": None, path: value}
            problems = _sampling_problems(**given, max_temp=max_temperature(version))
            if problems:
                raise invalid(problems[0][1], at)
        fields[path] = value
    return fields


# ---- TransferOwnership -----------------------------------------------------------------------------


def transfer_target(raw: dict[str, Any]) -> str:
    """A TransferOwnershipRequest -> the new owner (a project's name, as permissions grant them)."""
    _check_fields(raw, {"email_address": None}, "")
    email = read_string(to_snake(raw).get("email_address"), "email_address")
    if not email or not email.strip():
        raise invalid(
            "email_address is required: the project that becomes the model's owner", "email_address"
        )
    return email.strip()
