"""SMART configuration, JWKS, introspection, CapabilityStatement security, and the
bearer-token requirement on every FHIR and adapter route (401 + WWW-Authenticate)."""

from __future__ import annotations

import time

import pytest
from joserfc import jwt

from app.auth.keys import public_jwk
from app.auth.tokens import issue_access_token
from tests.auth_support import new_key, partner

PROTECTED = [
    ("GET", "/fhir/Patient"),
    ("GET", "/fhir/Patient/x"),
    ("GET", "/fhir/Patient/x/_history/1"),
    ("GET", "/fhir/_history"),
    ("GET", "/fhir?_type=Patient"),
    ("POST", "/fhir/Patient"),
    ("POST", "/fhir"),
    ("PUT", "/fhir/Patient/x"),
    ("DELETE", "/fhir/Patient/x"),
    ("GET", "/fhir/Patient/x/$everything"),
    ("GET", "/adapters/insurer/claims/C1/status"),
    ("POST", "/adapters/hospital/hl7v2"),
]


async def test_smart_configuration_is_public_and_complete(client):
    r = await client.get("/fhir/.well-known/smart-configuration", auth=None)
    assert r.status_code == 200, r.text
    conf = r.json()
    assert conf["token_endpoint"] == "http://relais.test/auth/token"
    assert conf["jwks_uri"] == "http://relais.test/auth/jwks"
    assert conf["introspection_endpoint"] == "http://relais.test/auth/introspect"
    assert conf["grant_types_supported"] == ["client_credentials"]
    assert set(conf["token_endpoint_auth_methods_supported"]) == {
        "private_key_jwt",
        "client_secret_basic",
    }
    assert set(conf["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert "system/*.rs" in conf["scopes_supported"]
    assert {"client-confidential-asymmetric", "permission-v1", "permission-v2"} <= set(
        conf["capabilities"]
    )


async def test_jwks_and_capability_statement(client):
    r = await client.get("/auth/jwks", auth=None)
    assert r.status_code == 200
    (key,) = r.json()["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS384" and key["use"] == "sig"
    assert "d" not in key and "p" not in key

    r = await client.get("/fhir/metadata", auth=None)
    assert r.status_code == 200
    security = r.json()["rest"][0]["security"]
    coding = security["service"][0]["coding"][0]
    assert coding["code"] == "SMART-on-FHIR"
    assert coding["system"] == "http://terminology.hl7.org/CodeSystem/restful-security-service"
    (uris,) = [
        e
        for e in security["extension"]
        if e["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    ]
    found = {e["url"]: e["valueUri"] for e in uris["extension"]}
    assert found["token"] == "http://relais.test/auth/token"
    assert found["introspect"] == "http://relais.test/auth/introspect"


async def test_introspection(backend, client):
    hospital = await partner(backend, "system/Patient.rs")
    r = await hospital.http.get("/fhir/Patient?_count=1")
    assert r.status_code == 200
    token = hospital.http.auth.token
    form = {"token": token}
    r = await hospital.http.post("/auth/introspect", data=form)
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["active"] is True
    assert info["client_id"] == hospital.client_id
    assert info["scope"] == "system/Patient.rs"
    assert info["exp"] - info["iat"] <= 300
    # Another partner learns nothing about a token that is not its own; the admin does.
    other = await partner(backend, "system/Patient.rs")
    await other.http.get("/fhir/Patient?_count=1")
    r = await other.http.post("/auth/introspect", data=form)
    assert r.json() == {"active": False}
    r = await client.post("/auth/introspect", data=form)
    assert r.json()["active"] is True
    r = await client.post("/auth/introspect", data={"token": "garbage"})
    assert r.json() == {"active": False}
    r = await client.post("/auth/introspect", data=form, auth=None)
    assert r.status_code == 401


@pytest.mark.parametrize("method,path", PROTECTED)
async def test_missing_token_is_401(client, method, path):
    r = await client.request(method, path, auth=None)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_bad_tokens_are_401(backend, client):
    service = backend.app.state.relais_auth
    now = time.time()
    common = {
        "issuer": service.issuer,
        "audience": service.audience,
        "client_id": "someone",
        "organization": "Organization/x",
        "scope": "system/*.cruds",
        "all_beneficiaries": True,
    }
    expired, _ = issue_access_token(service.key, now=now - 600, **common)
    forged, _ = issue_access_token(new_key("RS384"), now=now, **common)
    other_audience, _ = issue_access_token(
        service.key, now=now, **{**common, "audience": "http://elsewhere/fhir"}
    )
    # A token with a valid signature but from a kid the server does not use.
    stranger = new_key("RS384")
    header = {"alg": "RS384", "kid": public_jwk(service.key)["kid"], "typ": "at+jwt"}
    claims = {"iss": service.issuer, "aud": service.audience, "exp": int(now) + 60}
    wrong_key_same_kid = jwt.encode(header, claims, stranger, algorithms=["RS384"])
    cases = {
        "expired": expired,
        "signed by another key": forged,
        "wrong key, server kid": wrong_key_same_kid,
        "other audience": other_audience,
        "malformed": "not-a-jwt",
        "three garbage parts": "a.b.c",
    }
    for label, token in cases.items():
        r = await client.get(
            "/fhir/Patient", headers={"Authorization": f"Bearer {token}"}, auth=None
        )
        assert r.status_code == 401, label
        challenge = r.headers["www-authenticate"]
        assert challenge.startswith("Bearer") and 'error="invalid_token"' in challenge, label
        assert r.json()["resourceType"] == "OperationOutcome"
    r = await client.get("/fhir/Patient", headers={"Authorization": "Basic abc"}, auth=None)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")


async def test_public_routes_need_no_token(client):
    for path in ("/fhir/metadata", "/fhir/.well-known/smart-configuration", "/auth/jwks"):
        assert (await client.get(path, auth=None)).status_code == 200, path
    assert (await client.get("/healthz", auth=None)).status_code == 200
    assert (await client.get("/readyz", auth=None)).status_code == 200
