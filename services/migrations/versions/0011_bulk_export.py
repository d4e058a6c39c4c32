"""bulk export

FHIR Bulk Data ``$export`` jobs (with their progress cursor) and the NDJSON files they write,
kept in the database so API nodes and workers share them without a shared disk.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import careloop.services.db

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the export_job and export_file tables."""
    op.create_table(
        "export_job",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("group_id", sa.String(length=64), nullable=True),
        sa.Column("patients", sa.Text(), nullable=True),
        sa.Column("types", sa.Text(), nullable=False),
        sa.Column("since", careloop.services.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "transaction_time", careloop.services.db.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("type_index", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.String(length=100), nullable=False),
        sa.Column("request_url", sa.Text(), nullable=False),
        sa.Column("created_at", careloop.services.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", careloop.services.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", careloop.services.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_export_job_client", "export_job", ["tenant_id", "client_id", "state"], unique=False
    )
    op.create_index("ix_export_job_expires", "export_job", ["expires_at"], unique=False)
    op.create_table(
        "export_file",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("lines", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "resource_type", "number", name="ux_export_file_number"),
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_table("export_file")
    op.drop_index("ix_export_job_expires", table_name="export_job")
    op.drop_index("ix_export_job_client", table_name="export_job")
    op.drop_table("export_job")
