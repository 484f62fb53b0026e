"""A spec's `sharing:` section, planned and applied like everything else against the real engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from tests import cli_helpers
from tests.engine.sdk_helpers import ALICE, BOB, CAROL, guarded_engine

pytestmark = pytest.mark.slow

SPEC = """name: shared-numbers
base_model: models/tunespec-byte-tiny
hyperparameters: {{epoch_count: 1, batch_size: 2}}
dataset:
  examples:
    - {{text_input: "1", output: "2"}}
    - {{text_input: "3", output: "4"}}
{sharing}"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    yield from guarded_engine(tmp_path_factory.mktemp("sharing-apply"))


def _run(engine, tmp_path: Path, *args: str):
    env = {"TUNESPEC_ENGINE_URL": engine.url, "TUNESPEC_ENGINE_TOKEN": ALICE}
    return cli_helpers.tunespec(*args, cwd=tmp_path, env=env, timeout=300)


def _plan(engine, tmp_path: Path, spec: Path) -> dict:
    run = _run(engine, tmp_path, "plan", "--json", str(spec))
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout)["jobs"][0]


def _roles(engine, model: str) -> dict[str, str]:
    perms = requests.get(f"{engine.url}/v1beta3/{model}/permissions", headers={"x-goog-api-key": ALICE})
    return {p.get("emailAddress", "everyone"): p["role"] for p in perms.json()["permissions"]}


def test_sharing_is_planned_applied_and_kept_in_step(engine, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(SPEC.format(sharing="sharing:\n  readers: [team-b]\n  writers: [team-c]\n"))
    planned = _plan(engine, tmp_path, spec)
    assert planned["action"] == "create"
    assert planned["sharing"] == [{"change": "add", "role": "READER", "grantee": "team-b"},
                                  {"change": "add", "role": "WRITER", "grantee": "team-c"}]
    assert "sharing: +reader team-b, +writer team-c" in planned["label"]

    applied = _run(engine, tmp_path, "apply", str(spec))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "sharing: +reader team-b, +writer team-c" in applied.stderr
    model = planned["tuned_model"]
    assert _roles(engine, model) == {"team-a": "OWNER", "team-b": "READER", "team-c": "WRITER"}
    assert requests.get(f"{engine.url}/v1beta3/{model}", headers={"x-goog-api-key": BOB}).status_code == 200

    again = _plan(engine, tmp_path, spec)
    assert again["action"] == "noop" and again["sharing"] == [] and again["label"] == "up to date"

    spec.write_text(SPEC.format(sharing="sharing:\n  readers: [everyone]\n  writers: [team-b]\n"))
    changed = _plan(engine, tmp_path, spec)
    assert changed["action"] == "noop"  # the model itself is unchanged: same fingerprint
    assert changed["label"] == "up to date; sharing: +reader everyone, ~writer team-b, -writer team-c"
    plan_text = _run(engine, tmp_path, "plan", str(spec))
    assert "+reader everyone" in plan_text.stdout + plan_text.stderr
    assert _run(engine, tmp_path, "apply", str(spec)).returncode == 0
    assert _roles(engine, model) == {"team-a": "OWNER", "everyone": "READER", "team-b": "WRITER"}
    carol = requests.get(f"{engine.url}/v1beta3/{model}", headers={"x-goog-api-key": CAROL})
    assert carol.status_code == 200  # everyone reads it now

    spec.write_text(SPEC.format(sharing=""))  # no section: permissions are left as they are
    assert _plan(engine, tmp_path, spec)["sharing"] == []
    assert _run(engine, tmp_path, "apply", str(spec)).returncode == 0
    assert _roles(engine, model) == {"team-a": "OWNER", "everyone": "READER", "team-b": "WRITER"}
