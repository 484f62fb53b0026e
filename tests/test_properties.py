"""Property tests: whatever bytes a spec or dataset file holds, the loaders answer with SpecError /
DatasetError (never another exception), and valid generated datasets read back unchanged."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunespec.datasets import read_examples
from tunespec.errors import DatasetError, SpecError
from tunespec.spec import load_spec

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

YAML_BITS = st.sampled_from([
    "name: a\n", "dataset:\n", "  path: d.csv\n", "  examples:\n", "    - {text_input: a, output: b}\n",
    "extends: base.yaml\n", "top_k: 1e23\n", "&a [1, 2]\n", "*a\n", "<<: *a\n", "${X\n", "${X}\n",
    '"\n', "'\n", "\t", ":", "- ", "{", "}", "[", "]", "!!python/object:os.system\n", "\x00", "\ufeff",
    "evaluation:\n", "  prompts_file: p.csv\n", "  prompts:\n", "    - {input: x, regex: '('}\n",
    "hyperparameters: {epoch_count: .nan}\n",
])


def _write_project(tmp: Path, spec: bytes) -> Path:
    (tmp / "d.csv").write_text("text_input,output\na,b\n", "utf-8")
    (tmp / "p.csv").write_text("input,equals\na,b\n", "utf-8")
    (tmp / "base.yaml").write_text("dataset:\n  path: d.csv\n", "utf-8")
    path = tmp / "job.yaml"
    path.write_bytes(spec)
    return path


def _load(path: Path) -> None:
    try:
        load_spec(path, env={})
    except SpecError as exc:  # DatasetError is a SpecError
        assert exc.problems and all(p.message for p in exc.problems)


@SETTINGS
@given(st.binary(max_size=400))
def test_spec_loader_any_bytes(tmp_path: Path, data: bytes) -> None:
    _load(_write_project(tmp_path, data))


@SETTINGS
@given(st.lists(YAML_BITS | st.text(max_size=8), max_size=25))
def test_spec_loader_yaml_like_text(tmp_path: Path, parts: list[str]) -> None:
    _load(_write_project(tmp_path, "".join(parts).encode("utf-8", "surrogatepass")))


@SETTINGS
@given(st.sampled_from(["csv", "tsv", "jsonl", "json"]), st.binary(max_size=400))
def test_dataset_reader_any_bytes(tmp_path: Path, fmt: str, data: bytes) -> None:
    path = tmp_path / f"data.{fmt}"
    path.write_bytes(data)
    try:
        read_examples(path)
    except DatasetError as exc:
        assert exc.problems


@SETTINGS
@given(st.sampled_from(["csv", "tsv", "jsonl", "json"]),
       st.lists(st.text(min_size=1, max_size=60), max_size=40))
def test_dataset_reader_text_around_valid_rows(tmp_path: Path, fmt: str, lines: list[str]) -> None:
    header = {"csv": "text_input,output", "tsv": "text_input\toutput"}.get(fmt, "")
    path = tmp_path / f"data.{fmt}"
    path.write_text("\n".join([header, *lines]), "utf-8", errors="surrogatepass")
    try:
        read_examples(path)
    except DatasetError as exc:
        assert exc.problems


CHARS = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")
CELL = st.text(CHARS, min_size=1, max_size=40).filter(lambda s: not s.isspace())


def _serialise(fmt: str, pairs: list[tuple[str, str]]) -> bytes:
    if fmt in ("csv", "tsv"):
        out = io.StringIO(newline="")
        writer = csv.writer(out, dialect="excel-tab" if fmt == "tsv" else "excel")
        writer.writerow(["text_input", "output"])
        writer.writerows(pairs)
        return out.getvalue().encode("utf-8")
    rows = [{"text_input": a, "output": b} for a, b in pairs]
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    return json.dumps(rows, ensure_ascii=False).encode("utf-8")


@SETTINGS
@given(st.sampled_from(["csv", "tsv", "jsonl", "json"]),
       st.lists(st.tuples(CELL, CELL), min_size=1, max_size=25), st.booleans())
def test_valid_datasets_round_trip(tmp_path: Path, fmt: str, pairs: list[tuple[str, str]], bom: bool) -> None:
    path = tmp_path / f"data.{fmt}"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + _serialise(fmt, pairs))
    result = read_examples(path)
    assert [(e.text_input, e.output) for e in result.examples] == pairs


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_utf16_without_bom_is_named(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"data.{fmt}"
    path.write_bytes(_serialise(fmt, [("a", "b")]).decode().encode("utf-16-le"))
    with pytest.raises(DatasetError) as info:
        read_examples(path)
    assert "looks like UTF-16" in str(info.value) and "\x00" not in str(info.value)
