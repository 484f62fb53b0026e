"""TuningClient and auth against a real HTTP server on 127.0.0.1 that injects faults."""

from __future__ import annotations

import datetime as dt

import google.auth.credentials
import google.oauth2.credentials
import pytest

from tests.fakeservice import FakeService, Fault, error_body
from tunespec.auth import ApiKeyAuth, BearerTokenAuth, GoogleCredentialsAuth, engine_auth, google_auth
from tunespec.client import TuningClient
from tunespec.errors import ApiError

BODY = {
    "baseModel": "models/text-bison-001",
    "tuningTask": {
        "hyperparameters": {"epochCount": 1, "batchSize": 1},
        "trainingData": {"examples": {"examples": [{"textInput": "1", "output": "2"}]}},
    },
}


@pytest.fixture
def service():
    svc = FakeService()
    url = svc.start()
    svc.url = url
    yield svc
    svc.stop()


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make(service, **kw) -> TuningClient:
    kw.setdefault("sleep", Sleeps())
    return TuningClient(service.url, timeout=5, **kw)


def test_429_with_retry_after_is_honoured(service):
    service.faults.append(
        Fault(
            "GET",
            "tunedModels$",
            429,
            {"Retry-After": "3"},
            error_body(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted"),
        )
    )
    client = make(service)
    assert client.list_tuned_models() == []
    assert client.sleep == [3.0]
    assert client.retries == 1


def test_retry_info_delay_is_honoured(service):
    body = error_body(
        429,
        "RESOURCE_EXHAUSTED",
        "quota",
        details=[{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}],
    )
    service.faults.append(Fault("GET", "tunedModels$", 429, body=body))
    client = make(service)
    client.list_tuned_models()
    assert client.sleep == [7.0]


def test_503_and_dropped_connections_are_ridden_out(service):
    service.faults += [Fault("POST", "tunedModels$", 503, times=2), Fault("POST", "tunedModels$", None)]
    client = make(service)
    op = client.create_tuned_model(BODY, "job-abc")
    assert op["metadata"]["tunedModel"] == "tunedModels/job-abc"
    assert client.retries == 3
    assert len(client.sleep) == 3 and all(0 <= s <= 2.0 for s in client.sleep)  # jittered, growing cap


def test_lost_create_answer_then_409_is_an_already_exists_error(service):
    service.faults.append(Fault("POST", "tunedModels$", None, after=True))
    client = make(service)
    with pytest.raises(ApiError) as err:
        client.create_tuned_model(BODY, "job-abc")
    assert err.value.http_status == 409
    assert "tunedModels/job-abc" in service.models


def test_persistent_503_gives_one_readable_line(service):
    service.faults.append(
        Fault(
            "GET",
            "tunedModels/x$",
            503,
            times=99,
            body=error_body(503, "UNAVAILABLE", "The model is overloaded."),
        )
    )
    client = make(service, max_retries=3)
    with pytest.raises(ApiError) as err:
        client.get_tuned_model("tunedModels/x")
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("HTTP 503 UNAVAILABLE from GET http://127.0.0.1:")
    assert "The model is overloaded." in text and "run again later" in text
    assert len(client.sleep) == 3


def test_404_names_the_resource_and_the_next_step(service):
    with pytest.raises(ApiError) as err:
        make(service).get_tuned_model("tunedModels/missing")
    assert err.value.http_status == 404 and err.value.status == "NOT_FOUND"
    assert "Tuned model tunedModels/missing does not exist." in str(err.value)
    assert "tunespec list" in str(err.value)
    assert make(service).find_tuned_model("tunedModels/missing") is None


def test_field_violations_are_part_of_the_message(service):
    body = error_body(
        400,
        "INVALID_ARGUMENT",
        "Invalid request",
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [
                    {"field": "tuning_task.hyperparameters.batch_size", "description": "too big"}
                ],
            }
        ],
    )
    service.faults.append(Fault("POST", "tunedModels$", 400, body=body))
    with pytest.raises(ApiError, match=r"batch_size: too big"):
        make(service).create_tuned_model(BODY)


def test_every_call_has_a_timeout(service):
    service.faults.append(Fault("GET", "tunedModels$", 200, delay=2.0, times=5))
    client = TuningClient(service.url, timeout=0.3, max_retries=1, sleep=Sleeps())
    with pytest.raises(ApiError, match=r"timed out after 2 attempts"):
        client.list_tuned_models()


def test_unreachable_service_says_so():
    client = TuningClient("http://127.0.0.1:9", timeout=1, max_retries=1, sleep=Sleeps())
    with pytest.raises(ApiError, match=r"connection failed after 2 attempts.*is running and reachable"):
        client.list_models()


def test_an_unusable_url_is_one_line_and_not_retried():
    sleeps = Sleeps()
    client = TuningClient("not-a-url", timeout=1, sleep=sleeps)
    with pytest.raises(ApiError, match=r"GET not-a-url/v1beta3/models: cannot send the request .*check the"):
        client.list_models()
    assert sleeps == []


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "was not found"), ('{"type": "service_account"}', "Failed to load service account credentials")],
)
def test_unusable_application_credentials_file_is_named(tmp_path, monkeypatch, content, fragment):
    key_file = tmp_path / "key.json"
    if content is not None:
        key_file.write_text(content)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ApiError) as info:
        google_auth(env={})
    message = str(info.value)
    assert message.startswith(f"GOOGLE_APPLICATION_CREDENTIALS={key_file}: not usable")
    assert fragment in message and "gcloud auth application-default login" in message
    assert "\n" not in message


def test_operations_paths_per_dialect(service):
    v3 = make(service)
    op = v3.create_tuned_model(BODY, "a-job")
    assert v3.get_operation(op["name"])["name"] == op["name"]
    assert service.calls("GET", r"^/v1/tunedModels/a-job/operations/")
    assert [o["name"] for o in v3.list_operations("tunedModels/a-job")] == [op["name"]]
    v3.cancel_operation(op["name"])
    assert service.calls("POST", r"^/v1/tunedModels/a-job/operations/.*:cancel$")
    vb = make(service, dialect="v1beta")
    vb.get_operation(op["name"])
    assert service.calls("GET", r"^/v1beta/tunedModels/a-job/operations/")


def test_patch_delete_and_generate(service):
    client = make(service)
    client.create_tuned_model(BODY, "g-job")
    while client.get_tuned_model("tunedModels/g-job")["state"] != "ACTIVE":
        pass
    client.update_tuned_model("tunedModels/g-job", {"description": "hello"})
    patch = service.calls("PATCH", "g-job")[0]
    assert patch.query["updateMask"] == ["description"] and patch.body == {"description": "hello"}
    assert client.generate("tunedModels/g-job", "1", candidate_count=2, temperature=0.5) == ["2", "2"]
    sent = service.calls("POST", ":generateText")[0].body
    assert sent == {"prompt": {"text": "1"}, "candidateCount": 2, "temperature": 0.5}
    gemini = make(service, dialect="v1beta")
    assert gemini.generate("tunedModels/g-job", "1", candidate_count=1) == ["2"]
    sent = service.calls("POST", ":generateContent")[0].body
    assert sent["generationConfig"] == {"candidateCount": 1}
    client.delete_tuned_model("tunedModels/g-job")
    assert client.find_tuned_model("tunedModels/g-job") is None


# ---- auth: the exact headers, and secrets never in text ---------------------------------------------


def test_adc_mode_sends_bearer_and_user_project(service):
    creds = google.oauth2.credentials.Credentials(token="ya29.secret-token")
    auth = google_auth(project="my-project", env={}, credentials=creds)
    assert isinstance(auth, GoogleCredentialsAuth)
    make(service, auth=auth).list_tuned_models()
    headers = service.requests[-1].headers
    assert headers["authorization"] == "Bearer ya29.secret-token"
    assert headers["x-goog-user-project"] == "my-project"
    assert "x-goog-api-key" not in headers
    assert "secret" not in repr(auth) and "secret" not in auth.describe()


def test_adc_project_from_environment(service):
    creds = google.oauth2.credentials.Credentials(token="t0k")
    auth = google_auth(env={"GOOGLE_CLOUD_PROJECT": "env-project"}, credentials=creds)
    make(service, auth=auth).list_models()
    assert service.requests[-1].headers["x-goog-user-project"] == "env-project"


class RefreshingCredentials(google.auth.credentials.Credentials):
    def __init__(self):
        super().__init__()
        self.refreshes = 0

    def refresh(self, request):
        self.refreshes += 1
        self.token = f"fresh-token-{self.refreshes}"
        self.expiry = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(hours=1)


def test_expired_tokens_are_refreshed(service):
    creds = RefreshingCredentials()
    client = make(service, auth=GoogleCredentialsAuth(creds, "p"))
    client.list_models()
    client.list_models()
    assert creds.refreshes == 1
    assert service.requests[-1].headers["authorization"] == "Bearer fresh-token-1"
    creds.expiry = dt.datetime(2000, 1, 1)
    client.list_models()
    assert creds.refreshes == 2
    assert service.requests[-1].headers["authorization"] == "Bearer fresh-token-2"


def test_api_key_mode_sends_x_goog_api_key(service):
    auth = google_auth(env={"GEMINI_API_KEY": "AIza-secret-key"})
    assert isinstance(auth, ApiKeyAuth)
    make(service, auth=auth).list_tuned_models()
    recorded = service.requests[-1]
    assert recorded.headers["x-goog-api-key"] == "AIza-secret-key"
    assert "authorization" not in recorded.headers
    assert "key" not in recorded.query
    assert google_auth(env={"GOOGLE_API_KEY": "a", "GEMINI_API_KEY": "b"}).key == "a"


def test_engine_token(service):
    assert engine_auth({}).headers() == {}
    auth = engine_auth({"TUNESPEC_ENGINE_TOKEN": "engine-secret"})
    assert isinstance(auth, BearerTokenAuth)
    make(service, auth=auth).list_models()
    assert service.requests[-1].headers["authorization"] == "Bearer engine-secret"


def test_secrets_echoed_by_the_service_are_redacted(service):
    retried: list[str] = []
    service.faults.append(Fault("GET", "models$", 503, body=error_body(503, "UNAVAILABLE", "x")))
    service.faults.append(
        Fault(
            "GET",
            "models$",
            400,
            body=error_body(
                400, "INVALID_ARGUMENT", "API key not valid: AIza-secret-key. Please pass a valid API key."
            ),
        )
    )
    client = make(service, auth=ApiKeyAuth("AIza-secret-key"), on_retry=retried.append)
    with pytest.raises(ApiError) as err:
        client.list_models()
    assert "AIza-secret-key" not in str(err.value) and "***" in str(err.value)
    assert retried and not any("AIza" in r for r in retried)


def test_passwords_in_a_target_url_stay_out_of_messages(service):
    url = service.url.replace("http://", "http://user:hunter2@")
    service.faults.append(Fault("GET", "models$", 500, times=9))
    client = TuningClient(url, timeout=5, max_retries=1, sleep=Sleeps())
    with pytest.raises(ApiError) as err:
        client.list_models()
    assert "hunter2" not in str(err.value) and "127.0.0.1" in str(err.value)
    assert service.requests[-1].headers["authorization"].startswith("Basic ")


def test_every_target_but_google_gets_the_project_header_and_a_client_per_project(service):
    from tunespec.targets import Targets

    with Targets(env={"GOOGLE_CLOUD_PROJECT": "env-project"}) as targets:
        team = targets.client(service.url, "v1beta3", "team-x")
        default = targets.client(service.url, "v1beta3")
        assert team is not default and team is targets.client(service.url, "v1beta3", "team-x")
        team.list_tuned_models()
        assert service.requests[-1].headers["x-goog-user-project"] == "team-x"
        default.list_tuned_models()
        assert service.requests[-1].headers["x-goog-user-project"] == "env-project"
    with Targets(env={}) as targets:
        targets.client(service.url, "v1beta3").list_tuned_models()
        assert "x-goog-user-project" not in service.requests[-1].headers
