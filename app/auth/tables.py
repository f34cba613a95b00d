"""Tables of partner clients, used assertion ids and authentication failures."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    false,
    true,
)

from app.db.base import metadata
from app.db.tables import UTCDateTime

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
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime()),
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
    Column("expires_at", UTCDateTime(), nullable=False, index=True),
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
    Column("window_start", UTCDateTime(), nullable=False),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("locked_until", UTCDateTime()),
)

# Who may see which domain of which beneficiary, and when: the access rule's only table.
# Rebuilt for a beneficiary whenever one of its EpisodeOfCare, CareTeam or Consent
# changes; validity is compared with the clock in SQL, so a period ends by itself.
access_grant = Table(
    "access_grant",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("beneficiary", String(64), nullable=False),
    Column("organization", String(128), nullable=False),  # "Organization/<id>"
    Column("domain", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # manage | consent
    Column("valid_from", UTCDateTime()),  # NULL: since always
    Column("valid_to", UTCDateTime()),  # NULL: until further notice; exclusive
    Column("source", String(200), nullable=False),  # the resource that grants it
    Index("ix_access_grant_org", "organization", "beneficiary", "domain"),
    Index("ix_access_grant_beneficiary", "beneficiary"),
)
