"""Resource storage: every version, plus the current version of each resource."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

from app.db.base import metadata


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on both databases (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL wants BIGINT.
SeqType = BigInteger().with_variant(Integer(), "sqlite")

# One row per version, never updated: history, vread and the global change order (seq).
resource_version = Table(
    "resource_version",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", UTCDateTime(), nullable=False),
    Column("method", String(8), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", Text, nullable=True),
    Column("beneficiary", String(64), nullable=True),
    Column("domain", String(32), nullable=True),
    UniqueConstraint("type", "res_id", "version", name="uq_resource_version_key"),
    Index("ix_resource_version_type_seq", "type", "seq"),
    Index("ix_resource_version_last_updated", "last_updated"),
)

# The latest version of each resource; what reads and searches serve from.
resource_current = Table(
    "resource_current",
    metadata,
    Column("type", String(64), primary_key=True),
    Column("res_id", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("last_updated", UTCDateTime(), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", Text, nullable=True),
    Column("beneficiary", String(64), nullable=True),
    Column("domain", String(32), nullable=True),
    Column("created_seq", SeqType, nullable=False),
    Column("seq", SeqType, nullable=False),
    Index("ix_resource_current_type_last_updated", "type", "last_updated"),
    Index("ix_resource_current_beneficiary", "beneficiary", "domain"),
)
