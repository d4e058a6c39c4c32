"""Alembic migrations of the careloop schema."""
