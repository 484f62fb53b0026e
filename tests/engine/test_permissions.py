"""Sharing tuned models over plain HTTP: the permissions resource, what each role lets a project do
through the door, transferOwnership, and data dirs written before permissions existed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import requests

from tests.engine.engine_helpers import assert_error
from tests.engine.sdk_helpers import ALICE, BOB, CAROL, guarded_engine, train


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    yield from guarded_engine(tmp_path_factory.mktemp("permissions"))


@pytest.fixture(scope="module")
def shared(engine) -> str:
    return train(engine.url, "shared-model")


def _as(key: str) -> dict[str, str]:
    return {"x-goog-api-key": key}


def _names(url: str, key: str, version: str = "v1beta") -> list[str]:
    return [m["name"] for m in requests.get(f"{url}/{version}/tunedModels", headers=_as(key)).json().get(
        "tunedModels", [])]


@pytest.mark.slow
def test_roles_decide_what_a_project_may_do(engine, shared) -> None:
    url, model = engine.url, f"{engine.url}/v1beta/{shared}"
    perms = f"{model}/permissions"
    ask = {"contents": [{"parts": [{"text": "1"}]}]}
    op_name = requests.get(f"{model}/operations", headers=_as(ALICE)).json()["operations"][0]["name"]

    assert shared not in _names(url, BOB)  # nothing shared: nothing seen
    assert_error(requests.get(model, headers=_as(BOB)), 403, "PERMISSION_DENIED", "do not have permission")

    reader = requests.post(perms, json={"role": "READER", "emailAddress": "team-b"}, headers=_as(ALICE))
    assert reader.status_code == 200, reader.text
    assert reader.json()["granteeType"] == "USER"  # an email address without a type: a user
    for version in ("v1beta", "v1"):
        assert shared in _names(url, BOB, version)
    assert requests.get(model, headers=_as(BOB)).json()["state"] == "ACTIVE"
    assert requests.post(f"{model}:generateContent", json=ask, headers=_as(BOB)).status_code == 200
    assert requests.post(f"{url}/v1/{shared}:countTokens", json=ask, headers=_as(BOB)).json() == {
        "totalTokens": 1}
    assert requests.get(f"{url}/v1/{op_name}", headers=_as(BOB)).json()["done"] is True
    for resp in (
        requests.patch(f"{model}?updateMask=description", json={"description": "x"}, headers=_as(BOB)),
        requests.post(f"{url}/v1/{op_name}:cancel", headers=_as(BOB)),
        requests.get(perms, headers=_as(BOB)),
        requests.post(perms, json={"role": "READER", "emailAddress": "team-c"}, headers=_as(BOB)),
    ):
        assert_error(resp, 403, "PERMISSION_DENIED", "READER role", "needs WRITER")
    assert_error(requests.delete(model, headers=_as(BOB)), 403, "PERMISSION_DENIED", "needs OWNER")
    assert shared not in _names(url, CAROL)

    perm = reader.json()["name"]
    promoted = requests.patch(f"{url}/v1beta/{perm}?updateMask=role", json={"role": "WRITER"},
                              headers=_as(ALICE))
    assert promoted.json()["role"] == "WRITER", promoted.text
    assert requests.patch(f"{model}?updateMask=description", json={"description": "by bob"},
                          headers=_as(BOB)).json()["description"] == "by bob"
    carol = requests.post(perms, json={"role": "READER", "granteeType": "USER", "emailAddress": "team-c"},
                          headers=_as(BOB))  # a writer shares
    assert carol.status_code == 200, carol.text
    assert shared in _names(url, CAROL)
    assert_error(requests.post(perms, json={"role": "OWNER", "emailAddress": "team-c"}, headers=_as(BOB)),
                 400, "INVALID_ARGUMENT", "transferOwnership")
    assert_error(requests.post(f"{model}:transferOwnership", json={"emailAddress": "team-b"},
                               headers=_as(BOB)), 403, "PERMISSION_DENIED", "needs OWNER")
    listed = requests.get(perms, params={"pageSize": 2}, headers=_as(BOB)).json()
    assert [p["role"] for p in listed["permissions"]] == ["OWNER", "WRITER"] and listed["nextPageToken"]
    rest = requests.get(perms, params={"pageSize": 2, "pageToken": listed["nextPageToken"]},
                        headers=_as(BOB)).json()
    assert [(p["emailAddress"], p["role"]) for p in rest["permissions"]] == [("team-c", "READER")]

    assert requests.delete(f"{url}/v1beta/{carol.json()['name']}", headers=_as(ALICE)).json() == {}
    assert shared not in _names(url, CAROL)
    assert_error(requests.get(model, headers=_as(CAROL)), 403, "PERMISSION_DENIED")

    everyone = requests.post(perms, json={"role": "READER", "granteeType": "EVERYONE"}, headers=_as(ALICE))
    assert everyone.json() == {"name": everyone.json()["name"], "granteeType": "EVERYONE", "role": "READER"}
    assert shared in _names(url, CAROL)

    assert requests.post(f"{model}:transferOwnership", json={"emailAddress": "team-b"},
                         headers=_as(ALICE)).json() == {}
    roles = {p["emailAddress"]: p["role"] for p in requests.get(perms, headers=_as(BOB)).json()["permissions"]
             if "emailAddress" in p}
    assert roles == {"team-b": "OWNER", "team-a": "WRITER"}
    assert_error(requests.delete(model, headers=_as(ALICE)), 403, "PERMISSION_DENIED", "needs OWNER")
    assert requests.delete(model, headers=_as(BOB)).json() == {}
    assert shared not in _names(url, ALICE) + _names(url, BOB) + _names(url, CAROL)


@pytest.mark.slow
def test_bad_permission_requests(engine) -> None:
    model = train(engine.url, "strict-model", key=CAROL)
    perms = f"{engine.url}/v1beta3/{model}/permissions"
    carol = _as(CAROL)
    cases = [
        ({"role": "ADMIN", "emailAddress": "team-b"}, "permission.role"),
        ({"emailAddress": "team-b"}, "permission.role is required"),
        ({"role": "READER", "granteeType": "GROUP"}, "email_address is required"),
        ({"role": "READER", "granteeType": "EVERYONE", "emailAddress": "team-b"}, "takes no email_address"),
        ({"role": "READER", "emailAddress": "team-c"}, "owns this model already"),
        ({"role": "READER", "emailAddress": "team-b", "colour": "red"}, 'Unknown name "colour"'),
    ]
    for body, fragment in cases:
        assert_error(requests.post(perms, json=body, headers=carol), 400, "INVALID_ARGUMENT", fragment)
    owner = f"{perms}/owner"
    assert requests.get(owner, headers=carol).json()["role"] == "OWNER"
    assert_error(requests.delete(owner, headers=carol), 400, "INVALID_ARGUMENT", "transferOwnership")
    assert_error(requests.patch(f"{owner}?updateMask=role", json={"role": "READER"}, headers=carol),
                 400, "INVALID_ARGUMENT", "transferOwnership")
    assert_error(requests.get(f"{perms}/nope", headers=carol), 404, "NOT_FOUND", "permissions/nope")
    made = requests.post(perms, json={"role": 3, "granteeType": 1, "emailAddress": "team-a"}, headers=carol)
    assert made.json()["role"] == "READER", made.text  # enums as numbers, as GAPIC sends them
    name = f"{engine.url}/v1beta3/{made.json()['name']}"
    assert_error(requests.patch(name, json={"role": "WRITER"}, headers=carol), 400, "INVALID_ARGUMENT",
                 "update_mask is required")
    assert_error(requests.patch(f"{name}?updateMask=emailAddress", json={"emailAddress": "x"},
                                headers=carol), 400, "INVALID_ARGUMENT", "updatable fields: role")
    assert_error(requests.post(perms, json={"role": "WRITER", "emailAddress": "team-a"}, headers=carol),
                 409, "ALREADY_EXISTS", "team-a")
    assert_error(requests.post(f"{engine.url}/v1beta3/{model}:transferOwnership", json={}, headers=carol),
                 400, "INVALID_ARGUMENT", "email_address is required")


def test_a_data_dir_from_before_permissions_opens_and_shares(tmp_path: Path) -> None:
    from tunespec.engine.store import Store

    store = Store(tmp_path)
    store.close()
    with sqlite3.connect(tmp_path / "engine.db") as db:  # as an engine without sharing left it
        db.execute("DROP TABLE permissions")
    reopened = Store(tmp_path)
    assert reopened.permissions("any") == []
    assert reopened.list_models("team-b", shared=True) == []
    reopened.add_permission("m", {"id": "p1", "grantee_type": "USER", "grantee": "team-b", "role": "READER"})
    assert [g["role"] for g in reopened.permissions("m")] == ["READER"]
