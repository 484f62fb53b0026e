"""Google's own Python client libraries work against the engine with only the endpoint changed."""

from __future__ import annotations

import warnings

import pytest

from tests.engine.engine_helpers import NUMBERS

pytestmark = pytest.mark.slow
warnings.filterwarnings("ignore", category=FutureWarning)


def test_google_ai_generativelanguage_rest_v1beta3(engine) -> None:
    from google.ai import generativelanguage_v1beta3 as glm
    from google.api_core import exceptions
    from google.auth.credentials import AnonymousCredentials
    from google.protobuf import field_mask_pb2

    opts = {"api_endpoint": engine.url}
    models = glm.ModelServiceClient(transport="rest", client_options=opts, credentials=AnonymousCredentials())
    text = glm.TextServiceClient(transport="rest", client_options=opts, credentials=AnonymousCredentials())

    names = [m.name for m in models.list_models()]
    assert "models/text-bison-001" in names
    assert models.get_model(name="models/text-bison-001").output_token_limit > 0

    tuned = glm.TunedModel(
        display_name="gapic model",
        base_model="models/text-bison-001",
        tuning_task=glm.TuningTask(
            hyperparameters=glm.Hyperparameters(epoch_count=2, batch_size=4, learning_rate=0.001),
            training_data=glm.Dataset(
                examples=glm.TuningExamples(
                    examples=[glm.TuningExample(text_input=i, output=o) for i, o in NUMBERS]
                )
            ),
        ),
    )
    operation = models.create_tuned_model(tuned_model=tuned, tuned_model_id="gapic-model")
    assert operation.metadata.total_steps == 8
    result = operation.result(timeout=120)
    assert result.name == "tunedModels/gapic-model"
    assert result.state == glm.TunedModel.State.ACTIVE
    assert len(result.tuning_task.snapshots) == 8

    got = models.get_tuned_model(name="tunedModels/gapic-model")
    assert got.tuning_task.hyperparameters.batch_size == 4
    assert "tunedModels/gapic-model" in [m.name for m in models.list_tuned_models(page_size=1)]

    updated = models.update_tuned_model(
        tuned_model=glm.TunedModel(name="tunedModels/gapic-model", description="from gapic"),
        update_mask=field_mask_pb2.FieldMask(paths=["description"]),
    )
    assert updated.description == "from gapic"

    reply = text.generate_text(
        model="tunedModels/gapic-model", prompt=glm.TextPrompt(text="1"), temperature=0.0, candidate_count=1
    )
    assert len(reply.candidates) == 1

    with pytest.raises(exceptions.BadRequest, match="tunedModelId"):
        models.create_tuned_model(tuned_model=tuned, tuned_model_id="Bad_Id")
    with pytest.raises(exceptions.Conflict, match="already exists"):
        models.create_tuned_model(tuned_model=tuned, tuned_model_id="gapic-model")

    models.delete_tuned_model(name="tunedModels/gapic-model")
    with pytest.raises(exceptions.NotFound, match="tunedModels/gapic-model does not exist"):
        models.get_tuned_model(name="tunedModels/gapic-model")


def test_google_generativeai_rest(engine) -> None:
    import google.generativeai as genai
    from google.api_core import exceptions

    genai.configure(api_key="local-key", transport="rest", client_options={"api_endpoint": engine.url})
    try:
        operation = genai.create_tuned_model(
            source_model="models/gemini-1.5-flash-001-tuning",
            training_data=[{"text_input": i, "output": o} for i, o in NUMBERS],
            id="genai-model",
            display_name="genai model",
            epoch_count=2,
            batch_size=4,
            learning_rate=0.001,
        )
        assert operation.metadata.total_steps == 8
        model = operation.result(timeout=120)
        assert model.name == "tunedModels/genai-model"
        assert model.state.name == "ACTIVE"
        assert len(model.tuning_task.snapshots) == 8
        assert model.tuning_task.hyperparameters.learning_rate == pytest.approx(0.001)

        assert genai.get_tuned_model("tunedModels/genai-model").display_name == "genai model"
        assert "tunedModels/genai-model" in [m.name for m in genai.list_tuned_models()]
        assert "models/gemini-1.5-flash-001-tuning" in [m.name for m in genai.list_models()]

        updated = genai.update_tuned_model("tunedModels/genai-model", {"description": "via genai"})
        assert updated.description == "via genai"

        reply = genai.GenerativeModel("tunedModels/genai-model").generate_content(
            "1", generation_config={"temperature": 0}
        )
        assert reply.candidates[0].finish_reason.name == "STOP"
        assert isinstance(reply.candidates[0].content.parts[0].text, str)

        genai.delete_tuned_model("tunedModels/genai-model")
        with pytest.raises(exceptions.NotFound):
            genai.get_tuned_model("tunedModels/genai-model")
    finally:
        genai.configure(api_key=None, transport=None, client_options=None)
