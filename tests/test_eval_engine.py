"""End to end: a spec scored every way (held out, evaluation dataset, similar, python, judge) applied on
the real engine; its report.json carries every score and its report.html renders in headless Chromium."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests import cli_helpers
from tests.test_report_html import browser, open_page, rows_shown  # noqa: F401  (browser is a fixture)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "scored"
pytestmark = pytest.mark.slow


def scored_copy(tmp_path: Path, epochs: int) -> Path:
    """examples/scored in a temporary dir, with the dataset path made absolute and fewer epochs."""
    work = tmp_path / "scored"
    shutil.copytree(EXAMPLE, work)
    text = (work / "job.yaml").read_text()
    for anchor in ("../data/number-generator.csv", "epoch_count: 40", "validation_split: 3"):
        assert anchor in text, f"examples/scored/job.yaml changed: {anchor!r} is gone"
    text = text.replace("../data/number-generator.csv", str(ROOT / "examples/data/number-generator.csv"))
    (work / "job.yaml").write_text(text.replace("epoch_count: 40", f"epoch_count: {epochs}"))
    return work / "job.yaml"


def test_a_scored_spec_applies_on_the_engine_with_held_out_accuracy_and_an_html_report(
    tmp_path,
    engine,
    browser,  # noqa: F811
):
    spec = scored_copy(tmp_path, epochs=10)
    other = tmp_path / "other.yaml"  # a second job: the run gets a combined page
    other.write_text(
        "name: plain-second\nbase_model: models/tunespec-byte-tiny\nhyperparameters: {epoch_count: 1}\n"
        "dataset:\n  examples:\n    - {text_input: a, output: b}\n"
        "evaluation:\n  prompts:\n    - {input: a, regex: '.*'}\n"
    )
    env = {"TUNESPEC_ENGINE_URL": engine.url}
    assert cli_helpers.tunespec("validate", str(spec), cwd=tmp_path, env=env).returncode == 0
    run = cli_helpers.tunespec("apply", str(spec), str(other), cwd=tmp_path, env=env, timeout=500)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "held-out accuracy" in run.stderr

    reports = tmp_path / "reports" / "number-generator-scored"
    report = json.loads((reports / "report.json").read_text())
    assert report["examples"] == 12  # 15 pairs, 3 held out of training
    ev, base = report["evaluation"], report["base_evaluation"]
    groups = ev["validation"]["groups"]
    assert groups["held_out"]["count"] == 3 and groups["dataset"]["count"] == 3
    assert 0.0 <= ev["accuracy"] <= 1.0 and report["accuracy"] == ev["accuracy"]
    kinds = {a["type"]: a for p in ev["prompts"] for t in p["trials"] for a in t["assertions"]}
    assert {"equals", "python", "similar", "levenshtein", "rouge_l", "judge"} <= set(kinds)
    assert all(0.0 <= a["score"] <= 1.0 for a in kinds.values())
    assert kinds["judge"]["details"]["judge"] == "models/tunespec-byte-tiny"
    assert "judge_output" in kinds["judge"]["details"]
    held = [p for p in ev["validation"]["prompts"] if p["group"] == "held_out"]
    assert all(p["trials"][0]["assertions"][0]["score"] in (0.0, 1.0) for p in held)
    assert base["accuracy"] is not None and set(report["comparison"]["metrics"]) >= {
        "exact",
        "format",
        "similar",
    }
    assert report["comparison"]["accuracy"]["delta"] == pytest.approx(ev["accuracy"] - base["accuracy"])

    page, requests = open_page(browser, reports / "report.html")
    assert page.locator("#accuracy b").inner_text() == f"{ev['accuracy'] * 100:.0f}%"
    assert len(rows_shown(page)) == 3 + 6
    headers = page.locator("#prompts thead th").all_inner_texts()
    assert "base answer" in headers and "tuned answer" in headers
    page.select_option("#status", "dataset")
    assert len(rows_shown(page)) == 3
    assert all(url.startswith("file://") for url in requests)

    combined = tmp_path / "reports" / "report.html"
    page, requests = open_page(browser, combined)
    assert sorted(page.locator("#jobs a").all_inner_texts()) == ["number-generator-scored", "plain-second"]
    assert all(url.startswith("file://") for url in requests)
