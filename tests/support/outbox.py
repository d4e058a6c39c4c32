"""Reading a tenant's outbox messages in tests."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from careloop.services.outbox.models import OutboxMessage
from careloop.services.tenancy.service import get_or_create_tenant


def tenant_messages(engine: Engine, tenant: str) -> list[OutboxMessage]:
    """Every outbox message of the tenant named ``tenant``, oldest first."""
    with Session(engine) as session:
        tenant_id = get_or_create_tenant(session, tenant).id
        query = select(OutboxMessage).where(OutboxMessage.tenant_id == tenant_id)
        return list(session.exec(query.order_by(col(OutboxMessage.id))).all())
