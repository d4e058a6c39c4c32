"""outbox completion and leases

The database, not the broker, decides when outbox work is done: messages gain a completion time
and an outcome, a due time (``available_at``: now for new work, the end of the lease after a
publication) and a publication count.

Messages dispatched before this revision were handed to the broker with no record of completion;
they are marked completed (outcome ``legacy``) rather than published again, since replaying a
whole history would flood the workers. Messages never dispatched stay open and due.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import careloop.services.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text("completed_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "available_at", careloop.services.db.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column(
                "completed_at", careloop.services.db.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(sa.Column("outcome", sa.String(length=16), nullable=True))
        batch_op.drop_index("ix_outbox_pending")

    op.execute(
        "UPDATE outbox_message SET available_at = created_at, attempts = 1, "
        "completed_at = dispatched_at, outcome = 'legacy' WHERE dispatched_at IS NOT NULL"
    )
    op.execute("UPDATE outbox_message SET available_at = created_at WHERE available_at IS NULL")

    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.alter_column(
            "available_at",
            existing_type=careloop.services.db.UTCDateTime(timezone=True),
            nullable=False,
        )
        batch_op.alter_column("attempts", existing_type=sa.Integer(), server_default=None)
        batch_op.create_index(
            "ix_outbox_due",
            ["available_at"],
            unique=False,
            postgresql_where=OPEN,
            sqlite_where=OPEN,
        )
        batch_op.create_index("ix_outbox_completed", ["completed_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_completed")
        batch_op.drop_index("ix_outbox_due")
        batch_op.drop_column("outcome")
        batch_op.drop_column("completed_at")
        batch_op.drop_column("attempts")
        batch_op.drop_column("available_at")
        batch_op.create_index("ix_outbox_pending", ["dispatched_at", "id"], unique=False)
