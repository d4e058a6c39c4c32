"""telehealth domain."""
