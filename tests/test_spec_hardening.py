"""Bad spec input answered as one located problem: size limits, symlink loops on the command line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tunespec.errors import SpecError
from tunespec.spec import expand_spec_paths, load_spec
from tunespec.spec.interpolation import interpolate
from tunespec.spec.located_yaml import MAX_SPEC_BYTES


def test_oversized_spec_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_bytes(b"name: a\ndescription: " + b"x" * (MAX_SPEC_BYTES + 1) + b"\n")
    with pytest.raises(SpecError) as info:
        load_spec(path, env={})
    [problem] = info.value.problems
    assert problem.line == 1 and "the spec file has" in problem.message


def test_symlink_loop_named_on_the_command_line(tmp_path: Path) -> None:
    os.symlink("b.yaml", tmp_path / "a.yaml")
    os.symlink("a.yaml", tmp_path / "b.yaml")
    with pytest.raises(SpecError) as info:
        expand_spec_paths([tmp_path / "a.yaml"])
    assert "loop of symbolic links" in info.value.problems[0].message


def test_symlink_loops_inside_a_directory_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text("name: a\n", "utf-8")
    os.symlink("y.yaml", tmp_path / "x.yaml")
    os.symlink("x.yaml", tmp_path / "y.yaml")
    assert expand_spec_paths([tmp_path]) == [tmp_path / "job.yaml"]


@pytest.mark.parametrize(("text", "fragment"), [
    ("${FOO", "unclosed variable reference ${FOO"),
    ("a ${FOO} ${BAR", "unclosed variable reference ${BAR"),
])
def test_unclosed_variable(text: str, fragment: str) -> None:
    _, problems = interpolate(text, {"FOO": "x"})
    assert [m for m, _ in problems if fragment in m]


def test_escaped_and_closed_variables_still_work() -> None:
    assert interpolate("$${X} ${A} ${B:-d}", {"A": "1"}) == ("${X} 1 d", [])


def test_float_integers_reach_the_spec_as_ints(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("text_input,output\na,b\n", "utf-8")
    path = tmp_path / "job.yaml"
    spec_text = "name: a\ntop_k: 4e1\nhyperparameters: {epoch_count: 1e1}\ndataset: {path: d.csv}\n"
    path.write_text(spec_text, "utf-8")
    spec = load_spec(path, env={})
    assert spec.top_k == 40 and isinstance(spec.top_k, int)
    assert spec.hyperparameters.epoch_count == 10 and isinstance(spec.hyperparameters.epoch_count, int)
