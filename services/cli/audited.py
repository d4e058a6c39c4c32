"""One audit entry (kind ``admin``) per ``careloop`` command run: who, which command, the ids.

Every command registered through ``PlainTyper.command`` is wrapped (the process commands
``serve``, ``worker`` and ``beat`` opt out: what they serve is audited as it happens). The entry
names the operator as ``cli:<os user>``, the command (``cli:clients.revoke``) and the ids it was
given or made (``client:cl_...``, ``Patient/<id>``, ``ehr:<connection>``), never emails, names or
secrets, and whether it succeeded. It goes to the chain of the tenant the command names
(``--tenant``, by name or id), else to the system chain.
"""

from __future__ import annotations

import functools
import getpass
import re
import sys
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

import typer
from sqlmodel import col, or_, select

F = TypeVar("F", bound=Callable[..., Any])

_UNSAFE = re.compile(r"[^A-Za-z0-9_.~-]")
_REFERENCE = re.compile(r"(?:Patient|Practitioner)/[A-Za-z0-9.-]{1,64}")
_ID_OPTIONS = {
    "client_id": "client:",
    "route_id": "route:",
    "dead_id": "dead-task:",
    "failure_id": "ehr-failure:",
    "ehr_name": "ehr:",
}
"""Parameters that hold ids, and how the entry names them (``patient`` and ``practitioner``
are references, kept when they are ``Type/id``)."""

_noted: ContextVar[list[str] | None] = ContextVar("careloop_cli_audit_ids", default=None)


def note_ids(*ids: str) -> None:
    """Name ids the running command made (a new client's id) in its audit entry."""
    noted = _noted.get()
    if noted is not None:
        noted.extend(ids)


def cli_agent() -> str:
    """``cli:<os user>``, the user name's unsafe characters replaced."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container)
        user = "?"
    return "cli:" + (_UNSAFE.sub("?", user)[:64] or "?")


def _safe(value: object) -> str:
    return _UNSAFE.sub("?", str(value))[:100]


def _given_ids(command: str, params: dict[str, Any]) -> list[str]:
    ids = [
        f"{prefix}{_safe(params[name])}"
        for name, prefix in _ID_OPTIONS.items()
        if params.get(name) is not None
    ]
    if command.startswith("ehr.") and isinstance(params.get("name"), str):
        ids.append(f"ehr:{_safe(params['name'])}")  # an EHR connection's name, not a person's
    for name in ("patient", "practitioner"):
        ref = params.get(name)
        if isinstance(ref, str) and _REFERENCE.fullmatch(ref):
            ids.append(ref)
    return ids


def _tenant_id(session: Any, tenant: object) -> str | None:
    from careloop.services.tenancy.models import Tenant

    if not isinstance(tenant, str):
        return None
    found = session.exec(
        select(Tenant.id).where(or_(col(Tenant.name) == tenant, col(Tenant.id) == tenant))
    ).first()
    return str(found) if found is not None else None


def _record(command: str, params: dict[str, Any], ids: list[str], outcome: str) -> None:
    from careloop.services.audit.service import record_event
    from careloop.services.db import get_engine
    from careloop.services.unit_of_work import session_scope

    entity = " ".join(dict.fromkeys([f"cli:{command}", *_given_ids(command, params), *ids]))
    with session_scope(get_engine()) as session:
        tenant_id = _tenant_id(session, params.get("tenant"))
        record_event(session, tenant_id, "admin", cli_agent(), outcome, entity[:2000])


def _succeeded(exc: BaseException) -> bool:
    code = getattr(exc, "exit_code", getattr(exc, "code", 1))
    return code in (0, None)


def audited(callback: F, name: Callable[[], str]) -> F:
    """``callback`` (a command), auditing each run of it once it ends; ``name()`` is the
    command's name (``clients.revoke``), known once its group is added."""

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        command, ids = name(), list[str]()
        token = _noted.set(ids)
        try:
            result = callback(*args, **kwargs)
        except (typer.Exit, SystemExit) as exc:
            _end(command, kwargs, ids, _succeeded(exc))
            raise
        except BaseException:
            _end(command, kwargs, ids, False)
            raise
        finally:
            _noted.reset(token)
        _end(command, kwargs, ids, True)
        return result

    return run  # type: ignore[return-value]


def _end(command: str, params: dict[str, Any], ids: list[str], succeeded: bool) -> None:
    try:
        _record(command, params, ids, "success" if succeeded else "failed")
    except Exception as exc:
        # A failed command's own error matters more; a command that ran but was not audited
        # says so and exits non-zero.
        print(f"careloop: {command} could not be audited ({type(exc).__name__})", file=sys.stderr)
        if succeeded:
            raise SystemExit(1) from None
