"""outbox traceparent

An outbox message carries the W3C traceparent of the span that recorded it (NULL when tracing
is off or the span was not sampled), so the task it starts later, in another process, continues
the same trace.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the nullable column (no rewrite of existing rows)."""
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("traceparent", sa.String(length=55), nullable=True))


def downgrade() -> None:
    """Drop it."""
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.drop_column("traceparent")
