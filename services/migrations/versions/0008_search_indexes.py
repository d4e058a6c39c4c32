"""search indexes: tokens in resource order, a patient's resources in seq order

``ix_search_token_code_seq`` (tenant, type, param, code, resource_seq, system) replaces
``ix_search_token_lookup`` (a prefix of it): a token search walks its matches in seq order, so a
page stops after ``_count`` rows. ``ix_fhir_resource_patient_seq`` does the same for a patient.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 17:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the two indexes and drop the one the token index supersedes."""
    with op.batch_alter_table("search_token", schema=None) as batch_op:
        batch_op.create_index(
            "ix_search_token_code_seq",
            ["tenant_id", "resource_type", "param", "code", "resource_seq", "system"],
            unique=False,
        )
        batch_op.drop_index("ix_search_token_lookup")
    with op.batch_alter_table("fhir_resource", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fhir_resource_patient_seq",
            ["tenant_id", "resource_type", "patient_id", "seq"],
            unique=False,
        )


def downgrade() -> None:
    """Restore the 0007 indexes."""
    with op.batch_alter_table("fhir_resource", schema=None) as batch_op:
        batch_op.drop_index("ix_fhir_resource_patient_seq")
    with op.batch_alter_table("search_token", schema=None) as batch_op:
        batch_op.create_index(
            "ix_search_token_lookup",
            ["tenant_id", "resource_type", "param", "code", "system"],
            unique=False,
        )
        batch_op.drop_index("ix_search_token_code_seq")
