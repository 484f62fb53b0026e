"""GitHub annotations shared by validate, plan, apply, status and list."""

from __future__ import annotations

from types import SimpleNamespace

from tunespec.errors import Problem, SpecError
from tunespec.github import annotate_invalid


def test_invalid_specs_are_annotated_like_validate_does(capsys):
    problem = Problem("jobs/broken.yaml", "unknown key 'epoch_cout'", line=4, column=3,
                      key_path="hyperparameters.epoch_cout", hint="did you mean 'epoch_count'?")
    invalid = [SimpleNamespace(error=SpecError([problem]))]
    annotate_invalid(invalid, env={})
    assert capsys.readouterr().err == ""
    annotate_invalid(invalid, env={"GITHUB_ACTIONS": "true"})
    assert capsys.readouterr().err == (
        "::error file=jobs/broken.yaml,line=4,col=3::hyperparameters.epoch_cout: unknown key 'epoch_cout' "
        "(did you mean 'epoch_count'?)\n"
    )
