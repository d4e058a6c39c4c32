"""Audit trail of data leaving careloop and of access."""
