"""report.html: self-contained, base vs tuned, failures first, filterable; checked in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tunespec.evaluate import evaluate
from tunespec.heldout import evaluate_job
from tunespec.report.compare import comparison
from tunespec.report.html import loss_svg, render_combined_html, render_html
from tunespec.report.markdown import render_markdown
from tunespec.spec import Assertion, EvalPrompt, Evaluation
from tunespec.spec.model import scored_prompt

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HOSTILE = '<img src="http://203.0.113.9/pixel.png"><script src="https://cdn.example/x.js"></script>'


class Answers:
    """A model that answers from a table (the untuned model answers nothing useful)."""

    def __init__(self, table: dict[str, str]):
        self.table = table

    def generate(self, model: str, prompt: str, **options: Any) -> list[str]:
        return [self.table.get(prompt, HOSTILE)]


def make_report(tmp: Path | None = None) -> dict[str, Any]:
    evaluation = Evaluation(
        (
            EvalPrompt("1", (Assertion("equals", "2", metric="exact"),), name="one"),
            EvalPrompt(
                "2", (Assertion("equals", "3", metric="exact"), Assertion("levenshtein", "three")), name="two"
            ),
            EvalPrompt("3", (Assertion("rouge_l", "four"),), name="three"),
        ),
        threshold=0.5,
        examples=(
            scored_prompt("7", "8", Assertion("equals", ""), "dataset", None, "eval.csv", "eval.csv row 1"),
        ),
    )
    held = [type("E", (), {"text_input": "5", "output": "6"})()]
    tuned = evaluate_job(
        Answers({"1": "2", "2": "3", "3": "four", "5": "6", "7": "9"}), "tunedModels/t-x", evaluation, held
    )
    base = evaluate_job(Answers({"1": "1"}), "models/base", evaluation, held)
    t, b = tuned.to_json(), base.to_json()
    return {
        "job": {"name": "demo"},
        "tuned_model": "tunedModels/t-x",
        "base_model": "models/base",
        "exit_code": 0,
        "state": "ACTIVE",
        "target": {"name": "local"},
        "examples": 12,
        "fingerprint": "x",
        "snapshots": [{"step": i, "meanLoss": 3.0 / i} for i in range(1, 30)],
        "evaluation": t,
        "base_evaluation": b,
        "delta": t["pass_rate"] - b["pass_rate"],
        "accuracy": t["accuracy"],
        "comparison": comparison(t, b),
        "hyperparameters": {},
        "timings": {},
    }


def test_report_json_parts_carry_every_score_and_the_deltas():
    report = make_report()
    ev = report["evaluation"]
    assert ev["accuracy"] == 0.5 and ev["validation"]["groups"] == {
        "held_out": {"count": 1, "accuracy": 1.0, "score": 1.0},
        "dataset": {"count": 1, "accuracy": 0.0, "score": 0.0},
    }
    scores = [a["score"] for p in ev["prompts"] for t in p["trials"] for a in t["assertions"]]
    assert scores == [1.0, 1.0, 0.0, 1.0]  # levenshtein("3", "three"): no character in common
    compared = report["comparison"]
    assert compared["metrics"]["exact"] == {"tuned": 1.0, "base": 0.0, "delta": 1.0}
    assert compared["accuracy"] == {"tuned": 0.5, "base": 0.0, "delta": 0.5}
    assert [p["name"] for p in compared["prompts"]] == ["one", "two", "three", "held-out 1", "eval.csv row 1"]
    markdown = render_markdown(report, png_name=None)
    assert "### Held-out accuracy" in markdown and "| exact | 1.00 | 0.00 | +1.00 |" in markdown


def test_the_page_is_self_contained_and_escapes_model_output():
    page = render_html(make_report())
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing loads from elsewhere
    assert HOSTILE not in page and "&lt;img src=" in page
    assert page.count("<svg") == 1 and "polyline" in page


def test_the_loss_svg_spans_the_steps_and_the_losses():
    svg = loss_svg([(1, 2.0), (5, 1.0), (10, 0.5)])
    assert "step 1" in svg and "step 10" in svg and "2.000" in svg and "0.500" in svg
    assert loss_svg([]) == ""


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it: apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def open_page(browser, path: Path):
    """The page at `path`, with every request it makes recorded (and anything not local refused)."""
    page = browser.new_page()
    requests: list[str] = []

    def record(route) -> None:
        requests.append(route.request.url)
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            route.abort()

    page.route("**/*", record)
    page.goto(path.as_uri())
    return page, requests


def rows_shown(page) -> list[str]:
    return page.eval_on_selector_all(
        "#prompts tbody tr",
        "rows => rows.filter(r => r.style.display !== 'none').map(r => r.dataset.status"
        " + ':' + r.cells[0].innerText.split('\\n')[0])",
    )


def test_the_page_renders_in_chromium_filters_and_fetches_nothing(browser, tmp_path: Path):
    path = tmp_path / "report.html"
    path.write_text(render_html(make_report()), encoding="utf-8")
    page, requests = open_page(browser, path)
    assert page.title() == "tunespec: demo"
    assert page.locator("#accuracy b").inner_text() == "50%"
    assert page.locator("#loss polyline").count() == 1
    shown = rows_shown(page)
    assert shown[:2] == ["fail:two", "fail:eval.csv row 1"] and len(shown) == 5  # failures first
    headers = page.locator("#prompts thead th").all_inner_texts()
    assert "base answer" in headers and "delta" in headers
    page.fill("#q", "eval.csv")
    assert rows_shown(page) == ["fail:eval.csv row 1"]
    page.fill("#q", "")
    page.select_option("#status", "pass")
    assert all(r.startswith("pass:") for r in rows_shown(page)) and len(rows_shown(page)) == 3
    page.select_option("#status", "held_out")
    assert rows_shown(page) == ["pass:held-out 1"]
    assert page.locator("#shown").inner_text() == "1 of 5 shown"
    assert requests == [path.as_uri()]  # the page itself, and nothing else


def test_the_combined_page_links_each_jobs_page(browser, tmp_path: Path):
    report = make_report()
    pages = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        pages.append(tmp_path / name / "report.html")
        pages[-1].write_text(render_html({**report, "job": {"name": name}}), encoding="utf-8")
    combined = tmp_path / "report.html"
    combined.write_text(render_combined_html([{**report, "job": {"name": n}} for n in "ab"], pages, combined))
    page, requests = open_page(browser, combined)
    assert page.locator("#jobs a").all_inner_texts() == ["a", "b"]
    page.click("#jobs a >> text=b")
    assert page.title() == "tunespec: b"
    assert all(url.startswith("file://") for url in requests)


def test_evaluate_alone_still_gives_no_validation():
    ev = Evaluation((EvalPrompt("1", (Assertion("equals", "2"),)),))
    result = evaluate(Answers({"1": "2"}), "m", ev)
    assert result.accuracy is None and "validation" not in result.to_json()


def test_junit_has_a_held_out_accuracy_case_that_fails_below_its_threshold():
    from tunespec.report.junit import junit_suite

    report = make_report()
    report["timings"] = {"total_s": 1.0}
    case = junit_suite(report).find("testcase[@name='held-out accuracy']")
    assert (
        case is not None
        and case.find("failure") is None
        and "held-out 1: pass" in case.find("system-out").text
    )
    report["evaluation"] = {**report["evaluation"], "accuracy_threshold": 0.9}
    failure = junit_suite(report).find("testcase[@name='held-out accuracy']/failure")
    assert failure is not None and "held-out accuracy 50% is below 90%" in failure.get("message")
