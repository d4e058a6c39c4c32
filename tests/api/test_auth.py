"""Clients, tokens, scopes and tenants: who may call, and what they may see."""

from __future__ import annotations

import base64
import time
import uuid

from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey
from sqlalchemy import Engine
from support.clients import BASE_URL, Caller, make_caller
from support.reports import phq9

from careloop.services.tenancy.service import create_client
from careloop.services.unit_of_work import session_scope

TOKEN_URL = f"{BASE_URL}/oauth/token"


def test_client_secret_post_and_basic_get_a_bearer_token(caller: Caller) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": caller.client_id,
        "client_secret": caller.client_secret,
    }
    post = caller.http.post("/oauth/token", data=form)
    assert post.status_code == 200
    body = post.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 300
    assert body["scope"] == "system/*.cruds"
    assert post.headers["cache-control"] == "no-store"
    basic = base64.b64encode(f"{caller.client_id}:{caller.client_secret}".encode()).decode()
    response = caller.http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "system/Observation.rs"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 200
    assert response.json()["scope"] == "system/Observation.rs"


def test_wrong_secret_is_invalid_client(caller: Caller) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": caller.client_id,
        "client_secret": "nope",
    }
    response = caller.http.post("/oauth/token", data=form)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_scope_beyond_registration_is_refused(app_client: TestClient, engine: Engine) -> None:
    narrow = make_caller(app_client, engine, scope="system/Observation.rs")
    form = {
        "grant_type": "client_credentials",
        "client_id": narrow.client_id,
        "client_secret": narrow.client_secret,
        "scope": "system/Observation.c",
    }
    response = app_client.post("/oauth/token", data=form)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_missing_and_bad_tokens_get_401_operation_outcome(app_client: TestClient) -> None:
    response = app_client.post("/v1/symptom-reports", json=phq9())
    assert response.status_code == 401
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.headers["www-authenticate"].startswith("Bearer")
    response = app_client.get("/fhir/Observation", headers={"Authorization": "Bearer forged"})
    assert response.status_code == 401


def test_scopes_are_enforced_per_endpoint(app_client: TestClient, engine: Engine) -> None:
    reader = make_caller(app_client, engine, scope="system/Observation.rs")
    response = reader.post("/v1/symptom-reports", json=phq9())
    assert response.status_code == 403
    assert response.json()["issue"][0]["code"] == "forbidden"
    assert reader.get("/fhir/Observation").status_code == 200
    assert reader.get("/fhir/Encounter").status_code == 403
    rater = make_caller(app_client, engine, scope="system/Observation.c")
    # a PHQ-9 also writes a QuestionnaireResponse, which this client may not create
    assert rater.post("/v1/symptom-reports", json=phq9()).status_code == 403
    mood = {
        "patient": {"system": "s", "value": "v"},
        "instrument": "mood",
        "value": 4,
        "effective": "2026-11-20T09:30:00Z",
    }
    assert rater.post("/v1/symptom-reports", json=mood).status_code == 201


def test_a_tenant_never_sees_another_tenants_data(app_client: TestClient, engine: Engine) -> None:
    alice = make_caller(app_client, engine)
    bob = make_caller(app_client, engine)
    created = alice.post("/v1/symptom-reports", json=phq9("shared-id")).json()
    observation = next(r for r in created["resources"] if r.startswith("Observation/"))
    assert alice.get(f"/fhir/{observation}").status_code == 200
    assert bob.get(f"/fhir/{observation}").status_code == 404
    assert bob.get(f"/v1/symptom-reports/{created['id']}").status_code == 404
    assert bob.get("/fhir/Observation").json()["total"] == 0
    # the same app identifier in another tenant is another patient
    other = bob.post("/v1/symptom-reports", json=phq9("shared-id")).json()
    assert other["patient"] != created["patient"]


def _assertion(client_id: str, key: RSAKey | ECKey, alg: str, **overrides: object) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": now + 240,
        "jti": uuid.uuid4().hex,
        **overrides,
    }
    header = {"alg": alg, "kid": key.kid, "typ": "JWT"}
    return jwt.encode(header, claims, key, algorithms=[alg])


def _token_request(http: TestClient, assertion: str) -> int:
    response = http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "scope": "system/Observation.rs",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )
    return response.status_code


def test_private_key_jwt_per_smart_backend_services(app_client: TestClient, engine: Engine) -> None:
    rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
    ec = ECKey.generate_key("P-384", parameters={"kid": "ec-1"})
    jwks = KeySet([rsa, ec]).as_dict(private=False)
    with session_scope(engine) as session:
        client_id = create_client(
            session, "backend", "system/Observation.rs", "tenant-" + uuid.uuid4().hex[:8], jwks=jwks
        ).client_id
    assert _token_request(app_client, _assertion(client_id, rsa, "RS384")) == 200
    assert _token_request(app_client, _assertion(client_id, ec, "ES384")) == 200
    replayed = _assertion(client_id, rsa, "RS384")
    assert _token_request(app_client, replayed) == 200
    assert _token_request(app_client, replayed) == 401  # jti replay
    assert (
        _token_request(app_client, _assertion(client_id, rsa, "RS384", aud="https://other")) == 401
    )
    far = int(time.time()) + 3600
    assert _token_request(app_client, _assertion(client_id, rsa, "RS384", exp=far)) == 401
    assert _token_request(app_client, _assertion(client_id, rsa, "RS384", sub="someone")) == 401
    stranger = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
    assert _token_request(app_client, _assertion(client_id, stranger, "RS384")) == 401
