"""Evaluation settings in a spec: held-out splits, evaluation datasets and scored assertions, validated."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest

from tests import cli_helpers
from tunespec.datasets import Example, load_examples, split_examples
from tunespec.errors import SpecError
from tunespec.identity import fingerprint
from tunespec.request import render_request
from tunespec.spec import load_spec
from tunespec.spec.model import ValidationSplit

DATA = "text_input,output\n" + "".join(f"{i},{i + 1}\n" for i in range(20))

FULL = """\
name: scored
base_model: models/tunespec-byte-tiny
dataset:
  path: data.csv
  validation_split: 0.25
evaluation:
  dataset: eval.csv
  score_with: {kind: levenshtein, threshold: 0.9}
  judge_model: models/tunespec-byte-tiny
  accuracy_threshold: 0.5
  score_threshold: 0.4
  prompts:
    - input: "1"
      equals: {value: "2", weight: 2, metric: exact}
      similar: two
      python: metrics:is_digit
      judge: The answer is the number two.
      json_schema: {type: integer}
      is_json: true
      rouge_l: {value: "2", threshold: 0.3}
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "data.csv").write_text(DATA, "utf-8")
    (tmp_path / "eval.csv").write_text("text_input,output\n100,101\n200,201\n", "utf-8")
    (tmp_path / "metrics.py").write_text("def is_digit(output, prompt):\n    return output.isdigit()\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(directory: Path, text: str, name: str = "job.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), "utf-8")
    return path


def problems_of(path: Path) -> list:
    with pytest.raises(SpecError) as info:
        load_spec(path, env={})
    return info.value.problems


def test_a_spec_with_every_kind_of_score_validates_and_builds(workdir: Path):
    spec = load_spec(write(workdir, FULL), env={})
    assert spec.dataset.validation_split == ValidationSplit(fraction=0.25)
    ev = spec.evaluation
    assert (ev.accuracy_threshold, ev.score_threshold, ev.judge_model) == (
        0.5,
        0.4,
        "models/tunespec-byte-tiny",
    )
    kinds = {a.kind: a for a in ev.prompts[0].assertions}
    assert set(kinds) == {"equals", "similar", "python", "judge", "json_schema", "is_json", "rouge_l"}
    assert (kinds["equals"].value, kinds["equals"].weight, kinds["equals"].metric) == ("2", 2.0, "exact")
    assert kinds["json_schema"].value == {"type": "integer"} and kinds["rouge_l"].pass_at == 0.3
    assert kinds["similar"].pass_at == 0.8 and kinds["python"].base_dir == workdir
    assert [(p.input, p.expected, p.group) for p in ev.examples] == [
        ("100", "101", "dataset"),
        ("200", "201", "dataset"),
    ]
    assert ev.examples[0].assertions[0].kind == "levenshtein" and ev.examples[0].assertions[0].pass_at == 0.9
    assert "report.html" not in str(spec.report.formats) and "html" in spec.report.formats


def test_validation_split_holds_examples_out_of_training_and_the_request(workdir: Path):
    spec = load_spec(write(workdir, FULL), env={})
    loaded = load_examples(spec)
    assert len(loaded.examples) == 15 and len(loaded.held_out) == 5
    assert not set(loaded.held_out) & set(loaded.examples)
    body = render_request(spec, loaded.examples)
    sent = body["tuningTask"]["trainingData"]["examples"]["examples"]
    assert len(sent) == 15 and {e["textInput"] for e in sent}.isdisjoint(
        {e.text_input for e in loaded.held_out}
    )
    again = load_examples(load_spec(workdir / "job.yaml", env={}))
    assert again.held_out == loaded.held_out  # stable across runs


def test_the_split_is_seeded_sized_and_content_based():
    examples = [Example(str(i), str(i + 1)) for i in range(100)]
    train, held = split_examples(examples, ValidationSplit(fraction=0.2))
    assert len(held) == 20 and len(train) == 80 and train + held != examples
    assert split_examples(examples, ValidationSplit(fraction=0.2))[1] == held
    assert split_examples(examples, ValidationSplit(fraction=0.2, seed=1))[1] != held
    assert len(split_examples(examples, ValidationSplit(count=7))[1]) == 7
    # a row added at the top moves at most one example in or out of the held-out set
    shifted = split_examples([Example("new", "row"), *examples], ValidationSplit(count=20))[1]
    assert len(set(shifted) & set(held)) >= 19


def test_the_fingerprint_covers_the_split(workdir: Path):
    spec = load_spec(write(workdir, FULL), env={})
    examples = load_examples(spec).examples
    other = load_spec(
        write(
            workdir,
            FULL.replace("validation_split: 0.25", "validation_split: {size: 0.25, seed: 3}"),
            "b.yaml",
        ),
        env={},
    )
    assert fingerprint(spec, examples, "v1beta3") != fingerprint(other, examples, "v1beta3")
    plain = load_spec(write(workdir, "name: plain\ndataset:\n  path: data.csv\n", "c.yaml"), env={})
    assert plain.dataset.validation_split is None and plain.evaluation is None


def test_a_split_alone_makes_an_evaluation_and_too_large_a_count_is_an_error(workdir: Path):
    spec = load_spec(write(workdir, "name: s\ndataset:\n  path: data.csv\n  validation_split: 4\n"), env={})
    assert spec.evaluation is not None and spec.evaluation.prompts == ()
    assert len(load_examples(spec).held_out) == 4
    big = load_spec(
        write(workdir, "name: s\ndataset:\n  path: data.csv\n  validation_split: 20\n", "b.yaml"), env={}
    )
    with pytest.raises(SpecError, match="validation_split holds out no example of 20"):
        load_examples(big)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.5", "a fraction between 0 and 1"),
        ("0", "a fraction between 0 and 1"),
        ("lots", "a fraction"),
        ("{size: 0.2, sead: 1}", "a fraction"),
    ],
)
def test_bad_validation_splits_are_located(workdir: Path, value: str, expected: str):
    problems = problems_of(
        write(workdir, f"name: s\ndataset:\n  path: data.csv\n  validation_split: {value}\n")
    )
    assert len(problems) == 1 and problems[0].line == 4 and expected in problems[0].message
    assert problems[0].key_path == "dataset.validation_split"


def test_scored_assertion_problems_name_the_line_and_the_fix(workdir: Path):
    text = (
        FULL.replace("python: metrics:is_digit", "python: metrics:is_digt")
        .replace("  judge_model: models/tunespec-byte-tiny\n", "")
        .replace("json_schema: {type: integer}", "json_schema: {type: integr}")
        .replace('equals: {value: "2", weight: 2, metric: exact}', 'equals: {value: "2", wieght: 2}')
        .replace("dataset: eval.csv", "dataset: missing.csv")
    )
    by_path = {p.key_path: p for p in problems_of(write(workdir, text))}
    python = by_path["evaluation.prompts[0].python"]
    assert (
        python.line == 15 and "defines no function 'is_digt'" in python.message and "is_digit" in python.hint
    )
    judge = by_path["evaluation.prompts[0].judge"]
    assert "judge_model" in judge.message and judge.line == 16
    assert "not a valid JSON Schema" in by_path["evaluation.prompts[0].json_schema"].message
    typo = by_path["evaluation.prompts[0].equals.wieght"]
    assert "unknown key 'wieght'" in typo.message and "did you mean 'weight'" in typo.hint
    assert "evaluation dataset not found: missing.csv" in by_path["evaluation.dataset"].message


def test_a_spec_using_the_eval_extra_without_it_says_how_to_install_it(workdir: Path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "all_minilm_l6_v2" else real(name, *a)
    )
    problems = problems_of(write(workdir, FULL))
    (p,) = [p for p in problems if p.key_path == "evaluation.prompts[0].similar"]
    assert "similar needs the eval extra" in p.message and "pip install 'tunespec[eval]'" in p.hint
    assert p.line == 15
    score_with = write(
        workdir,
        FULL.replace("{kind: levenshtein, threshold: 0.9}", "similar").replace("      similar: two\n", ""),
        "b.yaml",
    )
    (p,) = problems_of(score_with)
    assert p.key_path == "evaluation.score_with" and "pip install 'tunespec[eval]'" in p.hint


def test_validate_cli_reports_the_missing_extra_with_exit_code_2(workdir: Path):
    write(workdir, FULL)
    hide = workdir / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        textwrap.dedent("""
        import importlib.util
        _real = importlib.util.find_spec
        importlib.util.find_spec = lambda name, *a: None if name == "all_minilm_l6_v2" else _real(name, *a)
    """)
    )
    result = cli_helpers.tunespec("validate", "job.yaml", cwd=workdir, env={"PYTHONPATH": str(hide)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "job.yaml:15" in result.stdout + result.stderr
    assert "pip install 'tunespec[eval]'" in result.stdout + result.stderr


def test_a_prompts_file_takes_scored_columns_and_finds_metrics_beside_it(workdir: Path):
    from tunespec.evaluate import check
    from tunespec.scoring import Context

    sub = workdir / "prompts"
    sub.mkdir()
    (sub / "team.py").write_text("def short(output, prompt):\n    return len(output) < 5\n")
    (sub / "p.csv").write_text("input,rouge_l,python\nhi,hello there,team:short\n", "utf-8")
    spec = load_spec(
        write(workdir, "name: s\ndataset:\n  path: data.csv\nevaluation:\n  prompts_file: prompts/p.csv\n"),
        env={},
    )
    (prompt,) = spec.evaluation.prompts
    rouge, python = prompt.assertions
    assert rouge.kind == "rouge_l" and check(rouge, "hello there").passed
    assert (
        check(python, "ok", Context(prompt)).passed and not check(python, "too long", Context(prompt)).passed
    )
