"""SMART scopes: v2 ``system/Observation.cruds`` syntax, v1 ``.read``/``.write``/``.*``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_RESOURCE_SCOPE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]+)\.(?P<perms>[a-z*]+)(\?\S*)?$"
)
_V2_PERMS = re.compile(r"^c?r?u?d?s?$")
_V1_PERMS = {"read": "rs", "write": "cud", "*": "cruds"}

LAUNCH_SCOPES = frozenset(
    {
        "launch",
        "launch/patient",
        "launch/encounter",
        "openid",
        "fhirUser",
        "profile",
        "offline_access",
        "online_access",
    }
)


class ScopeSyntaxError(ValueError):
    """A scope that is neither a valid resource scope nor a known launch scope."""


@dataclass(frozen=True)
class ResourceScope:
    """One resource scope, e.g. context ``system``, type ``Observation``, perms ``{c, r}``."""

    context: str
    rtype: str
    perms: frozenset[str]

    def covers_type(self, rtype: str) -> bool:
        """Whether this scope applies to resources of ``rtype``."""
        return self.rtype in ("*", rtype)


def parse_resource_scope(scope: str) -> ResourceScope | None:
    """Parse a resource scope; None for a launch/identity scope; raise on anything else."""
    if scope in LAUNCH_SCOPES:
        return None
    match = _RESOURCE_SCOPE.match(scope)
    if match is None:
        raise ScopeSyntaxError(f"unrecognised scope {scope!r}")
    perms = match["perms"]
    perms = _V1_PERMS.get(perms, perms)
    if not perms or not _V2_PERMS.match(perms):
        raise ScopeSyntaxError(f"invalid permissions in scope {scope!r}")
    return ResourceScope(match["context"], match["type"], frozenset(perms))


def split_scopes(scope: str) -> list[str]:
    """The space-separated scopes of a ``scope`` parameter (duplicates removed)."""
    return list(dict.fromkeys(scope.split()))


def resource_scopes(scopes: Iterable[str]) -> list[ResourceScope]:
    """The resource scopes among ``scopes`` (launch scopes skipped)."""
    parsed = (parse_resource_scope(s) for s in scopes)
    return [s for s in parsed if s is not None]


def is_covered(requested: str, granted: Iterable[str]) -> bool:
    """Whether a registration of ``granted`` scopes allows requesting ``requested``."""
    granted = list(granted)
    wanted = parse_resource_scope(requested)
    if wanted is None:
        return requested in granted
    allowed: set[str] = set()
    for scope in resource_scopes(granted):
        if scope.context == wanted.context and scope.rtype in ("*", wanted.rtype):
            allowed |= scope.perms
    return wanted.perms <= allowed


def permits(scopes: Iterable[ResourceScope], rtype: str, perm: str) -> bool:
    """Whether a token holding ``scopes`` may perform ``perm`` (one of c r u d s) on ``rtype``."""
    return any(s.covers_type(rtype) and perm in s.perms for s in scopes)
