"""Scored assertions: text similarity, JSON, python metrics, the judge, embeddings, weights and metrics."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tunespec.evaluate import Trial, check
from tunespec.scoring import Context
from tunespec.scoring.custom import reference_problem, score_python
from tunespec.scoring.jsonish import schema_problem, score_is_json, score_json_schema
from tunespec.scoring.judge import grading_prompt, score_judge, verdict
from tunespec.scoring.text import levenshtein_ratio, rouge_l
from tunespec.spec import Assertion, EvalPrompt


def test_levenshtein_ratio_is_one_minus_distance_over_the_longer_length():
    assert levenshtein_ratio("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert levenshtein_ratio("same", "same") == 1.0
    assert levenshtein_ratio("", "abc") == 0.0


def test_rouge_l_is_the_f1_of_the_longest_common_word_subsequence():
    # LCS "the cat the mat" = 4 of 6 candidate words and 4 of 6 reference words
    assert rouge_l("the cat sat on the mat", "the cat lay by the mat") == pytest.approx(4 / 6)
    assert rouge_l("Twenty Three", "twenty three") == 1.0
    assert rouge_l("nothing alike", "at all") == 0.0


def test_scored_text_assertions_pass_at_their_threshold():
    near = check(Assertion("levenshtein", "twenty three", threshold=0.9), "twenty thre")
    assert near.passed and near.score == pytest.approx(1 - 1 / 12, abs=1e-4)
    far = check(Assertion("levenshtein", "twenty three"), "eighty")
    assert not far.passed and "below 0.80" in far.message
    assert check(Assertion("rouge_l", "the next number is five"), "five is the next number").score < 1


def test_json_assertions_parse_fenced_output_and_name_the_failing_field():
    assert score_is_json('```json\n{"a": 1}\n```').value == 1.0
    bad = score_is_json("{a: 1}")
    assert bad.value == 0.0 and "not JSON" in bad.message
    schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
    assert score_json_schema('{"n": 3}', schema).value == 1.0
    wrong = score_json_schema('{"n": "3"}', schema)
    assert wrong.value == 0.0 and "at n" in wrong.message and "integer" in wrong.message
    assert "not a valid JSON Schema" in schema_problem({"type": "objekt"})
    assert check(Assertion("json_schema", '{"type": "array"}'), "[1, 2]").passed  # a prompts-file cell


def write_metrics(directory: Path) -> Path:
    (directory / "metrics.py").write_text(
        textwrap.dedent("""
        def digits(output, prompt):
            return output.strip().isdigit()

        def closeness(output, prompt):
            return {"score": 0.25, "reason": "a quarter of the way"}

        def boom(output, prompt):
            raise ValueError("bad metric")

        def too_big(output, prompt):
            return 7

        def echo_expected(output, prompt):
            return output == prompt["expected"]
    """),
        "utf-8",
    )
    return directory


def test_python_metric_from_beside_the_spec_returns_bool_score_or_dict(tmp_path: Path):
    d = write_metrics(tmp_path)
    assert score_python("42", "metrics:digits", d, {}).value == 1.0
    assert score_python("x", "metrics:digits", d, {}).value == 0.0
    quarter = score_python("x", "metrics:closeness", d, {})
    assert quarter.value == 0.25 and quarter.message == "a quarter of the way"
    assert score_python("9", "metrics:echo_expected", d, {"expected": "9"}).value == 1.0


def test_python_metric_failures_are_failed_checks_that_say_what(tmp_path: Path):
    d = write_metrics(tmp_path)
    raised = score_python("x", "metrics:boom", d, {})
    assert raised.value == 0.0 and "raised ValueError: bad metric" in raised.message
    assert "expected a bool or a number in [0, 1]" in score_python("x", "metrics:too_big", d, {}).message
    result = check(Assertion("python", "metrics:closeness", base_dir=d), "x")
    assert not result.passed and result.score == 0.25  # below the default 0.5


def test_python_metric_references_are_checked_without_running_the_module(tmp_path: Path):
    d = write_metrics(tmp_path)
    assert reference_problem("metrics:digits", d) is None
    message, hint = reference_problem("metrics:digitz", d)
    assert "defines no function 'digitz'" in message and "digits" in hint
    message, hint = reference_problem("nosuch:fn", d)
    assert "module 'nosuch' not found" in message and "nosuch.py" in hint
    (d / "broken.py").write_text("def f(:\n", "utf-8")
    assert "syntax error" in reference_problem("broken:f", d)[0]
    assert reference_problem("json:dumps", d) is None  # an installed module


def test_judge_verdicts_and_scores_are_read_from_the_judge_answer():
    assert verdict("PASS\nit says nine") == 1.0
    assert verdict("Fail: wrong number") == 0.0
    assert verdict("Score: 7/10") == pytest.approx(0.7)
    assert verdict("hmm") is None
    asked = []

    def ask(text: str) -> str:
        asked.append(text)
        return "FAIL - the answer is ten"

    graded = score_judge("ten", "The answer is nine", "8", ask, "models/judge")
    assert graded.value == 0.0 and "the answer is ten" in graded.message
    assert asked == [grading_prompt("The answer is nine", "8", "ten")]
    assert "no verdict" in score_judge("x", "r", "q", lambda _: "banana", "models/j").message
    assert "set evaluation.judge_model" in score_judge("x", "r", "q", None, None).message


def test_judge_check_records_the_judges_answer():
    prompt = EvalPrompt("8", ())
    context = Context(prompt, lambda text: "PASS" if "Answer: 9" in text else "FAIL", "models/judge")
    right = check(Assertion("judge", "the number nine"), "9", context)
    assert right.passed and right.details == {"judge": "models/judge", "judge_output": "PASS"}
    assert not check(Assertion("judge", "the number nine"), "10", context).passed


def test_a_trials_score_is_the_weighted_mean_and_metrics_group_by_name():
    results = [
        check(Assertion("equals", "2", weight=3, metric="exact"), "2"),
        check(Assertion("levenshtein", "abcd", metric="close"), "abce"),  # 0.75, fails at 0.8
    ]
    trial = Trial("2", results)
    assert not trial.passed
    assert trial.score == pytest.approx((3 * 1 + 1 * 0.75) / 4)
    assert trial.metrics == {"exact": 1.0, "close": 0.75}
    assert results[0].to_json()["metric"] == "exact" and results[1].to_json()["threshold"] == 0.8


@pytest.fixture(scope="module")
def embeddings():
    from tunespec.scoring.extras import missing_modules

    if missing_modules("similar"):
        pytest.fail("the eval extra is part of the dev install: pip install -e '.[dev]'")
    from tunespec.scoring import embeddings

    return embeddings


def test_similar_scores_paraphrases_high_and_unrelated_text_low(embeddings):
    same = check(Assertion("similar", "The capital of France is Paris."), "Paris is the capital of France")
    assert same.passed and same.score > 0.9
    other = check(Assertion("similar", "The capital of France is Paris."), "I like green bananas")
    assert not other.passed and other.score < 0.4
    assert check(Assertion("similar", "twenty three", threshold=0.99), "twenty three").passed


def test_score_and_accuracy_thresholds_fail_the_suite_and_say_which():
    from tunespec.evaluate import EvalResult, PromptResult

    prompt = PromptResult(EvalPrompt("1", ()), 0, [Trial("x", [check(Assertion("rouge_l", "a b"), "a")])])
    held = PromptResult(
        EvalPrompt("2", (), group="held_out"), 0, [Trial("2", [check(Assertion("equals", "3"), "2")])]
    )
    result = EvalResult("m", [prompt], threshold=0.0, score_threshold=0.9)
    assert not result.passed and "weighted score 0.67 is below the score_threshold 0.90" in result.shortfall()
    result = EvalResult("m", [], 0.0, accuracy_threshold=0.5, validation=EvalResult("m", [held], 0.0))
    assert result.accuracy == 0.0 and not result.passed
    assert "held-out accuracy 0% is below the accuracy_threshold 50%" in result.shortfall()
    assert EvalResult("m", [], 0.0, validation=EvalResult("m", [held], 0.0)).passed  # reported only


@pytest.mark.parametrize(("concurrency", "expected"), [(None, 4), (2, 2), (16, 16)])
def test_prompts_are_sent_with_the_concurrency_asked_for(concurrency, expected):
    import threading
    import time

    from tunespec.evaluate import evaluate
    from tunespec.spec import Assertion, EvalPrompt, Evaluation

    lock, flying, most = threading.Lock(), [0], [0]

    class Slow:
        def generate(self, model: str, prompt: str, **options) -> list[str]:
            with lock:
                flying[0] += 1
                most[0] = max(most[0], flying[0])
            time.sleep(0.05)
            with lock:
                flying[0] -= 1
            return [prompt]

    prompts = tuple(EvalPrompt(str(i), (Assertion("equals", str(i)),)) for i in range(24))
    result = evaluate(Slow(), "models/m", Evaluation(prompts, concurrency=concurrency))
    assert result.pass_rate == 1.0 and [p.prompt.input for p in result.prompts] == [str(i) for i in range(24)]
    assert most[0] == expected  # None: the remote default; the runner asks 16 of the local engine
