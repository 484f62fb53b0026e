"""The door: loopback by default, token files for anything else, projects kept apart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.cli_helpers import tunespec
from tests.engine.engine_helpers import ServeProcess, assert_error, create_body, wait_done
from tunespec.engine.server import EngineStartError, find_or_start, start_background
from tunespec.targets import TargetError, Targets

pytestmark = pytest.mark.slow


def test_non_loopback_without_token_file_refuses_fast(tmp_path: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(EngineStartError, match=r"refusing to listen on 0\.0\.0\.0 without --token-file"):
        start_background(tmp_path, host="0.0.0.0")
    assert time.monotonic() - t0 < 2
    proc = tunespec("serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert "refusing to listen on 0.0.0.0 without --token-file" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("content", "fragment"),
    [("", "holds no tokens"), ("# only a comment\n", "holds no tokens"), ("a b c\n", "tokens.txt:1")],
)
def test_bad_token_files_are_refused(tmp_path: Path, content: str, fragment: str) -> None:
    token_file = tmp_path / "tokens.txt"
    token_file.write_text(content)
    with pytest.raises(EngineStartError, match=fragment):
        start_background(tmp_path / "data", token_file=token_file)
    with pytest.raises(EngineStartError, match=r"missing\.txt"):
        start_background(tmp_path / "data", token_file=tmp_path / "missing.txt")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("door")
    token_file = root / "tokens.txt"
    token_file.write_text("# token project\nalice-token team-a\nbob-token team-b\nroot-token\n")
    with start_background(root / "data", token_file=token_file) as running:
        yield running


def test_credentials_are_required_with_a_token_file(guarded) -> None:
    url = f"{guarded.url}/v1beta3/tunedModels"
    assert_error(requests.get(url), 401, "UNAUTHENTICATED", "missing required authentication credential")
    assert_error(requests.get(url, headers={"Authorization": "Bearer nope"}), 401, "UNAUTHENTICATED")
    err = assert_error(
        requests.get(url, params={"key": "nope"}), 400, "INVALID_ARGUMENT", "API key not valid"
    )
    assert err["details"][0]["reason"] == "API_KEY_INVALID"
    for how in (
        {"headers": {"Authorization": "Bearer alice-token"}},
        {"headers": {"x-goog-api-key": "alice-token"}},
        {"params": {"key": "alice-token"}},
    ):
        assert requests.get(url, **how).status_code == 200, how
    # a token bound to a project cannot act for another
    resp = requests.get(url, headers={"Authorization": "Bearer alice-token", "x-goog-user-project": "team-b"})
    assert_error(resp, 403, "PERMISSION_DENIED", "team-b")


def test_projects_never_see_each_other(guarded) -> None:
    alice = {"Authorization": "Bearer alice-token"}
    bob = {"x-goog-api-key": "bob-token"}
    op = requests.post(
        f"{guarded.url}/v1beta3/tunedModels?tunedModelId=alice-model", json=create_body(), headers=alice
    ).json()
    wait_done(guarded.url, op["name"], headers=alice)
    assert [
        m["name"]
        for m in requests.get(f"{guarded.url}/v1beta3/tunedModels", headers=alice).json()["tunedModels"]
    ] == ["tunedModels/alice-model"]
    assert requests.get(f"{guarded.url}/v1beta3/tunedModels", headers=bob).json() == {}
    denied = "You do not have permission to access tuned model tunedModels/alice-model"
    base = f"{guarded.url}/v1beta3/tunedModels/alice-model"
    assert_error(requests.get(base, headers=bob), 403, "PERMISSION_DENIED", denied)
    assert_error(requests.delete(base, headers=bob), 403, "PERMISSION_DENIED", denied)
    assert_error(
        requests.patch(f"{base}?updateMask=description", json={"description": "x"}, headers=bob),
        403,
        "PERMISSION_DENIED",
        denied,
    )
    assert_error(
        requests.post(f"{base}:generateText", json={"prompt": {"text": "1"}}, headers=bob),
        403,
        "PERMISSION_DENIED",
        denied,
    )
    assert_error(requests.get(f"{guarded.url}/v1/{op['name']}", headers=bob), 403, "PERMISSION_DENIED")
    assert_error(
        requests.post(f"{guarded.url}/v1/{op['name']}:cancel", headers=bob), 403, "PERMISSION_DENIED"
    )
    # a token without a project takes the header's project, else "default"
    root_b = {"Authorization": "Bearer root-token", "x-goog-user-project": "team-a"}
    assert requests.get(base, headers=root_b).status_code == 200
    assert_error(requests.get(base, headers={"Authorization": "Bearer root-token"}), 403, "PERMISSION_DENIED")
    assert requests.get(base, headers=alice).json()["state"] == "ACTIVE"


def test_loopback_without_token_file_accepts_any_credential(engine) -> None:
    url = f"{engine.url}/v1beta3/models"
    for headers in ({}, {"Authorization": "Bearer anything"}, {"x-goog-api-key": "whatever"}):
        assert requests.get(url, headers=headers).status_code == 200


def test_find_or_start_reuses_a_running_serve(tmp_path: Path) -> None:
    served = ServeProcess(tmp_path / "data")
    try:
        found = find_or_start(tmp_path / "data")
        assert found.url == served.url and not found.owned
        found.stop()  # leaves the server running
        assert requests.get(f"{served.url}/v1beta3/models").status_code == 200
        second = tunespec("serve", "--port", "0", "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
        assert second.returncode == 2 and "already served by process" in second.stderr
    finally:
        served.stop()
    with find_or_start(tmp_path / "data") as own:
        assert own.owned and own.url != served.url
        assert requests.get(f"{own.url}/v1beta3/models").status_code == 200


def test_target_local_reuses_the_serve_running_on_its_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    served = ServeProcess(data)
    try:
        recorded = (data / "engine.json").read_text()
        with Targets(env={"TUNESPEC_ENGINE_DIR": str(data)}) as targets:
            target = targets.target("local")
            assert target.url == served.url
            assert not targets.in_process("local")  # its jobs outlive this run
            assert requests.get(f"{target.url}/v1beta3/models", headers=target.auth.headers()).ok
        assert (data / "engine.json").read_text() == recorded  # no second engine recorded itself
        assert not (data / "logs" / "worker.log").exists()  # no in-process engine started its workers
        assert requests.get(f"{served.url}/v1beta3/models").status_code == 200  # close() left it running
    finally:
        served.stop()


def test_target_local_needs_a_token_for_a_serve_with_a_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens.txt"
    token_file.write_text("local-secret\n")
    data = tmp_path / "data"
    served = ServeProcess(data, "--token-file", str(token_file))
    try:
        with Targets(env={"TUNESPEC_ENGINE_DIR": str(data)}) as targets:
            with pytest.raises(TargetError) as info:
                targets.target("local")
            message = str(info.value)
            assert f"the engine at {served.url}" in message and "needs a token" in message
            assert "TUNESPEC_ENGINE_TOKEN" in message and "\n" not in message
        env = {"TUNESPEC_ENGINE_DIR": str(data), "TUNESPEC_ENGINE_TOKEN": "local-secret"}
        with Targets(env=env) as targets:
            target = targets.target("local")
            assert target.url == served.url
            url = f"{target.url}/v1beta3/tunedModels"
            assert requests.get(url, headers=target.auth.headers()).status_code == 200
            assert requests.get(url).status_code == 401
    finally:
        served.stop()
