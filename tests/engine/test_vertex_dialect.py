"""The engine's Vertex AI dialect, driven by google-genai in Vertex mode (only base_url changed) and by
plain REST: tuning jobs from gs:// datasets in a real Cloud Storage emulator, real training."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.vertex_fixtures import BUCKET, Emulator, storage_emulator
from tunespec.datasets import Example
from tunespec.engine.store import Store
from tunespec.request_vertex import contents_jsonl, staged_uri
from tunespec.staging import CloudStorage

warnings.filterwarnings("ignore", category=UserWarning)
PARENT = "projects/ci-project/locations/us-central1"
PAIRS = [("1", "2"), ("2", "3"), ("3", "4"), ("4", "5")]


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with storage_emulator() as emu:
        yield emu


def _stage(data: bytes) -> str:
    uri = staged_uri(f"gs://{BUCKET}/engine", data)
    CloudStorage().stage(uri, data)
    return uri


def _dataset(pairs: list[tuple[str, str]] = PAIRS) -> str:
    return _stage(contents_jsonl([Example(i, o) for i, o in pairs]))


def _client(engine: Any, api_version: str | None = None) -> Any:
    genai = pytest.importorskip("google.genai")
    from google.oauth2.credentials import Credentials

    options: dict[str, Any] = {"base_url": engine.url}
    if api_version:
        options["api_version"] = api_version
    return genai.Client(
        vertexai=True,
        project="ci-project",
        location="us-central1",
        http_options=options,
        credentials=Credentials(token="ci"),
    )  # no ADC on a CI runner; the engine takes any


def _wait(client: Any, name: str, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        job = client.tunings.get(name=name)
        if job.has_ended or time.monotonic() > deadline:
            return job
        time.sleep(0.3)


def _url(engine: Any, path: str, version: str = "v1") -> str:
    return f"{engine.url}/{version}/{PARENT}/{path}"


@pytest.mark.slow
def test_google_genai_tunes_lists_and_generates(engine: Any, emulator: Emulator) -> None:
    from google.genai import types

    client = _client(engine)
    uri = _dataset()
    job = client.tunings.tune(
        base_model="gemini-2.5-flash",
        training_dataset=types.TuningDataset(gcs_uri=uri),
        config=types.CreateTuningJobConfig(
            epoch_count=2,
            tuned_model_display_name="genai job",
            labels={"team": "ci"},
            adapter_size="ADAPTER_SIZE_FOUR",
        ),
    )
    assert job.name.startswith(f"{PARENT}/tuningJobs/")
    assert job.state in (types.JobState.JOB_STATE_PENDING, types.JobState.JOB_STATE_RUNNING)
    done = _wait(client, job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED, done
    assert done.tuned_model.endpoint.startswith(f"{PARENT}/endpoints/")
    assert done.tuned_model.model.startswith(f"{PARENT}/models/")
    stats = done.tuning_data_stats.supervised_tuning_data_stats
    assert stats.tuning_dataset_example_count == 4 and stats.tuning_step_count == 2
    assert done.supervised_tuning_spec.hyper_parameters.adapter_size == types.AdapterSize.ADAPTER_SIZE_FOUR
    row = Store(engine.data_dir).get_model(f"vertex-{job.name.rsplit('/', 1)[1]}")
    adapter = json.loads((engine.data_dir / row["weights_dir"] / "adapter_config.json").read_text())
    assert adapter["r"] == 4  # adapter_size is the LoRA adapter's rank
    assert done.supervised_tuning_spec.training_dataset_uri == uri
    assert done.labels == {"team": "ci"}
    assert done.start_time and done.end_time and done.create_time

    listed = [j.name for j in client.tunings.list()]
    assert job.name in listed
    only = [j.name for j in client.tunings.list(config={"filter": 'labels.team="ci"'})]
    assert only == [job.name]
    assert [j.name for j in client.tunings.list(config={"filter": 'labels.team="other"'})] == []

    reply = client.models.generate_content(model=done.tuned_model.endpoint, contents="1")
    assert isinstance(reply.text, str) and reply.candidates

    v1 = _client(engine, "v1")  # the same job under /v1
    assert v1.tunings.get(name=job.name).state == types.JobState.JOB_STATE_SUCCEEDED

    # the tuned model is an engine model like any other: the same store serves both dialects
    got = requests.get(_url(engine, f"tuningJobs/{job.name.rsplit('/', 1)[1]}"), timeout=30).json()
    assert got["state"] == "JOB_STATE_SUCCEEDED" and got["tuningDataStats"]["supervisedTuningDataStats"]


@pytest.mark.slow
def test_google_genai_cancels(engine: Any, emulator: Emulator) -> None:
    from google.genai import errors, types

    client = _client(engine)
    uri = _dataset([(str(n), str(n + 1)) for n in range(40)])
    job = client.tunings.tune(
        base_model="gemini-2.5-flash",
        training_dataset=types.TuningDataset(gcs_uri=uri),
        config=types.CreateTuningJobConfig(epoch_count=500),
    )
    client.tunings.cancel(name=job.name)
    done = _wait(client, job.name, timeout=60)
    assert done.state == types.JobState.JOB_STATE_CANCELLED
    assert done.error.code == 1
    with pytest.raises(errors.ClientError) as caught:
        client.tunings.cancel(name=job.name)
    assert caught.value.code == 400 and "JOB_STATE_CANCELLED" in caught.value.message


def test_rejected_datasets_are_400s(engine: Any, emulator: Emulator) -> None:
    body = {"baseModel": "gemini-2.5-flash", "supervisedTuningSpec": {"trainingDatasetUri": ""}}
    cases = [
        (_stage(b'{"contents": [{"role": "user", "parts": [{"text": "a"}]}]}\n'), "line 1", "one user turn"),
        (_stage(b'{"contents": []}\nnot json\n'), "line 1", ""),
        (_stage(b"\xff\xfe"), "UTF-8", ""),
        (f"gs://{BUCKET}/missing.jsonl", "does not exist", ""),
        ("https://example.com/x.jsonl", "gs://", ""),
    ]
    for uri, *fragments in cases:
        body["supervisedTuningSpec"]["trainingDatasetUri"] = uri
        resp = requests.post(_url(engine, "tuningJobs"), json=body, timeout=30)
        assert resp.status_code == 400, (uri, resp.text)
        err = resp.json()["error"]
        assert err["status"] == "INVALID_ARGUMENT" and err["code"] == 400
        assert all(f in err["message"] for f in fragments if f), err["message"]


def test_request_errors(engine: Any, emulator: Emulator) -> None:
    uri = _dataset()
    bad = [
        ({"supervisedTuningSpec": {"trainingDatasetUri": uri}}, "base_model"),
        ({"baseModel": "gemini-2.5-flash"}, "supervised_tuning_spec"),
        (
            {
                "baseModel": "gemini-2.5-flash",
                "labels": {"Bad Key": "x"},
                "supervisedTuningSpec": {"trainingDatasetUri": uri},
            },
            "labels",
        ),
        (
            {
                "baseModel": "gemini-2.5-flash",
                "supervisedTuningSpec": {
                    "trainingDatasetUri": uri,
                    "hyperParameters": {"adapterSize": "HUGE"},
                },
            },
            "adapter_size",
        ),
        (
            {
                "baseModel": "gemini-2.5-flash",
                "supervisedTuningSpec": {"trainingDatasetUri": uri, "hyperParameters": {"epochCount": 0}},
            },
            "epoch_count",
        ),
    ]
    for body, fragment in bad:
        resp = requests.post(_url(engine, "tuningJobs", "v1beta1"), json=body, timeout=30)
        assert resp.status_code == 400 and fragment in resp.json()["error"]["message"], resp.text
    missing = requests.get(_url(engine, "tuningJobs/123"), timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"
    resp = requests.get(_url(engine, "tuningJobs"), params={"filter": "displayName=x"}, timeout=30)
    assert resp.status_code == 400 and "filter" in resp.json()["error"]["message"]
    resp = requests.post(
        _url(engine, "endpoints/42:generateContent"),
        json={"contents": [{"parts": [{"text": "1"}]}]},
        timeout=30,
    )
    assert resp.status_code == 404


@pytest.mark.slow
def test_paging_label_filters_and_delete(engine: Any, emulator: Emulator) -> None:
    uri = _dataset()
    names = []
    for n in range(3):
        body = {
            "baseModel": "tunespec-byte-tiny",
            "labels": {"batch": "paging", "n": str(n)},
            "supervisedTuningSpec": {"trainingDatasetUri": uri, "hyperParameters": {"epochCount": 1}},
        }
        resp = requests.post(_url(engine, "tuningJobs"), json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        names.append(resp.json()["name"])
    seen, token = [], None
    while True:
        page = requests.get(
            _url(engine, "tuningJobs"),
            timeout=30,
            params={
                "filter": 'labels.batch="paging"',
                "pageSize": 2,
                **({"pageToken": token} if token else {}),
            },
        ).json()
        seen += [j["name"] for j in page["tuningJobs"]]
        token = page.get("nextPageToken")
        if not token:
            break
    assert seen == names
    one = requests.get(
        _url(engine, "tuningJobs"), timeout=30, params={"filter": 'labels.batch="paging" AND labels.n="1"'}
    ).json()["tuningJobs"]
    assert [j["name"] for j in one] == [names[1]]
    deadline = time.monotonic() + 120
    while True:
        job = requests.get(f"{engine.url}/v1/{names[0]}", timeout=30).json()
        if job["state"] == "JOB_STATE_SUCCEEDED" or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert job["state"] == "JOB_STATE_SUCCEEDED"
    prompt = {"contents": [{"role": "user", "parts": [{"text": "1"}]}]}
    ok = requests.post(
        f"{engine.url}/v1/{job['tunedModel']['endpoint']}:generateContent", json=prompt, timeout=60
    )
    assert ok.status_code == 200 and ok.json()["candidates"][0]["content"]["role"] == "model"
    base = requests.post(
        _url(engine, "publishers/google/models/gemini-2.5-flash:generateContent"), json=prompt, timeout=60
    )
    assert base.status_code == 200 and base.json()["candidates"]
    deleted = requests.delete(f"{engine.url}/v1/{job['tunedModel']['model']}", timeout=30)
    assert deleted.status_code == 200 and deleted.json()["done"] is True
    after = requests.get(f"{engine.url}/v1/{names[0]}", timeout=30).json()
    assert after["state"] == "JOB_STATE_SUCCEEDED" and "tunedModel" not in after
    gone = requests.post(
        f"{engine.url}/v1/{job['tunedModel']['endpoint']}:generateContent", json=prompt, timeout=30
    )
    assert gone.status_code == 404


def test_token_file_guards_the_vertex_dialect(tmp_path: Any) -> None:
    from tunespec.engine.server import start_background

    tokens = tmp_path / "tokens.txt"
    tokens.write_text("alpha-token alpha-project\nany-token\n")
    with start_background(tmp_path / "data", token_file=tokens) as running:

        def get(project: str, token: str | None) -> requests.Response:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            url = f"{running.url}/v1/projects/{project}/locations/us-central1/tuningJobs"
            return requests.get(url, headers=headers, timeout=30)

        assert get("alpha-project", "alpha-token").status_code == 200
        assert get("other-project", "any-token").status_code == 200
        denied = get("beta-project", "alpha-token")
        assert denied.status_code == 403 and denied.json()["error"]["status"] == "PERMISSION_DENIED"
        assert get("alpha-project", None).status_code == 401
        assert get("alpha-project", "wrong").status_code == 401
