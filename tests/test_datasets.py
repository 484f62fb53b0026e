"""Dataset files -> examples: every format, every error path (row-numbered), limits, warnings, stats."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tunespec.datasets import (
    MAX_INPUT_CHARS,
    MAX_OUTPUT_CHARS,
    PROBLEMS_PER_KIND,
    Example,
    load_examples,
    payload_size,
    read_examples,
    stats_of,
)
from tunespec.errors import DatasetError
from tunespec.spec import load_spec

PAIRS = [("1", "2"), ("one", "two"), ("1,000", "1,001")]


def csv_text(rows: list[tuple[str, str]], header: str = "text_input,output") -> str:
    def q(v: str) -> str:
        return f'"{v}"' if "," in v else v

    return header + "\n" + "".join(f"{q(a)},{q(b)}\n" for a, b in rows)


def errors(path: Path, **kwargs) -> list:
    with pytest.raises(DatasetError) as info:
        read_examples(path, **kwargs)
    return info.value.problems


def test_csv(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text(csv_text(PAIRS), "utf-8")
    result = read_examples(path)
    assert result.examples == [Example(a, b) for a, b in PAIRS]


def test_csv_with_bom_and_crlf(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"\xef\xbb\xbf" + csv_text(PAIRS).replace("\n", "\r\n").encode())
    assert [e.text_input for e in read_examples(path).examples] == ["1", "one", "1,000"]


def test_tsv(tmp_path: Path):
    path = tmp_path / "d.tsv"
    path.write_text("text_input\toutput\na, b\tc\n", "utf-8")
    assert read_examples(path).examples == [Example("a, b", "c")]


def test_jsonl(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"text_input": a, "output": b}) for a, b in PAIRS) + "\n\n", "utf-8")
    assert len(read_examples(path).examples) == 3


def test_json_list_and_columns(tmp_path: Path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"q": a, "a": b} for a, b in PAIRS]), "utf-8")
    assert read_examples(path, input_column="q", output_column="a").examples[2] == Example("1,000", "1,001")
    columns = {"text_input": [a for a, _ in PAIRS], "output": [b for _, b in PAIRS]}
    path.write_text(json.dumps(columns), "utf-8")
    assert read_examples(path).examples[1] == Example("one", "two")


def test_example_datasets_agree():
    data = Path(__file__).resolve().parents[1] / "examples" / "data"
    csv_examples = read_examples(data / "number-generator.csv").examples
    assert len(csv_examples) == 15
    assert read_examples(data / "number-generator.jsonl").examples == csv_examples


def test_missing_column_lists_present_ones(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text("input,outputs\na,b\n", "utf-8")
    problems = errors(path)
    assert len(problems) == 2 and all(p.line == 1 and p.file == str(path) for p in problems)
    assert "missing column 'text_input' (columns present: input, outputs)" in problems[0].message
    assert "did you mean 'outputs'" in problems[1].hint


def test_empty_output_names_the_row_and_line(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text('text_input,output\na,b\n"multi\nline",c\nd,\n', "utf-8")
    (p,) = errors(path)
    assert (p.key_path, p.line) == ("row 3", 5)
    assert "'output' is empty" in p.message
    assert str(p) == f"{path}:5: row 3: 'output' is empty"


def test_empty_input_whitespace_only(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text_input": "a", "output": "b"}\n{"text_input": "  ", "output": "b"}\n', "utf-8")
    (p,) = errors(path)
    assert (p.key_path, p.line) == ("row 2", 2) and "'text_input' is empty" in p.message


def test_ragged_rows(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text("text_input,output\na,b\nc,d,e\nf\n", "utf-8")
    problems = errors(path)
    assert [(p.key_path, p.line) for p in problems] == [("row 2", 3), ("row 3", 4)]
    assert "has 3 fields, the header (line 1) has 2" in problems[0].message
    assert "has 1 field, the header (line 1) has 2" in problems[1].message


def test_unclosed_quote_is_named_not_counted(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text('text_input,output\na,b\n"c,d\ne,f\ng,h\n', "utf-8")
    (p,) = errors(path)
    assert (p.key_path, p.line) == ("row 2", 3)
    assert "running from line 3 to line 5" in p.message and "missing its closing quote" in p.message
    assert "close the quote" in p.hint


def test_duplicate_header_columns(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text("text_input,output,output\na,b,c\n", "utf-8")
    (p,) = errors(path)
    assert p.line == 1 and "repeats column(s) 'output'" in p.message


def test_bad_json_lines(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text_input": "a", "output": "b"}\n\n{"text_input": "a",}\n[1]\n', "utf-8")
    problems = errors(path)
    assert [(p.key_path, p.line) for p in problems] == [("row 2", 3), ("row 3", 4)]
    assert "not valid JSON" in problems[0].message and problems[0].column
    assert "expected a JSON object, got a list" in problems[1].message


def test_bad_json_file(tmp_path: Path):
    path = tmp_path / "d.json"
    path.write_text('[\n  {"text_input": "a"\n]', "utf-8")
    (p,) = errors(path)
    assert p.line == 3 and "not valid JSON" in p.message
    path.write_text('"just text"', "utf-8")
    (p,) = errors(path)
    assert "expected a list of objects or a mapping of columns" in p.message


def test_json_columns_of_different_lengths(tmp_path: Path):
    path = tmp_path / "d.json"
    path.write_text('{"text_input": ["a", "b"], "output": ["c"]}', "utf-8")
    (p,) = errors(path)
    assert "different lengths" in p.message and p.line == 1


def test_json_missing_key_and_non_string(tmp_path: Path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"text_input": "a", "output": "b"}, {"text_input": "a", "answer": "b"},
                                {"text_input": 7, "output": None}]), "utf-8")
    problems = errors(path)
    assert problems[0].key_path == "row 2" and "missing 'output' (keys present: text_input, answer)" \
        in problems[0].message
    assert [p.key_path for p in problems[1:]] == ["row 3", "row 3"]
    assert "'text_input' must be a string, got number 7" in problems[1].message and '"7"' in problems[1].hint
    assert "'output' must be a string, got null" in problems[2].message


def test_undecodable_bytes_name_the_row(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"text_input,output\na,b\nc,\xff\xfe bad\ne,f\n")
    (p,) = errors(path)
    assert (p.key_path, p.line) == ("row 2", 3) and "not valid UTF-8" in p.message


def test_undecodable_bytes_in_jsonl(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text_input": "a", "output": "b"}\n{"text_input": "\xc3", "output": "b"}\n')
    (p,) = errors(path)
    assert (p.key_path, p.line) == ("row 2", 2) and "UTF-8" in p.message


def test_utf16_is_rejected_with_a_hint(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_bytes(csv_text(PAIRS).encode("utf-16"))
    (p,) = errors(path)
    assert p.line == 1 and "UTF-16" in p.message


def test_limits(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text(csv_text([("a" * (MAX_INPUT_CHARS + 1), "b"), ("a", "b" * (MAX_OUTPUT_CHARS + 1)),
                              ("a" * MAX_INPUT_CHARS, "b" * MAX_OUTPUT_CHARS)]), "utf-8")
    problems = errors(path)
    assert [(p.key_path, p.line) for p in problems] == [("row 1", 2), ("row 2", 3)]
    assert "40,001 characters; the limit is 40,000" in problems[0].message
    assert "5,001 characters; the limit is 5,000" in problems[1].message


def test_payload_limit(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    rows = [{"text_input": f"{i}", "output": "x" * 4500} for i in range(1000)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    (p,) = errors(path)
    assert p.file == str(path) and "MiB request; the limit is 4 MiB" in p.message


def test_empty_file(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text("text_input,output\n", "utf-8")
    (p,) = errors(path)
    assert "no examples" in p.message
    path.write_text("", "utf-8")
    (p,) = errors(path)
    assert (p.line, p.message) == (1, "the file is empty") and "header row" in p.hint


def test_unknown_extension(tmp_path: Path):
    path = tmp_path / "d.txt"
    path.write_text("x", "utf-8")
    (p,) = errors(path)
    assert "set dataset.format" in p.hint
    path.write_text(csv_text(PAIRS), "utf-8")
    assert len(read_examples(path, format="csv").examples) == 3


def test_problems_are_capped_per_kind(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text("text_input,output\n" + "a,\n" * 100 + "b,c,d\n", "utf-8")
    problems = errors(path)
    empty = [p for p in problems if "'output' is empty" in p.message]
    assert len(empty) == PROBLEMS_PER_KIND and empty[0].key_path == "row 1"
    assert any(p.message == "... and 95 more rows with an empty 'output'" for p in problems)
    assert any(p.key_path == "row 101" and "fields" in p.message for p in problems)


def test_warnings_few_examples_and_duplicates(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text(csv_text([("a", "b"), ("c", "d"), ("a", "b")]), "utf-8")
    warnings = read_examples(path).warnings
    assert len(warnings) == 2 and all(w.severity == "warning" for w in warnings)
    assert "only 3 examples; at least 20" in warnings[0].message
    assert "1 duplicate examples (example 3 repeats example 1)" in warnings[1].message
    path.write_text(csv_text([(str(i), str(i + 1)) for i in range(20)]), "utf-8")
    assert read_examples(path).warnings == []


def test_stats():
    stats = stats_of([Example("a", "bb"), Example("abc", "b"), Example("abcdef", "bbbb")])
    assert stats.count == 3
    assert (stats.input.min, stats.input.median, stats.input.max) == (1, 3, 6)
    assert (stats.output.min, stats.output.median, stats.output.max) == (1, 2, 4)


def test_payload_size_matches_the_json():
    for examples in ([], [Example("é", "x")], [Example('a"\n\x01', "😀"), Example("c", "d" * 10)]):
        body = {"examples": {"examples": [{"textInput": e.text_input, "output": e.output} for e in examples]}}
        expected = len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        assert payload_size(examples) == expected


def test_load_examples_from_spec_file_and_inline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.csv").write_text("q,a\nx,\n", "utf-8")
    (tmp_path / "job.yaml").write_text("name: j\ndataset: {path: d.csv, input_column: q, output_column: a}\n")
    with pytest.raises(DatasetError) as info:
        load_examples(load_spec(tmp_path / "job.yaml"))
    (p,) = info.value.problems
    assert (p.file, p.line, p.key_path) == ("d.csv", 2, "row 1") and "'a' is empty" in p.message
    (tmp_path / "job.yaml").write_text("name: j\ndataset:\n  examples:\n    - {text_input: a, output: b}\n"
                                       "    - {text_input: c, output: ''}\n")
    with pytest.raises(DatasetError) as info:
        load_examples(load_spec(tmp_path / "job.yaml"))
    (p,) = info.value.problems
    assert (p.file, p.line, p.key_path) == ("job.yaml", 5, "dataset.examples[1]")


def test_100k_rows_load_in_linear_time(tmp_path: Path):
    path = tmp_path / "big.csv"
    rows = "".join(f"{i},{i % 7}\n" for i in range(100_000))
    path.write_text("text_input,output\n" + rows, "utf-8")
    start = time.perf_counter()
    result = read_examples(path)
    elapsed = time.perf_counter() - start
    assert result.stats.count == 100_000 and result.warnings == []
    assert elapsed < 5, elapsed  # ~0.2 s on a laptop core; generous for a loaded CI machine
