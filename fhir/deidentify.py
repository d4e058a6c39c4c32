"""HIPAA Safe Harbor de-identification of FHIR R4 resources (45 CFR 164.514(b)(2)).

An allow-list walk: a string survives only under a structural key (``status``, ``code``,
``system``...) and only when it looks like a code (no whitespace, bounded), so free text an app or
an EHR put anywhere, known element or not, never survives. On top of that:

- ids and references become keyed hashes (HMAC-SHA256 over the tenant and ``Type/id``), so one
  patient's resources still link with the same key, and different keys or tenants never do;
- identifiers become one identifier holding the keyed hash of ``system|value``;
- dates and dateTimes keep their year; instants and times are dropped;
- a birthDate of someone 90 or over is dropped for an age-group marker, and ages over 89 are 90;
- addresses keep a US state, the country and the ZIP3 (``000`` where fewer than 20,000 live).

Pure: the key, the tenant and "today" are handed in; nothing here reads careloop's database.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

DEIDENTIFIED_SYSTEM = "https://careloop.io/fhir/sid/deidentified"
"""The system of the one identifier a de-identified resource keeps."""
AGE_GROUP_URL = "https://careloop.io/fhir/StructureDefinition/age-group"
"""Extension on a Patient aged 90 or over: valueCode ``90+`` instead of a birthDate."""
MASKED_URL = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
"""Marks an element whose every part was removed (valueCode ``masked``), so it keeps its place."""

RESTRICTED_ZIP3 = frozenset(
    "036 059 063 102 203 556 692 790 821 823 830 831 878 879 884 890 893".split()
)
"""ZIP3 areas with 20,000 people or fewer (2000 Census): exported as ``000``."""

US_STATES = frozenset(
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH "
    "NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY AS GU MP PR VI".split()
)
_US = frozenset({"US", "USA"})

STRUCTURAL_KEYS = frozenset(
    {
        "resourceType",
        "status",
        "system",
        "code",
        "unit",
        "gender",
        "use",
        "intent",
        "kind",
        "comparator",
        "language",
        "version",
        "type",
        "priority",
        "mode",
        "questionnaire",
        "valueCode",
        "lifecycleStatus",
        "linkId",
        "severity",
        "criticality",
    }
)
"""Keys whose string values are codes, kept when they look like one (see ``is_coded``); a
``linkId`` that does not is hashed instead (a questionnaire item needs one)."""

_DROPPED = frozenset(
    {
        "text",
        "meta",
        "contained",
        "note",
        "comment",
        "description",
        "display",
        "name",
        "telecom",
        "contact",
        "photo",
        "multipleBirthInteger",
        "valueAttachment",
        "valueBase64Binary",
        "rationale",
        "mitigation",
        "implicitRules",
    }
)
"""Keys dropped whatever they hold (free text, contact details, pictures); the allow-list below
drops other strings anyway, these go before their insides are looked at."""

_INSTANTS = frozenset({"issued", "lastUpdated", "recorded", "timestamp", "when", "instant"})
_DATES = frozenset({"date", "dateTime", "authored", "authoredOn", "created", "sent", "received"})
_PERIOD_BOUNDS = frozenset({"start", "end"})
_YEAR = re.compile(r"^(\d{4})(-(\d{2})(-(\d{2}))?)?")
_CODED = re.compile(r"^\S{1,256}$")
_ELEMENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}$")
_ZIP = re.compile(r"^(\d{3})\d{2}(-\d{4})?$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S{1,250}$")
_URI_KEYS = frozenset({"system", "url", "questionnaire"})
_YEARS_PER_UNIT = {
    **dict.fromkeys(("a", "y", "yr", "yrs", "year", "years"), 1.0),
    **dict.fromkeys(("mo", "month", "months"), 1 / 12),
    **dict.fromkeys(("wk", "week", "weeks"), 7 / 365.25),
    **dict.fromkeys(("d", "day", "days"), 1 / 365.25),
}
_HASH_CHARS = 32


def is_coded(value: str, key: str = "") -> bool:
    """Whether a string looks like a code (1-256 characters, no whitespace), or a URI when
    ``key`` holds one (``system``, ``url``, ``questionnaire``)."""
    return bool((_URI if key in _URI_KEYS else _CODED).match(value))


@dataclass(frozen=True)
class Deidentifier:
    """De-identifies resources of one tenant with one key, as of ``today``."""

    key: bytes
    tenant_id: str
    today: date

    def pseudonym(self, value: str) -> str:
        """The keyed hash (hex, 32 characters) of ``value`` in this tenant."""
        message = f"{self.tenant_id}\x00{value}".encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()[:_HASH_CHARS]

    def reference(self, reference: str) -> str | None:
        """``Type/<hash>`` for a relative ``Type/id[/_history/n]``; None for anything else."""
        parts = reference.split("/")
        if len(parts) not in (2, 4) or not parts[0].isalpha() or not parts[0][:1].isupper():
            return None
        if len(parts) == 4 and parts[2] != "_history":
            return None
        rtype, rid = parts[0], parts[1]
        return f"{rtype}/{self.pseudonym(f'{rtype}/{rid}')}"

    def resource(self, resource: dict[str, Any]) -> dict[str, Any]:
        """A de-identified copy of ``resource`` (valid FHIR R4 where the input was)."""
        rtype = str(resource.get("resourceType", ""))
        out: dict[str, Any] = {"resourceType": rtype}
        if isinstance(resource.get("id"), str):
            out["id"] = self.pseudonym(f"{rtype}/{resource['id']}")
        out.update(_Walk(self, rtype).object(resource, ""))
        if rtype == "Patient":
            self._birth(resource, out)
        return out

    def _birth(self, resource: dict[str, Any], out: dict[str, Any]) -> None:
        birth = resource.get("birthDate")
        out.pop("birthDate", None)
        if not isinstance(birth, str) or not (match := _YEAR.match(birth)):
            return
        if _oldest_age(match, self.today) >= 90:
            marker = {"url": AGE_GROUP_URL, "valueCode": "90+"}
            out["extension"] = [*out.get("extension", []), marker]
        else:
            out["birthDate"] = match.group(1)


def _oldest_age(match: re.Match[str], today: date) -> int:
    """The age of someone born on the (partial) date, as old as the date allows."""
    year = int(match.group(1))
    month = int(match.group(3)) if match.group(3) else 1
    day = int(match.group(5)) if match.group(5) else 1
    if not match.group(3):
        return today.year - year  # born on 1 January at the earliest
    return today.year - year - ((today.month, today.day) < (month, day))


class _Walk:
    """One resource's walk (knows its type for the few type-dependent rules)."""

    def __init__(self, deid: Deidentifier, rtype: str) -> None:
        self.deid = deid
        self.rtype = rtype

    def object(self, value: dict[str, Any], parent: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in _DROPPED or key == "id" or not _ELEMENT_NAME.match(key):
                continue  # free text, element ids (the root's: above), primitive extensions
                # (``_birthDate``) and keys no FHIR element has
            cleaned = self.value(key, item, parent)
            if cleaned is not None:
                out[key] = cleaned
        if parent in ("extension", "modifierExtension") and set(out) <= {"url"}:
            return {}  # an extension whose value was removed says nothing
        return _capped_age(out)

    def value(self, key: str, item: Any, parent: str, in_list: bool = False) -> Any:
        """``item`` (under ``key``) de-identified, or None to drop it."""
        if key == "identifier":
            return self.identifier(item)
        if key == "address":
            return self.listed(item, _address)
        if key == "reference":
            return self.deid.reference(item) if isinstance(item, str) else None
        if isinstance(item, dict):
            cleaned = self.object(item, key)
            if cleaned or in_list or not item or key in ("extension", "modifierExtension"):
                return cleaned or None  # an emptied list item goes; so does its place
            return {"extension": [{"url": MASKED_URL, "valueCode": "masked"}]}
        if isinstance(item, list):
            kept = [self.value(key, i, parent, in_list=True) for i in item]
            return [c for c in kept if c is not None] or None
        if isinstance(item, str):
            return self.string(key, item, parent)
        return item  # numbers and booleans: clinical values (ages are capped by _capped_age)

    def string(self, key: str, item: str, parent: str) -> str | None:
        if key == "url":
            extension = parent in ("extension", "modifierExtension")
            return item if extension and is_coded(item, key) else None
        if key == "linkId":
            return item if is_coded(item) else "q" + self.deid.pseudonym(f"linkId/{item}")[:16]
        if key in STRUCTURAL_KEYS:
            return item if is_coded(item, key) else None
        if _is_date_key(key, parent, self.rtype):
            match = _YEAR.match(item)
            return match.group(1) if match else None
        return None  # dates of unknown kinds, instants, times, free text

    def identifier(self, item: Any) -> Any:
        """One identifier: the keyed hash of the first ``system|value`` (a list stays a list)."""
        first = item[0] if isinstance(item, list) and item else item
        if not isinstance(first, dict) or not isinstance(first.get("value"), str):
            return None
        system = first.get("system") if isinstance(first.get("system"), str) else ""
        hashed = {
            "system": DEIDENTIFIED_SYSTEM,
            "value": self.deid.pseudonym(f"identifier/{system}|{first['value']}"),
        }
        return [hashed] if isinstance(item, list) else hashed

    def listed(self, item: Any, clean: Any) -> Any:
        if isinstance(item, list):
            kept = [c for c in (clean(i) for i in item) if c is not None]
            return kept or None
        return clean(item)


def _is_date_key(key: str, parent: str, rtype: str) -> bool:
    if key.endswith("DateTime"):
        return True
    if key in _INSTANTS or key.endswith("Instant") or key.endswith("Time"):
        return False
    if key in _PERIOD_BOUNDS:
        return parent.lower().endswith("period") and rtype not in ("Appointment", "Slot")
    return key in _DATES or key.endswith("Date")


def _address(item: Any) -> dict[str, Any] | None:
    """State (US codes only), country (a code) and ZIP3 of a US address; nothing else."""
    if not isinstance(item, dict):
        return None
    out: dict[str, Any] = {}
    for key in ("use", "type"):
        if isinstance(item.get(key), str) and is_coded(item[key]):
            out[key] = item[key]
    country = item.get("country")
    country_code = country.strip().upper() if isinstance(country, str) else ""
    if re.fullmatch(r"[A-Z]{2,3}", country_code):
        out["country"] = country_code
    state = item.get("state")
    if isinstance(state, str) and state.strip().upper() in US_STATES:
        out["state"] = state.strip().upper()
    postal = item.get("postalCode")
    is_us = not country_code or country_code in _US
    if isinstance(postal, str) and is_us and (match := _ZIP.match(postal.strip())):
        zip3 = match.group(1)
        out["postalCode"] = "000" if zip3 in RESTRICTED_ZIP3 else zip3
    return out or None


def _capped_age(quantity: dict[str, Any]) -> dict[str, Any]:
    """An age over 89 years becomes ``>= 90`` years (any Quantity in a unit of time)."""
    value = quantity.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return quantity
    unit = str(quantity.get("code") or quantity.get("unit") or "").lower()
    per = _YEARS_PER_UNIT.get(unit)
    if per is None or value * per <= 89:
        return quantity
    years = {"unit": "years", "system": "http://unitsofmeasure.org", "code": "a"}
    return {**quantity, **years, "value": 90, "comparator": ">="}
