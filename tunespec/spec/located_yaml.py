"""One YAML file -> plain data plus the file:line:column of every key and value, `${VAR}`s resolved."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tunespec.spec.interpolation import interpolate
from tunespec.spec.locations import KeyPath, Loc, LocatedDoc, Problems


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML, plus YAML 1.2 floats without a dot (`1e-3` is a number, not a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)

_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
MAX_SPEC_BYTES = 16 * 2**20  # a spec (inline examples included) is far below the API's 4 MiB upload
MAX_ALIAS_VALUES = 100_000  # values that aliases may repeat (a "billion laughs" repeats 10**9)


class _AliasBomb(Exception):
    def __init__(self, path: KeyPath):
        self.path = path


def parse(path: Path, shown: str, env: Mapping[str, str], problems: Problems) -> LocatedDoc | None:
    """The document in `path` (shown to users as `shown`); None, with the problem added, when the
    file cannot be read or is not YAML."""
    top = Loc(shown, path, 1, 1)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        problems.at(top, "", "no such file")
        return None
    except IsADirectoryError:
        problems.at(top, "", "is a directory, not a spec file")
        return None
    except OSError as exc:
        problems.at(top, "", f"cannot read the file: {exc.strerror or exc}")
        return None
    if len(data) > MAX_SPEC_BYTES:
        problems.at(top, "", f"the spec file has {len(data) / 2**20:.1f} MiB; at most "
                    f"{MAX_SPEC_BYTES // 2**20} MiB are read", "move large inline examples to a dataset file")
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problems.at(Loc(shown, path, line, 1), "", "not valid UTF-8", "save the file as UTF-8")
        return None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(filter(None, [exc.context, exc.problem]))
        hint = ""
        if exc.context_mark is not None and "quoted scalar" in (exc.context or "") and \
                "end of stream" in (exc.problem or ""):
            mark = exc.context_mark  # where the quote opened, not the end of the file
            what, hint = "a quoted value is never closed", "close the quote that starts here"
        loc = Loc(shown, path, mark.line + 1, mark.column + 1) if mark else top
        lines = text.splitlines()
        bad_line = lines[mark.line] if mark and mark.line < len(lines) else ""
        tab = "\t" in bad_line[: len(bad_line) - len(bad_line.lstrip())]
        hint = hint or ("YAML indents with spaces, not tabs: replace the tab" if tab else "")
        problems.at(loc, "", f"invalid YAML: {what}", hint)
        return None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, e.g. a NUL byte
        before = text[: exc.position] if isinstance(exc.position, int) else ""
        line, column = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        problems.at(Loc(shown, path, line, column), "",
                    f"invalid YAML: character {ord(char):#06x} is not allowed in YAML",
                    "remove it; a NUL byte often means the file is not UTF-8 text")
        return None
    except yaml.YAMLError as exc:
        problems.at(top, "", f"invalid YAML: {exc}")
        return None
    finally:
        loader.dispose()
    if node is None:
        problems.at(top, "", "the file is empty", "run `tunespec init` for a starting point")
        return None
    doc = LocatedDoc(None, {}, {}, top)
    try:
        doc.data = _Builder(loader, doc, env, problems).build(node, ())
    except RecursionError:
        problems.at(top, "", "the YAML is nested too deeply")
        return None
    except _AliasBomb as bomb:
        problems.add(doc, bomb.path, f"YAML aliases expand to more than {MAX_ALIAS_VALUES:,} values",
                     "nested anchors multiply, as in a 'billion laughs': "
                     "write the values out or use fewer aliases")
        return None
    return doc


class _Builder:
    """Turns a composed YAML node tree into plain data, recording where each value came from."""

    def __init__(self, loader: Any, doc: LocatedDoc, env: Mapping[str, str], problems: Problems):
        self.loader, self.doc, self.env, self.problems = loader, doc, env, problems
        self.active: set[int] = set()
        self.built: set[int] = set()  # nodes built once; building one again is an alias's repeat
        self.repeats = 0

    def loc(self, mark: Any) -> Loc:
        return Loc(self.doc.top.file, self.doc.top.path, mark.line + 1, mark.column + 1)

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.doc.values[path] = self.loc(node.start_mark)
        if id(node) in self.active:
            self.problems.add(self.doc, path, "recursive YAML alias")
            return None
        if id(node) in self.built:
            self.repeats += 1
            if self.repeats > MAX_ALIAS_VALUES:
                raise _AliasBomb(path[:1] or path)
        else:
            self.built.add(id(node))
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
        text, unresolved = interpolate(value, self.env)
        for message, hint in unresolved:
            self.problems.add(self.doc, path, message, hint)
        if unresolved:
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
