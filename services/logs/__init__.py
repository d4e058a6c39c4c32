"""careloop's logging: JSON lines, one redaction layer, no PHI in any process's output."""

from careloop.services.logs.config import configure_logging, log_unhandled, logging_config

__all__ = ["configure_logging", "log_unhandled", "logging_config"]
