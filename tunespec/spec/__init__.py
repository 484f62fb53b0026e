"""YAML job spec -> validated, typed JobSpec, with file:line errors and a did-you-mean.

The dataclasses below are the contract the rest of tunespec relies on (plan, apply, evaluate,
report). Add fields if needed; do not rename or remove them.
"""

from __future__ import annotations

import difflib
import glob
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from tunespec.errors import DatasetError, Problem, SpecError


@dataclass(frozen=True)
class Hyperparameters:
    epoch_count: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    learning_rate_multiplier: float | None = None


@dataclass(frozen=True)
class Assertion:
    """One check on a generated output. kind: equals, contains, icontains, starts_with, regex, one_of."""

    kind: str
    value: str | tuple[str, ...]
    negate: bool = False  # the `not_` variants

    @property
    def label(self) -> str:
        return ("not_" if self.negate else "") + self.kind


@dataclass(frozen=True)
class EvalPrompt:
    input: str
    assertions: tuple[Assertion, ...]
    repeat: int = 1
    name: str | None = None
    line: int | None = None  # where the prompt is defined (spec line or prompts-file row)
    source: str | None = None  # the file that defines it


@dataclass(frozen=True)
class Evaluation:
    prompts: tuple[EvalPrompt, ...]
    threshold: float = 1.0  # minimum suite pass rate, 0..1
    candidate_count: int = 1
    temperature: float | None = None  # None: the model's default
    max_output_tokens: int | None = None
    compare_base: bool = False
    concurrency: int = 4


@dataclass(frozen=True)
class DatasetSpec:
    path: Path | None = None  # absolute, resolved against the spec file's directory
    format: str | None = None  # csv, tsv, jsonl, json; None: from the extension
    input_column: str = "text_input"
    output_column: str = "output"
    inline_examples: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True)
class ReportSpec:
    dir: Path  # absolute
    formats: tuple[str, ...] = ("json", "markdown", "junit", "png")


@dataclass(frozen=True)
class JobSpec:
    path: Path  # the spec file
    name: str
    dataset: DatasetSpec
    report: ReportSpec
    display_name: str | None = None
    description: str | None = None
    target: str = "local"  # local | google | an http(s) URL
    project: str | None = None  # sent as x-goog-user-project
    api_version: str | None = None  # v1beta3 | v1beta; None: derived from the base model
    base_model: str | None = None
    source_model: str | None = None
    tuning_method: str | None = None  # full | lora (local engine)
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    evaluation: Evaluation | None = None
    lines: dict[str, int] = field(default_factory=dict)  # key path -> line, for annotations
    extends: tuple[Path, ...] = ()  # the files this spec extends, nearest first


# ---- loading --------------------------------------------------------------------------------------

DEFAULT_BASE_MODEL = "models/text-bison-001"
SPEC_SUFFIXES = (".yaml", ".yml")
ASSERTION_KINDS = ("equals", "contains", "icontains", "starts_with", "regex", "one_of")
ASSERTION_KEYS = ASSERTION_KINDS + tuple(f"not_{kind}" for kind in ASSERTION_KINDS)
ID_SUFFIX_CHARS = 11  # "-" + the 10-character fingerprint the runner appends to `name`
MAX_TUNED_MODEL_ID = 40  # the API's limit; the schema caps `name` at 40 - 11 = 29 characters

KeyPath = tuple[str | int, ...]


class Loc(NamedTuple):
    """Where a YAML node sits: the file as shown to users, its real path, 1-based line and column."""

    file: str
    path: Path
    line: int
    column: int


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML, plus YAML 1.2 floats without a dot (`1e-3` is a number, not a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)

_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
_VAR = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def format_key_path(path: KeyPath) -> str:
    """('evaluation', 'prompts', 2, 'equals') -> 'evaluation.prompts[2].equals'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Doc:
    """A YAML document as plain data plus the location of every value and key."""

    def __init__(self, data: Any, values: dict[KeyPath, Loc], keys: dict[KeyPath, Loc], top: Loc):
        self.data = data
        self.values = values
        self.keys = keys
        self.top = top
        self.unresolved: set[KeyPath] = set()  # values whose ${VAR} could not be resolved
        self.incomplete = False  # its `extends:` base could not be loaded: missing keys are expected

    def loc(self, path: KeyPath, *, key: bool = False) -> Loc:
        """Location of the value at `path` (or of its key), else of the nearest parent that exists."""
        if key and path in self.keys:
            return self.keys[path]
        while path:
            if path in self.values:
                return self.values[path]
            path = path[:-1]
        return self.top


class _Problems:
    """Collects located problems for one spec."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def at(self, loc: Loc, path: KeyPath | str, message: str, hint: str = "") -> None:
        key_path = path if isinstance(path, str) else format_key_path(path)
        self.items.append(Problem(loc.file, message, loc.line, loc.column, key_path, hint))

    def add(self, doc: _Doc, path: KeyPath, message: str, hint: str = "", *, key: bool = False) -> None:
        self.at(doc.loc(path, key=key), path, message, hint)

    def sorted(self) -> list[Problem]:
        seen: set[str] = set()
        unique = [p for p in self.items if not (str(p) in seen or seen.add(str(p)))]
        return sorted(unique, key=lambda p: (p.file, p.line or 0, p.column or 0))


def _shown(path: Path) -> str:
    """A path as users see it: relative to the working directory when below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# ---- YAML with locations and ${VAR} interpolation -------------------------------------------------


def _parse(path: Path, shown: str, env: Mapping[str, str], problems: _Problems) -> _Doc | None:
    top = Loc(shown, path, 1, 1)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        problems.at(top, "", "no such file")
        return None
    except IsADirectoryError:
        problems.at(top, "", "is a directory, not a spec file")
        return None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        problems.at(Loc(shown, path, line, 1), "", "not valid UTF-8", "save the file as UTF-8")
        return None
    except OSError as exc:
        problems.at(top, "", f"cannot read the file: {exc.strerror or exc}")
        return None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Loc(shown, path, mark.line + 1, mark.column + 1) if mark else top
        what = " ".join(filter(None, [exc.context, exc.problem]))
        bad_line = text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else ""
        tab = "\t" in bad_line[: len(bad_line) - len(bad_line.lstrip())]
        hint = "YAML indents with spaces, not tabs: replace the tab" if tab else ""
        problems.at(loc, "", f"invalid YAML: {what}", hint)
        return None
    except yaml.YAMLError as exc:
        problems.at(top, "", f"invalid YAML: {exc}")
        return None
    finally:
        loader.dispose()
    if node is None:
        problems.at(top, "", "the file is empty", "run `tunespec init` for a starting point")
        return None
    doc = _Doc(None, {}, {}, top)
    try:
        doc.data = _Builder(loader, doc, shown, path, env, problems).build(node, ())
    except RecursionError:
        problems.at(top, "", "the YAML is nested too deeply")
        return None
    return doc


class _Builder:
    """Turns a composed YAML node tree into plain data, recording where each value came from."""

    def __init__(self, loader: Any, doc: _Doc, shown: str, path: Path, env: Mapping[str, str],
                 problems: _Problems):
        self.loader, self.doc, self.shown, self.path = loader, doc, shown, path
        self.env, self.problems = env, problems
        self.active: set[int] = set()

    def loc(self, mark: Any) -> Loc:
        return Loc(self.shown, self.path, mark.line + 1, mark.column + 1)

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.doc.values[path] = self.loc(node.start_mark)
        if id(node) in self.active:
            self.problems.add(self.doc, path, "recursive YAML alias")
            return None
        if isinstance(node, yaml.ScalarNode):
            try:
                return self.scalar(node, path)
            except yaml.YAMLError:
                return self.unsupported(node, path)
        if node.tag not in _PLAIN_TAGS:
            return self.unsupported(node, path)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            return self.mapping(node, path)
        finally:
            self.active.discard(id(node))

    def unsupported(self, node: yaml.Node, path: KeyPath) -> None:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        self.problems.add(self.doc, path, f"unsupported YAML tag {tag}",
                          "only plain YAML is read; remove the tag")
        self.doc.unresolved.add(path)

    def mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        own = {id(k) for k, _ in node.value}
        try:
            self.loader.flatten_mapping(node)  # YAML merge keys (<<)
        except yaml.MarkedYAMLError as exc:
            self.problems.at(self.loc(exc.problem_mark), path, f"invalid merge key: {exc.problem}")
        out: dict[str, Any] = {}
        from_own: dict[str, bool] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.at(self.loc(key_node.start_mark), path, "keys must be plain text")
                continue
            key = key_node.value
            child = (*path, key)
            if key in out and from_own.get(key) and id(key_node) in own:
                first = self.doc.keys[child].line
                self.problems.at(self.loc(key_node.start_mark), child,
                                 f"duplicate key {key!r} (first set on line {first})")
                continue
            if key in out:
                self._drop(child)
            self.doc.keys[child] = self.loc(key_node.start_mark)
            from_own[key] = id(key_node) in own
            out[key] = self.build(value_node, child)
        return out

    def _drop(self, prefix: KeyPath) -> None:
        """Forget locations under a key that a later (merge-overriding) key replaces."""
        n = len(prefix)
        for table in (self.doc.values, self.doc.keys):
            for p in [p for p in table if p[:n] == prefix]:
                del table[p]

    def scalar(self, node: yaml.ScalarNode, path: KeyPath) -> Any:
        value = self.loader.construct_object(node, deep=True)
        if not isinstance(value, str) or "$" not in value:
            return value
        before = len(self.problems.items)
        text = self.interpolate(value, path)
        if len(self.problems.items) > before:
            self.doc.unresolved.add(path)
            return value
        if text == value or node.style:  # quoted or block scalars stay text
            return text
        tag = self.loader.resolve(yaml.ScalarNode, text, (True, False))  # unquoted: re-type "3" -> 3
        retyped = yaml.ScalarNode(tag, text, node.start_mark, node.end_mark)
        try:
            return self.loader.construct_object(retyped, deep=True)
        except yaml.YAMLError:
            return text

    def interpolate(self, value: str, path: KeyPath) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            body = match.group(1)
            name, sep, default = body.partition(":-")
            if not _VAR_NAME.match(name):
                self.problems.add(self.doc, path, f"invalid variable reference ${{{body}}}",
                                  "use ${NAME} or ${NAME:-default}; write $${ for a literal ${")
                return match.group(0)
            if name in self.env:
                return self.env[name]
            if sep:
                return default
            self.problems.add(self.doc, path, f"environment variable {name} is not set",
                              f"export {name}=..., or write ${{{name}:-default}}")
            return match.group(0)

        return _VAR.sub(replace, value)


# ---- extends ----------------------------------------------------------------------------------------


def _load_tree(path: Path, env: Mapping[str, str], problems: _Problems,
               chain: tuple[Path, ...] = ()) -> tuple[_Doc | None, tuple[Path, ...]]:
    """Parse `path` and, if it `extends:` another file, merge it over that file. Returns the doc and
    the files it extends (nearest first)."""
    doc = _parse(path, _shown(path), env, problems)
    if doc is None or not isinstance(doc.data, dict) or "extends" not in doc.data:
        return doc, ()
    ref = doc.data.pop("extends")
    where = doc.loc(("extends",))
    if ("extends",) in doc.unresolved:
        doc.incomplete = True
        return doc, ()
    if not isinstance(ref, str) or not ref:
        problems.at(where, "extends", "expected a path to another spec file")
        doc.incomplete = True
        return doc, ()
    base_path = (path.parent / ref).resolve()
    if base_path in (*chain, path.resolve()):
        cycle = " -> ".join(_shown(p) for p in (*chain, path.resolve(), base_path))
        problems.at(where, "extends", f"extends cycle: {cycle}")
        doc.incomplete = True
        return doc, ()
    if not base_path.is_file():
        problems.at(where, "extends", f"no such file: {ref}", f"resolved to {base_path}")
        doc.incomplete = True
        return doc, ()
    before = len(problems.items)
    base, bases = _load_tree(base_path, env, problems, (*chain, path.resolve()))
    if base is None:
        if len(problems.items) == before:
            problems.at(where, "extends", f"cannot load {ref}")
        doc.incomplete = True
        return doc, ()
    if not isinstance(base.data, dict):
        problems.add(base, (), "a spec must be a mapping of keys to values")
        doc.incomplete = True
        return doc, ()
    merged = _Doc(_merge(base.data, doc.data), {}, {}, doc.top)
    merged.unresolved = doc.unresolved | base.unresolved
    merged.incomplete = base.incomplete
    _relocate(merged, merged.data, (), doc, base)
    return merged, (base_path, *bases)


def _merge(base: Any, override: Any) -> Any:
    """Deep-merge mappings; anything else (scalars, lists) in `override` replaces `base`; a key set
    to null in `override` removes the inherited value."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            if value is None and key in base:
                del out[key]
            else:
                out[key] = _merge(base[key], value) if key in base else value
        return out
    return override


def _relocate(merged: _Doc, data: Any, path: KeyPath, child: _Doc, base: _Doc) -> None:
    """Each merged value takes the location from the file that supplied it."""
    for table, child_table, base_table in ((merged.values, child.values, base.values),
                                           (merged.keys, child.keys, base.keys)):
        loc = child_table.get(path) or base_table.get(path)
        if loc is not None:
            table[path] = loc
    if isinstance(data, dict):
        for key, value in data.items():
            _relocate(merged, value, (*path, key), child, base)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            _relocate(merged, value, (*path, i), child, base)


# ---- schema -------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The tuning-job JSON Schema (schemas/tuning-job.schema.json)."""
    from importlib import resources

    text = (resources.files("tunespec") / "schemas" / "tuning-job.schema.json").read_text("utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema())


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = schema()["$defs"][ref.rsplit("/", 1)[1]]
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


@lru_cache(maxsize=1)
def _key_homes() -> dict[str, list[str]]:
    """property name -> the key paths of the objects that allow it (for 'belongs under' hints)."""
    homes: dict[str, list[str]] = {}

    def walk(node: dict[str, Any], where: str) -> None:
        node = _resolve(node)
        for key, sub in node.get("properties", {}).items():
            homes.setdefault(key, []).append(where)
            walk(sub, f"{where}.{key}" if where else key)
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{where}[]")

    walk(schema(), "")
    return homes


def _camel_to_snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).replace("-", "_").lower()


def _unknown_key_hint(key: str, allowed: list[str], here: str) -> str:
    snake = _camel_to_snake(key)
    if snake in allowed:
        return f"did you mean '{snake}'? keys are snake_case"
    close = difflib.get_close_matches(snake, allowed, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    homes = [h for h in _key_homes().get(snake, []) if h != here]
    if homes:
        return f"'{snake}' belongs under '{homes[0].replace('[]', '[...]')}'" if homes[0] else \
            f"'{snake}' is a top-level key"
    return "expected one of: " + ", ".join(allowed)


def _check_unknown_keys(data: Any, node: dict[str, Any], path: KeyPath, doc: _Doc, problems: _Problems,
                        here: str = "") -> None:
    node = _resolve(node)
    if isinstance(data, dict) and "properties" in node:
        allowed = list(node["properties"])
        for key, value in data.items():
            if key not in allowed:
                problems.add(doc, (*path, key), f"unknown key '{key}'", _unknown_key_hint(key, allowed, here),
                             key=True)
            else:
                _check_unknown_keys(value, node["properties"][key], (*path, key), doc, problems,
                                    f"{here}.{key}" if here else key)
    elif isinstance(data, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(data):
            _check_unknown_keys(item, node["items"], (*path, i), doc, problems, f"{here}[]")


_TYPE_NAMES = {"string": "a string", "integer": "an integer", "number": "a number",
               "boolean": "true or false", "object": "a mapping of keys", "array": "a list",
               "null": "nothing"}


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}" if len(value) <= 40 else f"a string of {len(value)} characters"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _schema_message(error: Any) -> tuple[str, str] | None:
    """(message, hint) for a jsonschema error; None for those reported elsewhere."""
    kw, value, sub = error.validator, error.instance, error.schema
    hint = sub.get("x-hint", "") if kw == "maxLength" else ""
    if kw in ("additionalProperties", "not"):
        return None
    if kw == "type":
        expected = error.validator_value
        names = [expected] if isinstance(expected, str) else list(expected)
        message = f"expected {' or '.join(_TYPE_NAMES.get(n, n) for n in names)}, got {_describe(value)}"
        if "string" in names and isinstance(value, (int, float, bool)) and not isinstance(value, bool):
            hint = hint or f'quote it to keep it text: "{value}"'
        numeric = {"number", "integer"} & set(names)
        if numeric and isinstance(value, str) and re.fullmatch(r"[-+0-9.eE_]+", value):
            hint = hint or "remove the quotes"
        return message, hint
    if kw == "enum":
        options = error.validator_value
        close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1, cutoff=0.5)
        return (f"expected one of {', '.join(repr(o) for o in options)}, got {_describe(value)}",
                hint or (f"did you mean {close[0]!r}?" if close else ""))
    if kw in ("anyOf", "oneOf", "pattern"):
        expected = sub.get("x-expected") or f"text matching {sub.get('pattern', '')}"
        return f"expected {expected}, got {_describe(value)}", hint
    if kw == "minimum":
        return f"must be at least {error.validator_value}, got {value}", hint
    if kw == "maximum":
        return f"must be at most {error.validator_value}, got {value}", hint
    if kw == "exclusiveMinimum":
        return f"must be greater than {error.validator_value}, got {value}", hint
    if kw == "exclusiveMaximum":
        return f"must be less than {error.validator_value}, got {value}", hint
    if kw == "maxLength":
        return f"must be at most {error.validator_value} characters, got {len(value)}", hint
    if kw == "minLength":
        return "must not be empty", hint
    if kw == "minItems":
        return f"must have at least {error.validator_value} item(s)", hint
    if kw == "uniqueItems":
        return "items must be unique", hint
    if kw == "required":
        missing = [k for k in error.validator_value if isinstance(value, dict) and k not in value]
        return f"missing required key{'s' if len(missing) > 1 else ''} " + \
            ", ".join(f"'{k}'" for k in missing), hint
    return error.message, hint


def _check_schema(doc: _Doc, problems: _Problems) -> None:
    if not isinstance(doc.data, dict):
        problems.add(doc, (), f"a spec must be a mapping of keys to values, got {_describe(doc.data)}")
        return
    _check_unknown_keys(doc.data, schema(), (), doc, problems)
    for error in _validator().iter_errors(doc.data):
        for leaf in _leaves(error):
            described = _schema_message(leaf)
            if doc.incomplete and leaf.validator == "required":
                continue
            if described is not None and tuple(leaf.absolute_path) not in doc.unresolved:
                problems.add(doc, tuple(leaf.absolute_path), *described)


def _leaves(error: Any) -> list[Any]:
    """The specific errors under a combinator error (anyOf over enum/pattern is reported as a whole)."""
    if error.validator in ("anyOf", "oneOf") and "x-expected" in error.schema:
        return [error]
    if error.context:
        return [leaf for sub in error.context for leaf in _leaves(sub)]
    return [error]


# ---- semantic checks and the typed spec -------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_semantics(doc: _Doc, problems: _Problems) -> None:
    data = doc.data
    if "base_model" in data and "source_model" in data:
        problems.add(doc, ("source_model",), "base_model and source_model are mutually exclusive",
                     "a job tunes a base model or continues from a tuned model, not both", key=True)
    hp = data.get("hyperparameters")
    if isinstance(hp, dict):
        if "learning_rate" in hp and "learning_rate_multiplier" in hp:
            problems.add(doc, ("hyperparameters", "learning_rate_multiplier"),
                         "learning_rate and learning_rate_multiplier are mutually exclusive",
                         "keep one of them", key=True)
        elif "learning_rate_multiplier" in hp and _api_version_of(data) == "v1beta3":
            problems.add(doc, ("hyperparameters", "learning_rate_multiplier"),
                         "learning_rate_multiplier needs api_version v1beta (v1beta3 has learning_rate only)",
                         "use learning_rate, or set api_version: v1beta with a Gemini base model", key=True)
    dataset = data.get("dataset")
    if isinstance(dataset, dict):
        _check_dataset(doc, dataset, problems)
    evaluation = data.get("evaluation")
    if isinstance(evaluation, dict):
        _check_evaluation(doc, evaluation, problems)
    _check_finite(doc, data, (), problems)


def _check_finite(doc: _Doc, data: Any, path: KeyPath, problems: _Problems) -> None:
    """NaN and infinity pass JSON Schema's range checks; no tunespec setting accepts them."""
    if isinstance(data, float) and not math.isfinite(data):
        problems.add(doc, path, f"must be a finite number, got {data}")
    elif isinstance(data, dict):
        for key, value in data.items():
            _check_finite(doc, value, (*path, key), problems)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            _check_finite(doc, value, (*path, i), problems)


def _api_version_of(data: dict[str, Any]) -> str:
    explicit = data.get("api_version")
    if explicit in ("v1beta3", "v1beta"):
        return explicit
    base = data.get("base_model") or ""
    return "v1beta" if isinstance(base, str) and base.startswith("models/gemini") else "v1beta3"


def _file_of(doc: _Doc, path: KeyPath, value: str) -> Path:
    """A path value, resolved against the directory of the file that holds it."""
    return (doc.loc(path).path.parent / value).resolve()


def _check_dataset(doc: _Doc, dataset: dict[str, Any], problems: _Problems) -> None:
    has_path, has_examples = "path" in dataset, "examples" in dataset
    if has_path and has_examples:
        problems.add(doc, ("dataset", "examples"), "dataset.path and dataset.examples are mutually exclusive",
                     key=True)
    elif not has_path and not has_examples:
        problems.add(doc, ("dataset",), "dataset needs a path or inline examples",
                     "add dataset.path: data/train.csv (columns text_input, output)", key=True)
    path = dataset.get("path")
    if isinstance(path, str) and path:
        from tunespec.datasets import infer_format

        resolved = _file_of(doc, ("dataset", "path"), path)
        if not resolved.exists():
            problems.add(doc, ("dataset", "path"), f"dataset file not found: {path}",
                         f"resolved against the spec's directory to {resolved}")
        elif not resolved.is_file():
            problems.add(doc, ("dataset", "path"), f"not a file: {path}")
        fmt = dataset.get("format")
        if infer_format(resolved, fmt if isinstance(fmt, str) else None) is None:
            problems.add(doc, ("dataset", "path"), f"cannot tell the format from the extension of {path}",
                         "set dataset.format: csv, tsv, jsonl or json")


def _check_evaluation(doc: _Doc, evaluation: dict[str, Any], problems: _Problems) -> None:
    prompts = evaluation.get("prompts")
    if "prompts" not in evaluation and "prompts_file" not in evaluation:
        problems.add(doc, ("evaluation",), "evaluation needs prompts or a prompts_file", key=True)
    if isinstance(prompts, list):
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, dict):
                continue
            kinds = [k for k in prompt if k in ASSERTION_KEYS]
            if not kinds and "input" in prompt:
                problems.add(doc, ("evaluation", "prompts", i), "prompt has no assertion",
                             "add one of: " + ", ".join(ASSERTION_KEYS))
            for kind in ("regex", "not_regex"):
                pattern = prompt.get(kind)
                if isinstance(pattern, str):
                    problem = _regex_problem(pattern)
                    if problem:
                        problems.add(doc, ("evaluation", "prompts", i, kind), problem)
    prompts_file = evaluation.get("prompts_file")
    if isinstance(prompts_file, str) and prompts_file:
        resolved = _file_of(doc, ("evaluation", "prompts_file"), prompts_file)
        if not resolved.is_file():
            problems.add(doc, ("evaluation", "prompts_file"), f"prompts file not found: {prompts_file}",
                         f"resolved against the spec's directory to {resolved}")
        elif resolved.suffix.lower() not in (".csv", ".tsv", ".jsonl", ".ndjson"):
            problems.add(doc, ("evaluation", "prompts_file"),
                         "prompts_file must be a .csv, .tsv or .jsonl file")


def _regex_problem(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"invalid regular expression: {exc.msg} at position {exc.pos}"
    return ""


def _assertions_of(items: Iterable[tuple[str, Any]]) -> tuple[Assertion, ...]:
    out = []
    for key, value in items:
        if key in ASSERTION_KEYS:
            negate = key.startswith("not_")
            kind = key[4:] if negate else key
            out.append(Assertion(kind, tuple(value) if isinstance(value, list) else value, negate))
    return tuple(out)


def _read_prompts_file(path: Path, shown: str, problems: _Problems) -> list[EvalPrompt]:
    """Prompts from a CSV/TSV/JSONL file: column input, optional name/repeat, one column per assertion."""
    from tunespec.datasets import ProblemLog, infer_format, read_rows

    log = ProblemLog(shown)
    fmt = infer_format(path) or "csv"
    try:
        header, rows = read_rows(path, fmt, log)
    except OSError as exc:
        problems.items.append(Problem(shown, f"cannot read the prompts file: {exc.strerror or exc}"))
        return []
    allowed = ("input", "name", "repeat", *ASSERTION_KEYS)
    if header is not None:
        for column in header:
            if column not in allowed:
                log.add("column", f"unknown column {column!r}", line=1,
                        hint=_unknown_key_hint(column, list(allowed), "evaluation.prompts[]"))
        if "input" not in header:
            log.add("column", f"missing column 'input' (columns present: {', '.join(header) or 'none'})",
                    line=1)
    prompts: list[EvalPrompt] = []
    for row in rows if not log.has_errors() else ():
        values = {k: v for k, v in row.values.items() if not (fmt != "jsonl" and v == "")}
        bad = False
        if header is None:
            for key in values:
                if key not in allowed:
                    log.add("key", f"unknown key {key!r}", row=row,
                            hint=_unknown_key_hint(key, list(allowed), "evaluation.prompts[]"))
                    bad = True
        text = values.get("input")
        if not isinstance(text, str) or not text:
            log.add("input", "missing or empty 'input'" if not isinstance(text, (int, float)) or
                    isinstance(text, bool) else f"'input' must be a string, got {_describe(text)}", row=row)
            bad = True
        repeat = values.get("repeat", 1)
        if isinstance(repeat, str):
            repeat = int(repeat) if repeat.strip().isdigit() else repeat
        if not isinstance(repeat, int) or isinstance(repeat, bool) or not 1 <= repeat <= 100:
            log.add("repeat", f"'repeat' must be a whole number from 1 to 100, got {repeat!r}", row=row)
            bad = True
        items = []
        for key, value in values.items():
            if key not in ASSERTION_KEYS:
                continue
            if key.endswith("one_of"):
                value = [v for v in value.split("|")] if isinstance(value, str) else value
                ok = isinstance(value, list) and value and all(isinstance(v, str) for v in value)
            else:
                ok = isinstance(value, str)
            if not ok:
                wanted = "a list of strings" if key.endswith("one_of") else "a string"
                log.add("type", f"{key!r} must be {wanted}, got {_describe(value)}", row=row)
                bad = True
                continue
            if key.endswith("regex") and _regex_problem(value):
                log.add("regex", f"{key}: {_regex_problem(value)}", row=row)
                bad = True
                continue
            items.append((key, value))
        if not items and not bad:
            log.add("assertion", "row has no assertion", row=row,
                    hint="fill at least one of: " + ", ".join(ASSERTION_KEYS))
            bad = True
        name = values.get("name")
        if not bad:
            prompts.append(EvalPrompt(text, _assertions_of(items), repeat,
                                      name if isinstance(name, str) else None, row.line, shown))
    problems.items.extend(log.problems())
    return prompts


def _build(doc: _Doc, spec_path: Path, problems: _Problems, extends: tuple[Path, ...]) -> JobSpec | None:
    data = doc.data
    ds = data["dataset"]
    ds_path = _file_of(doc, ("dataset", "path"), ds["path"]) if "path" in ds else None
    inline = tuple((e["text_input"], e["output"]) for e in ds["examples"]) if "examples" in ds else None
    dataset = DatasetSpec(ds_path, ds.get("format"), ds.get("input_column", "text_input"),
                          ds.get("output_column", "output"), inline)
    rep = data.get("report", {})
    # `{name}` lets one report dir setting (say in an `extends:` base) serve many jobs.
    report_dir = _file_of(doc, ("report", "dir"), rep["dir"].replace("{name}", data["name"])) \
        if "dir" in rep else Path.cwd().resolve() / "reports" / data["name"]
    formats = rep.get("formats", ReportSpec.__dataclass_fields__["formats"].default)
    report = ReportSpec(report_dir, tuple(formats))
    evaluation = None
    ev = data.get("evaluation")
    if isinstance(ev, dict):
        prompts = []
        for i, p in enumerate(ev.get("prompts", [])):
            loc = doc.loc(("evaluation", "prompts", i))
            prompts.append(EvalPrompt(p["input"], _assertions_of(p.items()), p.get("repeat", 1),
                                      p.get("name"), loc.line, loc.file))
        if "prompts_file" in ev:
            file = _file_of(doc, ("evaluation", "prompts_file"), ev["prompts_file"])
            prompts += _read_prompts_file(file, _shown(file), problems)
        evaluation = Evaluation(tuple(prompts), float(ev.get("threshold", 1.0)), ev.get("candidate_count", 1),
                                ev.get("temperature"), ev.get("max_output_tokens"),
                                ev.get("compare_base", False), ev.get("concurrency", 4))
    hp = data.get("hyperparameters", {})
    lines = {format_key_path(p): loc.line for p, loc in doc.values.items() if p and loc.path == doc.top.path}
    base_model = data.get("base_model")
    if base_model is None and "source_model" not in data:
        base_model = DEFAULT_BASE_MODEL
    return JobSpec(
        path=spec_path, name=data["name"], dataset=dataset, report=report,
        display_name=data.get("display_name"), description=data.get("description"),
        target=data.get("target", "local"), project=data.get("project"), api_version=data.get("api_version"),
        base_model=base_model, source_model=data.get("source_model"), tuning_method=data.get("tuning_method"),
        hyperparameters=Hyperparameters(hp.get("epoch_count"), hp.get("batch_size"),
                                        _float(hp.get("learning_rate")),
                                        _float(hp.get("learning_rate_multiplier"))),
        temperature=_float(data.get("temperature")), top_p=_float(data.get("top_p")), top_k=data.get("top_k"),
        evaluation=evaluation, lines=lines, extends=extends,
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


# ---- public API ---------------------------------------------------------------------------------------


def load_spec(path: str | Path, *, env: Mapping[str, str] | None = None) -> JobSpec:
    """Load and validate one spec file; raises SpecError carrying every problem found."""
    path = Path(path)
    problems = _Problems()
    doc, extends = _load_tree(path, os.environ if env is None else env, problems)
    if doc is None:
        raise SpecError(problems.sorted())
    _check_schema(doc, problems)
    if not isinstance(doc.data, dict):
        raise SpecError(problems.sorted())
    _check_semantics(doc, problems)
    if not problems.items:
        spec = _build(doc, path, problems, extends)
        if not problems.items:
            return spec
    else:
        _check_files_of_invalid_spec(doc, problems)
    raise SpecError(problems.sorted())


def _check_files_of_invalid_spec(doc: _Doc, problems: _Problems) -> None:
    """The spec has problems elsewhere: still read its dataset and prompts file when their settings
    are fine, so that one run reports everything."""
    from tunespec.datasets import read_examples

    def clean(prefix: str) -> bool:
        return not any(p.key_path == prefix or p.key_path.startswith((prefix + ".", prefix + "["))
                       for p in problems.items)

    ds = doc.data.get("dataset")
    if clean("dataset") and isinstance(ds, dict) and isinstance(ds.get("path"), str):
        file = _file_of(doc, ("dataset", "path"), ds["path"])
        try:
            read_examples(file, format=ds.get("format"), input_column=ds.get("input_column", "text_input"),
                          output_column=ds.get("output_column", "output"), display_path=_shown(file))
        except DatasetError as exc:
            problems.items.extend(exc.problems)
    ev = doc.data.get("evaluation")
    if clean("evaluation") and isinstance(ev, dict) and isinstance(ev.get("prompts_file"), str):
        file = _file_of(doc, ("evaluation", "prompts_file"), ev["prompts_file"])
        _read_prompts_file(file, _shown(file), problems)


def expand_spec_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files, directories (their *.yaml / *.yml, recursively) and globs -> spec files, in order.

    Files whose name starts with '_' are skipped in directories and globs: they hold shared settings
    meant for `extends:`. Raises SpecError for a path that matches nothing.
    """
    found: list[Path] = []
    problems: list[Problem] = []
    for raw in paths:
        text = str(raw)
        if glob.has_magic(text):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
            files = [m for m in matches if m.is_file() and m.suffix in SPEC_SUFFIXES and not _partial(m)]
            for m in matches:
                if m.is_dir():
                    files += _spec_files_in(m)
            if not files:
                problems.append(Problem(text, "no spec files match this pattern"))
            found += files
        elif Path(text).is_dir():
            files = _spec_files_in(Path(text))
            if not files:
                problems.append(Problem(text, "no *.yaml or *.yml spec files in this directory"))
            found += files
        elif Path(text).exists():
            found.append(Path(text))
        else:
            problems.append(Problem(text, "no such file or directory"))
    if problems:
        raise SpecError(problems)
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)
    return list(unique.values())


def _partial(path: Path) -> bool:
    return path.name.startswith("_")


def _spec_files_in(directory: Path) -> list[Path]:
    files = [p for p in directory.rglob("*") if p.suffix in SPEC_SUFFIXES and p.is_file() and not _partial(p)
             and not any(part.startswith(".") for part in p.relative_to(directory).parts)]
    return sorted(files)


def load_specs(paths: Iterable[str | Path], *, env: Mapping[str, str] | None = None) -> list[JobSpec]:
    """Load every spec under `paths` (files, directories, globs); raises SpecError with all problems."""
    problems: list[Problem] = []
    try:
        files = expand_spec_paths(paths)
    except SpecError as exc:
        problems += exc.problems
        files = []
    specs = []
    for file in files:
        try:
            specs.append(load_spec(file, env=env))
        except SpecError as exc:
            problems += exc.problems
    if problems:
        raise SpecError(problems)
    return specs


__all__ = [
    "DEFAULT_BASE_MODEL", "Assertion", "DatasetError", "DatasetSpec", "EvalPrompt", "Evaluation",
    "Hyperparameters", "JobSpec", "ReportSpec", "expand_spec_paths", "format_key_path", "load_spec",
    "load_specs", "schema",
]
