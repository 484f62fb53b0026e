"""`apply` and the client through a real fault-injecting socket proxy in front of the fake service."""

from __future__ import annotations

import time

import pytest

from tests.cli_helpers import invoke
from tests.fakeservice import FakeService
from tests.faultproxy import FaultProxy, Rule
from tests.test_client import Sleeps
from tunespec.client import TuningClient

SPEC = """\
name: tiny
target: {url}
hyperparameters: {{epoch_count: 2, batch_size: 1}}
dataset:
  examples:
    - {{text_input: "1", output: "2"}}
    - {{text_input: "3", output: "4"}}
evaluation:
  threshold: 0.5
  prompts:
    - {{input: "1", equals: "2"}}
    - {{input: "3", equals: "4"}}
"""


@pytest.fixture
def proxied():
    svc = FakeService(steps_per_poll=2)
    url = svc.start()
    with FaultProxy(url) as proxy:
        yield svc, proxy
    svc.stop()


@pytest.mark.parametrize(
    "rule",
    [Rule("GET", "tunedModels$", cut=True), Rule("GET", "tunedModels$", garble=True),
     Rule("GET", "tunedModels$", lose=True)],
)
def test_client_retries_a_cut_garbled_or_lost_answer(proxied, rule):
    _svc, proxy = proxied
    proxy.rules.append(rule)
    client = TuningClient(proxy.url, timeout=5, sleep=Sleeps())
    assert client.list_tuned_models() == []
    assert client.retries == 1


def test_apply_through_the_fault_proxy_exits_0_with_one_tuned_model(proxied, tmp_path, monkeypatch):
    svc, proxy = proxied
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC.format(url=proxy.url))
    proxy.rules += [
        Rule("GET", "tunedModels$", status=503),
        Rule("POST", "tunedModels$", status=429, headers={"Retry-After": "0.2"}),
        Rule("POST", "tunedModels$", delay=2.0, lose=True),  # created, the answer lost: 409 attaches
        Rule("GET", "/operations", cut=True, times=2),
        Rule("GET", "/operations", garble=True),
        Rule("POST", ":generateText$", cut=True),
        Rule("POST", ":generateText$", status=503, headers={"Retry-After": "0"}),
    ]
    started = time.monotonic()
    result = invoke("apply", str(spec))
    assert result.exit_code == 0, result.output
    assert len(svc.models) == 1 and next(iter(svc.models.values()))["state"] == "ACTIVE"
    assert all(r.times == 0 for r in proxy.rules), proxy.rules
    assert time.monotonic() - started < 45


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_timeout_must_be_a_positive_finite_number(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    result = invoke("apply", "nothing.yaml", "--timeout", value)
    assert result.exit_code == 2 and "--timeout" in result.output


def test_delete_superseded_with_only_model_names_is_refused():
    result = invoke("delete", "--model", "tunedModels/x", "--superseded", "--yes")
    assert result.exit_code == 2 and "--superseded needs job specs" in result.output


def test_a_delete_whose_answer_is_lost_is_done_not_failed(proxied):
    svc, proxy = proxied
    client = TuningClient(proxy.url, timeout=5, sleep=Sleeps())
    op = client.create_tuned_model({"baseModel": "models/text-bison-001", "tuningTask": {
        "hyperparameters": {"epochCount": 1, "batchSize": 1},
        "trainingData": {"examples": {"examples": [{"textInput": "1", "output": "2"}]}}}}, "gone")
    assert op
    proxy.rules.append(Rule("DELETE", "tunedModels/gone$", lose=True))  # deleted, the answer lost
    client.delete_tuned_model("tunedModels/gone")
    assert client.retries == 1 and "tunedModels/gone" not in svc.models
    with pytest.raises(Exception, match="404"):  # a first try answered 404 is still an error
        client.delete_tuned_model("tunedModels/gone")
