"""CSV / TSV / JSONL / JSON files -> tuning examples, with row-numbered errors and the API's limits.

Rows are numbered from 1 (the first data record); `line` is the line in the file where the record
starts, so editors can jump to it. Every problem is collected before anything is raised, and each
kind of problem is capped so that a 100k-row file with one systematic mistake prints a few lines.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunespec.errors import DatasetError, Problem, describe, shown_path

if TYPE_CHECKING:
    from tunespec.spec import DatasetSpec, JobSpec
    from tunespec.spec.locations import Problems
    from tunespec.spec.model import ValidationSplit

MAX_INPUT_CHARS = 40_000
MAX_OUTPUT_CHARS = 5_000
MAX_PAYLOAD_BYTES = 4 * 2**20  # the documented 4 MB upload limit, read as MiB
MIN_RECOMMENDED_EXAMPLES = 20
PROBLEMS_PER_KIND = 5  # show this many problems of one kind, then "... and N more"

FORMATS = ("csv", "tsv", "jsonl", "json")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
               ".json": "json"}


@dataclass(frozen=True, slots=True)
class Example:
    """One training pair, as sent in `tuningTask.trainingData.examples.examples[]`."""

    text_input: str
    output: str


@dataclass(frozen=True)
class LengthStats:
    min: int
    median: float
    max: int


@dataclass(frozen=True)
class DatasetStats:
    count: int
    input: LengthStats  # lengths in characters
    output: LengthStats


@dataclass(frozen=True)
class DatasetResult:
    examples: list[Example]
    warnings: list[Problem] = field(default_factory=list)
    stats: DatasetStats | None = None
    source: str = ""  # the file the examples came from (the spec file for inline examples)
    held_out: list[Example] = field(default_factory=list)  # `validation_split`: kept out of training


@dataclass(frozen=True)
class Row:
    """One record of a table file: `values` maps column (or JSON key) -> value."""

    number: int  # 1-based data record number
    line: int | None  # line in the file where the record starts (None for whole-file JSON)
    values: dict[str, Any]
    name: str | None = None  # how problems name the record; default "row N"

    @property
    def label(self) -> str:
        return self.name or f"row {self.number}"


class ProblemLog:
    """Collects problems, keeping at most PROBLEMS_PER_KIND of each kind and counting the rest."""

    def __init__(self, file: str, limit: int = PROBLEMS_PER_KIND):
        self.file = file
        self.limit = limit
        self._kept: list[Problem] = []
        self._extra: dict[str, list] = {}  # kind -> [count beyond the limit, summary, severity]
        self._seen: dict[str, int] = {}

    def add(self, kind: str, message: str, *, row: Row | None = None, line: int | None = None,
            column: int | None = None, key_path: str = "", hint: str = "", severity: str = "error",
            summary: str = "") -> None:
        count = self._seen[kind] = self._seen.get(kind, 0) + 1
        if count > self.limit:
            extra = self._extra.setdefault(kind, [0, summary or message, severity])
            extra[0] += 1
            return
        if row is not None:
            line = row.line if line is None else line
            key_path = key_path or row.label
        self._kept.append(Problem(self.file, message, line, column, key_path, hint, severity))

    def problems(self, severity: str = "error") -> list[Problem]:
        out = [p for p in self._kept if p.severity == severity]
        out += [Problem(self.file, f"... and {n:,} more {summary}", severity=sev)
                for n, summary, sev in self._extra.values() if sev == severity]
        return out

    def has_errors(self) -> bool:
        return any(p.severity == "error" for p in self._kept)


def infer_format(path: Path, given: str | None = None) -> str | None:
    """The dataset format: `given`, else from the file extension; None when unknown."""
    if given:
        return given
    return _EXTENSIONS.get(path.suffix.lower())


# ---- reading table files ---------------------------------------------------------------------------


def _decode(data: bytes, log: ProblemLog) -> tuple[str, bool]:
    """UTF-8 (BOM optional) text; on bad bytes, decode with surrogates and report where (True)."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        log.add("encoding", "the file is UTF-16; save it as UTF-8", line=1, column=1)
        return "", True
    if _looks_like_utf16(data):
        log.add("encoding", "the file looks like UTF-16 (every other byte is NUL); save it as UTF-8",
                line=1, column=1)
        return "", True
    try:
        return data.decode("utf-8-sig"), False
    except UnicodeDecodeError:
        return data.decode("utf-8-sig", errors="surrogateescape"), True


def _looks_like_utf16(data: bytes) -> bool:
    """UTF-16 without a BOM: in its first bytes, the high (or low) byte of most characters is NUL."""
    sample = data[:4096]
    if len(sample) < 4 or b"\x00" not in sample:
        return False
    pairs = len(sample) // 2
    return max(sample[1::2].count(0), sample[0::2].count(0)) >= 0.4 * pairs


def _nul_in(row: Row, log: ProblemLog) -> bool:
    for key, value in row.values.items():
        if isinstance(value, str) and "\x00" in value:
            log.add("nul", f"a NUL byte (\\x00) in {key!r}", row=row,
                    hint="remove it; a NUL byte often means the file was saved as binary or UTF-16",
                    summary="rows with NUL bytes")
            return True
    return False


def _bad_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _report_undecodable(row: Row, log: ProblemLog) -> bool:
    for key, value in row.values.items():
        if isinstance(value, str) and _bad_text(value):
            log.add("undecodable", f"bytes that are not valid UTF-8 in {key!r}", row=row,
                    hint="save the file as UTF-8", summary="rows with bytes that are not valid UTF-8")
            return True
    return False


def read_rows(path: Path, fmt: str, log: ProblemLog, *, sink: _Sink | None = None
              ) -> tuple[list[str] | None, Iterator[Row]]:
    """Open a table file: (CSV/TSV header or None, the rows). Problems go to `log`.

    With a `sink`, CSV/TSV rows that are valid examples go straight into `sink.examples` (the fast
    path for large files) and only the others are yielded, for the checks that name what is wrong.
    """
    data = path.read_bytes()
    text, undecodable = _decode(data, log)
    nul = "\x00" in text or "\\u0000" in text  # raw, or escaped in JSON
    if fmt in ("csv", "tsv"):
        header, rows = _csv_rows(text, "excel-tab" if fmt == "tsv" else "excel", log,
                                 None if undecodable or nul else sink)
    elif fmt == "jsonl":
        header, rows = None, _jsonl_rows(text, log)
    else:
        header, rows = None, _json_rows(text, log)
    if nul:
        rows = (row for row in rows if not _nul_in(row, log))
    if not undecodable:
        return header, rows
    return header, (row for row in rows if not _report_undecodable(row, log))


@dataclass
class _Sink:
    input_column: str
    output_column: str
    examples: list[Example] = field(default_factory=list)


def _csv_rows(text: str, dialect: str, log: ProblemLog, sink: _Sink | None = None
              ) -> tuple[list[str] | None, Iterator[Row]]:
    csv.field_size_limit(64 * 1024 * 1024)
    reader = csv.reader(io.StringIO(text, newline=""), dialect=dialect)
    consumed = 0
    header: list[str] | None = None
    try:
        for record in reader:
            start, consumed = consumed + 1, reader.line_num
            if record:
                header = [name.strip() for name in record]
                break
    except csv.Error as exc:
        log.add("csv", f"cannot read the header: {exc}", line=reader.line_num)
        return None, iter(())
    if header is None:
        return None, iter(())
    header_line = start
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        log.add("column", f"the header repeats column(s) {', '.join(map(repr, duplicated))}",
                line=header_line, hint="give every column a distinct name")
    if any(_bad_text(name) for name in header):
        log.add("undecodable", "bytes that are not valid UTF-8 in the header", line=header_line,
                hint="save the file as UTF-8")

    fast = sink is not None and sink.input_column in header and sink.output_column in header
    i_in = header.index(sink.input_column) if fast else 0
    i_out = header.index(sink.output_column) if fast else 0
    append = sink.examples.append if sink is not None else None

    def rows() -> Iterator[Row]:
        nonlocal consumed
        width = len(header)
        number = 0
        try:
            for record in reader:
                start, consumed = consumed + 1, reader.line_num
                if fast and len(record) == width:
                    a, b = record[i_in], record[i_out]
                    if (a and b and len(a) <= MAX_INPUT_CHARS and len(b) <= MAX_OUTPUT_CHARS
                            and not a.isspace() and not b.isspace()):
                        number += 1
                        append(Example(a, b))
                        continue
                if not record or (len(record) == 1 and not record[0].strip() and width > 1):
                    continue  # blank line
                number += 1
                row = Row(number, start, dict(zip(header, record, strict=False)))
                if len(record) != width:
                    fields = f"{len(record)} field{'s' if len(record) != 1 else ''}"
                    if consumed > start and len(record) < width:  # a quote opened and never closed
                        log.add("ragged",
                                f"has {fields} running from line {start} to line {consumed}: a quoted "
                                "field is probably missing its closing quote",
                                row=row, hint='close the quote; inside a quoted field write a quote as ""',
                                summary="rows whose field count differs from the header")
                        continue
                    log.add("ragged",
                            f"has {fields}, the header (line {header_line}) has {width}",
                            row=row, hint="quote fields that contain the delimiter",
                            summary="rows whose field count differs from the header")
                    continue
                yield row
        except csv.Error as exc:
            log.add("csv", f"cannot parse CSV: {exc}", line=reader.line_num)

    return header, rows()


def _jsonl_rows(text: str, log: ProblemLog) -> Iterator[Row]:
    number = 0
    for line_no, line in enumerate(text.split("\n"), 1):  # not splitlines: JSON allows raw U+2028
        if not line.strip():
            continue
        number += 1
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            log.add("json", f"not valid JSON: {exc.msg}", line=line_no, column=exc.colno,
                    key_path=f"row {number}", summary="lines that are not valid JSON")
            continue
        if not isinstance(value, dict):
            log.add("shape", f"expected a JSON object, got {describe(value, json_terms=True)}", line=line_no,
                    key_path=f"row {number}", summary="lines that are not JSON objects")
            continue
        yield Row(number, line_no, value)


def _json_rows(text: str, log: ProblemLog) -> Iterator[Row]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        log.add("json", f"not valid JSON: {exc.msg}", line=exc.lineno, column=exc.colno)
        return
    if isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
        lengths = {k: len(v) for k, v in value.items()}
        if len(set(lengths.values())) > 1:
            sizes = ", ".join(f"{k!r}: {n}" for k, n in lengths.items())
            log.add("shape", f"columns have different lengths ({sizes})", line=1)
            return
        keys = list(value)
        for i, cells in enumerate(zip(*value.values(), strict=True), 1):
            yield Row(i, None, dict(zip(keys, cells, strict=True)))
        return
    if not isinstance(value, list):
        got = describe(value, json_terms=True)
        log.add("shape", f"expected a list of objects or a mapping of columns, got {got}", line=1, column=1)
        return
    for i, item in enumerate(value, 1):
        row = Row(i, None, item if isinstance(item, dict) else {})
        if not isinstance(item, dict):
            log.add("shape", f"expected a JSON object, got {describe(item, json_terms=True)}", row=row,
                    summary="items that are not JSON objects")
            continue
        yield row


def missing_column_hint(name: str, present: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(present), n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return hint + "set dataset.input_column / dataset.output_column to map your columns"


# ---- examples ----------------------------------------------------------------------------------------


def read_examples(path: Path, *, format: str | None = None, input_column: str = "text_input",
                  output_column: str = "output", display_path: str | None = None) -> DatasetResult:
    """Read a dataset file into examples; raises DatasetError listing every problem found."""
    shown = display_path or str(path)
    log = ProblemLog(shown)
    fmt = infer_format(path, format)
    if fmt is None:
        raise DatasetError([Problem(shown, f"cannot tell the format from the extension {path.suffix!r}",
                                    hint="set dataset.format to csv, tsv, jsonl or json")])
    sink = _Sink(input_column, output_column)
    try:
        header, rows = read_rows(path, fmt, log, sink=sink)
    except OSError as exc:
        raise DatasetError([Problem(shown, f"cannot read the file: {exc.strerror or exc}")]) from None
    columns = (input_column, output_column)
    if header is None and fmt in ("csv", "tsv") and not log.has_errors():
        hint = f"expected a header row naming {input_column!r} and {output_column!r}"
        raise DatasetError([Problem(shown, "the file is empty", 1, hint=hint)])
    if header is not None:
        missing = [c for c in columns if c not in header]
        for name in missing:
            log.add("column", f"missing column {name!r} (columns present: {', '.join(header) or 'none'})",
                    line=1, hint=missing_column_hint(name, header))
        if missing:
            raise DatasetError(log.problems())
    examples = _examples_from_rows(rows, input_column, output_column, log)
    return _finish(sink.examples + examples if sink.examples else examples, log, shown)


def _examples_from_rows(rows: Iterator[Row], input_column: str, output_column: str,
                        log: ProblemLog) -> list[Example]:
    examples: list[Example] = []
    append = examples.append
    for row in rows:
        values = row.values
        try:
            text_input = values[input_column]
            output = values[output_column]
        except KeyError:
            for name in (input_column, output_column):
                if name not in values:
                    present = ", ".join(map(str, values)) or "none"
                    log.add("key", f"missing {name!r} (keys present: {present})", row=row,
                            hint=missing_column_hint(name, list(values)),
                            summary=f"rows without {name!r}")
            continue
        ok = True
        for name, value, limit in ((input_column, text_input, MAX_INPUT_CHARS),
                                   (output_column, output, MAX_OUTPUT_CHARS)):
            if not isinstance(value, str):
                hint = f'write it as a string: "{value}"' if isinstance(value, (int, float)) else ""
                got = describe(value, json_terms=True)
                log.add("type", f"{name!r} must be a string, got {got}", row=row, hint=hint,
                        summary=f"rows whose {name!r} is not a string")
                ok = False
            elif not value.strip():
                log.add(f"empty-{name}", f"{name!r} is empty", row=row,
                        summary=f"rows with an empty {name!r}")
                ok = False
            elif len(value) > limit:
                log.add(f"long-{name}", f"{name!r} has {len(value):,} characters; the limit is {limit:,}",
                        row=row, summary=f"rows whose {name!r} exceeds {limit:,} characters")
                ok = False
        if ok:
            append(Example(text_input, output))
    return examples


def examples_from_inline(pairs: Sequence[tuple[str, str]], spec_file: str,
                         lines: Sequence[int | None] = ()) -> DatasetResult:
    """Inline `dataset.examples` from a spec (already type-checked by the spec loader)."""
    log = ProblemLog(spec_file)
    rows = (Row(i, lines[i - 1] if i - 1 < len(lines) else None, {"text_input": a, "output": b},
                f"dataset.examples[{i - 1}]") for i, (a, b) in enumerate(pairs, 1))
    examples = _examples_from_rows(rows, "text_input", "output", log)
    return _finish(examples, log, spec_file)


def _finish(examples: list[Example], log: ProblemLog, shown: str) -> DatasetResult:
    if not examples and not log.has_errors():
        log.add("empty", "no examples found", line=1)
    errors = log.problems()
    if not errors:
        size = payload_size(examples)
        if size > MAX_PAYLOAD_BYTES:
            errors = [Problem(shown, f"the examples make a {size / 2**20:.1f} MiB request; the limit is "
                                     f"{MAX_PAYLOAD_BYTES / 2**20:g} MiB",
                              hint="use fewer or shorter examples")]
    if errors:
        raise DatasetError(errors)
    warnings = _warnings(examples, shown)
    return DatasetResult(examples, warnings, stats_of(examples), shown)


def _warnings(examples: list[Example], shown: str) -> list[Problem]:
    warnings: list[Problem] = []
    if len(examples) < MIN_RECOMMENDED_EXAMPLES:
        warnings.append(Problem(shown, f"only {len(examples)} examples; at least {MIN_RECOMMENDED_EXAMPLES} "
                                       "are recommended (100-500 for good results)", severity="warning"))
    keys = [(e.text_input, e.output) for e in examples]
    first: dict[tuple[str, str], int] = {}
    duplicates: list[tuple[int, int]] = []
    if len(set(keys)) != len(keys):
        for number, key in enumerate(keys, 1):
            seen = first.setdefault(key, number)
            if seen != number:
                duplicates.append((number, seen))
    if duplicates:
        cap = PROBLEMS_PER_KIND
        shown_pairs = ", ".join(f"example {n} repeats example {s}" for n, s in duplicates[:cap])
        more = f" and {len(duplicates) - cap:,} more" if len(duplicates) > cap else ""
        warnings.append(Problem(shown, f"{len(duplicates):,} duplicate examples ({shown_pairs}{more})",
                                hint="duplicates weigh those pairs more in training", severity="warning"))
    return warnings


def stats_of(examples: Sequence[Example]) -> DatasetStats:
    """Count and min/median/max character lengths of inputs and outputs."""
    def lengths(values: list[int]) -> LengthStats:
        if not values:
            return LengthStats(0, 0, 0)
        return LengthStats(min(values), statistics.median(values), max(values))

    return DatasetStats(len(examples), lengths([len(e.text_input) for e in examples]),
                        lengths([len(e.output) for e in examples]))


def payload_size(examples: Sequence[Example]) -> int:
    """Bytes of the examples as they appear in the request body (compact JSON, UTF-8)."""
    if not examples:
        return len('{"examples":{"examples":[]}}')
    # Encode the strings once as a flat JSON list, then add the fixed framing of each example:
    # {"examples":{"examples":[{"textInput":A,"output":B},...]}} vs [A,B,...].
    flat = json.dumps([x for e in examples for x in (e.text_input, e.output)], ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")
    n = len(examples)
    strings = len(flat) - 2 - (2 * n - 1)
    per_example = len('{"textInput":,"output":}')
    return len('{"examples":{"examples":[]}}') + strings + per_example * n + (n - 1)


def load_examples(spec: JobSpec) -> DatasetResult:
    """The spec's training examples, from its dataset file or inline examples; raises DatasetError.

    With `dataset.validation_split`, the held-out examples are in `held_out`, not in `examples`.
    """
    ds = spec.dataset
    if ds.inline_examples is not None:
        lines = [spec.lines.get(f"dataset.examples[{i}]") for i in range(len(ds.inline_examples))]
        result = examples_from_inline(ds.inline_examples, shown_path(spec.path), lines)
    elif ds.path is None:
        raise DatasetError([Problem(str(spec.path), "no dataset: set dataset.path or dataset.examples",
                                    line=spec.lines.get("dataset"), key_path="dataset")])
    else:
        result = read_dataset_file(ds)
    split = getattr(ds, "validation_split", None)
    if split is None:
        return result
    train, held = split_examples(result.examples, split)
    if split.count is not None and split.count >= len(result.examples):
        held = []
    if not held:
        raise DatasetError([Problem(result.source,
                                    f"validation_split holds out no example of {len(result.examples)}",
                                    line=spec.lines.get("dataset.validation_split"),
                                    key_path="dataset.validation_split",
                                    hint="training needs at least one example and the split at least one")])
    return replace(result, examples=train, held_out=held, stats=stats_of(train))


def split_examples(examples: Sequence[Example], split: ValidationSplit
                   ) -> tuple[list[Example], list[Example]]:
    """(training, held-out): the `split.size(len)` examples whose seeded content hashes are lowest.

    The choice depends on each example's content (and the seed), not on its row number, so it is the
    same on every run and an added row moves at most one example in or out.
    """
    seen: dict[tuple[str, str], int] = {}
    keys = []
    for e in examples:
        nth = seen[(e.text_input, e.output)] = seen.get((e.text_input, e.output), -1) + 1
        text = json.dumps([split.seed, e.text_input, e.output, nth], ensure_ascii=False)
        keys.append(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
    n = split.size(len(examples))
    held = set(sorted(range(len(examples)), key=keys.__getitem__)[:n])
    train = [e for i, e in enumerate(examples) if i not in held]
    return train, [e for i, e in enumerate(examples) if i in held]


def read_eval_examples(path: Path, fmt: str | None, input_column: str, output_column: str,
                       problems: Problems) -> list[tuple[str, str, int | None, str]]:
    """`evaluation.dataset`: (input, expected, row, file) of each row; its problems go to `problems`."""
    shown = shown_path(path)
    try:
        result = read_examples(path, format=fmt, input_column=input_column, output_column=output_column,
                               display_path=shown)
    except DatasetError as exc:
        problems.items.extend(exc.problems)
        return []
    return [(e.text_input, e.output, i, shown) for i, e in enumerate(result.examples, 1)]


def read_dataset_file(ds: DatasetSpec) -> DatasetResult:
    """The examples in the file that `dataset.path` names, read with the spec's dataset settings."""
    assert ds.path is not None
    return read_examples(ds.path, format=ds.format, input_column=ds.input_column,
                         output_column=ds.output_column, display_path=shown_path(ds.path))
