"""outbox messages name events

Services now record what happened (``reading.created``, ``resources.changed``,
``notification.requested``) and workflows choose the task that reacts. Open messages and dead
letters recorded under the old task names are renamed to their events, so they are routed and
replayed as new ones are (a dead notification replayed is reset to pending again).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RENAMES = {
    "observation.evaluate": "reading.created",
    "observation.evaluate_urgent": "reading.created",
    "ehr.push": "resources.changed",
    "notification.deliver": "notification.requested",
}
TABLES = ("outbox_message", "dead_task")


def _rename(names: dict[str, str]) -> None:
    for table in TABLES:
        for old, new in names.items():
            op.execute(
                sa.text(f"UPDATE {table} SET task = :new WHERE task = :old").bindparams(
                    old=old, new=new
                )
            )


def upgrade() -> None:
    """Rename stored task names to the events they stand for."""
    _rename(RENAMES)


def downgrade() -> None:
    """Back to task names (a reading becomes a routine evaluation)."""
    _rename(
        {
            "reading.created": "observation.evaluate",
            "resources.changed": "ehr.push",
            "notification.requested": "notification.deliver",
        }
    )
