"""Fresh planner statistics for careloop's busiest tables, whether or not autovacuum runs.

PostgreSQL plans with the statistics ANALYZE gathered, and a plan a connection prepared stays
until they change. Without them (autovacuum off, as on some machines, or behind after a bulk
load) a young database's plans stick: a read by id planned on a (tenant, type, ...) index went
on scanning every resource of the type, and PostgreSQL's CPU per report tripled in ten minutes
of steady load. So beat analyses a table once it changed as much as autovacuum's default
threshold would ask for (50 rows plus a tenth); ANALYZE also makes connections plan again.
"""

from __future__ import annotations

from sqlalchemy import Engine, text

TABLES = (
    "fhir_resource",
    "search_token",
    "symptom_report",
    "outbox_message",
    "patient_identifier",
    "alert",
    "notification",
    "ehr_write",
)
_STALE = text(
    "SELECT relname FROM pg_stat_user_tables "
    "WHERE schemaname = current_schema() AND relname = ANY(:tables) "
    "AND n_mod_since_analyze > 50 + 0.1 * n_live_tup"
)


def analyze_stale_tables(engine: Engine) -> list[str]:
    """ANALYZE the tables whose statistics are stale; their names (none on SQLite)."""
    if engine.dialect.name != "postgresql":
        return []
    # No transaction: a read of the statistics views, then ANALYZE, each on its own.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        stale = [str(r.relname) for r in conn.execute(_STALE, {"tables": list(TABLES)})]
        for table in stale:  # names from TABLES only, never from input
            conn.execute(text(f'ANALYZE "{table}"'))
    return stale
