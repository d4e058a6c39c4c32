"""The world the consent tests run in: careloop, the test EHR and a webhook receiver."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ehr_server import TestEHR
from sqlalchemy import Engine
from sqlmodel import select
from webhook_receiver import Receiver

from careloop.services.audit.models import AuditRecord
from careloop.services.settings import Settings
from careloop.services.tenancy.models import Tenant
from careloop.services.unit_of_work import session_scope
from careloop.workflows.inline import run_pending
from support.clients import Caller

APP_SYSTEM = "https://app.example/patients"


@dataclass
class World:
    caller: Caller
    ehr: TestEHR
    oncall: Receiver
    engine: Engine
    settings: Settings

    def drain(self) -> None:
        """Run the outbox work recorded so far (what the workers would do)."""
        run_pending(self.engine, self.settings)

    def tenant_id(self) -> str:
        with session_scope(self.engine) as session:
            tenant = session.exec(select(Tenant).where(Tenant.name == self.caller.tenant)).one()
            return str(tenant.id)

    def audits(self, outcome: str) -> list[AuditRecord]:
        tenant_id = self.tenant_id()
        with session_scope(self.engine) as session:
            return list(
                session.exec(
                    select(AuditRecord).where(
                        AuditRecord.tenant_id == tenant_id,
                        AuditRecord.kind == "egress",
                        AuditRecord.outcome == outcome,
                    )
                ).all()
            )

    def consent(self, value: str, decision: str, purpose: str, **extra: Any) -> dict[str, Any]:
        body = {
            "patient": {"system": APP_SYSTEM, "value": value},
            "decision": decision,
            "purpose": purpose,
            **extra,
        }
        response = self.caller.post("/v1/consents", json=body)
        assert response.status_code == 201, response.text
        consent: dict[str, Any] = response.json()
        return consent
