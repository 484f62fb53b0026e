"""apply with held-out data against the stand-in service: what is sent, what is scored, the exit code."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli_helpers import invoke

SPEC = """\
name: held
target: {url}
hyperparameters: {{epoch_count: 1, batch_size: 1}}
dataset:
  validation_split: {{size: 2, seed: 1}}
  examples:
    - {{text_input: "1", output: "2"}}
    - {{text_input: "3", output: "4"}}
    - {{text_input: "5", output: "6"}}
    - {{text_input: "7", output: "8"}}
    - {{text_input: "9", output: "10"}}
{evaluation}"""


def apply(tmp_path: Path, service, evaluation: str = ""):
    spec = tmp_path / "held.yaml"
    spec.write_text(SPEC.format(url=service.url, evaluation=evaluation))
    result = invoke("apply", str(spec))
    report = json.loads((tmp_path / "reports" / "held" / "report.json").read_text())
    return result, report


def test_held_out_examples_are_not_sent_and_are_scored_after_tuning(tmp_path, service, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result, report = apply(tmp_path, service)
    assert result.exit_code == 0, result.output
    (sent,) = service.examples.values()  # what the service was asked to train on: input -> output
    held = report["evaluation"]["validation"]["prompts"]
    assert len(sent) == 3 and len(held) == 2 and report["examples"] == 3
    assert set(sent).isdisjoint({p["input"] for p in held})
    assert all(p["trials"][0]["output"] == "?" and p["pass_rate"] == 0.0 for p in held)  # never learnt
    assert report["evaluation"]["prompts"] == [] and report["accuracy"] == report["evaluation"]["accuracy"]
    assert all(p["group"] == "held_out" and p["expected"] for p in held)
    assert "held-out accuracy" in result.stderr
    assert (tmp_path / "reports" / "held" / "report.html").is_file()


def test_accuracy_below_its_threshold_exits_3_and_says_so(tmp_path, service, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result, report = apply(
        tmp_path,
        service,
        "evaluation:\n  accuracy_threshold: 0.9\n  prompts:\n    - {input: '1', regex: '.'}\n",
    )
    assert result.exit_code == 3, result.output
    assert report["accuracy"] < 0.9
    assert "is below the accuracy_threshold 90%" in report["error"]
