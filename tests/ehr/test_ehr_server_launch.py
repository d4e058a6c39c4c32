"""SMART App Launch (authorization code + PKCE) against the test EHR, over real HTTP."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from ehr_server import TestEHR
from ehr_server.helpers import pkce_pair
from joserfc import jwt
from joserfc.jwk import KeySet

REDIRECT = "https://careloop.example/launch/callback"
APP_SCOPES = "launch launch/patient openid fhirUser offline_access user/*.rs patient/*.rs"


@pytest.fixture
def ehr(ehr: TestEHR) -> TestEHR:
    """The test EHR with careloop registered as a public and a confidential launch app."""
    ehr.register_app("careloop-app", [REDIRECT], APP_SCOPES)
    ehr.register_app("careloop-conf", [REDIRECT], APP_SCOPES, client_secret="s3cret")
    return ehr


@pytest.fixture
def chart(ehr: TestEHR) -> dict[str, Any]:
    return ehr.seed({"resourceType": "Patient", "name": [{"family": "Synthetic"}]})


def authorize(
    http: httpx.Client, ehr: TestEHR, challenge: str, **overrides: str | None
) -> httpx.Response:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": "careloop-app",
        "redirect_uri": REDIRECT,
        "scope": "launch/patient patient/*.rs",
        "state": "state-0123456789abcdef",
        "aud": ehr.base_url,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **overrides,
    }
    return http.get(ehr.authorize_url, params={k: v for k, v in params.items() if v is not None})


def redirect_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def exchange(
    http: httpx.Client, ehr: TestEHR, code: str, verifier: str, **overrides: str
) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        "client_id": "careloop-app",
        **overrides,
    }
    return http.post(ehr.token_url, data=form)


def test_ehr_launch_carries_patient_encounter_and_user(
    ehr: TestEHR, http: httpx.Client, chart: dict[str, Any]
) -> None:
    launch = ehr.create_launch(chart["id"], encounter_id="enc-1", user="Practitioner/dr-1")
    verifier, challenge = pkce_pair()

    back = redirect_params(
        authorize(
            http,
            ehr,
            challenge,
            launch=launch,
            scope="launch openid fhirUser user/*.rs",
            nonce="n-1",
        )
    )
    response = exchange(http, ehr, back["code"], verifier)

    assert back["state"] == "state-0123456789abcdef"
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    token = response.json()
    assert token["patient"] == chart["id"]
    assert token["encounter"] == "enc-1"
    assert token["scope"] == "launch openid fhirUser user/*.rs"
    assert token["token_type"] == "bearer"
    assert token["expires_in"] == 300
    keys = KeySet.import_key_set(http.get(ehr.jwks_url).json())
    id_token = jwt.decode(token["id_token"], keys, algorithms=["RS256"])
    assert id_token.claims["fhirUser"] == f"{ehr.base_url}/Practitioner/dr-1"
    assert id_token.claims["aud"] == "careloop-app"
    assert id_token.claims["nonce"] == "n-1"
    read = http.get(
        f"{ehr.base_url}/Patient/{chart['id']}",
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert read.status_code == 200


def test_standalone_launch_selects_the_default_patient(
    ehr: TestEHR, http: httpx.Client, chart: dict[str, Any]
) -> None:
    ehr.set_standalone_patient(chart["id"])
    verifier, challenge = pkce_pair()

    back = redirect_params(authorize(http, ehr, challenge))
    token = exchange(http, ehr, back["code"], verifier).json()

    assert token["patient"] == chart["id"]
    assert "encounter" not in token
    assert "id_token" not in token


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"aud": "https://other-ehr.example/fhir"}, "invalid_request"),
        ({"scope": "user/*.cruds"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"launch": "never-issued", "scope": "launch user/*.rs"}, "invalid_request"),
    ],
    ids=[
        "plain-pkce",
        "no-pkce-method",
        "wrong-aud",
        "scope-not-registered",
        "implicit",
        "bad-launch",
    ],
)
def test_bad_authorize_requests_redirect_with_an_error(
    ehr: TestEHR, http: httpx.Client, overrides: dict[str, str | None], error: str
) -> None:
    ehr.set_standalone_patient("any")
    _, challenge = pkce_pair()

    back = redirect_params(authorize(http, ehr, challenge, **overrides))

    assert back["error"] == error
    assert back["state"] == "state-0123456789abcdef"
    assert "code" not in back


def test_missing_state_is_refused(ehr: TestEHR, http: httpx.Client) -> None:
    ehr.set_standalone_patient("any")
    _, challenge = pkce_pair()

    back = redirect_params(authorize(http, ehr, challenge, state=None))

    assert back["error"] == "invalid_request"
    assert "code" not in back


@pytest.mark.parametrize(
    "overrides",
    [{"redirect_uri": "https://evil.example/callback"}, {"client_id": "unknown-app"}],
)
def test_unregistered_redirect_or_client_is_not_redirected(
    ehr: TestEHR, http: httpx.Client, overrides: dict[str, str]
) -> None:
    _, challenge = pkce_pair()

    response = authorize(http, ehr, challenge, **overrides)

    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.json()["error"] == "invalid_request"


def test_wrong_code_verifier_is_refused_and_burns_the_code(
    ehr: TestEHR, http: httpx.Client, chart: dict[str, Any]
) -> None:
    ehr.set_standalone_patient(chart["id"])
    verifier, challenge = pkce_pair()
    other_verifier, _ = pkce_pair()
    code = redirect_params(authorize(http, ehr, challenge))["code"]

    wrong = exchange(http, ehr, code, other_verifier)
    right_too_late = exchange(http, ehr, code, verifier)

    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    assert right_too_late.json()["error"] == "invalid_grant"


def test_token_request_redirect_uri_must_match(
    ehr: TestEHR, http: httpx.Client, chart: dict[str, Any]
) -> None:
    ehr.set_standalone_patient(chart["id"])
    verifier, challenge = pkce_pair()
    code = redirect_params(authorize(http, ehr, challenge))["code"]

    response = exchange(http, ehr, code, verifier, redirect_uri="https://careloop.example/other")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_code_is_single_use(ehr: TestEHR, http: httpx.Client, chart: dict[str, Any]) -> None:
    ehr.set_standalone_patient(chart["id"])
    verifier, challenge = pkce_pair()
    code = redirect_params(authorize(http, ehr, challenge))["code"]

    first = exchange(http, ehr, code, verifier)
    second = exchange(http, ehr, code, verifier)

    assert first.status_code == 200
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    assert ehr.issued_tokens == 1


def test_confidential_app_must_authenticate_with_basic(
    ehr: TestEHR, http: httpx.Client, chart: dict[str, Any]
) -> None:
    ehr.set_standalone_patient(chart["id"])
    verifier, challenge = pkce_pair()
    first_code = redirect_params(authorize(http, ehr, challenge, client_id="careloop-conf"))["code"]
    second_code = redirect_params(authorize(http, ehr, challenge, client_id="careloop-conf"))[
        "code"
    ]

    anonymous = exchange(http, ehr, first_code, verifier, client_id="careloop-conf")
    form = {
        "grant_type": "authorization_code",
        "code": second_code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    authenticated = http.post(ehr.token_url, data=form, auth=("careloop-conf", "s3cret"))

    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "invalid_client"
    assert authenticated.status_code == 200
    assert authenticated.json()["patient"] == chart["id"]


def test_offline_access_gives_a_refresh_token(
    ehr: TestEHR, http: httpx.Client, chart: dict[str, Any]
) -> None:
    ehr.set_standalone_patient(chart["id"])
    verifier, challenge = pkce_pair()
    scope = "launch/patient offline_access patient/*.rs"
    code = redirect_params(authorize(http, ehr, challenge, scope=scope))["code"]
    first = exchange(http, ehr, code, verifier).json()

    refreshed = http.post(
        ehr.token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": "careloop-app",
        },
    )

    assert refreshed.status_code == 200
    assert refreshed.json()["patient"] == chart["id"]
    assert refreshed.json()["access_token"] != first["access_token"]
