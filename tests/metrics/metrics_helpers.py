"""Helpers of the metrics tests: settings with a metrics token, reading a /metrics answer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from support.clients import BASE_URL

from careloop.services.settings import Environment, Settings

TOKEN = "metrics-token-for-tests-0123456789"


@dataclass(frozen=True)
class Scrape:
    """One /metrics text, parsed."""

    text: str

    def value(self, name: str, **labels: str) -> float:
        """The sample ``name`` with exactly ``labels``; 0 when absent (a counter never moved)."""
        for family in text_string_to_metric_families(self.text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0

    def has(self, name: str, **labels: str) -> bool:
        """Whether the sample ``name`` with exactly ``labels`` is present."""
        return any(
            sample.name == name and sample.labels == labels
            for family in text_string_to_metric_families(self.text)
            for sample in family.samples
        )


def delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    """How much the sample moved between two scrapes."""
    return after.value(name, **labels) - before.value(name, **labels)


def settings_for(database_url: str, data_dir: Path, **changes: object) -> Settings:
    """Test settings (as the root conftest's) with a metrics token and no gauge cache."""
    values: dict[str, object] = {
        "environment": Environment.test,
        "database_url": database_url,
        "data_dir": data_dir,
        "secret_key": "test-secret-" + "x" * 32,
        "base_url": BASE_URL,
        "relay_after_commit": False,
        "rate_limit_token_per_client": "",
        "rate_limit_token_per_ip": "",
        "rate_limit_api_per_client": "",
        "rate_limit_login_per_ip": "",
        "egress_allow": ".example",
        "consent_defaults": "ehr-sync=permit",  # as the root conftest's: no consent recorded
        "metrics_token": TOKEN,
        "metrics_cache_seconds": 0,
        "ehr_timeout_seconds": 1.0,
        "ehr_circuit_failures": 100,
    }
    return Settings(**(values | changes))  # type: ignore[arg-type]
