"""Sharing tuned models: the Permission resource, roles, and what each role may do.

The engine's callers are projects (door.py names them), so a grantee is a project: a USER or
GROUP permission's `emailAddress` is the project's name (the token file's PROJECT column), and an
EVERYONE permission lets every project in. The tuned model's `project` is its owner; the owner's
permission is not stored but listed first, as `permissions/owner`. Roles rank owner > writer >
reader: a reader may use a model (get, generate, count tokens, read its operation), a writer may also
update it, cancel its tuning and share it (never as owner), the owner may also delete it and hand it
over (`transferOwnership`, which leaves the former owner a writer).
"""

from __future__ import annotations

from typing import Any

from tunespec.engine.ids import tuned_model_id
from tunespec.engine.wire import ApiException, Enum, invalid

ROLES = {"OWNER": 1, "WRITER": 2, "READER": 3}  # google.ai.generativelanguage Permission.Role
GRANTEE_TYPES = {"USER": 1, "GROUP": 2, "EVERYONE": 3}
RANK = {"READER": 1, "WRITER": 2, "OWNER": 3}
EVERYONE = "*"  # the stored grantee of an EVERYONE permission
OWNER_ID = "owner"

# what each action needs
USE, UPDATE, SHARE, DELETE, TRANSFER = "READER", "WRITER", "WRITER", "OWNER", "OWNER"


def role_of(row: dict[str, Any], grants: list[dict[str, Any]], project: str) -> str | None:
    """The best role `project` holds on the model of `row` (None: none at all)."""
    if row["project"] == project:
        return "OWNER"
    roles = [g["role"] for g in grants if g["grantee"] in (project, EVERYONE)]
    return max(roles, key=RANK.__getitem__) if roles else None


def allows(role: str | None, needed: str) -> bool:
    return role is not None and RANK[role] >= RANK[needed]


def denied(model_id: str, role: str | None, needed: str) -> ApiException:
    """403 for a caller whose `role` is below `needed`; it names the role that would do."""
    if role is None:
        return ApiException(
            "PERMISSION_DENIED", f"You do not have permission to access tuned model tunedModels/{model_id}."
        )
    fix = "only its owner may" if needed == "OWNER" else f"ask its owner for the {needed} role to"
    return ApiException(
        "PERMISSION_DENIED",
        f"You have the {role} role on tuned model tunedModels/{model_id}; this call needs {needed} "
        f"({fix} make it).",
    )


def _enum(value: Any, table: dict[str, int], field: str) -> str:
    """An enum given by name or number -> its name; 400 naming the valid names otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        for name, number in table.items():
            if number == value:
                return name
    if isinstance(value, str) and value.upper() in table:
        return value.upper()
    raise invalid(f"Invalid value at '{field}' ({value!r}): use one of " + ", ".join(table), field)


def _reject_unknown(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    from tunespec.tuning_api import snake

    for key in body:
        if snake(key) not in allowed:
            raise invalid(
                f"Invalid JSON payload received. Unknown name \"{key}\" at 'permission': Cannot find field.",
                f"permission.{key}",
            )


def grant_from_request(body: dict[str, Any], owner: str) -> dict[str, Any]:
    """A CreatePermission body -> a permission row {id, grantee_type, grantee, role}."""
    from tunespec.tuning_api import to_snake

    _reject_unknown(body, ("name", "grantee_type", "email_address", "role"))
    req = to_snake(body)
    if req.get("role") is None:
        raise invalid("permission.role is required: READER, WRITER (OWNER only by transferOwnership)",
                      "permission.role")
    role = _enum(req["role"], ROLES, "permission.role")
    if role == "OWNER":
        raise invalid("A permission cannot grant OWNER: call transferOwnership to hand the model over.",
                      "permission.role")
    email = req.get("email_address")
    if email is not None and not isinstance(email, str):
        raise invalid(f"Invalid value at 'permission.email_address' (TYPE_STRING), {email!r}",
                      "permission.email_address")
    kind = _enum(req["grantee_type"], GRANTEE_TYPES, "permission.grantee_type") if req.get(
        "grantee_type") is not None else ("EVERYONE" if not email else "USER")
    if kind == "EVERYONE":
        if email:
            raise invalid("An EVERYONE permission takes no email_address.", "permission.email_address")
        grantee = EVERYONE
    else:
        if not email or not email.strip():
            raise invalid(
                f"permission.email_address is required for a {kind} grantee: the project to share with",
                "permission.email_address",
            )
        grantee = email.strip()
        if grantee == owner:
            raise invalid(f"{grantee} owns this model already.", "permission.email_address")
    return {"id": tuned_model_id(""), "grantee_type": kind, "grantee": grantee, "role": role}


def role_from_patch(body: dict[str, Any], update_mask: str | None) -> str:
    """An UpdatePermission body and mask -> the new role (the only field that can change)."""
    from tunespec.tuning_api import snake, to_snake

    _reject_unknown(body, ("name", "grantee_type", "email_address", "role"))
    if not update_mask:
        raise invalid("update_mask is required: ?updateMask=role (the only updatable field)", "update_mask")
    paths = [snake(p.strip()) for p in update_mask.split(",") if p.strip()]
    bad = [p for p in paths if p != "role"]
    if bad:
        raise invalid(f"update_mask path {bad[0]!r} cannot be updated; updatable fields: role", "update_mask")
    role = to_snake(body).get("role")
    if role is None:
        raise invalid("permission.role is required", "permission.role")
    role = _enum(role, ROLES, "permission.role")
    if role == "OWNER":
        raise invalid("A permission cannot grant OWNER: call transferOwnership to hand the model over.",
                      "permission.role")
    return role


def render(model_id: str, grant: dict[str, Any]) -> dict[str, Any]:
    """A Permission resource."""
    kind = grant["grantee_type"]
    return {
        "name": f"tunedModels/{model_id}/permissions/{grant['id']}",
        "granteeType": Enum(kind, GRANTEE_TYPES[kind]),
        "emailAddress": None if kind == "EVERYONE" else grant["grantee"],
        "role": Enum(grant["role"], ROLES[grant["role"]]),
    }


def owner_grant(row: dict[str, Any]) -> dict[str, Any]:
    """The owner's permission, derived from the model row."""
    return {"id": OWNER_ID, "grantee_type": "USER", "grantee": row["project"], "role": "OWNER"}
