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
    secret_key: str = DEFAULT_SECRET
    """Signs careloop's access tokens."""
    base_url: str = "http://127.0.0.1:8000"
    """Public URL of this service, used in Location headers, token audience and links."""
    token_lifetime_seconds: int = Field(default=300, ge=30, le=3600)
    max_body_bytes: int = 1024 * 1024
    max_batch_reports: int = 1000
    default_page_size: int = Field(default=50, ge=1, le=1000)
    max_page_size: int = 1000
    db_pool_size: int = 10

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

    @property
    def fhir_base_url(self) -> str:
        """Base URL of careloop's FHIR API."""
        return self.base_url.rstrip("/") + "/fhir"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
