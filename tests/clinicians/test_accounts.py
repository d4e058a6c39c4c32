"""Adding clinicians (checked input, unique email) and finding EHR users by fhirUser."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine
from support.login import PASSWORD, new_tenant

from careloop.services.clinicians.ehr_users import DEFAULT_NAME, clinician_for, practitioner_of
from careloop.services.clinicians.passwords import verify_password
from careloop.services.clinicians.service import ClinicianError, add_clinician, list_clinicians
from careloop.services.unit_of_work import session_scope


def test_a_clinician_is_stored_lower_case_with_a_hash(engine: Engine) -> None:
    tenant = new_tenant(engine)
    email = f"Mixed.{uuid.uuid4().hex[:6]}@Example.ORG"
    with session_scope(engine) as session:
        added = add_clinician(session, tenant, f"  {email} ", "Dr A", PASSWORD, "Practitioner/p1")
    assert added.email == email.lower()
    assert added.password_hash is not None and added.password_hash.startswith("$argon2id$")
    assert verify_password(PASSWORD, added.password_hash)
    with session_scope(engine) as session:
        assert [c.id for c in list_clinicians(session, tenant)] == [added.id]
        with pytest.raises(ClinicianError, match="exists"):
            add_clinician(session, tenant, email.upper(), "Dr B", None)


@pytest.mark.parametrize(
    ("tenant", "email", "name", "password", "practitioner", "field"),
    [
        ("no-such-tenant", "a@example.org", "A", None, None, "tenant"),
        (None, "a" * 330 + "@example.org", "A", None, None, "email"),
        (None, "a@example.org", "A\x00", None, None, "name"),
        (None, "a@example.org", "A", "x" * 1025, None, "password"),
        (None, "a@example.org", "A", None, "Practitioner/a b", "practitioner"),
        (None, "a@example.org", "A", None, "Patient/p1", "practitioner"),
    ],
    ids=["tenant", "long-email", "nul-name", "long-password", "bad-id", "not-practitioner"],
)
def test_bad_input_is_refused(
    engine: Engine,
    tenant: str | None,
    email: str,
    name: str,
    password: str | None,
    practitioner: str | None,
    field: str,
) -> None:
    tenant_id = tenant or new_tenant(engine)
    with session_scope(engine) as session, pytest.raises(ClinicianError, match=field):
        add_clinician(session, tenant_id, email, name, password, practitioner)


def test_an_ehr_user_is_found_by_fhir_user_within_the_tenant(engine: Engine) -> None:
    first, second = new_tenant(engine), new_tenant(engine)
    who = f"https://ehr.example/fhir/Practitioner/{uuid.uuid4().hex[:8]}"
    with session_scope(engine) as session:
        made = clinician_for(session, first, who, "Dr  Launch\n\x00")
        again = clinician_for(session, first, who, "another name")
        other = clinician_for(session, second, who, None)
    assert made.id == again.id != other.id
    assert made.name == "Dr Launch" and other.name == DEFAULT_NAME
    assert made.practitioner == practitioner_of(who) == "Practitioner/" + who.rsplit("/", 1)[1]
    assert practitioner_of("https://ehr.example/fhir/Patient/p-1") is None
    assert practitioner_of("https://ehr.example/fhir/RelatedPerson/Practitioner") is None
