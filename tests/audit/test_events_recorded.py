"""Token grants and refusals and clinicians' sign-ins enter the audit chain (ids only)."""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from support.clients import BASE_URL, Caller
from support.login import new_account, sign_in
from support.patient_data import tenant_id

from careloop.services.audit.models import AuditRecord
from careloop.services.audit.service import SYSTEM_TENANT
from careloop.services.audit.verify import verify_tenant


def _events(engine: Engine, tenant: str, kind: str) -> list[AuditRecord]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(AuditRecord)
                .where(AuditRecord.tenant_id == tenant, AuditRecord.kind == kind)
                .order_by(col(AuditRecord.seq))
            ).all()
        )


def _token(caller: Caller, secret: str, scope: str | None = None) -> httpx.Response:
    form = {"grant_type": "client_credentials"} | ({"scope": scope} if scope else {})
    return caller.http.post("/oauth/token", data=form, auth=(caller.client_id, secret))


def test_token_grants_and_refusals_are_audited(engine: Engine, caller: Caller) -> None:
    tenant = tenant_id(engine, caller)
    before = len(_events(engine, tenant, "token"))
    assert _token(caller, caller.client_secret).status_code == 200
    assert _token(caller, caller.client_secret, "system/Nothing.x").status_code == 400
    assert _token(caller, "not-the-secret").status_code == 401
    events = _events(engine, tenant, "token")[before:]
    assert [(e.agent, e.outcome) for e in events] == [
        (f"client:{caller.client_id}", "success"),
        (f"client:{caller.client_id}", "refused"),
    ]
    # A wrong secret proves nothing about the tenant: the refusal goes to the system chain.
    refused = _events(engine, SYSTEM_TENANT, "token")
    assert (f"client:{caller.client_id}", "refused") in [(e.agent, e.outcome) for e in refused]
    with Session(engine) as session:
        assert verify_tenant(session, tenant).problem is None


def test_sign_ins_are_audited_without_the_email(app_client: TestClient, engine: Engine) -> None:
    account = new_account(engine)
    with TestClient(app_client.app, base_url=BASE_URL) as browser:
        assert sign_in(browser, account.email, "wrong-wrong-wrong").status_code == 401
    with TestClient(app_client.app, base_url=BASE_URL) as browser:
        assert sign_in(browser, account.email).status_code == 303
    events = _events(engine, account.tenant_id, "sign-in")
    assert [(e.agent, e.outcome) for e in events] == [
        (f"clinician:{account.clinician_id}", "refused"),
        (f"clinician:{account.clinician_id}", "success"),
    ]
    with TestClient(app_client.app, base_url=BASE_URL) as browser:
        assert sign_in(browser, "nobody-known@example.org").status_code == 401
    with Session(engine) as session:
        rows = session.exec(select(AuditRecord)).all()
    assert not any("nobody-known" in f"{r.agent} {r.entity}" for r in rows)
    assert not any(account.email in f"{r.agent} {r.entity}" for r in rows)
