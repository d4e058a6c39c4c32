"""clinician accounts, CDS clients, notes on acknowledgement, EHR patient labels

Clinicians sign in by password or SMART launch (sessions gain the clinician and a CSRF token,
launches an OpenID nonce); EHRs calling the CDS services are allow-listed with their used JWT
ids; an acknowledgement takes a note; a patient link keeps the EHR's label for the patient.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 15:18:55.951181
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import careloop.services.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the clinician, cds_client and cds_used_jti tables and the new columns."""
    op.create_table(
        "cds_used_jti",
        sa.Column("iss", sa.String(length=500), nullable=False),
        sa.Column("jti", sa.String(length=200), nullable=False),
        sa.Column("expires_at", careloop.services.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("iss", "jti"),
    )
    with op.batch_alter_table("cds_used_jti", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cds_used_jti_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "cds_client",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("iss", sa.String(length=500), nullable=False),
        sa.Column("jwks_url", sa.String(length=2000), nullable=False),
        sa.Column("connection_id", sa.String(length=64), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", careloop.services.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("iss"),
    )
    with op.batch_alter_table("cds_client", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cds_client_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "clinician",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("practitioner", sa.String(length=200), nullable=True),
        sa.Column("fhir_user", sa.String(length=500), nullable=True),
        sa.Column("password_hash", sa.String(length=300), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", careloop.services.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_login_at", careloop.services.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", careloop.services.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    with op.batch_alter_table("clinician", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_clinician_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index("ux_clinician_fhir_user", ["tenant_id", "fhir_user"], unique=True)

    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.add_column(sa.Column("acknowledgement_note", sa.Text(), nullable=True))

    with op.batch_alter_table("clinician_session", schema=None) as batch_op:
        batch_op.add_column(sa.Column("clinician_id", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("csrf_token", sa.String(length=100), nullable=False, server_default="")
        )
        batch_op.alter_column("connection_id", existing_type=sa.VARCHAR(length=64), nullable=True)
        batch_op.create_index(
            batch_op.f("ix_clinician_session_clinician_id"), ["clinician_id"], unique=False
        )

    with op.batch_alter_table("launch_state", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("nonce", sa.String(length=100), nullable=False, server_default="")
        )

    with op.batch_alter_table("patient_link", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ehr_label", sa.String(length=200), nullable=True))


def downgrade() -> None:
    """Drop them again (password sessions, which have no EHR connection, go)."""
    with op.batch_alter_table("patient_link", schema=None) as batch_op:
        batch_op.drop_column("ehr_label")

    with op.batch_alter_table("launch_state", schema=None) as batch_op:
        batch_op.drop_column("nonce")

    op.execute("DELETE FROM clinician_session WHERE connection_id IS NULL")
    with op.batch_alter_table("clinician_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clinician_session_clinician_id"))
        batch_op.alter_column("connection_id", existing_type=sa.VARCHAR(length=64), nullable=False)
        batch_op.drop_column("csrf_token")
        batch_op.drop_column("clinician_id")

    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.drop_column("acknowledgement_note")

    with op.batch_alter_table("clinician", schema=None) as batch_op:
        batch_op.drop_index("ux_clinician_fhir_user")
        batch_op.drop_index(batch_op.f("ix_clinician_tenant_id"))

    op.drop_table("clinician")
    with op.batch_alter_table("cds_client", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cds_client_tenant_id"))

    op.drop_table("cds_client")
    with op.batch_alter_table("cds_used_jti", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cds_used_jti_expires_at"))

    op.drop_table("cds_used_jti")
