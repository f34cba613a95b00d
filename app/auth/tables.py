"""Tables of partner clients, used assertion ids and authentication failures."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    false,
    true,
)

from app.db.base import metadata

auth_client = Table(
    "auth_client",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("organization", String(128), nullable=False),  # "Organization/<id>"
    Column("scope", Text, nullable=False),  # registered scopes, space separated
    Column("jwks", Text),  # inline JWKS as JSON text
    Column("jwks_url", Text),
    Column("secret_hash", String(255)),  # app.auth.secrets.hash_secret
    Column("all_beneficiaries", Boolean, nullable=False, server_default=false()),
    Column("active", Boolean, nullable=False, server_default=true()),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    # Exactly one way to authenticate per client.
    CheckConstraint(
        "(CASE WHEN jwks IS NULL THEN 0 ELSE 1 END)"
        " + (CASE WHEN jwks_url IS NULL THEN 0 ELSE 1 END)"
        " + (CASE WHEN secret_hash IS NULL THEN 0 ELSE 1 END) = 1",
        name="one_credential",
    ),
)

# Assertion ids seen, kept until the assertion expires: a reused (client_id, jti)
# violates the primary key, so replay detection is one INSERT.
auth_jti = Table(
    "auth_jti",
    metadata,
    Column(
        "client_id",
        String(64),
        ForeignKey("auth_client.client_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("jti", String(255), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

# Fixed-window failure counter per client, for throttling token requests.
auth_failure = Table(
    "auth_failure",
    metadata,
    Column(
        "client_id",
        String(64),
        ForeignKey("auth_client.client_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("locked_until", DateTime(timezone=True)),
)
