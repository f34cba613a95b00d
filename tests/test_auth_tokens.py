"""POST /auth/token: SMART Backend Services with real keys and signed assertions."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
import warnings

import httpx
import pytest
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import RSAKey

from app.auth import registry
from app.auth.keys import public_jwks
from app.auth.secrets import hash_secret, new_secret
from app.auth.service import AuthService
from tests import auth_support
from tests.auth_support import TOKEN_URL, assertion, new_key, register, token_form

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # authlib announces a future rename of its httpx module
    from authlib.integrations.httpx_client import AsyncOAuth2Client

SCOPE = "system/Patient.rs system/Observation.cruds"
jwks_server = auth_support.jwks_server  # fixture


async def token_request(client: httpx.AsyncClient, form: dict[str, str], **kw) -> httpx.Response:
    return await client.post("/auth/token", data=form, auth=None, **kw)


def assert_invalid_client(r: httpx.Response, hint: str = "") -> None:
    assert r.status_code in (400, 401), r.text
    body = r.json()
    assert body["error"] == "invalid_client", body
    assert hint.lower() in body["error_description"].lower(), body
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("kind", ["RS384", "ES384"])
async def test_private_key_jwt_issues_a_signed_short_token(backend, client, kind):
    client_id, key = await register(
        backend.app, organization="Organization/relais-admin", scope=SCOPE, key=new_key(kind)
    )
    r = await token_request(client, token_form(assertion(key, client_id), "system/Patient.rs"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"].lower() == "bearer"
    assert 0 < body["expires_in"] <= 300
    assert body["scope"] == "system/Patient.rs"
    assert r.headers["cache-control"] == "no-store"

    # A JWT signed with the key published at /auth/jwks, for this server, short-lived.
    keys = (await client.get("/auth/jwks", auth=None)).json()
    server_key = RSAKey.import_key(keys["keys"][0])
    token = jwt.decode(body["access_token"], server_key, algorithms=["RS384"])
    assert token.header["alg"] == "RS384" and token.header["kid"] == keys["keys"][0]["kid"]
    claims = token.claims
    assert claims["client_id"] == client_id and claims["sub"] == client_id
    assert claims["aud"] == "http://relais.test/fhir" and claims["iss"] == "http://relais.test"
    assert claims["exp"] - claims["iat"] <= 300
    assert claims["scope"] == "system/Patient.rs"

    headers = {"Authorization": f"Bearer {body['access_token']}"}
    r = await client.get("/fhir/Patient?_count=1", headers=headers, auth=None)
    assert r.status_code == 200, r.text


async def test_authlib_client_gets_a_token(backend, client):
    """Interoperability: authlib's own OAuth2 client with private_key_jwt (RS384)."""
    client_id, key = await register(
        backend.app, organization="Organization/relais-admin", scope=SCOPE, key=new_key("RS384")
    )

    class FreshAssertion(PrivateKeyJWT):
        # SMART wants exp ≤ 5 min and a new jti per assertion.
        def sign(self, auth, token_endpoint):
            self.claims = {"exp": int(time.time()) + 240, "jti": uuid.uuid4().hex}
            return super().sign(auth, token_endpoint)

    auth_method = FreshAssertion(TOKEN_URL, alg="RS384", headers={"kid": key.thumbprint()})
    async with AsyncOAuth2Client(
        client_id=client_id,
        client_secret=key,
        token_endpoint_auth_method=auth_method,
        scope="system/Observation.rs",
        transport=client._transport,
        base_url="http://relais.test",
    ) as oauth:
        token = await oauth.fetch_token(TOKEN_URL, grant_type="client_credentials")
        assert token["scope"] == "system/Observation.rs"
        again = await oauth.fetch_token(TOKEN_URL, grant_type="client_credentials")
        assert again["access_token"] != token["access_token"]
        r = await oauth.get("/fhir/Observation?_count=1")
        assert r.status_code == 200, r.text


async def test_client_secret_basic(backend, client):
    secret = new_secret()
    new = registry.NewClient(
        name="basic",
        organization="Organization/relais-admin",
        scope=SCOPE,
        secret_hash=hash_secret(secret),
    )
    async with backend.app.state.relais.engine.begin() as conn:
        client_id = await registry.register_client(conn, new)
    form = {"grant_type": "client_credentials", "scope": "system/Patient.rs"}
    r = await client.post("/auth/token", data=form, auth=(client_id, secret))
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "system/Patient.rs"
    r = await client.post("/auth/token", data=form, auth=(client_id, secret + "x"))
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic")
    # The key-based method is not accepted for a secret client, nor the reverse.
    r = await token_request(
        client, token_form(assertion(new_key(), client_id), "system/Patient.rs")
    )
    assert_invalid_client(r)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned_parts(header: dict, client_id: str) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": now + 200,
        "jti": uuid.uuid4().hex,
    }
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


def _hs256_with_public_key(key: RSAKey, client_id: str) -> str:
    """The classic confusion attack: HMAC keyed with the client's public key PEM."""
    signing_input = _unsigned_parts({"alg": "HS256", "kid": key.thumbprint()}, client_id)
    mac = hmac.new(key.as_pem(private=False), signing_input.encode(), hashlib.sha256)
    return f"{signing_input}.{_b64(mac.digest())}"


def _alg_none(key: RSAKey, client_id: str) -> str:
    return _unsigned_parts({"alg": "none", "kid": key.thumbprint()}, client_id) + "."


def without_alg(key: RSAKey) -> RSAKey:
    return RSAKey.import_key({k: v for k, v in key.as_dict(private=True).items() if k != "alg"})


async def test_rejected_assertions_are_invalid_client(backend, client):
    key = new_key("RS384")
    client_id, _ = await register(
        backend.app, organization="Organization/relais-admin", scope=SCOPE, key=key
    )
    other = new_key("RS384")
    now = int(time.time())
    cases = {
        "wrong signature": assertion(other, client_id, kid=key.thumbprint()),
        "unknown kid": assertion(key, client_id, kid="not-a-registered-kid"),
        "alg none": _alg_none(key, client_id),
        "HS256 with the public key": _hs256_with_public_key(key, client_id),
        "expired": assertion(key, client_id, exp=now - 120, iat=now - 400),
        "too long-lived": assertion(key, client_id, exp=now + 3600),
        "wrong aud": assertion(key, client_id, aud="http://relais.test/fhir"),
        "iss differs from sub": assertion(key, client_id, sub="someone-else"),
        "no jti": assertion(key, client_id, jti=None),
        "alg PS384": assertion(without_alg(key), client_id, alg="PS384"),
    }
    for label, signed in cases.items():
        r = await token_request(client, token_form(signed, "system/Patient.rs"))
        assert_invalid_client(r), label

    # iss ≠ client_id: the assertion of one client presented as another's.
    client_b, key_b = await register(
        backend.app, organization="Organization/relais-admin", scope=SCOPE
    )
    form = token_form(assertion(key_b, client_b), "system/Patient.rs")
    form["client_id"] = client_id
    assert_invalid_client(await token_request(client, form), "client_id")
    forged = assertion(key_b, client_id, kid=key_b.thumbprint())
    assert_invalid_client(await token_request(client, token_form(forged, "system/Patient.rs")))

    # A jti is good once.
    signed = assertion(key_b, client_b)
    assert (await token_request(client, token_form(signed, "system/Patient.rs"))).status_code == 200
    r = await token_request(client, token_form(signed, "system/Patient.rs"))
    assert_invalid_client(r, "already been used")


async def test_unknown_client_and_missing_authentication(client):
    key = new_key()
    r = await token_request(client, token_form(assertion(key, "no-such-client"), "system/*.rs"))
    assert_invalid_client(r, "unknown")
    r = await token_request(client, {"grant_type": "client_credentials", "scope": "system/*.rs"})
    assert_invalid_client(r, "no client authentication")
    form = token_form(assertion(key, "x"), "system/*.rs")
    form["grant_type"] = "authorization_code"
    r = await token_request(client, form)
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = await client.post("/auth/token", json={"grant_type": "client_credentials"}, auth=None)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


async def test_scopes_granted_as_the_intersection(backend, client):
    client_id, key = await register(
        backend.app, organization="Organization/relais-admin", scope="system/*.rs system/Task.cru"
    )

    async def ask(scope: str) -> httpx.Response:
        return await token_request(client, token_form(assertion(key, client_id), scope))

    r = await ask("system/Patient.r system/Task.cu system/Task.d")
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "system/Patient.r system/Task.cu"  # Task.d dropped
    r = await ask("system/*.cruds")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = await ask("system/*.read")
    assert r.status_code == 200 and r.json()["scope"] == "system/*.read"
    r = await ask("patient/*.rs")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = await ask("")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


async def test_repeated_failures_are_throttled(backend, client):
    client_id, key = await register(
        backend.app, organization="Organization/relais-admin", scope=SCOPE
    )
    wrong = new_key()
    limit = AuthService.FAIL_LIMIT
    for _ in range(limit):
        form = token_form(assertion(wrong, client_id, kid=key.thumbprint()), "system/Patient.rs")
        assert_invalid_client(await token_request(client, form))
    # Locked now, even with a correct assertion.
    r = await token_request(client, token_form(assertion(key, client_id), "system/Patient.rs"))
    assert r.status_code == 429, r.text
    assert r.json()["error"] == "invalid_client"
    assert 0 < int(r.headers["retry-after"]) <= AuthService.LOCK_SECONDS
    # Another client is not affected.
    other_id, other_key = await register(
        backend.app, organization="Organization/relais-admin", scope=SCOPE
    )
    form = token_form(assertion(other_key, other_id), "system/Patient.rs")
    assert (await token_request(client, form)).status_code == 200


async def test_jwks_url_is_cached_as_cache_control_says(backend, client, jwks_server):
    key = new_key("ES384")
    jwks_server.jwks = public_jwks(key)
    jwks_server.cache_control = "max-age=600"
    url = f"{jwks_server.url}/{uuid.uuid4().hex}/jwks.json"
    client_id, _ = await register(
        backend.app, organization="Organization/relais-admin", scope=SCOPE, key=key, jwks_url=url
    )
    for _ in range(3):
        r = await token_request(client, token_form(assertion(key, client_id), "system/Patient.rs"))
        assert r.status_code == 200, r.text
    assert jwks_server.hits[url] == 1

    url = f"{jwks_server.url}/{uuid.uuid4().hex}/jwks.json"
    jwks_server.cache_control = "no-store"
    client_id, _ = await register(
        backend.app, organization="Organization/relais-admin", scope=SCOPE, key=key, jwks_url=url
    )
    for _ in range(3):
        r = await token_request(client, token_form(assertion(key, client_id), "system/Patient.rs"))
        assert r.status_code == 200, r.text
    assert jwks_server.hits[url] == 3


async def test_concurrent_replays_win_once(backend, client):
    client_id, key = await register(
        backend.app, organization="Organization/relais-admin", scope=SCOPE
    )
    signed = assertion(key, client_id)
    results = await asyncio.gather(
        *[token_request(client, token_form(signed, "system/Patient.rs")) for _ in range(5)]
    )
    assert sorted(r.status_code for r in results) == [200, 400, 400, 400, 400]
