"""google-genai (the current Google Gen AI SDK) against the engine, only its base_url changed: its
default API version (/v1) and api_version="v1beta"."""

from __future__ import annotations

import pytest

from tests.engine.sdk_helpers import ALICE, BOB, GEMINI, guarded_engine, train

pytestmark = pytest.mark.slow
genai = pytest.importorskip("google.genai")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    yield from guarded_engine(tmp_path_factory.mktemp("genai"))


@pytest.fixture(scope="module")
def tuned(engine) -> str:
    return train(engine.url, "genai-sdk-model")


def _client(engine, version: str | None, key: str = ALICE):
    options = {"base_url": engine.url} | ({"api_version": version} if version else {})
    return genai.Client(api_key=key, http_options=options)


@pytest.mark.parametrize("version", [None, "v1beta"], ids=["default-v1", "v1beta"])
def test_base_models_list_get_generate_count(engine, version) -> None:
    from google.genai import errors, types

    from tunespec.engine import generate
    from tunespec.engine.basemodels import BUILTIN, materialize

    client = _client(engine, version)
    names = [m.name for m in client.models.list()]
    assert GEMINI in names and BUILTIN in names
    model = client.models.get(model=GEMINI)
    assert model.name == GEMINI and model.output_token_limit > 0

    cut = client.models.generate_content(
        model=GEMINI, contents="hello", config=types.GenerateContentConfig(temperature=0, max_output_tokens=4)
    )
    assert cut.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS

    counted = client.models.count_tokens(model=GEMINI, contents="hello there, engine")
    model_dir = materialize(BUILTIN, engine.data_dir)  # what serves Google's names in the tests
    assert counted.total_tokens == generate.count_tokens(model_dir, "hello there, engine") == 19  # bytes

    with pytest.raises(errors.ClientError) as refused:
        client.models.generate_content(
            model=GEMINI, contents="hi",
            config=types.GenerateContentConfig(response_mime_type="application/json",
                                               response_schema={"type": "OBJECT"}),
        )
    assert refused.value.code == 400 and "response_schema is not supported" in str(refused.value)
    with pytest.raises(errors.ServerError) as missing:
        client.models.embed_content(model=GEMINI, contents="x")
    assert missing.value.code == 501 and missing.value.status == "UNIMPLEMENTED"
    assert "batchEmbedContents" in str(missing.value)


@pytest.mark.parametrize("version", [None, "v1beta"], ids=["default-v1", "v1beta"])
def test_tuned_models_get_list_update_generate_count(engine, tuned, version) -> None:
    from google.genai import errors, types

    client = _client(engine, version)
    assert client.models.get(model=tuned).name == tuned
    assert tuned in [m.name for m in client.models.list(config={"query_base": False})]

    # models.update sends a PATCH without updateMask: every updatable field it sends is updated
    updated = client.models.update(
        model=tuned,
        config=types.UpdateModelConfig(display_name=f"renamed {version}", description="via genai"),
    )
    assert updated.display_name == f"renamed {version}" and updated.description == "via genai"
    assert client.models.get(model=tuned).display_name == f"renamed {version}"

    reply = client.models.generate_content(model=tuned, contents="1", config={"temperature": 0})
    assert reply.candidates[0].finish_reason == types.FinishReason.STOP  # it learnt to end its answer
    usage = reply.usage_metadata
    assert usage.prompt_token_count > 0 and usage.total_token_count == usage.prompt_token_count + (
        usage.candidates_token_count or 0)
    assert client.models.count_tokens(model=tuned, contents="twenty two").total_tokens == 10

    job = client.tunings.get(name=tuned)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED and job.tuned_model.model == tuned

    other = _client(engine, version, key=BOB)  # team-b sees nothing of team-a's
    assert tuned not in [m.name for m in other.models.list(config={"query_base": False})]
    with pytest.raises(errors.ClientError) as denied:
        other.models.get(model=tuned)
    assert denied.value.code == 403
