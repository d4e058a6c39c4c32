"""Reading a /metrics answer in tests: sample values by name and labels."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


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
