"""The GAPIC clients of google-ai-generativelanguage (REST, v1beta3 and v1beta) against the engine:
token counts, PATCH without a mask, permissions and transferOwnership, an unimplemented method."""

from __future__ import annotations

import pytest

from tests.engine.sdk_helpers import ALICE, BOB, CAROL, GEMINI, guarded_engine, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    yield from guarded_engine(tmp_path_factory.mktemp("gapic"))


def _clients(module, engine, key: str, *names: str):
    opts = {"api_endpoint": engine.url, "api_key": key}
    return [getattr(module, n)(transport="rest", client_options=opts) for n in names]


def test_v1beta3_count_text_tokens_and_permissions(engine) -> None:
    from google.ai import generativelanguage_v1beta3 as glm
    from google.api_core import exceptions
    from google.protobuf import field_mask_pb2

    tuned = train(engine.url, "gapic-v1beta3", version="v1beta3", base="models/text-bison-001")
    text, perms = _clients(glm, engine, ALICE, "TextServiceClient", "PermissionServiceClient")
    counted = text.count_text_tokens(model="models/text-bison-001", prompt=glm.TextPrompt(text="twenty two"))
    assert counted.token_count == 10  # the built-in model counts bytes

    granted = perms.create_permission(
        parent=tuned,
        permission=glm.Permission(role=glm.Permission.Role.READER,
                                  grantee_type=glm.Permission.GranteeType.EVERYONE),
    )
    assert granted.grantee_type == glm.Permission.GranteeType.EVERYONE and not granted.email_address
    assert perms.get_permission(name=granted.name).role == glm.Permission.Role.READER
    with pytest.raises(exceptions.Conflict, match="already has a permission for everyone"):
        perms.create_permission(parent=tuned, permission=glm.Permission(
            role=glm.Permission.Role.WRITER, grantee_type=glm.Permission.GranteeType.EVERYONE))
    with pytest.raises(exceptions.BadRequest, match="transferOwnership"):
        perms.create_permission(parent=tuned, permission=glm.Permission(
            role=glm.Permission.Role.OWNER, email_address="team-b"))

    carol_models, carol_text, carol_perms = _clients(
        glm, engine, CAROL, "ModelServiceClient", "TextServiceClient", "PermissionServiceClient")
    assert carol_models.get_tuned_model(name=tuned).name == tuned  # everyone may read it
    assert carol_text.generate_text(model=tuned, prompt=glm.TextPrompt(text="1"), temperature=0).candidates
    with pytest.raises(exceptions.Forbidden, match="needs WRITER"):
        list(carol_perms.list_permissions(parent=tuned))

    updated = perms.update_permission(
        permission=glm.Permission(name=granted.name, role=glm.Permission.Role.WRITER),
        update_mask=field_mask_pb2.FieldMask(paths=["role"]),
    )
    assert updated.role == glm.Permission.Role.WRITER
    changed = carol_models.update_tuned_model(
        tuned_model=glm.TunedModel(name=tuned, description="by carol"),
        update_mask=field_mask_pb2.FieldMask(paths=["description"]),
    )
    assert changed.description == "by carol"

    perms.delete_permission(name=granted.name)
    with pytest.raises(exceptions.NotFound):
        perms.get_permission(name=granted.name)
    with pytest.raises(exceptions.Forbidden, match="do not have permission"):
        carol_models.get_tuned_model(name=tuned)

    perms.transfer_ownership(request=glm.TransferOwnershipRequest(name=tuned, email_address="team-b"))
    (bob_perms,) = _clients(glm, engine, BOB, "PermissionServiceClient")
    owners = [p.email_address for p in bob_perms.list_permissions(parent=tuned)
              if p.role == glm.Permission.Role.OWNER]
    assert owners == ["team-b"]


def test_v1beta_count_tokens_patch_without_mask_and_unimplemented(engine) -> None:
    from google.ai import generativelanguage_v1beta as glm
    from google.api_core import exceptions

    tuned = train(engine.url, "gapic-v1beta")
    models, gen = _clients(glm, engine, ALICE, "ModelServiceClient", "GenerativeServiceClient")
    contents = [glm.Content(role="user", parts=[glm.Part(text="twenty two")])]
    assert gen.count_tokens(model=GEMINI, contents=contents).total_tokens == 10
    request = glm.GenerateContentRequest(model=GEMINI, contents=contents)
    whole = glm.CountTokensRequest(model=GEMINI, generate_content_request=request)
    assert gen.count_tokens(request=whole).total_tokens == 10

    def ask(model: str, text: str = "twenty two", **config):
        return gen.generate_content(request=glm.GenerateContentRequest(
            model=model, contents=[glm.Content(parts=[glm.Part(text=text)])],
            generation_config=glm.GenerationConfig(**config)))

    assert ask(tuned, "1", temperature=0).candidates[0].finish_reason == glm.Candidate.FinishReason.STOP
    cut = ask(GEMINI, max_output_tokens=3, temperature=0)
    assert cut.candidates[0].finish_reason == glm.Candidate.FinishReason.MAX_TOKENS

    # v1beta's update_mask is optional: without one, the fields sent are updated
    patch = glm.TunedModel(name=tuned, description="no mask", top_k=7)
    updated = models.update_tuned_model(tuned_model=patch)
    assert updated.description == "no mask" and updated.top_k == 7
    assert models.get_tuned_model(name=tuned).top_k == 7

    with pytest.raises(exceptions.MethodNotImplemented, match="embedContent"):
        gen.embed_content(model=GEMINI, content=contents[0])
    with pytest.raises(exceptions.BadRequest, match="response_schema is not supported"):
        ask(GEMINI, response_mime_type="application/json", response_schema=glm.Schema(type_=glm.Type.STRING))
