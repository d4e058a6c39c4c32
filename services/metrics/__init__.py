"""Prometheus metrics: definitions, recording helpers, the /metrics endpoint, multiprocess mode."""
