"""The demo's partner clients: one per organisation, its private key in ./demo-keys/.

Idempotent like the case: a client already registered under its demo name, whose key
file is still at hand, is kept. When the key file is gone the old client is revoked and
a new one registered, since nobody can authenticate as it any more.
"""

from __future__ import annotations

import json
import shlex
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth.keys import generate_client_key
from app.auth.registry import NewClient, find_client, list_clients, register_client, revoke_client
from app.resources.demo import DEMO_PARTNERS
from app.state import AppState

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 300


@dataclass
class DemoClient:
    name: str
    client_id: str
    organization: str
    scope: str
    key_file: Path
    created: bool


async def register_demo_clients(state: AppState, keys_dir: Path) -> list[DemoClient]:
    clients = []
    async with state.gate(True), state.engine.begin() as conn:
        active = {c["name"]: c for c in await list_clients(conn) if c["active"]}
        for partner in DEMO_PARTNERS:
            name = partner["name"]
            key_file = keys_dir / f"{name}.key.pem"
            organization = f"Organization/{partner['organization_id']}"
            scope = " ".join(partner["scopes"])
            found = active.get(name)
            if found is not None and await _has_key(conn, found["client_id"], key_file):
                clients.append(
                    DemoClient(
                        name, found["client_id"], organization, found["scope"], key_file, False
                    )
                )
                continue
            if found is not None:
                await revoke_client(conn, found["client_id"])
            key_file, jwks = generate_client_key(keys_dir, name, "RS384", overwrite=True)
            new = NewClient(
                name=name,
                organization=organization,
                scope=scope,
                all_beneficiaries=partner["all_beneficiaries"],
                jwks=jwks,
            )
            client_id = await register_client(conn, new)
            clients.append(DemoClient(name, client_id, organization, scope, key_file, True))
    return clients


async def find_demo_client(state: AppState, name: str, keys_dir: Path) -> DemoClient | None:
    async with state.engine.connect() as conn:
        for found in await list_clients(conn):
            if found["name"] == name and found["active"]:
                key_file = keys_dir / f"{name}.key.pem"
                return DemoClient(
                    name, found["client_id"], found["organization"], found["scope"], key_file, False
                )
    return None


async def _has_key(conn: AsyncConnection, client_id: str, key_file: Path) -> bool:
    """True when the key file holds the private half of a key the client registered."""
    if not key_file.is_file():
        return False
    row = await find_client(conn, client_id)
    if row is None or not row.jwks:
        return False
    kids = {k.get("kid") for k in json.loads(row.jwks).get("keys", [])}
    return _import(key_file).thumbprint() in kids


def _import(key_file: Path) -> RSAKey | ECKey:
    pem = key_file.read_bytes()
    try:
        return RSAKey.import_key(pem)
    except Exception:
        return ECKey.import_key(pem)


def client_assertion(client: DemoClient, token_url: str) -> str:
    key = _import(client.key_file)
    alg = "RS384" if isinstance(key, RSAKey) else "ES384"
    now = int(time.time())
    claims = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": token_url,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME,
        "jti": str(uuid.uuid4()),
    }
    header = {"alg": alg, "kid": key.thumbprint(), "typ": "JWT"}
    return jwt.encode(header, claims, key, algorithms=[alg])


def token_request(client: DemoClient, token_url: str) -> str:
    """A curl command asking for an access token (its assertion lives five minutes)."""
    lines = [
        f"curl -s -X POST {shlex.quote(token_url)}",
        "-d grant_type=client_credentials",
        f"--data-urlencode {shlex.quote('scope=' + client.scope)}",
        f"-d client_assertion_type={ASSERTION_TYPE}",
        f"-d client_assertion={client_assertion(client, token_url)}",
    ]
    return " \\\n  ".join(lines)
