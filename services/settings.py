"""All configuration in one place: environment variables prefixed ``CARELOOP_``."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "dev-insecure-change-me"


class Environment(StrEnum):
    """Where careloop runs; only ``dev`` tolerates default secrets."""

    dev = "dev"
    test = "test"
    production = "production"


class Settings(BaseSettings):
    """careloop settings, read from ``CARELOOP_*`` environment variables or a ``.env`` file."""

    model_config = SettingsConfigDict(env_prefix="CARELOOP_", env_file=".env", extra="ignore")

    environment: Environment = Environment.dev
    data_dir: Path = Path("data")
    database_url: str = ""
    """SQLAlchemy URL; empty means a SQLite file under ``data_dir``."""
    broker_url: str = ""
    """Celery broker (redis:// or amqp://); empty means the embedded SQLite-backed broker."""
    queue: str = "careloop"
    """Celery queue name (separate deployments sharing a broker use separate queues)."""
    redis_visibility_timeout: int = 300
    relay_after_commit: bool = True
    """Publish outbox work right after each commit (beat's relay catches anything missed)."""
    secret_key: str = DEFAULT_SECRET
    """Signs careloop's access tokens."""
    base_url: str = "http://127.0.0.1:8000"
    """Public URL of this service, used in Location headers, token audience and links."""
    token_lifetime_seconds: int = Field(default=300, ge=30, le=3600)
    max_body_bytes: int = 1024 * 1024
    max_batch_reports: int = 1000
    default_page_size: int = Field(default=50, ge=1, le=1000)
    max_page_size: int = 1000

    # FHIR API input bounds
    max_bundle_entries: int = Field(default=1000, ge=1)
    """Entries of one batch or transaction Bundle (``POST /fhir``); more answers 413."""

    db_pool_size: int = 10
    api_threads: int = 16
    """Threads per API process for request handlers (keep at or below db_pool_size x 2)."""

    care_program: Path | None = None
    """A care program TOML file; empty means the shipped depression and anxiety program."""
    escalation_critical_minutes: float = 15
    escalation_high_minutes: float = 60
    escalation_warning_minutes: float = 24 * 60
    suppression_hours: float = 24
    """Non-critical alerts for the same patient and rule notify at most once per window."""
    max_escalation_levels: int = 8
    delivery_max_attempts: int = 8

    key_grace_hours: float = 24
    """A rotated signing key stays in the JWKS this long after its last use."""
    ehr_timeout_seconds: float = 10
    ehr_circuit_failures: int = 5
    """Consecutive failures that open an EHR connection's circuit."""
    ehr_circuit_seconds: float = 30
    ehr_pull_minutes: float = 5

    smtp_host: str = ""
    """SMTP server for email notifications; empty disables email."""
    smtp_port: int = 25
    smtp_sender: str = "careloop@localhost"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Settings:
        if self.environment != Environment.dev and self.secret_key == DEFAULT_SECRET:
            raise ValueError(
                "CARELOOP_SECRET_KEY must be set outside dev mode (CARELOOP_ENVIRONMENT=dev)"
            )
        if self.environment == Environment.production and len(self.secret_key) < 32:
            raise ValueError("CARELOOP_SECRET_KEY must be at least 32 characters in production")
        return self

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``sqlite:///{data_dir}/careloop.db``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'careloop.db').resolve()}"

    def escalation_minutes(self, severity: str) -> float | None:
        """Minutes an alert of ``severity`` may stay unacknowledged before it escalates."""
        return {
            "critical": self.escalation_critical_minutes,
            "high": self.escalation_high_minutes,
            "warning": self.escalation_warning_minutes,
        }.get(severity)

    @property
    def resolved_broker_url(self) -> str:
        """The Celery broker; empty means a SQLite-backed broker under ``data_dir``."""
        if self.broker_url:
            return self.broker_url
        return f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"

    @property
    def fhir_base_url(self) -> str:
        """Base URL of careloop's FHIR API."""
        return self.base_url.rstrip("/") + "/fhir"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
