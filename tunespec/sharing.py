"""A job's `sharing:` section: who may use its tuned model, applied as tuned-model permissions.

The spec names readers and writers (`everyone`, `group:NAME`, `user:NAME` or a bare NAME, which is
a user); on the local engine a name is a project, on Google's service an email address. `changes`
compares that with the permissions the service holds (the owner's is never touched) and `apply`
makes them match: the plan shows the changes, apply carries them out once the model exists. A spec
without a `sharing:` section leaves a model's permissions as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tunespec.client import TuningClient
from tunespec.spec.model import Sharing

EVERYONE = "everyone"


@dataclass(frozen=True)
class Change:
    """One permission to create (`add`), re-role (`update`) or delete (`remove`)."""

    verb: str
    role: str  # READER | WRITER: the role it ends with (removed: the role it had)
    grantee_type: str  # USER | GROUP | EVERYONE
    email: str | None
    name: str | None = None  # the service's permission (update, remove)

    @property
    def who(self) -> str:
        if self.grantee_type == "EVERYONE":
            return EVERYONE
        return f"group:{self.email}" if self.grantee_type == "GROUP" else str(self.email)

    def describe(self) -> str:
        sign = {"add": "+", "update": "~", "remove": "-"}[self.verb]
        return f"{sign}{self.role.lower()} {self.who}"

    def to_json(self) -> dict[str, Any]:
        return {"change": self.verb, "role": self.role, "grantee": self.who}


def grantee(entry: str) -> tuple[str, str | None]:
    """A spec entry -> (grantee type, email address or None)."""
    if entry == EVERYONE:
        return "EVERYONE", None
    kind, _, rest = entry.partition(":")
    if rest and kind in ("group", "user"):
        return kind.upper(), rest
    return "USER", entry


def wanted(sharing: Sharing) -> dict[tuple[str, str | None], str]:
    """{(grantee type, email): role} the spec asks for; a grantee in both lists is a writer."""
    out = {grantee(e): "READER" for e in sharing.readers}
    out.update({grantee(e): "WRITER" for e in sharing.writers})
    return out


def _enum(value: Any, names: Iterable[str]) -> str:
    """An enum of a JSON answer (a name, or its number: the order of `names`, from 1)."""
    if isinstance(value, int):
        return list(names)[value - 1]
    return str(value or "")


def held(client: TuningClient, model: str) -> list[dict[str, Any]]:
    """The permissions the service holds on tuned model `model` (all pages)."""
    out: list[dict[str, Any]] = []
    token = None
    while True:
        page = client.request("GET", f"{client.dialect}/{model}/permissions",
                              params={"pageSize": 100, "pageToken": token})
        out += page.get("permissions") or []
        token = page.get("nextPageToken")
        if not token:
            return out


def changes(sharing: Sharing | None, current: list[dict[str, Any]]) -> list[Change]:
    """What makes `current` (the service's permissions) match `sharing`; [] without a section."""
    if sharing is None:
        return []
    want = wanted(sharing)
    have: dict[tuple[str, str | None], tuple[str, str]] = {}
    for p in current:
        role = _enum(p.get("role"), ("OWNER", "WRITER", "READER"))
        if role == "OWNER":
            continue
        kind = _enum(p.get("granteeType"), ("USER", "GROUP", "EVERYONE"))
        have[(kind, p.get("emailAddress") if kind != "EVERYONE" else None)] = (role, p["name"])
    out = []
    for key, role in want.items():
        if key not in have:
            out.append(Change("add", role, *key))
        elif have[key][0] != role:
            out.append(Change("update", role, *key, name=have[key][1]))
    out += [Change("remove", role, *key, name=name) for key, (role, name) in have.items() if key not in want]
    return out


def plan(client: TuningClient, model: str, sharing: Sharing | None, exists: bool) -> list[Change]:
    """The sharing changes apply would make on `model` (every grant when it does not exist yet)."""
    if sharing is None:
        return []
    return changes(sharing, held(client, model) if exists else [])


def apply(client: TuningClient, model: str, sharing: Sharing | None) -> list[Change]:
    """Make `model`'s permissions match `sharing`; returns the changes made."""
    todo = plan(client, model, sharing, exists=True)
    for change in todo:
        if change.verb == "add":
            body: dict[str, Any] = {"role": change.role, "granteeType": change.grantee_type}
            if change.email:
                body["emailAddress"] = change.email
            client.request("POST", f"{client.dialect}/{model}/permissions", body=body,
                           done_if_after_retry=(409,))
        elif change.verb == "update":
            client.request("PATCH", f"{client.dialect}/{change.name}", params={"updateMask": "role"},
                           body={"role": change.role})
        else:
            client.request("DELETE", f"{client.dialect}/{change.name}", done_if_after_retry=(404,))
    return todo


def summary(todo: list[Change]) -> str:
    """`sharing: +reader team-b, -writer everyone` (empty when nothing changes)."""
    return ("sharing: " + ", ".join(c.describe() for c in todo)) if todo else ""


def apply_job(targets: Any, job: Any, reporter: Any) -> list[Change]:
    """Apply a planned job's `sharing:` section to its tuned model (a planning.JobPlan on a
    Generative Language target), telling `reporter` what changed."""
    if job.spec.sharing is None or job.dialect not in ("v1beta3", "v1beta"):
        return []
    done = apply(targets.client(job.target, job.dialect, job.project), job.name, job.spec.sharing)
    if done:
        reporter.message(f"{job.spec.name}: {job.name} {summary(done)}")
    return done
