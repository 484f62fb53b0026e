"""Wire-format helpers, id derivation and the job queue's claim rules (no server, no training)."""

from __future__ import annotations

import re
import signal
import threading
from pathlib import Path

import pytest

from tunespec.engine import ids
from tunespec.engine.store import Store
from tunespec.engine.wire import ApiException, Enum, Present, compact, parse_body, rfc3339
from tunespec.tuning_api import to_snake, valid_tuned_model_id


def test_trailing_commas_are_tolerated_but_garbage_is_not() -> None:
    assert parse_body(b'{"a": {"b": 3, }, "c": [1, 2, ], "d": ",}",}') == {
        "a": {"b": 3},
        "c": [1, 2],
        "d": ",}",
    }
    assert parse_body(b"  \n ") == {}
    assert parse_body(b'{"s": "a \\" ,]"}') == {"s": 'a " ,]'}
    for bad, fragment in [
        (b"{,}", "line 1"),
        (b"{'a': 1}", "Invalid JSON"),
        (b"[]", "JSON object"),
        (b"\xff\xfe", "UTF-8"),
        (b'{"a": 1} x', "Invalid JSON"),
    ]:
        with pytest.raises(ApiException, match=fragment) as info:
            parse_body(bad)
        assert info.value.http_status == 400 and info.value.status == "INVALID_ARGUMENT"


def test_requests_accept_snake_and_camel_mixed() -> None:
    body = {
        "display_name": "x",
        "tuningTask": {
            "training_data": {"examples": {"examples": [{"textInput": "1", "output": "2"}]}},
            "hyperparameters": {"epochCount": 1, "batch_size": 2},
        },
    }
    assert to_snake(body) == {
        "display_name": "x",
        "tuning_task": {
            "training_data": {"examples": {"examples": [{"text_input": "1", "output": "2"}]}},
            "hyperparameters": {"epoch_count": 1, "batch_size": 2},
        },
    }


def test_responses_omit_defaults_and_encode_enums() -> None:
    value = {
        "a": None,
        "b": "",
        "c": [],
        "d": {},
        "e": False,
        "f": 0,
        "g": {"h": None},
        "state": Enum("ACTIVE", 2),
        "out": Present(""),
        "done": True,
    }
    assert compact(value) == {"f": 0, "state": "ACTIVE", "out": "", "done": True}
    assert compact(value, int_enums=True)["state"] == 2


def test_timestamps_are_rfc3339_utc() -> None:
    ns = 1_695_153_385_999_303_123
    assert rfc3339(ns) == "2023-09-19T19:56:25.999303Z"
    assert rfc3339(ns, 9) == "2023-09-19T19:56:25.999303123Z"
    assert rfc3339(None) is None


@pytest.mark.parametrize(
    ("display", "prefix"),
    [
        ("number generator model", "number-generator-model-"),
        ("my display name 81", "my-display-name-81-"),
        ("test_number_generator", "testnumbergenerator-"),
        ("number generator", "number-generator-"),
    ],
)
def test_ids_follow_googles_observed_derivation(display: str, prefix: str) -> None:
    tid = ids.tuned_model_id(display)
    assert tid.startswith(prefix) and re.fullmatch(r"[a-z0-9]{12}", tid[len(prefix) :])
    assert valid_tuned_model_id(tid)


@pytest.mark.parametrize("display", ["", "   ", "!!!", "9 lives", "x" * 40, "Ünïcode wörds 2024"])
def test_ids_are_always_valid(display: str) -> None:
    tid = ids.tuned_model_id(display)
    assert valid_tuned_model_id(tid) and len(tid) <= 40, tid
    assert re.fullmatch(r"[a-z0-9]{12}", ids.operation_id())


def _row(model_id: str, seq_project: str = "p") -> dict:
    return {
        "id": model_id,
        "project": seq_project,
        "api_version": "v1beta3",
        "op_id": "op",
        "base_model": "m",
        "state": "CREATING",
        "create_ns": 1,
        "update_ns": 1,
        "epoch_count": 1,
        "batch_size": 1,
        "effective_learning_rate": 0.001,
        "tuning_method": "auto",
        "example_count": 1,
        "total_steps": 1,
        "examples": [["a", "b"]],
    }


def test_claims_are_exclusive_and_in_order(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for i in range(4):
        store.insert_model(_row(f"job-{i}"))
    got: list[str] = []
    lock = threading.Lock()

    def claim(owner: str) -> None:
        s = Store(tmp_path)
        while (job := s.claim_next(owner, is_dead=lambda _: False)) is not None:
            with lock:
                got.append(job["id"])

    threads = [threading.Thread(target=claim, args=(f"host:{n}:0",)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == [f"job-{i}" for i in range(4)]  # each job claimed exactly once
    assert Store(tmp_path).claim_next("late:1:0", is_dead=lambda _: False) is None


def test_dead_owner_jobs_are_reclaimed_without_a_charge(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.insert_model(_row("restarted"))
    for attempt in range(10):  # an engine that dies with its workers, again and again
        job = store.claim_next(f"h:{attempt}:0", is_dead=lambda _: True)
        assert job is not None and job["attempts"] == 0
    assert store.reap(5, is_dead=lambda _: True) == []
    store.release("restarted", "h:9:0")
    assert store.get_model("restarted")["attempts"] == 0


def test_jobs_that_crash_their_worker_are_charged_then_given_up(tmp_path: Path) -> None:
    import socket

    store = Store(tmp_path)
    store.insert_model(_row("crashy"))
    store.insert_model(_row("bystander"))
    host = socket.gethostname()
    for attempt in range(3):
        job = store.claim_next(f"{host}:{100 + attempt}:0", is_dead=lambda _: False)
        assert job is not None and job["id"] == "crashy"
        assert store.charge_crash(100 + attempt, cause="crash") == ["crashy"]
        assert store.get_model("crashy")["attempts"] == attempt + 1
    assert store.charge_crash(100) == []  # charged once per death
    job = store.claim_next(f"{host}:200:0", is_dead=lambda _: False)
    assert job is not None and job["id"] == "bystander"  # no fourth try for crashy
    assert store.reap(5, is_dead=lambda _: False) == ["crashy"]
    row = store.get_model("crashy")
    assert row["state"] == "FAILED" and "crashed its training worker 3 times" in row["error_message"]
    assert store.get_model("bystander")["attempts"] == 0


def _die_at(store: Store, pid: int, model_id: str, *, resume: int | None, last: int, cause: str) -> list[str]:
    """Claim `model_id` as worker `pid`, train from `resume` to step `last`, then die of `cause`."""
    import socket

    job = store.claim_next(f"{socket.gethostname()}:{pid}:0", is_dead=lambda _: False)
    assert job is not None and job["id"] == model_id
    if resume is not None:
        store.start_attempt(model_id, resume)
        for step in range(resume + 1, last + 1):
            store.add_snapshot(model_id, step, 0, 1.0, step)
    return store.charge_crash(pid, cause=cause)


def test_sigkills_from_outside_charge_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.insert_model(_row("victim"))
    deaths = [(None, 0), (0, 0), (0, 7), (None, 7), (5, 5), (5, 12), (10, 31), (30, 30), (30, 44)]
    for pid, (resume, last) in enumerate(deaths, start=300):  # start-up, loading, training, ...
        assert _die_at(store, pid, "victim", resume=resume, last=max(last, resume or 0),
                       cause="killed") == []
    row = store.get_model("victim")
    assert row["attempts"] == 0 and row["claimed_by"] is None and row["state"] == "CREATING"
    assert store.reap(5, is_dead=lambda _: False) == []


def test_a_sigkill_that_repeats_at_one_step_is_the_jobs_doing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.insert_model(_row("oom"))
    assert _die_at(store, 400, "oom", resume=0, last=2, cause="killed") == []  # could be anyone
    assert _die_at(store, 401, "oom", resume=0, last=2, cause="killed") == ["oom"]  # again: the job
    assert store.get_model("oom")["attempts"] == 2
    assert _die_at(store, 402, "oom", resume=0, last=2, cause="killed") == ["oom"]
    assert store.reap(5, is_dead=lambda _: False) == ["oom"]
    assert "crashed its training worker 3 times" in store.get_model("oom")["error_message"]


def test_a_fatal_signal_or_the_oom_killer_charges_at_once(tmp_path: Path) -> None:
    from tunespec.engine.worker import crash_cause

    assert crash_cause(-signal.SIGKILL, 4, 4) == "killed"
    assert crash_cause(-signal.SIGKILL, 4, 5) == "crash"  # the OOM killer's count went up
    assert crash_cause(-signal.SIGSEGV, 0, 0) == crash_cause(1, 0, 0) == "crash"
    store = Store(tmp_path)
    store.insert_model(_row("segv"))
    assert _die_at(store, 500, "segv", resume=None, last=0, cause="crash") == ["segv"]  # even loading
    assert store.get_model("segv")["attempts"] == 1


def test_an_older_database_gains_the_new_columns(tmp_path: Path) -> None:
    import sqlite3

    Store(tmp_path).insert_model(_row("old"))
    with sqlite3.connect(tmp_path / "engine.db") as db:
        db.execute("ALTER TABLE tuned_models DROP COLUMN crash_step")
        db.execute("ALTER TABLE tuned_models DROP COLUMN resume_step")
    store = Store(tmp_path)
    assert _die_at(store, 600, "old", resume=0, last=3, cause="killed") == []
    assert store.get_model("old")["crash_step"] == 3


def test_cancel_of_a_queued_job_ends_it_at_once(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.insert_model(_row("waiting"))
    assert store.request_cancel("waiting", 7, "Tuning was cancelled.") == "cancelled"
    row = store.get_model("waiting")
    assert (row["state"], row["error_code"]) == ("FAILED", 1)
    assert store.request_cancel("waiting", 8, "again") == "done"


def test_a_checkpoints_history_fills_missing_snapshots_and_keeps_recorded_ones(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.insert_model(_row("gappy"))
    for step in (1, 2, 5):  # 3 and 4 were trained, checkpointed and never reported
        store.add_snapshot("gappy", step, 0, 1.0 / step, step * 100)
    store.add_missing_snapshots("gappy", [(s, 0, 9.0, 7) for s in range(1, 6)])
    got = [(s["step"], s["mean_loss"]) for s in store.snapshots(["gappy"])["gappy"]]
    assert got == [(1, 1.0), (2, 0.5), (3, 9.0), (4, 9.0), (5, 0.2)]


def test_a_job_killing_its_worker_right_after_each_resume_is_charged(tmp_path: Path) -> None:
    import socket

    store = Store(tmp_path)
    store.insert_model(_row("resumer"))
    for step in (1, 2):
        store.add_snapshot("resumer", step, 0, 1.0, step)
    owner = f"{socket.gethostname()}:4242:0"
    charged = []
    for _ in range(2):  # resumes from its checkpoint at step 2, dies in step 3, before reporting it
        assert store.claim_next(owner, is_dead=lambda _: False)["id"] == "resumer"
        store.start_attempt("resumer", 2)
        store.training_began("resumer")
        charged.append(store.charge_crash(4242, cause="killed"))
    assert charged == [[], ["resumer"]]  # the second death at one step charges both
    assert store.get_model("resumer")["attempts"] == 2
    assert store.claim_next(owner, is_dead=lambda _: False)["id"] == "resumer"
    store.start_attempt("resumer", 2)  # killed while loading (training not begun): charges nothing
    assert store.charge_crash(4242, cause="killed") == []
