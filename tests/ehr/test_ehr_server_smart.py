"""The test EHR's SMART Backend Services authorization server, over real HTTP."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from ehr_server import TestEHR
from ehr_server.helpers import (
    client_assertion,
    ec_key,
    jwks_server,
    public_jwks,
    rsa_key,
    token_form,
)
from joserfc.jwk import ECKey, OctKey, RSAKey

SCOPE = "system/Observation.cruds system/Patient.rs"


@dataclass(frozen=True)
class SecondsFromNow:
    """A time claim relative to when the test runs (not when it was collected: a slow run's
    tests start minutes after collection)."""

    seconds: int


@pytest.fixture(scope="module")
def rsa() -> RSAKey:
    return rsa_key("rsa-1")


@pytest.fixture(scope="module")
def ec() -> ECKey:
    return ec_key("ec-1")


@pytest.fixture
def ehr(ehr: TestEHR, rsa: RSAKey, ec: ECKey) -> TestEHR:
    """The test EHR with careloop registered as a backend client of both keys."""
    ehr.register_client("careloop", "system/*.cruds", jwks=public_jwks(rsa, ec))
    return ehr


def request_token(
    http: httpx.Client, ehr: TestEHR, assertion: str, scope: str = SCOPE
) -> httpx.Response:
    return http.post(ehr.token_url, data=token_form(assertion, scope))


def assert_invalid_client(response: httpx.Response, fragment: str) -> None:
    assert response.status_code in (400, 401), response.text
    body = response.json()
    assert body["error"] == "invalid_client"
    assert fragment in body["error_description"]
    assert response.headers["cache-control"] == "no-store"


def test_smart_configuration_advertises_backend_services(ehr: TestEHR, http: httpx.Client) -> None:
    response = http.get(f"{ehr.base_url}/.well-known/smart-configuration")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    config = response.json()
    assert config["token_endpoint"] == ehr.token_url
    assert config["authorization_endpoint"] == ehr.authorize_url
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    assert config["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert config["grant_types_supported"] == ["client_credentials", "authorization_code"]
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert "system/*.cruds" in config["scopes_supported"]
    for capability in (
        "client-confidential-asymmetric",
        "permission-v2",
        "launch-ehr",
        "launch-standalone",
        "context-ehr-patient",
        "context-standalone-patient",
    ):
        assert capability in config["capabilities"]


def test_metadata_is_an_r4_capability_statement(ehr: TestEHR, http: httpx.Client) -> None:
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    response = http.get(f"{ehr.base_url}/metadata")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/fhir+json"
    statement = CapabilityStatement.model_validate(response.json())
    assert statement.fhirVersion == "4.0.1"
    oauth = response.json()["rest"][0]["security"]["extension"][0]["extension"]
    assert {"url": "token", "valueUri": ehr.token_url} in oauth


@pytest.mark.parametrize("key_name", ["rsa", "ec"])
def test_token_is_issued_for_a_valid_assertion(
    ehr: TestEHR, http: httpx.Client, key_name: str, request: pytest.FixtureRequest
) -> None:
    key = request.getfixturevalue(key_name)

    response = request_token(http, ehr, client_assertion(key, "careloop", ehr.token_url))

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == SCOPE
    assert len(body["access_token"]) >= 32
    assert ehr.issued_tokens == 1
    read = http.get(
        f"{ehr.base_url}/Observation",
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert read.status_code == 200


@pytest.mark.parametrize(
    ("header", "claims", "fragment"),
    [
        ({"kid": None}, {}, "no kid"),
        ({"kid": "not-registered"}, {}, "not in the client's JWKS"),
        ({"typ": "JOSE+JSON"}, {}, "typ"),
        ({}, {"aud": "http://127.0.0.1/other/token"}, "aud must be the token endpoint"),
        ({}, {"sub": "someone-else"}, "iss and sub"),
        ({}, {"exp": SecondsFromNow(600)}, "more than five minutes"),
        ({}, {"exp": SecondsFromNow(-60)}, "expired"),
        ({}, {"exp": None}, "exp is missing"),
        ({}, {"jti": None}, "jti is missing"),
        ({"jku": "http://127.0.0.1:9/evil.json"}, {}, "jku"),
    ],
    ids=[
        "missing-kid",
        "unknown-kid",
        "wrong-typ",
        "wrong-aud",
        "iss-not-sub",
        "exp-too-far",
        "expired",
        "no-exp",
        "no-jti",
        "foreign-jku",
    ],
)
def test_bad_assertions_are_invalid_client(
    ehr: TestEHR,
    http: httpx.Client,
    rsa: RSAKey,
    header: dict[str, Any],
    claims: dict[str, Any],
    fragment: str,
) -> None:
    now = int(time.time())
    claims = {k: now + v.seconds if isinstance(v, SecondsFromNow) else v for k, v in claims.items()}
    assertion = client_assertion(rsa, "careloop", ehr.token_url, header=header, claims=claims)

    assert_invalid_client(request_token(http, ehr, assertion), fragment)
    assert ehr.issued_tokens == 0


def test_rs256_assertion_is_refused(ehr: TestEHR, http: httpx.Client, rsa: RSAKey) -> None:
    assertion = client_assertion(rsa, "careloop", ehr.token_url, alg="RS256")

    assert_invalid_client(request_token(http, ehr, assertion), "alg 'RS256' is not allowed")


def test_hs256_assertion_is_refused(ehr: TestEHR, http: httpx.Client) -> None:
    secret = OctKey.generate_key(256, parameters={"kid": "rsa-1"})
    assertion = client_assertion(secret, "careloop", ehr.token_url, alg="HS256")  # type: ignore[arg-type]

    assert_invalid_client(request_token(http, ehr, assertion), "alg 'HS256' is not allowed")


def test_assertion_signed_by_another_key_is_refused(ehr: TestEHR, http: httpx.Client) -> None:
    impostor = rsa_key("rsa-1")  # same kid, different key

    response = request_token(http, ehr, client_assertion(impostor, "careloop", ehr.token_url))

    assert_invalid_client(response, "signature")


def test_unregistered_client_is_refused(ehr: TestEHR, http: httpx.Client, rsa: RSAKey) -> None:
    response = request_token(http, ehr, client_assertion(rsa, "stranger", ehr.token_url))

    assert_invalid_client(response, "unknown client")


def test_replayed_jti_is_refused(ehr: TestEHR, http: httpx.Client, ec: ECKey) -> None:
    assertion = client_assertion(ec, "careloop", ehr.token_url)

    assert request_token(http, ehr, assertion).status_code == 200
    assert_invalid_client(request_token(http, ehr, assertion), "replay")
    assert ehr.issued_tokens == 1


def test_wrong_assertion_type_is_refused(ehr: TestEHR, http: httpx.Client, rsa: RSAKey) -> None:
    form = token_form(client_assertion(rsa, "careloop", ehr.token_url), SCOPE)
    form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"

    assert_invalid_client(http.post(ehr.token_url, data=form), "client_assertion_type")


def test_scope_not_granted_is_invalid_scope(rsa: RSAKey, http: httpx.Client) -> None:
    with TestEHR() as ehr:
        ehr.register_client("careloop", "system/Observation.cs", jwks=public_jwks(rsa))

        response = request_token(
            http,
            ehr,
            client_assertion(rsa, "careloop", ehr.token_url),
            "system/Observation.cs system/CarePlan.rs",
        )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
    assert "system/CarePlan.rs" in response.json()["error_description"]


@pytest.mark.parametrize("scope", ["system/Observation.read", "system/Observation.write"])
def test_v1_scopes_are_understood(rsa: RSAKey, http: httpx.Client, scope: str) -> None:
    with TestEHR() as ehr:
        ehr.register_client("careloop", "system/Observation.*", jwks=public_jwks(rsa))

        response = request_token(http, ehr, client_assertion(rsa, "careloop", ehr.token_url), scope)

    assert response.status_code == 200
    assert response.json()["scope"] == scope


def test_request_without_token_is_401(ehr: TestEHR, http: httpx.Client) -> None:
    response = http.get(f"{ehr.base_url}/Observation")

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["resourceType"] == "OperationOutcome"


def test_unknown_token_is_401(ehr: TestEHR, http: httpx.Client) -> None:
    response = http.get(f"{ehr.base_url}/Observation", headers={"Authorization": "Bearer forged"})

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_token_expires_after_its_lifetime(rsa: RSAKey, http: httpx.Client) -> None:
    with TestEHR(token_lifetime=1) as ehr:
        ehr.register_client("careloop", "system/*.cruds", jwks=public_jwks(rsa))
        issued = request_token(http, ehr, client_assertion(rsa, "careloop", ehr.token_url)).json()
        headers = {"Authorization": f"Bearer {issued['access_token']}"}
        assert issued["expires_in"] == 1
        assert http.get(f"{ehr.base_url}/Patient", headers=headers).status_code == 200
        time.sleep(1.1)  # let the token's real lifetime run out (not synchronisation)

        response = http.get(f"{ehr.base_url}/Patient", headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_revoked_tokens_are_401(ehr: TestEHR, http: httpx.Client, rsa: RSAKey) -> None:
    issued = request_token(http, ehr, client_assertion(rsa, "careloop", ehr.token_url)).json()
    headers = {"Authorization": f"Bearer {issued['access_token']}"}
    assert http.get(f"{ehr.base_url}/Patient", headers=headers).status_code == 200

    ehr.revoke_tokens()

    assert http.get(f"{ehr.base_url}/Patient", headers=headers).status_code == 401
    fresh = request_token(http, ehr, client_assertion(rsa, "careloop", ehr.token_url)).json()
    headers = {"Authorization": f"Bearer {fresh['access_token']}"}
    assert http.get(f"{ehr.base_url}/Patient", headers=headers).status_code == 200


def test_jwks_url_is_fetched_so_rotated_keys_work(http: httpx.Client) -> None:
    old, new = rsa_key("2024-01"), ec_key("2024-07")
    with jwks_server(public_jwks(old)) as published, TestEHR() as ehr:
        ehr.register_client("careloop", "system/*.cruds", jwks_url=published.url)
        assert request_token(http, ehr, client_assertion(old, "careloop", ehr.token_url)).is_success
        refused = request_token(http, ehr, client_assertion(new, "careloop", ehr.token_url))
        assert_invalid_client(refused, "'2024-07' is not in the client's JWKS")

        published.jwks = public_jwks(old, new)  # roll-over: both keys published
        assert request_token(http, ehr, client_assertion(new, "careloop", ehr.token_url)).is_success
        published.jwks = public_jwks(new)  # old key retired
        retired = request_token(http, ehr, client_assertion(old, "careloop", ehr.token_url))

    assert_invalid_client(retired, "'2024-01' is not in the client's JWKS")
    assert published.fetches == 4
