"""The EHR's JWT on every CDS Hooks call: valid ES384 and RS384 calls pass, forgeries get 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import orjson
import pytest
from cds_ehr import SERVICE, SigningEhr, hook_request
from fastapi.testclient import TestClient
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import Engine
from sqlmodel import Session, select

from careloop.services.cds.models import CdsClient, CdsUsedJti
from careloop.services.unit_of_work import session_scope

DISCOVERY = "/cds-services"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(claims))}.{_b64(signature)}"


def _hs256(ehr: SigningEhr, secret: bytes) -> str:
    header = {"alg": "HS256", "typ": "JWT", "kid": "rs-1"}
    signing_input = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(ehr.claims(DISCOVERY)))}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _refused(app_client: TestClient, token: str | None, path: str = DISCOVERY) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    if path == DISCOVERY:
        response = app_client.get(path, headers=headers)
    else:
        response = app_client.post(path, json=hook_request("x1"), headers=headers)
    assert response.status_code == 401, response.text
    issues = response.json()["issue"]
    assert [i["diagnostics"] for i in issues] == ["unauthorized"]  # never why
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_signed_discovery_lists_the_patient_view_service(
    app_client: TestClient, ehr: SigningEhr, alg: str
) -> None:
    response = app_client.get(DISCOVERY, headers=ehr.headers(DISCOVERY, alg=alg))
    assert response.status_code == 200, response.text
    (service,) = response.json()["services"]
    assert service["id"] == "careloop-patient-view"
    assert service["hook"] == "patient-view"
    assert service["title"] and service["description"]
    assert service["prefetch"] == {"patient": "Patient/{{context.patientId}}"}


def test_jku_equal_to_the_allow_listed_url_is_accepted(
    app_client: TestClient, ehr: SigningEhr
) -> None:
    headers = ehr.headers(DISCOVERY, header={"jku": ehr.jwks_url})
    assert app_client.get(DISCOVERY, headers=headers).status_code == 200


def test_the_jwks_is_cached_between_calls(app_client: TestClient, ehr: SigningEhr) -> None:
    for _ in range(3):
        assert app_client.get(DISCOVERY, headers=ehr.headers(DISCOVERY)).status_code == 200
    assert ehr.server.fetches == 1


def test_missing_or_malformed_authorization_is_refused(
    app_client: TestClient, ehr: SigningEhr
) -> None:
    _refused(app_client, None)
    _refused(app_client, None, SERVICE)
    _refused(app_client, "not-a-jwt")
    _refused(app_client, "a.b.c")
    response = app_client.get(DISCOVERY, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401


def test_wrong_key_with_the_right_kid_is_refused(app_client: TestClient, ehr: SigningEhr) -> None:
    other_ec = ECKey.generate_key("P-384", parameters={"kid": "es-1"}, private=True)
    _refused(app_client, ehr.token(DISCOVERY, key=other_ec))
    other_rsa = RSAKey.generate_key(2048, parameters={"kid": "rs-1"}, private=True)
    _refused(app_client, ehr.token(DISCOVERY, alg="RS384", key=other_rsa))


def test_unknown_kid_refetches_at_most_once_then_refuses(
    app_client: TestClient, ehr: SigningEhr
) -> None:
    assert app_client.get(DISCOVERY, headers=ehr.headers(DISCOVERY)).status_code == 200
    stranger = ECKey.generate_key("P-384", parameters={"kid": "es-unknown"}, private=True)
    for _ in range(3):
        _refused(app_client, ehr.token(DISCOVERY, key=stranger))
    assert ehr.server.fetches == 2  # the first call, and one refetch for the unknown kid


def test_alg_none_is_refused(app_client: TestClient, ehr: SigningEhr) -> None:
    claims = ehr.claims(DISCOVERY)
    _refused(app_client, _unsigned({"alg": "none", "typ": "JWT", "kid": "es-1"}, claims))
    _refused(app_client, _unsigned({"alg": "none", "typ": "JWT"}, claims))


def test_hs256_with_the_public_key_as_secret_is_refused(
    app_client: TestClient, ehr: SigningEhr
) -> None:
    public_pem = ehr.rs_key.as_pem(private=False)
    _refused(app_client, _hs256(ehr, public_pem))
    _refused(app_client, _hs256(ehr, orjson.dumps(ehr.jwks["keys"][1])))


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_algorithms_other_than_es384_and_rs384_are_refused(
    app_client: TestClient, ehr: SigningEhr, alg: str
) -> None:
    key = ehr.rs_key if alg.startswith("RS") else ECKey.generate_key("P-256", private=True)
    _refused(app_client, ehr.token(DISCOVERY, alg=alg, key=key, header={"kid": "es-1"}))
    if alg == "RS256":
        _refused(app_client, ehr.token(DISCOVERY, alg=alg, key=ehr.rs_key))


def test_alg_of_the_other_family_than_the_key_is_refused(
    app_client: TestClient, ehr: SigningEhr
) -> None:
    # Signed ES384 but naming the RSA key's kid.
    _refused(app_client, ehr.token(DISCOVERY, header={"kid": "rs-1"}))


@pytest.mark.parametrize(
    "aud",
    [
        "http://testserver/cds-services/careloop-patient-view",
        "http://testserver/cds-services/",
        "https://testserver/cds-services",
        "http://evil.example/cds-services",
        "",
    ],
)
def test_wrong_audience_is_refused(app_client: TestClient, ehr: SigningEhr, aud: str) -> None:
    _refused(app_client, ehr.token(DISCOVERY, aud=aud))


def test_service_call_needs_its_own_url_as_audience(
    app_client: TestClient, ehr: SigningEhr
) -> None:
    _refused(app_client, ehr.token(DISCOVERY), SERVICE)


def test_expired_and_too_long_lived_tokens_are_refused(
    app_client: TestClient, ehr: SigningEhr
) -> None:
    now = int(time.time())
    _refused(app_client, ehr.token(DISCOVERY, iat=now - 600, exp=now - 120))
    _refused(app_client, ehr.token(DISCOVERY, exp=now + 3600))
    _refused(app_client, ehr.token(DISCOVERY, iat=now - 1000, exp=now + 100))
    _refused(app_client, ehr.token(DISCOVERY, iat=now + 600, exp=now + 700))
    _refused(app_client, ehr.token(DISCOVERY, exp=None))
    _refused(app_client, ehr.token(DISCOVERY, iat=None))
    _refused(app_client, ehr.token(DISCOVERY, exp="soon"))
    # A few seconds of clock difference are tolerated.
    small_skew = ehr.token(DISCOVERY, iat=now - 250, exp=now - 5)
    assert app_client.get(DISCOVERY, headers={"Authorization": f"Bearer {small_skew}"}).is_success


def test_replayed_jti_is_refused(app_client: TestClient, ehr: SigningEhr, engine: Engine) -> None:
    token = ehr.token(DISCOVERY, jti="once-only")
    headers = {"Authorization": f"Bearer {token}"}
    assert app_client.get(DISCOVERY, headers=headers).status_code == 200
    _refused(app_client, token)
    # Another JWT with the same jti from the same issuer is a replay too.
    _refused(app_client, ehr.token(DISCOVERY, jti="once-only"))
    _refused(app_client, ehr.token(DISCOVERY, jti=None))
    with Session(engine) as session:
        used = session.exec(select(CdsUsedJti).where(CdsUsedJti.iss == ehr.iss)).all()
    assert [u.jti for u in used] == ["once-only"]


def test_a_refused_body_still_uses_up_the_jti(app_client: TestClient, ehr: SigningEhr) -> None:
    headers = ehr.headers(SERVICE, jti="body-refused")
    assert app_client.post(SERVICE, json={"hook": "x"}, headers=headers).status_code == 400
    again = app_client.post(SERVICE, json=hook_request("x1"), headers=headers)
    assert again.status_code == 401


def test_unknown_or_inactive_issuer_is_refused(
    app_client: TestClient, ehr: SigningEhr, engine: Engine
) -> None:
    _refused(app_client, ehr.token(DISCOVERY, iss="https://stranger.example/cds"))
    with session_scope(engine) as session:
        client = session.exec(select(CdsClient).where(CdsClient.iss == ehr.iss)).one()
        client.active = False
        session.add(client)
    _refused(app_client, ehr.token(DISCOVERY))


def test_jku_other_than_the_allow_listed_url_is_refused(
    app_client: TestClient, ehr: SigningEhr
) -> None:
    attacker = ehr.jwks_url.replace("/jwks.json", "/other.json")
    _refused(app_client, ehr.token(DISCOVERY, header={"jku": attacker}))
    _refused(app_client, ehr.token(DISCOVERY, header={"jku": "https://evil.example/jwks"}))


def test_no_kid_or_wrong_typ_is_refused(app_client: TestClient, ehr: SigningEhr) -> None:
    _refused(app_client, ehr.token(DISCOVERY, header={"kid": None}))
    _refused(app_client, ehr.token(DISCOVERY, header={"typ": "at+jwt"}))


def test_expired_jti_rows_are_pruned(
    app_client: TestClient, ehr: SigningEhr, engine: Engine
) -> None:
    from datetime import UTC, datetime, timedelta

    from careloop.services.cds import auth

    with session_scope(engine) as session:
        old = datetime.now(UTC) - timedelta(hours=1)
        session.add(CdsUsedJti(iss=ehr.iss, jti="long-gone", expires_at=old))
    auth._PRUNING.last = -auth.PRUNE_EVERY  # due now
    assert app_client.get(DISCOVERY, headers=ehr.headers(DISCOVERY)).status_code == 200
    with Session(engine) as session:
        left = session.exec(select(CdsUsedJti.jti).where(CdsUsedJti.iss == ehr.iss)).all()
    assert "long-gone" not in left and len(left) == 1
