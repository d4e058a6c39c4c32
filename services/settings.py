"""All configuration in one place: environment variables prefixed ``CARELOOP_``."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from limits import parse_many
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from careloop.integrations.egress.destinations import AllowList
from careloop.services.common.origins import origin_of
from careloop.services.secret_file import SecretFileError, load_or_create_secret

LEGACY_DEV_SECRET = "dev-insecure-change-me"
"""The public secret careloop used to default to in dev; refused everywhere now."""
SECRET_FILE = "secret_key"
MIN_SECRET_LENGTH = 32


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
    embedded_worker_pid: int = 0
    """Set by ``careloop serve`` for its API processes: the embedded worker ``/readyz`` checks."""
    relay_after_commit: bool = True
    """Publish outbox work right after each commit (beat's relay catches anything missed)."""
    secret_key: str = ""
    """Signs careloop's access tokens and encrypts stored keys (see the secret block below)."""
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

    db_pool_size: int = 20
    """PostgreSQL connections each process keeps open: at least ``api_threads`` plus the relay,
    so a busy API reuses connections instead of opening one per request beyond the pool."""
    api_threads: int = 16
    """Threads per API process for request handlers (keep at or below db_pool_size)."""

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

    # --- Secret, rate limits and browser security headers -------------------------------------
    # CARELOOP_SECRET_KEY has no public default: in dev, an empty one is read from (or generated
    # into) <data_dir>/secret_key, mode 0600, so every process of one careloop shares it;
    # outside dev careloop refuses to start without one.
    rate_limit_storage_url: str = ""
    """Where rate-limit counters live (a `limits` storage URL); empty means the broker when it is
    Redis (shared by every process), else ``memory://`` (per process)."""
    rate_limit_key_prefix: str = ""
    """Prefix of the counters' keys; empty means ``careloop-rl-<queue>``."""
    rate_limit_strategy: Literal["moving-window", "fixed-window", "sliding-window-counter"] = (
        "moving-window"
    )
    rate_limit_token_per_client: str = "10/minute"
    """``/oauth/token`` requests naming one client_id (``limits`` syntax; empty: no limit)."""
    rate_limit_token_per_ip: str = "30/minute"
    """``/oauth/token`` requests from one remote address (empty: no limit)."""
    rate_limit_api_per_client: str = "600/minute"
    """Authenticated API requests per app client (empty: no limit)."""
    rate_limit_login_per_ip: str = "20/minute;200/hour"
    """``POST /login`` attempts from one remote address (empty: no limit)."""
    frame_ancestors: str = ""
    """Origins allowed to frame careloop's pages besides itself and the active EHR connections'
    origins (space-separated, e.g. ``https://ehr-ui.example``)."""
    frame_ancestors_ttl_seconds: float = Field(default=60, ge=0, le=3600)
    """How long the EHR connections' origins are cached for the CSP header."""

    @field_validator(
        "rate_limit_token_per_client",
        "rate_limit_token_per_ip",
        "rate_limit_api_per_client",
        "rate_limit_login_per_ip",
    )
    @classmethod
    def _rate_limit_syntax(cls, value: str) -> str:
        if value.strip():
            try:
                parse_many(value)
            except ValueError as exc:
                raise ValueError(f"not a rate limit like '10/minute': {value!r}") from exc
        return value.strip()

    @field_validator("frame_ancestors")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in value.split():
            if origin_of(origin) != origin.rstrip("/").lower():
                raise ValueError(f"not an http(s) origin like https://ehr.example: {origin!r}")
        return value

    # -- egress: where careloop may connect (integrations/egress/destinations.py) --
    egress_allow: str = ""
    """Comma-separated hosts (``.example.org`` for its subdomains) and CIDRs exempt from the
    public-address rule, e.g. an EHR on the hospital network. https is still required."""
    egress_allow_loopback: bool | None = None
    """Allow loopback destinations; unset: allowed in dev and test, refused in production."""
    smtp_tls: bool = False
    """SMTP over implicit TLS (SMTPS, usually port 465) instead of plain SMTP or STARTTLS."""

    @field_validator("egress_allow")
    @classmethod
    def _parse_egress_allow(cls, value: str) -> str:
        AllowList.parse(value)  # a malformed entry stops careloop at startup
        return value

    # -- consent (services/consents/policy.py): what a patient with no Consent record gets --
    consent_defaults: str = ""
    """Tenant policy overriding the safe defaults (care-team alerts permit, EHR sync and research
    export deny): comma-separated ``purpose=permit|deny``, or ``tenant:purpose=...`` for one
    tenant, e.g. ``ehr-sync=permit,clinic-b:ehr-sync=deny``."""

    @field_validator("consent_defaults")
    @classmethod
    def _parse_consent_defaults(cls, value: str) -> str:
        from careloop.services.consents.policy import parse_policy

        parse_policy(value)  # a malformed entry stops careloop at startup
        return value

    deidentify_key: SecretStr | None = None
    """Key of the keyed hashes ``careloop export --deidentify`` makes of ids and identifiers
    (HMAC-SHA256, 32+ characters): the same key gives the same pseudonyms on every run."""

    # Outbox leases: the database, not the broker, decides when work is done. A message published
    # but not completed within its lease is published again (tasks are idempotent); each
    # publication doubles the lease, at most outbox_lease_max_doublings times.
    outbox_lease_urgent_seconds: float = Field(default=10, gt=0)
    """Lease of alert work: deliveries, escalations, readings critical by themselves."""
    outbox_lease_routine_seconds: float = Field(default=120, gt=0)
    """Lease of everything else (evaluations, EHR writes and pulls)."""
    outbox_lease_max_doublings: int = Field(default=3, ge=0, le=10)
    outbox_retention_days: float = Field(default=7, gt=0)
    """Completed outbox messages are deleted this long after completion."""

    # -- FHIR Bulk Data $export (services/bulk) --
    bulk_export_file_resources: int = Field(default=10_000, ge=1, le=100_000)
    """``CARELOOP_BULK_EXPORT_FILE_RESOURCES``: resources per NDJSON file; one export chunk (one
    worker run, one transaction) writes at most one file."""
    bulk_export_max_active_jobs: int = Field(default=3, ge=1, le=100)
    """``CARELOOP_BULK_EXPORT_MAX_ACTIVE_JOBS``: unfinished exports one client may have; another
    kick-off answers 429 with ``Retry-After``."""
    bulk_export_expiry_hours: float = Field(default=24, gt=0, le=24 * 30)
    """``CARELOOP_BULK_EXPORT_EXPIRY_HOURS``: how long an export's status and files stay (from
    the kick-off, and again from completion); then they are 404 and pruned."""
    bulk_export_retry_after_seconds: int = Field(default=5, ge=1, le=3600)
    """``CARELOOP_BULK_EXPORT_RETRY_AFTER_SECONDS``: the ``Retry-After`` a running export's status
    (and a refused kick-off) answers with."""

    # -- logging (services/logs): every process writes redacted lines to stderr --
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Level of careloop's and libraries' logs (noisy libraries stay at WARNING)."""
    log_format: Literal["json", "console"] = "json"
    """``json``: one JSON object a line (time, level, logger, event, ids); ``console``: the
    same fields for people reading a terminal, equally redacted."""

    # -- tracing (services/telemetry): OpenTelemetry over OTLP/HTTP, off without an endpoint --
    otel_endpoint: str = ""
    """OTLP/HTTP collector to send traces to (``http://collector:4318``; ``/v1/traces`` is
    appended unless given). Empty: the standard ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_ENDPOINT``, and without those tracing is off."""

    # -- metrics (services/metrics): /metrics on the API, a port of their own for workers --
    metrics_token: str = ""
    """Bearer token a scrape of ``/metrics`` must send; empty: loopback callers only (below)."""
    metrics_allow_loopback: bool | None = None
    """Without a token, answer loopback callers; unset: in dev and test, not in production."""
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """``careloop worker`` and ``careloop beat`` serve their own metrics on this port."""
    metrics_host: str = "127.0.0.1"
    """Interface of the workers' metrics port."""
    metrics_dir: Path | None = None
    """Where each run keeps its processes' metric files (a local disk or tmpfs, never NFS);
    unset: ``<data_dir>/metrics`` (the temporary directory if that is not writable)."""
    metrics_cache_seconds: float = Field(default=10, ge=0, le=600)
    """How long the gauges read from the database and broker are reused between scrapes."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _resolve_secret(self) -> Settings:
        if self.secret_key == LEGACY_DEV_SECRET:
            raise ValueError(
                "CARELOOP_SECRET_KEY is the old public dev default; unset it (dev) or set a "
                "random one, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if not self.secret_key:
            if self.environment != Environment.dev:
                raise ValueError(
                    f"CARELOOP_SECRET_KEY must be set when CARELOOP_ENVIRONMENT="
                    f"{self.environment.value} (only dev generates one into the data directory)"
                )
            try:
                self.secret_key = load_or_create_secret(self.data_dir / SECRET_FILE)
            except SecretFileError as exc:
                raise ValueError(str(exc)) from exc
        if self.environment == Environment.production and len(self.secret_key) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"CARELOOP_SECRET_KEY must be at least {MIN_SECRET_LENGTH} characters in production"
            )
        return self

    @property
    def resolved_rate_limit_storage_url(self) -> str:
        """The rate-limit storage: explicit, else a Redis broker, else in-process memory."""
        if self.rate_limit_storage_url:
            return self.rate_limit_storage_url
        if self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return "memory://"

    @property
    def resolved_rate_limit_key_prefix(self) -> str:
        """The rate-limit key prefix (deployments sharing a Redis keep separate counters)."""
        return self.rate_limit_key_prefix or f"careloop-rl-{self.queue}"

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``sqlite:///{data_dir}/careloop.db``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'careloop.db').resolve()}"

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
