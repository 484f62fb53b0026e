"""google-generativeai (REST transport) against the engine: token counts, whole-resource updates,
sharing a tuned model through its permissions, what the engine refuses and what it lacks."""

from __future__ import annotations

import warnings

import pytest

from tests.engine.sdk_helpers import ALICE, BOB, GEMINI, guarded_engine, train

pytestmark = pytest.mark.slow
warnings.filterwarnings("ignore", category=FutureWarning)
genai = pytest.importorskip("google.generativeai")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    yield from guarded_engine(tmp_path_factory.mktemp("generativeai"))


@pytest.fixture(scope="module")
def tuned(engine) -> str:
    return train(engine.url, "generativeai-model")


@pytest.fixture
def as_project(engine):
    """Point google-generativeai at the engine with the API key of a project (`as_project(KEY)`)."""

    def use(key: str) -> None:
        genai.configure(api_key=key, transport="rest", client_options={"api_endpoint": engine.url})

    use(ALICE)
    yield use
    genai.configure(api_key=None, transport=None, client_options=None)


def test_count_tokens_update_refusals_and_unimplemented(engine, tuned, as_project) -> None:
    from google.api_core import exceptions
    from google.generativeai import protos

    assert genai.GenerativeModel(GEMINI).count_tokens("hello").total_tokens == 5  # bytes: the built-in model
    turns = [{"role": "user", "parts": ["one"]}, {"role": "model", "parts": ["two"]}]
    assert genai.GenerativeModel(GEMINI).count_tokens(turns).total_tokens == 6
    model = genai.GenerativeModel(tuned)  # (the SDK's countTokens binds models/* only)
    chat = model.start_chat()
    assert chat.send_message("1", generation_config={"temperature": 0}).candidates[0].finish_reason.name in (
        "STOP", "MAX_TOKENS")
    assert len(chat.history) == 2

    # a whole proto: the mask names every field that differs, output-only ones included
    before = genai.get_tuned_model(tuned)
    updated = genai.update_tuned_model(protos.TunedModel(name=tuned, description="whole proto"))
    assert updated.description == "whole proto"
    assert updated.state.name == "ACTIVE" and updated.create_time == before.create_time
    assert updated.display_name == ""  # cleared: its default
    assert updated.temperature == pytest.approx(1.0)  # cleared: the base model's default again

    with pytest.raises(exceptions.BadRequest, match="safety_settings is not supported"):
        model.generate_content("1", safety_settings={"HARASSMENT": "BLOCK_NONE"})
    with pytest.raises(exceptions.MethodNotImplemented, match="embedContent"):
        genai.embed_content(model=GEMINI, content="x")


def test_sharing_with_permissions_and_transfer(engine, tuned, as_project) -> None:
    from google.api_core import exceptions

    model = genai.get_tuned_model(tuned)
    granted = model.permissions.create(role="reader", grantee_type="user", email_address="team-b")
    assert granted.role.name == "READER" and granted.email_address == "team-b"
    listed = {(p.email_address, p.role.name) for p in model.permissions.list()}
    assert listed == {("team-a", "OWNER"), ("team-b", "READER")}

    as_project(BOB)
    assert tuned in [m.name for m in genai.list_tuned_models()]
    assert genai.get_tuned_model(tuned).name == tuned
    genai.GenerativeModel(tuned).generate_content("1", generation_config={"temperature": 0})
    with pytest.raises(exceptions.Forbidden, match="READER role"):
        genai.update_tuned_model(tuned, {"description": "bob was here"})
    with pytest.raises(exceptions.Forbidden):
        genai.delete_tuned_model(tuned)

    as_project(ALICE)
    genai.types.Permission.get(granted.name).update({"role": genai.protos.Permission.Role.WRITER})
    as_project(BOB)
    assert genai.update_tuned_model(tuned, {"description": "bob was here"}).description == "bob was here"
    with pytest.raises(exceptions.Forbidden, match="needs OWNER"):
        genai.delete_tuned_model(tuned)

    as_project(ALICE)
    model.permissions.transfer_ownership(email_address="team-b")
    with pytest.raises(exceptions.Forbidden, match="needs OWNER"):
        genai.delete_tuned_model(tuned)  # team-a is a writer now
    assert genai.update_tuned_model(tuned, {"description": "still a writer"}).description == "still a writer"
    as_project(BOB)
    roles = {(p.email_address, p.role.name) for p in genai.get_tuned_model(tuned).permissions.list()}
    assert roles == {("team-b", "OWNER"), ("team-a", "WRITER")}
