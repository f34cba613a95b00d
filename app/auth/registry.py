"""The client registry: partner clients in the database (`relais clients …`)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth.scopes import parse_scopes
from app.auth.tables import auth_client, auth_failure

ORGANIZATION_RE = re.compile(r"^Organization/([A-Za-z0-9\-.]{1,64})$")


@dataclass(frozen=True)
class NewClient:
    name: str
    organization: str
    scope: str
    all_beneficiaries: bool = False
    jwks: dict[str, Any] | None = None
    jwks_url: str | None = None
    secret_hash: str | None = None


def check_registration(client: NewClient) -> None:
    """ValueError with a message for the operator when the registration is unusable."""
    if not client.name.strip() or len(client.name) > 200:
        raise ValueError("NAME must be 1 to 200 characters")
    if not ORGANIZATION_RE.match(client.organization):
        raise ValueError("--organization must be Organization/<id>")
    if not client.scope.split():
        raise ValueError("--scope needs at least one scope")
    parse_scopes(client.scope)
    credentials = [client.jwks, client.jwks_url, client.secret_hash]
    if sum(c is not None for c in credentials) != 1:
        raise ValueError("give exactly one of --jwks-url, --jwks-file, --generate-key, --secret")
    if client.jwks_url is not None and not re.match(r"^https?://[^\s/]+", client.jwks_url):
        raise ValueError("--jwks-url must be an http(s) URL")


async def register_client(conn: AsyncConnection, client: NewClient) -> str:
    check_registration(client)
    client_id = str(uuid.uuid4())
    await conn.execute(
        auth_client.insert().values(
            client_id=client_id,
            name=client.name,
            organization=client.organization,
            scope=" ".join(client.scope.split()),
            jwks=json.dumps(client.jwks) if client.jwks is not None else None,
            jwks_url=client.jwks_url,
            secret_hash=client.secret_hash,
            all_beneficiaries=client.all_beneficiaries,
            active=True,
            created_at=datetime.now(UTC),
        )
    )
    return client_id


async def find_client(conn: AsyncConnection, client_id: str) -> Row[Any] | None:
    """The client with its throttling state (failures, locked_until) in one query."""
    stmt = (
        select(
            auth_client,
            auth_failure.c.window_start,
            auth_failure.c.failures,
            auth_failure.c.locked_until,
        )
        .select_from(auth_client.outerjoin(auth_failure))
        .where(auth_client.c.client_id == client_id)
    )
    return (await conn.execute(stmt)).first()


async def is_active(conn: AsyncConnection, client_id: str) -> bool:
    stmt = select(auth_client.c.active).where(auth_client.c.client_id == client_id)
    return bool((await conn.execute(stmt)).scalar())


async def list_clients(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = (await conn.execute(select(auth_client).order_by(auth_client.c.created_at))).all()
    return [
        {
            "client_id": r.client_id,
            "name": r.name,
            "organization": r.organization,
            "scope": r.scope,
            "auth": "client_secret_basic" if r.secret_hash else "private_key_jwt",
            "jwks_url": r.jwks_url,
            "all_beneficiaries": r.all_beneficiaries,
            "active": r.active,
            "created_at": r.created_at.isoformat(),
            "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
        }
        for r in rows
    ]


async def revoke_client(conn: AsyncConnection, client_id: str) -> bool:
    """Deactivate a client: no new token, and its live tokens stop working."""
    result = await conn.execute(
        update(auth_client)
        .where(auth_client.c.client_id == client_id)
        .values(active=False, revoked_at=datetime.now(UTC))
    )
    return bool(result.rowcount)
