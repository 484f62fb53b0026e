"""Plan checks that run before anything starts (no service needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunespec.datasets import load_examples
from tunespec.errors import SpecError
from tunespec.planning import check_unique_ids, identify
from tunespec.spec import load_spec

BASE = "target: local\nreport:\n  dir: ../reports/{name}\n"
JOB = "extends: _team.yaml\nname: {name}\ndataset:\n  examples: [{{text_input: a, output: '{name}'}}]\n"


def jobs(root: Path, base: str, *names: str) -> list:
    (root / "jobs").mkdir(exist_ok=True)
    (root / "jobs" / "_team.yaml").write_text(base)
    plans = []
    for name in names:
        path = root / "jobs" / f"{name}.yaml"
        path.write_text(JOB.format(name=name))
        spec = load_spec(path)
        plans.append(identify(spec, load_examples(spec)))
    return plans


def test_name_placeholder_in_a_shared_report_dir_keeps_jobs_apart(tmp_path: Path):
    alpha, beta = jobs(tmp_path, BASE, "alpha", "beta")
    assert alpha.spec.report.dir == (tmp_path / "reports" / "alpha").resolve()
    assert beta.spec.report.dir == (tmp_path / "reports" / "beta").resolve()
    check_unique_ids([alpha, beta])


def test_two_jobs_with_one_report_dir_are_an_error_before_anything_starts(tmp_path: Path):
    alpha, beta = jobs(tmp_path, BASE.replace("/{name}", ""), "alpha", "beta")
    with pytest.raises(SpecError) as caught:
        check_unique_ids([alpha, beta])
    (problem,) = caught.value.problems
    assert problem.file.endswith("beta.yaml") and problem.line == 2 and problem.key_path == "report.dir"
    assert "'alpha'" in problem.message and "{name}" in (problem.hint or "")


def test_runner_dialect_follows_the_spec_rule():
    """The runner, the spec checks and `render` agree on the API dialect of a job."""
    from tunespec.spec.model import dialect_for

    cases = [
        (None, "models/gemini-1.5-flash-001-tuning"),
        (None, "models/text-bison-001"),
        (None, None),  # source_model only: v1beta3 unless api_version says otherwise
        ("v1beta", None),
        ("v1beta3", "models/gemini-1.0-pro-001"),
    ]
    expected = ["v1beta", "v1beta3", "v1beta3", "v1beta", "v1beta3"]  # one rule: JobSpec.dialect uses it
    for (api_version, base_model), want in zip(cases, expected, strict=True):
        assert dialect_for(api_version, base_model) == want
    assert dialect_for(None, "models/gemini-1.0-pro-001") == "v1beta"
    assert dialect_for(None, None) == "v1beta3"
