"""audit chain

Audit records form a hash chain per tenant (``seq``, ``prev_hash``, ``hash``; see
careloop.services.audit.chain) and signed checkpoints pin the chain's head. Existing records
are chained in their insertion order (id).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 23:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import careloop.services.db
from careloop.services.audit.chain import GENESIS, entry_hash

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_records = sa.table(
    "audit_record",
    sa.column("id", sa.BigInteger()),
    sa.column("tenant_id", sa.String()),
    sa.column("recorded", careloop.services.db.UTCDateTime()),
    sa.column("kind", sa.String()),
    sa.column("action", sa.String()),
    sa.column("agent", sa.String()),
    sa.column("purpose", sa.String()),
    sa.column("entity", sa.Text()),
    sa.column("destination", sa.String()),
    sa.column("outcome", sa.String()),
    sa.column("seq", sa.BigInteger()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)


def _backfill() -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(_records).order_by(_records.c.tenant_id, _records.c.id)
    ).mappings()
    heads: dict[str, tuple[int, str]] = {}
    updates = []
    for row in rows:
        seq, prev = heads.get(row["tenant_id"], (0, GENESIS))
        fields = {**row, "seq": seq + 1}
        digest = entry_hash(fields, prev)
        heads[row["tenant_id"]] = (seq + 1, digest)
        updates.append({"rid": row["id"], "s": seq + 1, "p": prev, "h": digest})
    if updates:
        connection.execute(
            _records.update()
            .where(_records.c.id == sa.bindparam("rid"))
            .values(seq=sa.bindparam("s"), prev_hash=sa.bindparam("p"), hash=sa.bindparam("h")),
            updates,
        )


def upgrade() -> None:
    """Add the chain columns, chain the existing records, add the checkpoint table."""
    with op.batch_alter_table("audit_record", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
    _backfill()
    with op.batch_alter_table("audit_record", schema=None) as batch_op:
        batch_op.create_index("ux_audit_tenant_seq", ["tenant_id", "seq"], unique=True)
    op.create_table(
        "audit_checkpoint",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("created", careloop.services.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("jws", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_audit_checkpoint_tenant_seq", "audit_checkpoint", ["tenant_id", "seq"], unique=False
    )


def downgrade() -> None:
    """Drop the checkpoints and the chain columns."""
    op.drop_index("ix_audit_checkpoint_tenant_seq", table_name="audit_checkpoint")
    op.drop_table("audit_checkpoint")
    with op.batch_alter_table("audit_record", schema=None) as batch_op:
        batch_op.drop_index("ux_audit_tenant_seq")
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("seq")
