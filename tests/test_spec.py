"""The spec loader: YAML -> JobSpec, every problem located (file:line:column, key path, expectation)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tunespec.errors import SpecError
from tunespec.spec import (
    DEFAULT_BASE_MODEL,
    Assertion,
    expand_spec_paths,
    format_key_path,
    load_spec,
    load_specs,
    schema,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "jobs" / "number-generator.yaml"

MINIMAL = """\
name: demo
dataset:
  path: data.csv
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "data.csv").write_text("text_input,output\n1,2\n", "utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(directory: Path, text: str, name: str = "job.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), "utf-8")
    return path


def problems_of(path: Path, env: dict[str, str] | None = None) -> list:
    with pytest.raises(SpecError) as info:
        load_spec(path, env=env if env is not None else {})
    return info.value.problems


def one(path: Path, env: dict[str, str] | None = None):
    problems = problems_of(path, env)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def test_example_job_loads():
    spec = load_spec(EXAMPLE)
    assert spec.name == "number-generator"
    assert spec.base_model == "models/smollm2-135m-instruct"
    assert spec.hyperparameters.epoch_count == 3  # the quickstart's own hyperparameters
    assert spec.hyperparameters.batch_size == 2 and spec.hyperparameters.learning_rate == 0.001
    assert spec.evaluation is not None and spec.evaluation.compare_base
    assert spec.dataset.path == REPO / "examples" / "data" / "number-generator.csv"
    assert spec.evaluation is not None and 0 < spec.evaluation.threshold < 1
    inputs = [p.input for p in spec.evaluation.prompts]
    assert "1" in inputs and "4" in inputs  # a training input and a held-out one
    held_out = next(p for p in spec.evaluation.prompts if p.input == "4")
    assert Assertion("equals", "5") in held_out.assertions
    assert held_out.line and held_out.source.endswith("number-generator.yaml")
    assert spec.lines["hyperparameters.epoch_count"] > 1


def test_every_example_job_starts_with_the_schema_modeline():
    for path in (REPO / "jobs").glob("*.yaml"):
        first = path.read_text("utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schemas/tuning-job.schema.json", path


def test_minimal_spec_defaults(workdir: Path):
    spec = load_spec(write(workdir, MINIMAL))
    assert spec.base_model == DEFAULT_BASE_MODEL
    assert spec.target == "local"
    assert spec.dataset.path == workdir / "data.csv"
    assert spec.dataset.input_column == "text_input" and spec.dataset.output_column == "output"
    assert spec.report.dir == workdir.resolve() / "reports" / "demo"
    assert spec.evaluation is None


def test_misspelt_key_has_location_and_did_you_mean(workdir: Path):
    p = one(write(workdir, MINIMAL + "hyperparameters:\n  epoch_cout: 3\n"))
    assert (p.file, p.line, p.column) == ("job.yaml", 5, 3)
    assert p.key_path == "hyperparameters.epoch_cout"
    assert "did you mean 'epoch_count'" in p.hint
    assert str(p).startswith("job.yaml:5:3: hyperparameters.epoch_cout: unknown key")


def test_camel_case_key_suggests_snake_case(workdir: Path):
    p = one(write(workdir, MINIMAL + "hyperparameters:\n  epochCount: 3\n"))
    assert p.line == 5 and "did you mean 'epoch_count'" in p.hint


def test_key_at_the_wrong_level_says_where_it_belongs(workdir: Path):
    p = one(write(workdir, MINIMAL + "batch_size: 4\n"))
    assert p.line == 4 and "belongs under 'hyperparameters'" in p.hint


def test_unknown_key_without_close_match_lists_the_allowed_ones(workdir: Path):
    p = one(write(workdir, MINIMAL + "report:\n  zzzz: 1\n"))
    assert p.line == 5 and "dir" in p.hint and "formats" in p.hint


def test_all_problems_at_once_sorted_by_line(workdir: Path):
    text = """\
    name: Demo_Job
    target: ftp://example
    dataset:
      path: missing.csv
    hyperparameters:
      epoch_count: 0
      batch_size: two
    temperature: 3
    evaluation:
      threshold: 2
      candidate_count: 9
      prompts:
        - input: "1"
          regex: "("
    """
    problems = problems_of(write(workdir, text))
    messages = [(p.line, p.key_path) for p in problems]
    assert (1, "name") in messages and (2, "target") in messages
    assert (6, "hyperparameters.epoch_count") in messages and (7, "hyperparameters.batch_size") in messages
    assert (8, "temperature") in messages and (10, "evaluation.threshold") in messages
    assert (11, "evaluation.candidate_count") in messages
    assert [p.line for p in problems] == sorted(p.line for p in problems)
    target = next(p for p in problems if p.key_path == "target")
    assert "'local', 'google' or an http(s):// URL" in target.message


def test_semantic_problems_reported_once_structure_is_valid(workdir: Path):
    text = """\
    name: demo
    dataset:
      path: missing.csv
    evaluation:
      prompts:
        - input: "1"
          regex: "("
        - input: "2"
    """
    problems = problems_of(write(workdir, text))
    by_path = {p.key_path: p for p in problems}
    assert by_path["dataset.path"].line == 3 and "not found: missing.csv" in by_path["dataset.path"].message
    assert by_path["evaluation.prompts[0].regex"].line == 7
    assert "invalid regular expression" in by_path["evaluation.prompts[0].regex"].message
    assert by_path["evaluation.prompts[1]"].line == 8
    assert "no assertion" in by_path["evaluation.prompts[1]"].message


def test_number_where_text_is_required_suggests_quotes(workdir: Path):
    p = one(write(workdir, MINIMAL + "evaluation:\n  prompts:\n    - input: '1'\n      equals: 2\n"))
    assert (p.line, p.key_path) == (7, "evaluation.prompts[0].equals")
    assert "expected a string, got integer 2" in p.message and 'quote it' in p.hint


def test_enum_error_suggests_close_value(workdir: Path):
    p = one(write(workdir, MINIMAL + "tuning_method: lroa\n"))
    assert p.line == 4 and "'full', 'lora'" in p.message and "did you mean 'lora'" in p.hint


def test_missing_required_keys_point_at_the_parent(workdir: Path):
    problems = problems_of(write(workdir, "description: x\n"))
    assert any("missing required keys 'name', 'dataset'" in p.message and p.line == 1 for p in problems)


def test_name_too_long_for_the_tuned_model_id(workdir: Path):
    p = one(write(workdir, MINIMAL.replace("demo", "a" * 30)))
    assert p.line == 1 and p.key_path == "name"
    assert "at most 29 characters, got 30" in p.message
    assert "fingerprint" in p.hint and "40" in p.hint


def test_schema_name_limit_leaves_room_for_the_fingerprint():
    from tunespec.spec import ID_SUFFIX_CHARS, MAX_TUNED_MODEL_ID

    name = schema()["properties"]["name"]
    assert name["maxLength"] == MAX_TUNED_MODEL_ID - ID_SUFFIX_CHARS == 29
    assert "29 characters" in name["description"]


def test_name_pattern(workdir: Path):
    p = one(write(workdir, MINIMAL.replace("demo", "Demo-")))
    assert p.line == 1 and "lowercase letters" in p.message


def test_display_name_limit(workdir: Path):
    p = one(write(workdir, MINIMAL + f"display_name: {'x' * 41}\n"))
    assert p.line == 4 and "at most 40 characters" in p.message


def test_learning_rate_and_multiplier_are_exclusive(workdir: Path):
    text = MINIMAL + "api_version: v1beta\nhyperparameters:\n  learning_rate: 0.1\n"
    text += "  learning_rate_multiplier: 2\n"
    p = one(write(workdir, text))
    assert p.line == 7 and "mutually exclusive" in p.message


def test_learning_rate_multiplier_needs_v1beta(workdir: Path):
    p = one(write(workdir, MINIMAL + "hyperparameters:\n  learning_rate_multiplier: 2\n"))
    assert p.line == 5 and "v1beta" in p.message


def test_base_and_source_model_are_exclusive(workdir: Path):
    text = MINIMAL + "base_model: models/text-bison-001\nsource_model: tunedModels/abc-123\n"
    p = one(write(workdir, text))
    assert p.line == 5 and "mutually exclusive" in p.message


def test_source_model_only(workdir: Path):
    spec = load_spec(write(workdir, MINIMAL + "source_model: tunedModels/abc-123\n"), env={})
    assert spec.source_model == "tunedModels/abc-123" and spec.base_model is None


def test_dataset_needs_path_or_examples(workdir: Path):
    p = one(write(workdir, "name: demo\ndataset:\n  format: csv\n"))
    assert p.line == 2 and "path or inline examples" in p.message


def test_dataset_path_and_examples_are_exclusive(workdir: Path):
    text = MINIMAL + "  examples:\n    - {text_input: a, output: b}\n"
    p = one(write(workdir, text))
    assert p.line == 4 and "mutually exclusive" in p.message


def test_dataset_format_unknown_extension(workdir: Path):
    (workdir / "data.txt").write_text("x", "utf-8")
    p = one(write(workdir, MINIMAL.replace("data.csv", "data.txt")))
    assert p.line == 3 and "set dataset.format" in p.hint


def test_dataset_path_relative_to_the_spec_file(workdir: Path):
    (workdir / "jobs").mkdir()
    spec = load_spec(write(workdir / "jobs", MINIMAL.replace("data.csv", "../data.csv")), env={})
    assert spec.dataset.path == workdir / "data.csv"


def test_inline_examples(workdir: Path):
    text = "name: demo\ndataset:\n  examples:\n    - {text_input: a, output: b}\n"
    text += "    - {text_input: c, output: d}\n"
    spec = load_spec(write(workdir, text), env={})
    assert spec.dataset.inline_examples == (("a", "b"), ("c", "d"))
    assert spec.lines["dataset.examples[1]"] == 5


def test_yaml_syntax_error_is_located(workdir: Path):
    p = one(write(workdir, "name: demo\ndataset:\n  path: [unclosed\n"))
    assert p.file == "job.yaml" and p.line and p.line >= 3 and "invalid YAML" in p.message
    assert p.hint == ""


def test_tab_indentation_says_so(workdir: Path):
    p = one(write(workdir, "name: demo\nhyperparameters:\n\tepoch_count: 3\n"))
    assert (p.file, p.line) == ("job.yaml", 3) and "invalid YAML" in p.message
    assert "not tabs" in p.hint


def test_empty_file(workdir: Path):
    p = one(write(workdir, "# nothing\n"))
    assert p.line == 1 and "empty" in p.message


def test_top_level_must_be_a_mapping(workdir: Path):
    p = one(write(workdir, "- a\n- b\n"))
    assert p.line == 1 and "mapping" in p.message


def test_duplicate_key(workdir: Path):
    p = one(write(workdir, MINIMAL + "name: other\n"))
    assert p.line == 4 and "duplicate key 'name' (first set on line 1)" in p.message


def test_unsafe_yaml_tags_are_rejected(workdir: Path):
    marker = workdir / "pwned"
    text = MINIMAL + f"description: !!python/object/apply:os.system ['touch {marker}']\n"
    text += "project: !!python/name:os.system\n"
    problems = problems_of(write(workdir, text))
    assert [(p.line, p.key_path) for p in problems] == [(4, "description"), (5, "project")]
    assert all("unsupported YAML tag" in p.message for p in problems)
    assert not marker.exists()


def test_file_not_found(workdir: Path):
    p = one(workdir / "nope.yaml")
    assert "no such file" in p.message


def test_invalid_utf8_spec(workdir: Path):
    (workdir / "job.yaml").write_bytes(MINIMAL.encode() + b"description: \xff\n")
    p = one(workdir / "job.yaml")
    assert p.line == 4 and "UTF-8" in p.message


def test_yaml_merge_keys_and_anchors(workdir: Path):
    text = """\
    name: demo
    dataset: {path: data.csv}
    x-defaults: &hp {epoch_count: 3, batch_size: 2}
    """
    p = one(write(workdir, text))  # x-defaults is not a spec key
    assert p.line == 3
    text = """\
    name: demo
    dataset: {path: data.csv}
    hyperparameters:
      <<: {epoch_count: 3, batch_size: 2}
      batch_size: 4
    """
    spec = load_spec(write(workdir, text), env={})
    assert spec.hyperparameters.epoch_count == 3 and spec.hyperparameters.batch_size == 4


def test_exponent_floats_are_numbers(workdir: Path):
    spec = load_spec(write(workdir, MINIMAL + "hyperparameters:\n  learning_rate: 1e-3\n"), env={})
    assert spec.hyperparameters.learning_rate == 0.001


# ---- ${VAR} interpolation -----------------------------------------------------------------------


def test_env_interpolation_and_retyping(workdir: Path):
    text = MINIMAL + "project: ${PROJECT}\nhyperparameters:\n  epoch_count: ${EPOCHS}\n"
    text += 'description: "${X:-dflt} $${LIT}"\n'
    spec = load_spec(write(workdir, text), env={"PROJECT": "my-proj", "EPOCHS": "7"})
    assert spec.project == "my-proj"
    assert spec.hyperparameters.epoch_count == 7
    assert spec.description == "dflt ${LIT}"


def test_unset_variable_is_a_located_error(workdir: Path):
    p = one(write(workdir, MINIMAL + "project: ${GCP_PROJECT}\n"))
    assert (p.line, p.column, p.key_path) == (4, 10, "project")
    assert "environment variable GCP_PROJECT is not set" in p.message


def test_invalid_variable_reference(workdir: Path):
    p = one(write(workdir, MINIMAL + "project: ${1BAD}\n"))
    assert p.line == 4 and "invalid variable reference" in p.message


def test_load_spec_reads_os_environ_by_default(workdir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TUNESPEC_TEST_PROJECT", "from-env")
    spec = load_spec(write(workdir, MINIMAL + "project: ${TUNESPEC_TEST_PROJECT}\n"))
    assert spec.project == "from-env" and os.environ["TUNESPEC_TEST_PROJECT"] == "from-env"


# ---- evaluation --------------------------------------------------------------------------------------


def test_evaluation_prompts_and_settings(workdir: Path):
    text = MINIMAL + """\
evaluation:
  threshold: 0.5
  candidate_count: 2
  compare_base: true
  prompts:
    - input: hi
      name: greeting
      repeat: 3
      icontains: HELLO
      not_one_of: [bye, ciao]
"""
    spec = load_spec(write(workdir, text), env={})
    ev = spec.evaluation
    assert ev.threshold == 0.5 and ev.candidate_count == 2 and ev.compare_base and ev.concurrency is None
    (prompt,) = ev.prompts
    assert prompt.name == "greeting" and prompt.repeat == 3 and prompt.line == 9
    assert prompt.assertions == (Assertion("icontains", "HELLO"), Assertion("one_of", ("bye", "ciao"), True))
    assert prompt.assertions[1].label == "not_one_of"


def test_evaluation_needs_prompts(workdir: Path):
    p = one(write(workdir, MINIMAL + "evaluation:\n  threshold: 0.5\n"))
    assert p.line == 4 and "prompts" in p.message


def test_prompts_file_csv(workdir: Path):
    (workdir / "prompts.csv").write_text(
        "input,name,repeat,equals,one_of,not_regex\n1,first,2,2,,\nx,,,,a|b,^$\n", "utf-8")
    spec = load_spec(write(workdir, MINIMAL + "evaluation:\n  prompts_file: prompts.csv\n"), env={})
    first, second = spec.evaluation.prompts
    assert (first.input, first.name, first.repeat) == ("1", "first", 2)
    assert first.assertions == (Assertion("equals", "2"),)
    assert second.assertions == (Assertion("one_of", ("a", "b")), Assertion("regex", "^$", True))
    assert second.line == 3 and second.source == "prompts.csv"


def test_prompts_file_jsonl(workdir: Path):
    (workdir / "prompts.jsonl").write_text('{"input": "a", "one_of": ["b", "c"], "repeat": 2}\n', "utf-8")
    spec = load_spec(write(workdir, MINIMAL + "evaluation:\n  prompts_file: prompts.jsonl\n"), env={})
    assert spec.evaluation.prompts[0].assertions == (Assertion("one_of", ("b", "c")),)


def test_prompts_file_errors_name_the_row(workdir: Path):
    (workdir / "prompts.csv").write_text("input,equals,regex\n1,2,\n,3,\n4,,(\n5,,\n", "utf-8")
    problems = problems_of(write(workdir, MINIMAL + "evaluation:\n  prompts_file: prompts.csv\n"))
    by_row = {p.key_path: p for p in problems}
    assert (by_row["row 2"].file, by_row["row 2"].line) == ("prompts.csv", 3)
    assert "input" in by_row["row 2"].message
    assert by_row["row 3"].line == 4 and "invalid regular expression" in by_row["row 3"].message
    assert by_row["row 4"].line == 5 and "no assertion" in by_row["row 4"].message


def test_prompts_file_unknown_column(workdir: Path):
    (workdir / "prompts.csv").write_text("input,equal\n1,2\n", "utf-8")
    p = one(write(workdir, MINIMAL + "evaluation:\n  prompts_file: prompts.csv\n"))
    assert (p.file, p.line) == ("prompts.csv", 1) and "did you mean 'equals'" in p.hint


def test_prompts_file_missing(workdir: Path):
    p = one(write(workdir, MINIMAL + "evaluation:\n  prompts_file: nope.csv\n"))
    assert p.line == 5 and "not found" in p.message


# ---- many files ---------------------------------------------------------------------------------------


def test_expand_spec_paths(workdir: Path):
    (workdir / "jobs" / "team").mkdir(parents=True)
    a = write(workdir / "jobs", MINIMAL, "a.yaml")
    b = write(workdir / "jobs" / "team", MINIMAL, "b.yml")
    write(workdir / "jobs", MINIMAL, "_base.yaml")
    (workdir / "jobs" / "notes.txt").write_text("x")
    a, b = a.relative_to(workdir), b.relative_to(workdir)
    assert expand_spec_paths(["jobs"]) == [a, b]
    assert expand_spec_paths(["jobs/*.yaml", "jobs/a.yaml"]) == [a]
    with pytest.raises(SpecError) as info:
        expand_spec_paths(["nothing/", "jobs/*.json"])
    assert [p.file for p in info.value.problems] == ["nothing/", "jobs/*.json"]


def test_load_specs_collects_problems_from_every_file(workdir: Path):
    (workdir / "jobs").mkdir()
    write(workdir / "jobs", MINIMAL.replace("data.csv", "../data.csv"), "good.yaml")
    write(workdir / "jobs", "name: BAD\ndataset: {path: ../data.csv}\n", "bad1.yaml")
    write(workdir / "jobs", "name: x\n", "bad2.yaml")
    with pytest.raises(SpecError) as info:
        load_specs(["jobs"])
    assert {p.file for p in info.value.problems} == {"jobs/bad1.yaml", "jobs/bad2.yaml"}
    assert len(load_specs(["jobs/good.yaml"])) == 1


def test_schema_every_property_has_a_description():
    missing = []

    def walk(node: dict, where: str) -> None:
        for key, sub in node.get("properties", {}).items():
            if "description" not in sub:
                missing.append(f"{where}.{key}")
            walk(sub, f"{where}.{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{where}[]")

    doc = schema()
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    walk(doc, "")
    for name, sub in doc["$defs"].items():
        walk(sub, f"$defs.{name}")
    assert not missing


def test_schema_file_matches_package_copy():
    assert (REPO / "schemas" / "tuning-job.schema.json").read_text() == \
        (REPO / "tunespec" / "schemas" / "tuning-job.schema.json").read_text()


def test_format_key_path():
    assert format_key_path(("evaluation", "prompts", 2, "equals")) == "evaluation.prompts[2].equals"


def test_non_finite_numbers(workdir: Path):
    p = one(write(workdir, MINIMAL + "hyperparameters:\n  learning_rate: .nan\n"))
    assert (p.line, p.key_path) == (5, "hyperparameters.learning_rate") and "finite" in p.message


def test_deeply_nested_yaml_is_an_error_not_a_crash(workdir: Path):
    p = one(write(workdir, MINIMAL + "description: " + "[" * 5000 + "]" * 5000 + "\n"))
    assert p.file == "job.yaml" and ("nested too deeply" in p.message or "invalid YAML" in p.message)


def test_unreadable_prompts_file(workdir: Path):
    (workdir / "prompts.csv").mkdir()
    p = one(write(workdir, MINIMAL + "evaluation:\n  prompts_file: prompts.csv\n"))
    assert p.line == 5 and "not found" in p.message


# ---- extends ------------------------------------------------------------------------------------------

BASE = """\
target: google
project: team-project
hyperparameters:
  epoch_count: 5
  batch_size: 4
  learning_rate: 0.001
dataset:
  path: data/shared.csv
evaluation:
  threshold: 0.9
  prompts:
    - {input: a, equals: b}
    - {input: c, equals: d}
report:
  dir: ../reports
"""


@pytest.fixture
def team(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """jobs/_defaults.yaml (shared settings) in a project whose data lives next to the base file."""
    jobs = tmp_path / "jobs"
    (jobs / "data").mkdir(parents=True)
    (jobs / "data" / "shared.csv").write_text("text_input,output\n1,2\n", "utf-8")
    write(jobs, BASE, "_defaults.yaml")
    monkeypatch.chdir(tmp_path)
    return jobs


def test_extends_deep_merges_mappings_and_replaces_lists(team: Path):
    (team / "sub").mkdir()
    child = write(team / "sub", """\
    extends: ../_defaults.yaml
    name: child
    hyperparameters:
      epoch_count: 20
    evaluation:
      prompts:
        - {input: x, contains: y}
    """, "child.yaml")
    spec = load_spec(child, env={})
    assert spec.name == "child" and spec.target == "google" and spec.project == "team-project"
    hp = spec.hyperparameters
    assert (hp.epoch_count, hp.batch_size, hp.learning_rate) == (20, 4, 0.001)
    assert [p.input for p in spec.evaluation.prompts] == ["x"]  # lists are replaced, not appended
    assert spec.evaluation.threshold == 0.9
    assert spec.dataset.path == team / "data" / "shared.csv"  # relative to the base file
    assert spec.report.dir == team.parent / "reports"
    assert spec.evaluation.prompts[0].source == "jobs/sub/child.yaml"
    assert spec.extends == (team / "_defaults.yaml",)
    assert "hyperparameters.epoch_count" in spec.lines and "hyperparameters.batch_size" not in spec.lines


def test_extends_chain_and_child_paths_relative_to_the_child(team: Path):
    write(team, "extends: _defaults.yaml\ntarget: local\n", "_local.yaml")
    (team / "mine.csv").write_text("text_input,output\n3,4\n", "utf-8")
    child = write(team, "extends: _local.yaml\nname: chained\ndataset: {path: mine.csv}\n", "chained.yaml")
    spec = load_spec(child, env={})
    assert spec.target == "local" and spec.project == "team-project"
    assert spec.dataset.path == team / "mine.csv"
    assert spec.extends == (team / "_local.yaml", team / "_defaults.yaml")


def test_errors_point_at_the_file_that_holds_the_bad_value(team: Path):
    edit_base = (team / "_defaults.yaml").read_text().replace("batch_size: 4", "batch_size: 0")
    (team / "_defaults.yaml").write_text(edit_base.replace("project: team-project", "projekt: x"))
    child = write(team, "extends: _defaults.yaml\nname: child\nhyperparameters: {epoch_cout: 2}\n",
                  "child.yaml")
    problems = problems_of(child)
    located = {(p.file, p.line, p.key_path) for p in problems}
    assert ("jobs/_defaults.yaml", 5, "hyperparameters.batch_size") in located
    assert ("jobs/_defaults.yaml", 2, "projekt") in located
    assert ("jobs/child.yaml", 3, "hyperparameters.epoch_cout") in located


def test_missing_dataset_in_base_points_at_the_base(team: Path):
    (team / "data" / "shared.csv").unlink()
    child = write(team, "extends: _defaults.yaml\nname: child\n", "child.yaml")
    p = one(child)
    assert (p.file, p.line, p.key_path) == ("jobs/_defaults.yaml", 8, "dataset.path")


def test_extends_cycle(team: Path):
    write(team, "extends: b.yaml\nname: a\n", "a.yaml")
    write(team, "extends: a.yaml\n", "b.yaml")
    p = one(team / "a.yaml")
    assert (p.file, p.line, p.key_path) == ("jobs/b.yaml", 1, "extends")
    assert "extends cycle: jobs/a.yaml -> jobs/b.yaml -> jobs/a.yaml" in p.message
    p = one(write(team, "extends: self.yaml\nname: s\n", "self.yaml"))
    assert "cycle" in p.message and p.line == 1


def test_extends_missing_or_invalid_base(team: Path):
    p = one(write(team, "name: c\nextends: nope.yaml\n", "c.yaml"))
    assert (p.file, p.line, p.key_path) == ("jobs/c.yaml", 2, "extends")
    assert "no such file: nope.yaml" in p.message
    write(team, "target: [unclosed\n", "_broken.yaml")
    p = one(write(team, "name: c\nextends: _broken.yaml\n", "c.yaml"))
    assert p.file == "jobs/_broken.yaml" and "invalid YAML" in p.message
    write(team, "- a list\n", "_list.yaml")
    p = one(write(team, "name: c\nextends: _list.yaml\n", "c.yaml"))
    assert p.file == "jobs/_list.yaml" and "mapping" in p.message
    p = one(write(team, "name: c\nextends: [a, b]\n", "c.yaml"))
    assert (p.line, p.key_path) == (2, "extends") and "path" in p.message


def test_null_in_the_child_removes_an_inherited_value(team: Path):
    child = write(team, "extends: _defaults.yaml\nname: child\nevaluation: null\nproject: ~\n", "child.yaml")
    spec = load_spec(child, env={})
    assert spec.evaluation is None and spec.project is None and spec.target == "google"


def test_unset_variable_in_extends(team: Path):
    p = one(write(team, "extends: ${BASE}\nname: child\n", "child.yaml"))
    assert (p.line, p.key_path) == (1, "extends") and "BASE is not set" in p.message
    spec = load_spec(team / "child.yaml", env={"BASE": "_defaults.yaml"})
    assert spec.project == "team-project"


def test_directories_skip_shared_settings_files(team: Path):
    write(team, "extends: _defaults.yaml\nname: child\n", "child.yaml")
    assert expand_spec_paths(["jobs"]) == [Path("jobs/child.yaml")]
    assert [s.name for s in load_specs(["jobs"])] == ["child"]


def test_spec_and_dataset_problems_in_one_run(workdir: Path):
    (workdir / "data.csv").write_text("text_input,output\n1,\n", "utf-8")
    (workdir / "prompts.csv").write_text("input,equals\n,2\n", "utf-8")
    text = MINIMAL + "hyperparameters: {epoch_cout: 3}\nevaluation:\n  prompts_file: prompts.csv\n" \
                     "  prompts:\n    - {input: a, regex: '('}\n"
    problems = problems_of(write(workdir, text))
    located = {(p.file, p.line, p.key_path) for p in problems}
    assert ("job.yaml", 4, "hyperparameters.epoch_cout") in located
    assert ("data.csv", 2, "row 1") in located
    assert ("job.yaml", 8, "evaluation.prompts[0].regex") in located
    assert ("prompts.csv", 2, "row 1") not in located  # evaluation has its own problem: not read yet
    problems = problems_of(write(workdir, MINIMAL + "hyperparameters: {epoch_cout: 3}\n"
                                 "evaluation:\n  prompts_file: prompts.csv\n"))
    assert ("prompts.csv", 2, "row 1") in {(p.file, p.line, p.key_path) for p in problems}


def test_example_jobs_validate_against_the_published_schema():
    import yaml
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema())
    for path in (REPO / "jobs").glob("*.y*ml"):
        assert not list(validator.iter_errors(yaml.safe_load(path.read_text("utf-8")))), path
