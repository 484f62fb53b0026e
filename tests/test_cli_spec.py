"""`tunespec validate / render / init / schema` as users run them: exit codes, locations, no tracebacks."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli_helpers import tunespec
from tunespec.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "jobs" / "number-generator.yaml"

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    def invoke(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return code, out, err

    return invoke


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example job and its data in a temporary project directory (the working directory)."""
    (tmp_path / "jobs").mkdir()
    (tmp_path / "examples" / "data").mkdir(parents=True)
    shutil.copy(EXAMPLE, tmp_path / "jobs" / EXAMPLE.name)
    shutil.copy(REPO / "examples" / "data" / "number-generator.csv", tmp_path / "examples" / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    return tmp_path


def edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text("utf-8")
    assert old in text
    path.write_text(text.replace(old, new), "utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text("utf-8").splitlines(), 1) if needle in line)


def test_validate_repository_jobs(run: Run, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(REPO)
    code, out, err = run("validate", "jobs/")
    assert code == 0, err
    assert "ok       jobs/number-generator.yaml (15 examples)" in out
    assert "0 invalid" in out


def test_misspelt_key_in_a_real_process(project: Path):
    spec = edit(project / "jobs" / "number-generator.yaml", "epoch_count:", "epoch_cout:")
    proc = tunespec("validate", "jobs/", cwd=project)
    assert proc.returncode == 2
    line = line_of(spec, "epoch_cout")
    assert f"jobs/number-generator.yaml:{line}:3: hyperparameters.epoch_cout: unknown key 'epoch_cout'" \
        in proc.stderr
    assert "did you mean 'epoch_count'" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "invalid  jobs/number-generator.yaml" in proc.stdout


def test_dataset_problems_name_the_row(run: Run, project: Path):
    data = project / "examples" / "data" / "number-generator.csv"
    edit(data, "eighty,eighty one", "eighty,")
    code, _, err = run("validate", "jobs/number-generator.yaml")
    line = line_of(data, "eighty,")
    assert code == 2
    assert f"examples/data/number-generator.csv:{line}: row {line - 1}: 'output' is empty" in err
    edit(data, "text_input,output", "text_input,answer")
    code, _, err = run("validate", "jobs/number-generator.yaml")
    assert code == 2
    assert "examples/data/number-generator.csv:1: missing column 'output' " \
           "(columns present: text_input, answer)" in err


def test_validate_json_shape(run: Run, project: Path):
    edit(project / "jobs" / "number-generator.yaml", "epoch_count:", "epochCount:")
    other = "name: other\ndataset:\n  examples: [{text_input: a, output: b}]\n"
    (project / "jobs" / "other.yaml").write_text(other)
    code, out, _ = run("validate", "--json", "jobs")
    assert code == 2
    doc = json.loads(out)
    assert doc["schema_version"] == 1 and doc["kind"] == "tunespec.validate" and doc["valid"] is False
    bad, good = doc["files"]
    assert (bad["path"], bad["valid"], good["path"], good["valid"]) == (
        "jobs/number-generator.yaml", False, "jobs/other.yaml", True)
    (error,) = bad["errors"]
    assert set(error) == {"file", "line", "column", "path", "message", "hint"}
    assert (error["file"], error["column"], error["path"]) == ("jobs/number-generator.yaml", 3,
                                                               "hyperparameters.epochCount")
    assert "did you mean 'epoch_count'" in error["hint"]
    assert good["examples"]["count"] == 1 and good["warnings"][0]["message"].startswith("only 1 examples")


def test_github_annotations(run: Run, project: Path, monkeypatch: pytest.MonkeyPatch):
    spec = edit(project / "jobs" / "number-generator.yaml", "epoch_count:", "epoch_cout:")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, out, _ = run("validate", "jobs")
    line = line_of(spec, "epoch_cout")
    assert code == 2
    assert f"::error file=jobs/number-generator.yaml,line={line},col=3::hyperparameters.epoch_cout: " \
           "unknown key 'epoch_cout' (did you mean 'epoch_count'?)" in out


def test_validate_paths_that_match_nothing(run: Run, project: Path):
    (project / "empty").mkdir()
    code, _, err = run("validate", "nope.yaml", "empty", "jobs/*.yml")
    assert code == 2
    assert "nope.yaml: no such file or directory" in err
    assert "empty: no *.yaml or *.yml spec files" in err
    assert "jobs/*.yml: no spec files match this pattern" in err


def test_validate_requires_a_path(run: Run):
    code, _, err = run("validate")
    assert code == 2 and "Missing argument" in err


def test_render_prints_the_body_and_the_steps(run: Run, project: Path):
    code, out, err = run("render", "jobs/number-generator.yaml")
    assert code == 0
    body = json.loads(out)
    assert len(body["tuningTask"]["trainingData"]["examples"]["examples"]) == 15
    assert "predicted steps: 23 = ceil(15 examples x 3 epochs / batch size 2)" in err
    assert "warning:" in err and "only 15 examples" in err


def test_render_json_with_the_quickstarts_hyperparameters(run: Run, project: Path):
    code, out, _ = run("render", "--json", "jobs/number-generator.yaml")  # the example uses them
    assert code == 0
    doc = json.loads(out)
    assert doc["predicted_steps"] == 23 and doc["example_count"] == 15 and doc["schema_version"] == 1
    assert doc["api_version"] == "v1beta3"
    assert doc["request"]["tuningTask"]["hyperparameters"] == {"epochCount": 3, "batchSize": 2,
                                                               "learningRate": 0.001}


def test_render_invalid_spec_and_dataset(run: Run, project: Path):
    spec = edit(project / "jobs" / "number-generator.yaml", "batch_size: 2", "batch_size: 0")
    code, out, err = run("render", "jobs/number-generator.yaml")
    assert code == 2 and out == ""
    assert f"jobs/number-generator.yaml:{line_of(spec, 'batch_size')}:15: hyperparameters.batch_size: " \
           "must be at least 1, got 0" in err
    edit(spec, "batch_size: 0", "batch_size: 2")
    edit(project / "examples" / "data" / "number-generator.csv", "-98,-97", "-98,-97,extra")
    code, out, err = run("render", "jobs/number-generator.yaml")
    assert code == 2 and out == "" and "row 8: has 3 fields" in err


def test_init_scaffolds_a_valid_job_and_never_overwrites(run: Run, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run("init", "sentiment")
    assert code == 0 and "created jobs/sentiment.yaml" in out and "created data/sentiment.csv" in out
    spec = tmp_path / "jobs" / "sentiment.yaml"
    assert spec.read_text().startswith("# yaml-language-server: $schema=../schemas/tuning-job.schema.json\n")
    # the $schema line resolves: editors find the schema next to the project's jobs/
    schema_copy = tmp_path / "schemas" / "tuning-job.schema.json"
    assert "created schemas/tuning-job.schema.json" in out
    repo_schema = REPO / "schemas" / "tuning-job.schema.json"
    assert json.loads(schema_copy.read_text()) == json.loads(repo_schema.read_text())
    code, out, _ = run("init", "second")
    assert code == 0 and "schemas/" not in out  # an existing schema file is left as it is
    code, out, err = run("validate", "jobs")
    assert code == 0 and "(20 examples)" in out and "warning" not in err
    spec.write_text("edited")
    code, _, err = run("init", "sentiment")
    assert code == 2 and "jobs/sentiment.yaml: already exists; not overwriting it" in err
    assert spec.read_text() == "edited"
    code, _, err = run("init", "Bad_Name")
    assert code == 2 and "Bad_Name: not a valid job name" in err
    code, _, _ = run("init", "--dir", str(tmp_path / "elsewhere"))
    assert (tmp_path / "elsewhere" / "jobs" / "my-job.yaml").is_file()


def test_schema_command(run: Run):
    code, out, _ = run("schema")
    assert code == 0
    assert json.loads(out) == json.loads((REPO / "schemas" / "tuning-job.schema.json").read_text())


def test_help_lists_the_spec_commands(run: Run):
    code, out, _ = run("--help")
    assert code == 0
    for command in ("validate", "render", "init", "schema"):
        assert command in out


def test_pre_commit_hook_runs_as_declared(run: Run, monkeypatch: pytest.MonkeyPatch):
    import re
    import shlex

    import yaml

    (hook,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "tunespec-validate" and hook["entry"] == "tunespec validate"
    assert re.search(hook["files"], "jobs/number-generator.yaml") and re.search(hook["files"], "jobs/a/b.yml")
    assert not re.search(hook["files"], "examples/data/number-generator.csv")
    monkeypatch.chdir(REPO)
    code, _, err = run(*shlex.split(hook["entry"])[1:], *hook["args"])
    assert code == 0, err
