"""bind SMART launch state to the browser that started the launch

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 11:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Launches in flight (at most 10 minutes old) cannot be bound to a browser after the fact.
    op.execute("DELETE FROM launch_state")
    # Recreated (the table is empty): SQLite cannot add a NOT NULL column without a default.
    with op.batch_alter_table("launch_state", schema=None, recreate="always") as batch_op:
        batch_op.add_column(sa.Column("browser_hash", sa.String(length=64), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("launch_state", schema=None) as batch_op:
        batch_op.drop_column("browser_hash")
