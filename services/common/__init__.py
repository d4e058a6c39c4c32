"""common domain."""
