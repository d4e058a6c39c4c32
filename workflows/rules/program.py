"""A care program: threshold rules loaded from TOML data."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from careloop.services.alerts.vocabulary import Severity

DEFAULT_PROGRAM = Path(__file__).with_name("default_program.toml")
KINDS = (
    "component-above",
    "value-tiers",
    "rise-from-baseline",
    "consecutive-days-at-most",
    "missed-checkin",
    "fhirpath",
    "risk-signal",
    "group-no-show",
)
RISK_LEVELS = ("low", "moderate", "high")
"""Levels of a risk signal, lowest first; a risk-signal tier's ``at_least`` names one."""
TITLE_LENGTH = 200
"""A rule's title goes into alert messages (email, webhook, Task): one printable line."""


class ProgramError(ValueError):
    """A care program file that is not valid."""


@dataclass(frozen=True)
class Tier:
    """Fires at ``at_least`` with ``severity``."""

    at_least: float
    severity: str


@dataclass(frozen=True)
class Rule:
    """One threshold rule of a care program."""

    id: str
    kind: str
    severity: str
    title: str
    code: str = ""
    component: str = ""
    above: float = 0
    tiers: tuple[Tier, ...] = ()
    override: str = ""
    rise: float = 0
    at_most: float = 0
    days: int = 0
    min_days: float = 0
    grace_factor: float = 1
    expression: str = ""
    categories: tuple[str, ...] = ()
    """risk-signal: the risk categories the rule judges."""
    count: int = 1
    """group-no-show: the missed group sessions (this one included) within ``days`` that fire."""


@dataclass(frozen=True)
class Program:
    """A named list of rules."""

    id: str
    title: str
    rules: tuple[Rule, ...] = field(default_factory=tuple)

    def rule(self, rule_id: str) -> Rule | None:
        """The rule with ``rule_id``."""
        return next((r for r in self.rules if r.id == rule_id), None)


def _at_least(kind: Any, value: Any) -> float:
    # A risk-signal tier names a level ("moderate"); it is kept as its rank (1 for low).
    if kind == "risk-signal":
        if value not in RISK_LEVELS:
            raise ValueError(f"at_least must be one of {', '.join(RISK_LEVELS)}")
        return float(RISK_LEVELS.index(value) + 1)
    return float(value)


def _categories(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError("categories must be a list")
    return tuple(str(c) for c in value)


def _rule(data: dict[str, Any]) -> Rule:
    try:
        tiers = tuple(
            Tier(_at_least(data.get("kind"), t["at_least"]), str(t["severity"]))
            for t in data.get("tiers", [])
        )
        rule = Rule(
            id=str(data["id"]),
            kind=str(data["kind"]),
            severity=str(data.get("severity") or (tiers[0].severity if tiers else "")),
            title=str(data.get("title", data["id"])),
            code=str(data.get("code", "")),
            component=str(data.get("component", "")),
            above=float(data.get("above", 0)),
            tiers=tuple(sorted(tiers, key=lambda t: -t.at_least)),
            override=str(data.get("override", "")),
            rise=float(data.get("rise", 0)),
            at_most=float(data.get("at_most", 0)),
            days=int(data.get("days", 0)),
            min_days=float(data.get("min_days", 0)),
            grace_factor=float(data.get("grace_factor", 1)),
            expression=str(data.get("expression", "")),
            categories=_categories(data.get("categories", [])),
            count=int(data.get("count", 1)),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ProgramError(f"rule {data.get('id', '?')}: {exc}") from exc
    if not (0 < len(rule.title) <= TITLE_LENGTH and rule.title.isprintable()):
        raise ProgramError(f"rule {rule.id}: title must be 1-{TITLE_LENGTH} printable characters")
    if rule.kind not in KINDS:
        raise ProgramError(f"rule {rule.id}: unknown kind {rule.kind!r}")
    if rule.kind == "risk-signal" and not (rule.categories and rule.tiers):
        raise ProgramError(f"rule {rule.id}: a risk-signal rule needs categories and tiers")
    if rule.kind == "group-no-show" and not (rule.count >= 1 and rule.days >= 1):
        raise ProgramError(f"rule {rule.id}: a group-no-show rule needs count >= 1 and days >= 1")
    for severity in [rule.severity, *(t.severity for t in rule.tiers)]:
        if not Severity.has(severity):
            raise ProgramError(f"rule {rule.id}: unknown severity {severity!r}")
    return rule


def parse_program(text: str) -> Program:
    """A program from TOML text."""
    data = tomllib.loads(text)
    rules = tuple(_rule(r) for r in data.get("rules", []))
    ids = [r.id for r in rules]
    if len(ids) != len(set(ids)):
        raise ProgramError("rule ids must be unique")
    return Program(str(data.get("id", "custom")), str(data.get("title", "")), rules)


@lru_cache(maxsize=8)
def load_program(path: Path = DEFAULT_PROGRAM) -> Program:
    """The care program in ``path`` (default: the shipped depression and anxiety program)."""
    return parse_program(path.read_text(encoding="utf-8"))
