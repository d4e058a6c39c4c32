"""SMART on FHIR scopes (v2 ``system/Observation.cruds`` and v1 ``system/Observation.read``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SCOPE_RE = re.compile(r"^(patient|user|system)/([A-Za-z]+|\*)\.(read|write|\*|c?r?u?d?s?)$")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}


class ScopeError(ValueError):
    """A scope string that is not SMART syntax."""


@dataclass(frozen=True)
class Scope:
    """One SMART resource scope: context, resource type (or ``*``) and permissions."""

    context: str
    resource_type: str
    permissions: frozenset[str]

    def covers(self, other: Scope) -> bool:
        """Whether this scope grants everything ``other`` asks for."""
        return (
            self.context == other.context
            and self.resource_type in ("*", other.resource_type)
            and other.permissions <= self.permissions
        )


ADMIN_SCOPE = "careloop/admin"
"""Administration of the tenant (EHR connections, patient links); not a SMART scope."""


def parse_scope(text: str) -> Scope:
    """Parse one SMART resource scope (or careloop's own admin scope)."""
    if text == ADMIN_SCOPE:
        return Scope("careloop", "admin", frozenset({"admin"}))
    match = _SCOPE_RE.match(text)
    if not match or match.group(3) == "":
        raise ScopeError(f"not a SMART resource scope: {text!r}")
    context, rtype, perms = match.groups()
    return Scope(context, rtype, frozenset(_V1.get(perms, perms)))


def parse_scopes(text: str) -> list[Scope]:
    """Parse a space-separated scope string; non-resource scopes are refused."""
    return [parse_scope(part) for part in text.split()]


@dataclass(frozen=True)
class Grant:
    """The scopes a token carries, with a fast permission check."""

    scopes: tuple[Scope, ...]

    def allows(self, resource_type: str, permission: str) -> bool:
        """Whether the grant permits ``permission`` (one of c r u d s) on ``resource_type``."""
        return any(
            s.context != "careloop"
            and s.resource_type in ("*", resource_type)
            and permission in s.permissions
            for s in self.scopes
        )

    @property
    def is_admin(self) -> bool:
        """Whether the grant includes ``careloop/admin``."""
        return any(s.context == "careloop" for s in self.scopes)


def grant_scopes(requested: str | None, registered: str) -> str:
    """The scopes to grant: those requested, each covered by a registered one.

    Raises ScopeError when a requested scope exceeds what the client was registered for.
    """
    allowed = parse_scopes(registered)
    if not requested:
        return registered
    for scope_text in requested.split():
        scope = parse_scope(scope_text)
        if not any(a.covers(scope) for a in allowed):
            raise ScopeError(f"scope not permitted for this client: {scope_text}")
    return " ".join(requested.split())
