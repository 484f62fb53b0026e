"""Every file of bad_requests/ is one bad request to the real engine and the 4xx it must answer.

A case file is JSON: method, path, one of body (JSON), body_text (raw text) or body_parts
([[text, repeat], ...] joined: big or deep bodies), optional headers, then the expected status and
a fragment of the message. A new case joins with one file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.slow

CASES = sorted((Path(__file__).parent / "bad_requests").glob("*.json"))


def _data(case: dict) -> bytes | None:
    if "body" in case:
        return json.dumps(case["body"]).encode()
    if "body_text" in case:
        return case["body_text"].encode()
    if "body_parts" in case:
        return "".join(text * n for text, n in case["body_parts"]).encode()
    return None


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_bad_request(engine, path: Path) -> None:
    case = json.loads(path.read_text())
    headers = {"Content-Type": "application/json", **case.get("headers", {})}
    resp = requests.request(case["method"], engine.url + case["path"], data=_data(case),
                            headers=headers, timeout=60)
    assert resp.status_code == case["status"], resp.text[:500]
    err = resp.json()["error"]
    assert err["code"] == case["status"] and err["status"], err
    assert case["message"] in err["message"], err["message"]
