"""SQLite (WAL) persistence: tuned models, their operations and training snapshots.

One row per tuned model carries its operation too (`op_id`, error fields): a tuned model has
exactly one CreateTunedModel operation. Its `weights_dir` (and a continued model's `init_dir`)
is relative to the data dir, so the data dir can move; rows written before hold absolute paths,
which resolve to themselves. A model's `project` is its owner; `permissions` holds what it
shares with other projects (reader / writer; grantee '*' is everyone). The training data is kept
(the worker needs it, and a resumed job needs it again) but is never returned by the API. Every
process and thread opens its own connection; claims on queued jobs are atomic compare-and-set
UPDATEs with a lease, so two engines on one data dir never run the same job.

`attempts` counts the times a job crashed its worker: a worker process that died while holding it,
while the engine supervising that worker lived on and had not told it to stop, and by the job's own
doing (`charge_crash`, called by worker.WorkerSupervisor: a fatal signal, the OOM killer, or a SIGKILL
at the same training step twice in a row). Claiming a job charges nothing, and neither does a job whose
owner died with its whole engine (SIGKILL, reboot), was killed from outside, or gave it back on SIGTERM:
the next claim resumes it.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DB_NAME = "engine.db"
LEASE_S = 15.0
MAX_ATTEMPTS = 3
CANCEL_MESSAGE = "Tuning was cancelled."  # the error of a cancelled job's operation (code 1)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tuned_models (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    project TEXT NOT NULL,
    api_version TEXT NOT NULL,
    op_id TEXT NOT NULL,
    base_model TEXT NOT NULL,
    source_tuned_model TEXT,
    display_name TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    temperature REAL, top_p REAL, top_k INTEGER,
    state TEXT NOT NULL,
    create_ns INTEGER NOT NULL, update_ns INTEGER NOT NULL, start_ns INTEGER, complete_ns INTEGER,
    epoch_count INTEGER NOT NULL, batch_size INTEGER NOT NULL,
    learning_rate REAL, learning_rate_multiplier REAL, effective_learning_rate REAL NOT NULL,
    tuning_method TEXT NOT NULL,
    example_count INTEGER NOT NULL, total_steps INTEGER NOT NULL,
    examples TEXT NOT NULL,
    init_dir TEXT, weights_dir TEXT,
    error_code INTEGER, error_message TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    claimed_by TEXT, lease_until REAL, attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tuned_models_project ON tuned_models(project, seq);
CREATE TABLE IF NOT EXISTS snapshots (
    model_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    mean_loss REAL NOT NULL,
    compute_ns INTEGER NOT NULL,
    PRIMARY KEY (model_id, step)
);
CREATE TABLE IF NOT EXISTS permissions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id TEXT NOT NULL,
    id TEXT NOT NULL,
    grantee_type TEXT NOT NULL,
    grantee TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL,
    UNIQUE (model_id, id),
    UNIQUE (model_id, grantee_type, grantee)
);
"""


# Columns added after the first release: (name, declaration), added to older databases on open.
# resume_step: the checkpoint step the job's current attempt started from; crash_step: the step at
# which a worker holding the job was last SIGKILLed while training (see charge_crash); waiting_for:
# what a claimed job waits for before it can start (the Ray executor: "1 GPU in the Ray cluster");
# lora_rank: the adapter's rank a Vertex job's adapter_size asks for (NULL: the trainer's default).
# training: 1 once the current attempt's training loop runs (its model loaded), 0 before.
_ADDED_COLUMNS = {"resume_step": "INTEGER", "crash_step": "INTEGER", "waiting_for": "TEXT",
                  "lora_rank": "INTEGER", "training": "INTEGER"}


class AlreadyExists(Exception):
    """A tuned model with that id exists (in any project)."""


def owner_token() -> str:
    """Identifies one worker process: host, pid and a start stamp."""
    return f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host runs (one of another user counts; a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child that nobody reaped yet still answers kill(0)
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def owner_is_dead(owner: str) -> bool:
    """True when `owner` names a process on this host that no longer runs."""
    try:
        host, pid, _ = owner.split(":")
    except ValueError:
        return True
    return host == socket.gethostname() and not pid_alive(int(pid))


def _held(row: sqlite3.Row, now: float, is_dead: Callable[[str], bool]) -> bool:
    """Whether a live worker holds the job in `row` (its `claimed_by`, `lease_until`) at time `now`."""
    owner = row["claimed_by"]
    return bool(owner) and (row["lease_until"] or 0) > now and not is_dead(owner)


class Store:
    """The engine's database in `data_dir/engine.db` (created on first use)."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / DB_NAME
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)
        self._add_columns("tuned_models", _ADDED_COLUMNS)
        # Rows are read without the training data (large, read only by the worker: examples()).
        columns = [r["name"] for r in self._conn().execute("PRAGMA table_info(tuned_models)")]
        self._row_columns = ", ".join(c for c in columns if c != "examples")

    def _add_columns(self, table: str, added: dict[str, str]) -> None:
        """Bring a data dir written by an older engine up to date (columns added since)."""
        have = {r["name"] for r in self._conn().execute(f"PRAGMA table_info({table})")}
        for name, decl in added.items():
            if name not in have:
                try:
                    self._conn().execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
                except sqlite3.OperationalError as exc:  # another process added it first
                    if "duplicate column" not in str(exc):
                        raise

    # ---- connections -------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ---- tuned models ------------------------------------------------------------------------
    def insert_model(self, row: dict[str, Any]) -> None:
        row = dict(row)
        row["examples"] = json.dumps(row["examples"])
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        try:
            with self._tx() as db:
                db.execute(f"INSERT INTO tuned_models ({cols}) VALUES ({marks})", tuple(row.values()))
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(row["id"]) from exc

    def finished_since(self, since_ns: int) -> list[tuple[int, str]]:
        """(complete_ns, weights_dir) of the jobs that turned ACTIVE after `since_ns`, oldest first."""
        cur = self._conn().execute(
            "SELECT complete_ns, weights_dir FROM tuned_models WHERE state = 'ACTIVE' AND complete_ns > ? "
            "AND weights_dir IS NOT NULL ORDER BY complete_ns", (since_ns,))
        return [(int(ns), str(weights)) for ns, weights in cur.fetchall()]

    def get_model(self, model_id: str) -> dict[str, Any] | None:
        cur = self._conn().execute(f"SELECT {self._row_columns} FROM tuned_models WHERE id = ?", (model_id,))
        r = cur.fetchone()
        return dict(r) if r else None

    def job_status(self, model_id: str) -> dict[str, Any] | None:
        """A job's `cancel_requested` and `claimed_by` (what a running job polls), or None if deleted."""
        cur = self._conn().execute(
            "SELECT cancel_requested, claimed_by FROM tuned_models WHERE id = ?", (model_id,)
        )
        r = cur.fetchone()
        return dict(r) if r else None

    def list_models(
        self, project: str, *, after_seq: int = 0, limit: int = 10, shared: bool = False
    ) -> list[dict[str, Any]]:
        """The models `project` owns (and, with `shared`, those shared with it or with everyone)."""
        where = "project = ?"
        args: tuple[Any, ...] = (project,)
        if shared:
            where = "(project = ? OR id IN (SELECT model_id FROM permissions WHERE grantee IN (?, '*')))"
            args = (project, project)
        cur = self._conn().execute(
            f"SELECT {self._row_columns} FROM tuned_models WHERE {where} AND seq > ? ORDER BY seq LIMIT ?",
            (*args, after_seq, limit),
        )
        return [dict(r) for r in cur.fetchall()]

    def update_model(self, model_id: str, **fields: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as db:
            db.execute(f"UPDATE tuned_models SET {sets} WHERE id = ?", (*fields.values(), model_id))

    def delete_model(self, model_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM tuned_models WHERE id = ?", (model_id,))
            db.execute("DELETE FROM snapshots WHERE model_id = ?", (model_id,))
            db.execute("DELETE FROM permissions WHERE model_id = ?", (model_id,))

    def examples(self, model_id: str) -> list[tuple[str, str]]:
        """A tuned model's training data as (text_input, output) pairs ([] once it is deleted)."""
        r = self._conn().execute("SELECT examples FROM tuned_models WHERE id = ?", (model_id,)).fetchone()
        return [tuple(e) for e in json.loads(r["examples"])] if r else []

    # ---- permissions -------------------------------------------------------------------------
    def permissions(self, model_id: str) -> list[dict[str, Any]]:
        """A tuned model's granted permissions (its owner's is not stored), oldest first."""
        cur = self._conn().execute(
            "SELECT seq, id, grantee_type, grantee, role FROM permissions WHERE model_id = ? ORDER BY seq",
            (model_id,),
        )
        return [dict(r) for r in cur.fetchall()]

    def add_permission(self, model_id: str, row: dict[str, Any]) -> None:
        """Insert a permission; AlreadyExists when the grantee (or the id) has one on the model."""
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO permissions (model_id, id, grantee_type, grantee, role) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (model_id, row["id"], row["grantee_type"], row["grantee"], row["role"]),
                )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(row["id"]) from exc

    def set_permission_role(self, model_id: str, perm_id: str, role: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE permissions SET role = ? WHERE model_id = ? AND id = ?", (role, model_id, perm_id)
            )

    def delete_permission(self, model_id: str, perm_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM permissions WHERE model_id = ? AND id = ?", (model_id, perm_id))

    def transfer_ownership(self, model_id: str, new_owner: str, old_owner_grant: dict[str, Any]) -> None:
        """Make project `new_owner` the model's owner (its own grant, if any, goes) and give the former
        owner `old_owner_grant` (a writer permission), in one transaction."""
        with self._tx() as db:
            db.execute("UPDATE tuned_models SET project = ? WHERE id = ?", (new_owner, model_id))
            db.execute(
                "DELETE FROM permissions WHERE model_id = ? AND grantee_type != 'EVERYONE' "
                "AND grantee IN (?, ?)",
                (model_id, new_owner, old_owner_grant["grantee"]),
            )
            db.execute(
                "INSERT INTO permissions (model_id, id, grantee_type, grantee, role) VALUES (?, ?, ?, ?, ?)",
                (model_id, old_owner_grant["id"], old_owner_grant["grantee_type"],
                 old_owner_grant["grantee"], old_owner_grant["role"]),
            )

    # ---- snapshots ---------------------------------------------------------------------------
    def snapshots(self, model_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Each model's snapshots in step order, read in one query (a page lists up to 1000 models)."""
        out: dict[str, list[dict[str, Any]]] = {i: [] for i in model_ids}
        marks = ", ".join("?" for _ in model_ids)
        cur = self._conn().execute(
            "SELECT model_id, step, epoch, mean_loss, compute_ns FROM snapshots "
            f"WHERE model_id IN ({marks}) ORDER BY model_id, step",
            model_ids,
        )
        for r in cur:
            out[r["model_id"]].append({k: r[k] for k in ("step", "epoch", "mean_loss", "compute_ns")})
        return out

    def add_snapshot(self, model_id: str, step: int, epoch: int, mean_loss: float, compute_ns: int) -> None:
        self._conn().execute(  # one statement: atomic without an explicit transaction
            "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?)",
            (model_id, step, epoch, float(mean_loss), compute_ns),
        )

    def add_missing_snapshots(self, model_id: str, steps: list[tuple[int, int, float, int]]) -> None:
        """Record the (step, epoch, mean_loss, compute_ns) of `steps` the store lacks: a checkpoint's
        history, told on resuming, fills the steps whose reports died with the process (or the
        engine) that trained them."""
        with self._tx() as db:
            db.executemany("INSERT OR IGNORE INTO snapshots VALUES (?, ?, ?, ?, ?)",
                           [(model_id, s, e, float(loss), ns) for s, e, loss, ns in steps])

    def start_attempt(self, model_id: str, step: int) -> None:
        """A claimed job resumes from its checkpoint at `step`: drop the snapshots after it and note
        where this attempt starts (charge_crash tells a death mid-training from one before it)."""
        with self._tx() as db:
            db.execute("DELETE FROM snapshots WHERE model_id = ? AND step > ?", (model_id, step))
            db.execute("UPDATE tuned_models SET resume_step = ?, training = 0 WHERE id = ?", (step, model_id))

    def training_began(self, model_id: str) -> None:
        """The current attempt's model is loaded and its training loop runs: a death from now on is
        a death mid-training (charge_crash), even before its first step ends."""
        self._conn().execute("UPDATE tuned_models SET training = 1 WHERE id = ?", (model_id,))

    # ---- the job queue -----------------------------------------------------------------------
    def claim_next(
        self, owner: str, *, lease_s: float = LEASE_S, is_dead: Callable[[str], bool] = owner_is_dead
    ) -> dict[str, Any] | None:
        """Atomically claim the oldest CREATING job nobody (alive) holds; None when the queue is empty.

        A job whose owner died (or whose lease ran out) is claimed again as it is: the claim charges
        no attempt (only `charge_crash` does)."""
        now = time.time()
        cur = self._conn().execute(
            "SELECT id, claimed_by, lease_until, attempts FROM tuned_models "
            "WHERE state = 'CREATING' AND cancel_requested = 0 AND attempts < ? ORDER BY seq",
            (MAX_ATTEMPTS,),  # jobs that crashed their worker that often are left to reap()
        )
        for r in cur.fetchall():
            if _held(r, now, is_dead):
                continue
            with self._tx() as db:
                got = db.execute(
                    "UPDATE tuned_models SET claimed_by = ?, lease_until = ?, resume_step = NULL, "
                    "waiting_for = NULL "
                    "WHERE id = ? AND state = 'CREATING' AND cancel_requested = 0 AND claimed_by IS ?",
                    (owner, now + lease_s, r["id"], r["claimed_by"]),
                ).rowcount
            if got == 1:
                return self.get_model(r["id"])
        return None

    def heartbeat(self, owner: str, *, lease_s: float = LEASE_S) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE tuned_models SET lease_until = ? WHERE claimed_by = ? AND state = 'CREATING'",
                (time.time() + lease_s, owner),
            )

    def release(self, model_id: str, owner: str) -> None:
        """Give a job back to the queue (engine shutting down): the next worker resumes it."""
        with self._tx() as db:
            db.execute(
                "UPDATE tuned_models SET claimed_by = NULL, lease_until = NULL, waiting_for = NULL "
                "WHERE id = ? AND claimed_by = ?",
                (model_id, owner),
            )

    def charge_crash(self, pid: int, host: str | None = None, *, cause: str = "crash") -> list[str]:
        """Worker process `pid` of `host` (default: this one) died unasked while its engine lives on:
        give each CREATING job it held back to the queue (the next claim resumes it) and charge the
        jobs that killed it. Returns the ids charged.

        `cause` "crash": the job's own doing (a fatal signal such as SIGSEGV, a non-zero exit, or the
        kernel's OOM killer), one attempt. "killed": a SIGKILL with no sign of the OOM killer, which
        may come from outside (an operator, a process manager) as well as from the job: it is charged
        only when it repeats, the worker dying mid-training at the very step the job's previous such
        death did; the second death in a row at one step charges both. A kill outside training (while
        the worker imports or loads, before its first step) charges nothing. `reap` ends a job once it
        has MAX_ATTEMPTS attempts."""
        prefix = f"{host or socket.gethostname()}:{pid}:"
        charged = []
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, claimed_by, attempts, resume_step, crash_step, training FROM tuned_models "
                "WHERE state = 'CREATING' AND claimed_by IS NOT NULL"
            ).fetchall()
            for r in rows:
                if not r["claimed_by"].startswith(prefix):
                    continue
                last = db.execute(
                    "SELECT MAX(step) FROM snapshots WHERE model_id = ?", (r["id"],)
                ).fetchone()[0] or 0
                charge, crash_step = 0, r["crash_step"]
                if cause != "killed":
                    charge = 1
                elif r["resume_step"] is not None and (r["training"] or last > r["resume_step"]):  # training
                    if crash_step == last:
                        charge = 1 if r["attempts"] else 2
                    crash_step = last
                db.execute(
                    "UPDATE tuned_models SET attempts = attempts + ?, crash_step = ?, claimed_by = NULL, "
                    "lease_until = NULL WHERE id = ?",
                    (charge, crash_step, r["id"]),
                )
                if charge:
                    charged.append(r["id"])
        return charged

    def charge_attempt(self, model_id: str, owner: str) -> bool:
        """The executor lost the process or node running `owner`'s job: charge one attempt and give
        the job back to the queue (the next claim resumes it; `reap` ends it at MAX_ATTEMPTS)."""
        with self._tx() as db:
            return db.execute(
                "UPDATE tuned_models SET attempts = attempts + 1, claimed_by = NULL, lease_until = NULL, "
                "waiting_for = NULL WHERE id = ? AND state = 'CREATING' AND claimed_by = ?",
                (model_id, owner),
            ).rowcount == 1

    def finish(
        self,
        model_id: str,
        owner: str | None,
        *,
        state: str,
        now_ns: int,
        weights_dir: str | None = None,
        error_code: int | None = None,
        error_message: str | None = None,
    ) -> bool:
        """Move a CREATING job to ACTIVE or FAILED (only if `owner` still holds it, when given)."""
        cond = "claimed_by = ?" if owner is not None else "1 = 1"
        args: tuple[Any, ...] = (owner,) if owner is not None else ()
        with self._tx() as db:
            n = db.execute(
                "UPDATE tuned_models SET state = ?, complete_ns = ?, update_ns = ?, weights_dir = ?, "
                "error_code = ?, error_message = ?, claimed_by = NULL, lease_until = NULL "
                f"WHERE id = ? AND state = 'CREATING' AND {cond}",
                (state, now_ns, now_ns, weights_dir, error_code, error_message, model_id, *args),
            ).rowcount
        return n == 1

    def request_cancel(self, model_id: str, now_ns: int, message: str = CANCEL_MESSAGE) -> str:
        """Cancel a job: a queued one ends at once ("cancelled"); a running one is flagged ("requested")."""
        with self._tx() as db:
            r = db.execute(
                "SELECT state, claimed_by, lease_until FROM tuned_models WHERE id = ?", (model_id,)
            ).fetchone()
            if r is None or r["state"] != "CREATING":
                return "done"
            if not _held(r, time.time(), owner_is_dead):
                db.execute(
                    "UPDATE tuned_models SET state = 'FAILED', complete_ns = ?, update_ns = ?, "
                    "error_code = 1, error_message = ?, cancel_requested = 1, claimed_by = NULL "
                    "WHERE id = ?",
                    (now_ns, now_ns, message, model_id),
                )
                return "cancelled"
            db.execute("UPDATE tuned_models SET cancel_requested = 1 WHERE id = ?", (model_id,))
            return "requested"

    def reap(
        self, now_ns: int, *, is_dead: Callable[[str], bool] = owner_is_dead, max_attempts: int = MAX_ATTEMPTS
    ) -> list[str]:
        """End jobs no live worker will finish: cancelled ones whose worker died, and jobs that crashed
        their worker `max_attempts` times. Returns the ids ended."""
        now = time.time()
        ended = []
        cur = self._conn().execute(
            "SELECT id, claimed_by, lease_until, attempts, cancel_requested FROM tuned_models "
            "WHERE state = 'CREATING' AND (cancel_requested = 1 OR attempts >= ?)",
            (max_attempts,),
        )
        for r in cur.fetchall():
            if _held(r, now, is_dead):
                continue
            if r["cancel_requested"]:
                code, msg = 1, CANCEL_MESSAGE
            else:
                code, msg = (
                    13,
                    (
                        f"Tuning failed: the job crashed its training worker {r['attempts']} times "
                        "(the process died while training it, e.g. out of memory); giving up."
                    ),
                )
            with self._tx() as db:
                n = db.execute(
                    "UPDATE tuned_models SET state = 'FAILED', complete_ns = ?, update_ns = ?, "
                    "error_code = ?, error_message = ?, claimed_by = NULL "
                    "WHERE id = ? AND state = 'CREATING' AND claimed_by IS ?",
                    (now_ns, now_ns, code, msg, r["id"], r["claimed_by"]),
                ).rowcount
            if n:
                ended.append(r["id"])
        return ended
