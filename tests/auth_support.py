"""Partner clients for the tests: real keys, real signed assertions, real tokens.

Clients are registered in the test database with the same code as `relais clients add`;
tokens come from POST /auth/token over HTTP (private_key_jwt), and `TokenAuth` renews
them before they expire, so session-long clients keep working.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, Generator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from app.auth import registry
from app.auth.keys import SigningKey, public_jwks

BASE = "http://relais.test"
TOKEN_URL = f"{BASE}/auth/token"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FHIR = {"Content-Type": "application/fhir+json"}


def new_key(kind: str = "ES384") -> SigningKey:
    """A partner key: ES384 (P-384) or RS384 (RSA 2048, quick to generate)."""
    if kind == "ES384":
        key: SigningKey = ECKey.generate_key("P-384", {"alg": "ES384", "use": "sig"})
    else:
        key = RSAKey.generate_key(2048, {"alg": "RS384", "use": "sig"})
    return key


def assertion(
    key: SigningKey,
    client_id: str,
    *,
    alg: str | None = None,
    kid: str | None = None,
    header: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A signed client assertion; keyword arguments override or (None) drop claims."""
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": now + 240,
        "iat": now,
        "jti": uuid.uuid4().hex,
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    alg = alg or ("ES384" if isinstance(key, ECKey) else "RS384")
    head = {"alg": alg, "kid": kid or key.thumbprint(), **(header or {})}
    return jwt.encode(head, body, key, algorithms=[alg])


def token_form(signed: str, scope: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": JWT_BEARER,
        "client_assertion": signed,
    }


class TokenAuth(httpx.Auth):
    """Bearer auth that fetches (and renews, 30 s early or after a 401) a token."""

    def __init__(self, key: SigningKey, client_id: str, scope: str) -> None:
        self.key = key
        self.client_id = client_id
        self.scope = scope
        self.token = ""
        self.expires = 0.0

    def _token_request(self) -> httpx.Request:
        form = token_form(assertion(self.key, self.client_id), self.scope)
        return httpx.Request("POST", TOKEN_URL, data=form)

    def _store(self, response: httpx.Response) -> None:
        body = response.json()
        if response.status_code != 200:
            raise RuntimeError(f"token request failed: {response.status_code} {body}")
        self.token = body["access_token"]
        self.expires = time.monotonic() + body["expires_in"]

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("TokenAuth is for httpx.AsyncClient")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if not self.token or time.monotonic() > self.expires - 30:
            response = yield self._token_request()
            await response.aread()
            self._store(response)
        request.headers["Authorization"] = f"Bearer {self.token}"
        response = yield request
        if response.status_code == 401:
            token_response = yield self._token_request()
            await token_response.aread()
            self._store(token_response)
            request.headers["Authorization"] = f"Bearer {self.token}"
            yield request


@dataclass
class Partner:
    client_id: str
    organization: str
    scope: str
    key: SigningKey
    http: httpx.AsyncClient

    @property
    def org_id(self) -> str:
        return self.organization.split("/", 1)[1]


async def register(
    app: Any,
    *,
    organization: str,
    scope: str,
    all_beneficiaries: bool = False,
    key: SigningKey | None = None,
    jwks_url: str | None = None,
    name: str = "partner",
) -> tuple[str, SigningKey]:
    """Register a private_key_jwt client in the app's database (inline JWKS or URL)."""
    key = key or new_key()
    client = registry.NewClient(
        name=name,
        organization=organization,
        scope=scope,
        all_beneficiaries=all_beneficiaries,
        jwks=None if jwks_url else public_jwks(key),
        jwks_url=jwks_url,
    )
    async with app.state.relais.engine.begin() as conn:
        client_id = await registry.register_client(conn, client)
    return client_id, key


async def register_admin(app: Any) -> TokenAuth:
    """The suite's administrative client: every scope, every beneficiary."""
    scope = "system/*.cruds"
    client_id, key = await register(
        app,
        organization="Organization/relais-admin",
        scope=scope,
        all_beneficiaries=True,
        name="test-admin",
    )
    return TokenAuth(key, client_id, scope)


async def partner(
    backend: Any,
    scope: str,
    *,
    org_id: str | None = None,
    all_beneficiaries: bool = False,
    key_type: str = "ES384",
) -> Partner:
    """A partner client of a (created if needed) Organization, with its own HTTP client."""
    org_id = org_id or f"org-{uuid.uuid4().hex[:10]}"
    admin = backend.client
    r = await admin.get(f"/fhir/Organization/{org_id}")
    if r.status_code != 200:
        body = {"resourceType": "Organization", "id": org_id, "name": org_id, "active": True}
        r = await admin.put(f"/fhir/Organization/{org_id}", json=body, headers=FHIR)
        assert r.status_code in (200, 201), r.text
    organization = f"Organization/{org_id}"
    client_id, key = await register(
        backend.app,
        organization=organization,
        scope=scope,
        all_beneficiaries=all_beneficiaries,
        key=new_key(key_type),
    )
    http = httpx.AsyncClient(
        transport=admin._transport,
        base_url=BASE,
        auth=TokenAuth(key, client_id, scope),
    )
    return Partner(client_id, organization, scope, key, http)


@dataclass
class JwksServer:
    """A real HTTP server on 127.0.0.1 publishing a partner's JWKS."""

    url: str
    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    cache_control: str = "max-age=300"
    hits: Counter[str] = field(default_factory=Counter)


@pytest.fixture(scope="session")
def jwks_server() -> Iterator[JwksServer]:
    state = JwksServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits[f"{state.url}{self.path}"] += 1
            body = json.dumps(state.jwks).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", state.cache_control)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
