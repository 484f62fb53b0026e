"""The engine's request field tables (validation.py) against Google's protos.

Each table must name exactly the fields of its proto message in google-ai-generativelanguage
(v1beta3 and v1beta together), less the fields listed in ABSENT and plus those in EXTENSIONS,
each with its reason. A field Google adds or drops makes this test fail until the table (or a
list here) says what the engine does with it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tunespec.engine import validation

v1beta3 = pytest.importorskip("google.ai.generativelanguage_v1beta3")
v1beta = pytest.importorskip("google.ai.generativelanguage_v1beta")

_NON_TEXT_PART = "tuned models take text parts only: other parts are rejected by name"
_NOT_TEXT_OUTPUT = "an output option the engine cannot honour (it writes text only): rejected by name"

ABSENT = {
    **{
        f"generate_content.contents.parts.{name}": _NON_TEXT_PART
        for name in (
            "inline_data",
            "function_call",
            "function_response",
            "file_data",
            "executable_code",
            "code_execution_result",
        )
    },
    "generate_content.generation_config.enable_enhanced_civic_answers": _NOT_TEXT_OUTPUT,
    "generate_content.generation_config.response_modalities": _NOT_TEXT_OUTPUT,
    "generate_content.generation_config.speech_config": _NOT_TEXT_OUTPUT,
}
EXTENSIONS = {
    "tuned_model.tuning_method": "the engine's own choice between full fine-tuning and LoRA",
    "generate_content.generation_config.seed": (
        "a GenerationConfig field of Google's current API, newer than this proto release; accepted"
    ),
}

TABLES = [
    ("tuned_model", validation._TUNED_MODEL, [v1beta3.TunedModel, v1beta.TunedModel]),
    ("generate_text", validation._GENERATE_TEXT, [v1beta3.GenerateTextRequest, v1beta.GenerateTextRequest]),
    ("generate_content", validation._GENERATE_CONTENT, [v1beta.GenerateContentRequest]),
]
TABLES_BY_NAME = {where: (table, messages) for where, table, messages in TABLES}


def _fields(messages: list[Any]) -> dict[str, list[Any]]:
    """{field name: its proto-plus Field in each message that has it}."""
    out: dict[str, list[Any]] = {}
    for message in messages:
        for name, field in message.meta.fields.items():
            out.setdefault(name, []).append(field)
    return out


def _drift(where: str, table: dict[str, Any], messages: list[Any]) -> list[str]:
    """What differs between `table` and `messages`, one line per field path, listed ones excused."""
    problems = []
    fields = _fields(messages)
    for name in sorted(set(fields) - set(table)):
        if f"{where}.{name}" not in ABSENT:
            problems.append(f"{where}.{name}: a field of the proto, missing from the table")
    for name, sub in table.items():
        path = f"{where}.{name}"
        if path in EXTENSIONS:
            if name in fields:
                problems.append(f"{path}: listed as an extension but the proto has it now")
            continue
        if name not in fields:
            problems.append(f"{path}: in the table, not a field of the proto")
            continue
        if sub is None:
            continue
        repeated = isinstance(sub, list)
        for field in fields[name]:
            if field.message is None or not hasattr(field.message, "meta"):
                problems.append(f"{path}: the table reads a message, the proto has a scalar")
            elif field.repeated != repeated:
                problems.append(f"{path}: repeated in {'the table' if repeated else 'the proto'} only")
        inner = [f.message for f in fields[name] if f.message is not None and hasattr(f.message, "meta")]
        if inner:
            problems += _drift(path, sub[0] if repeated else sub, inner)
    return problems


@pytest.mark.parametrize(("where", "table", "messages"), TABLES, ids=[t[0] for t in TABLES])
def test_request_field_tables_follow_the_protos(where: str, table: dict[str, Any], messages: list[Any]):
    assert _drift(where, table, messages) == []


def test_every_listed_exception_names_a_table():
    listed = set(ABSENT) | set(EXTENSIONS)
    assert {path.split(".")[0] for path in listed} <= {where for where, _, _ in TABLES}
    for path in ABSENT:  # a field listed as absent must still be in the proto and not in the table
        where, *parts = path.split(".")
        table, messages = TABLES_BY_NAME[where]
        for part in parts[:-1]:
            sub = table[part]
            table = sub[0] if isinstance(sub, list) else sub
            messages = [f.message for f in _fields(messages)[part]]
        assert parts[-1] in _fields(messages), f"{path} is listed as absent but the proto no longer has it"
        assert parts[-1] not in table, f"{path} is listed as absent but the table has it"


def test_patchable_fields_are_tuned_model_fields():
    fields = _fields([v1beta3.TunedModel, v1beta.TunedModel])
    assert set(validation.PATCHABLE) <= set(fields)
