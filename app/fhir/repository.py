"""Versioned storage. Every query takes the caller's row filter; writes are one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Select, and_, bindparam, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import raw
from app.db.tables import resource_current as cur
from app.db.tables import resource_version as ver
from app.fhir.context import Context, Stored, held, take_held


@dataclass
class Current:
    version: int
    deleted: bool
    content: str | None
    visible: bool
    last_updated: datetime


def now_utc() -> datetime:
    return datetime.now(UTC)


def instant(ts: datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def read_current(
    ctx: Context, resource_type: str, res_id: str, interaction: str = "read"
) -> Any:
    """The current row when visible to the caller (deleted rows included)."""
    await settle(ctx)
    visible = ctx.policy.row_filter(cur, resource_type, interaction)
    stmt = _cached(_READ_CURRENT, visible)
    return await raw.first(ctx.conn, stmt, {"rtype": resource_type, "rid": res_id})


async def read_version(ctx: Context, resource_type: str, res_id: str, version: int) -> Any:
    await settle(ctx)
    visible = ctx.policy.row_filter(ver, resource_type, "vread")
    stmt = _cached(_READ_VERSION, visible)
    params = {"rtype": resource_type, "rid": res_id, "vid": version}
    return await raw.first(ctx.conn, stmt, params)


# The hottest statements, built once per access filter and run on the driver
# connection (app/db/raw.py). Policies hand out the same filter object for the same
# caller, type and interaction.
def _param(name: str) -> Any:
    # Values come with each call; none is compiled in (see app/db/raw.py).
    return bindparam(name, required=False)


_READ_CURRENT = select(cur.c.version, cur.c.deleted, cur.c.content, cur.c.last_updated).where(
    cur.c.type == _param("rtype"),
    cur.c.res_id == _param("rid"),
)
_READ_VERSION = select(ver.c.version, ver.c.deleted, ver.c.content, ver.c.last_updated).where(
    ver.c.type == _param("rtype"),
    ver.c.res_id == _param("rid"),
    ver.c.version == _param("vid"),
)
_STATEMENTS = raw.IdentityCache()


def _cached(base: Select[Any], visible: ColumnElement[bool]) -> Select[Any]:
    stmt: Select[Any] = _STATEMENTS.get((base, visible), lambda: base.where(visible))
    return stmt


async def lock_current(
    ctx: Context, resource_type: str, res_id: str, interaction: str
) -> Current | None:
    """Lock the current row for a write (PostgreSQL row lock; SQLite has one writer)."""
    await settle(ctx)
    visible = ctx.policy.row_filter(cur, resource_type, interaction)
    stmt = select(
        cur.c.version,
        cur.c.deleted,
        cur.c.content,
        cur.c.last_updated,
        visible.label("visible"),
    ).where(cur.c.type == resource_type, cur.c.res_id == res_id)
    if ctx.conn.dialect.name != "sqlite":
        stmt = stmt.with_for_update(of=cur)
    row = (await ctx.conn.execute(stmt)).first()
    if row is None:
        return None
    return Current(row.version, row.deleted, row.content, bool(row.visible), row.last_updated)


async def write_version(
    ctx: Context,
    resource_type: str,
    res_id: str,
    resource: dict[str, Any] | None,
    *,
    version: int,
    method: str,
    previous: dict[str, Any] | None,
    exists: bool,
    timestamp: datetime,
    beneficiary: str | None,
    domain: str | None,
) -> Stored:
    """Append a version and make it current; then run the after-write hooks. A resource
    created while writes are held is held too, and written with the others (flush_new)."""
    content = orjson.dumps(resource).decode() if resource is not None else None
    pending = None if exists or method != "POST" else held(ctx, NEW)
    values = {
        "type": resource_type,
        "res_id": res_id,
        "version": version,
        "last_updated": timestamp,
        "deleted": resource is None,
        "content": content,
        "beneficiary": beneficiary,
        "domain": domain,
    }
    if pending is not None and content is not None:
        pending.append(NewVersion(resource_type, res_id, content, timestamp, beneficiary, domain))
    elif ctx.conn.dialect.name == "postgresql":
        await _write_pg(ctx.conn, values, method, exists)
    else:
        await _write_core(ctx.conn, values, method, exists)
    stored = Stored(
        type=resource_type,
        id=res_id,
        version=version,
        last_updated=timestamp,
        method=method,
        resource=resource,
        previous=previous,
        beneficiary=beneficiary,
        domain=domain,
    )
    for hook in ctx.plugins.after_write:
        await hook(ctx, stored)
    return stored


@dataclass
class NewVersion:
    """Version 1 of a resource written in bulk: server-made records (AuditEvents), or the
    creates of a unit of work."""

    type: str
    res_id: str
    content: str
    last_updated: datetime
    beneficiary: str | None
    domain: str | None


async def insert_new(conn: AsyncConnection, rows: list[NewVersion]) -> None:
    """Store many new resources without after-write hooks: one statement on PostgreSQL
    (rows as one JSON text), one executemany per table on SQLite."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        payload = [
            (r.type, r.res_id, r.last_updated, r.content, r.beneficiary, r.domain) for r in rows
        ]
        await conn.execute(_PG_INSERT_NEW, {"rows": orjson.dumps(payload).decode()})
        return
    values = [
        {
            "type": r.type,
            "res_id": r.res_id,
            "version": 1,
            "last_updated": r.last_updated,
            "method": "POST",
            "deleted": False,
            "content": r.content,
            "beneficiary": r.beneficiary,
            "domain": r.domain,
        }
        for r in rows
    ]
    # RETURNING in any order, matched on (type, id), lets SQLAlchemy batch the rows; in
    # parameter order it inserts them one at a time on SQLite.
    inserted = await conn.execute(
        insert(ver).returning(ver.c.seq, ver.c.type, ver.c.res_id), values
    )
    seqs = {(r.type, r.res_id): r.seq for r in inserted}
    current = []
    for row in values:
        seq = seqs[(row["type"], row["res_id"])]
        fields = {k: v for k, v in row.items() if k != "method"}
        current.append({**fields, "seq": seq, "created_seq": seq})
    await conn.execute(insert(cur), current)


# --- new resources held while a unit of work runs -----------------------------------------
# A transaction's creates are written with one statement, not one each. Whatever reads
# resources inside the unit of work settles first: the repository's reads here, searches
# (flush_held), the access hooks and the reference check.

NEW = "repository.new"


async def flush_new(ctx: Context) -> None:
    """Flusher, the first: the held new resources, before the rows that follow them."""
    await insert_new(ctx.conn, take_held(ctx, NEW))


async def settle(ctx: Context) -> None:
    """Write the held new resources, so that a read in the same unit of work sees them."""
    pending = held(ctx, NEW)
    if pending:
        await flush_new(ctx)


_PG_INSERT_NEW = text(
    "WITH v AS (INSERT INTO resource_version "
    "(type, res_id, version, last_updated, method, deleted, content, beneficiary, domain) "
    "SELECT r->>0, r->>1, 1, CAST(r->>2 AS TIMESTAMPTZ), 'POST', false, r->>3, r->>4, r->>5 "
    "FROM json_array_elements(CAST(:rows AS JSON)) AS r "
    "RETURNING seq, type, res_id, last_updated, content, beneficiary, domain) "
    "INSERT INTO resource_current "
    "(type, res_id, version, last_updated, deleted, content, beneficiary, domain, seq, "
    "created_seq) "
    "SELECT type, res_id, 1, last_updated, false, content, beneficiary, domain, seq, seq FROM v"
)


async def _write_core(
    conn: AsyncConnection, values: dict[str, Any], method: str, exists: bool
) -> None:
    inserted = await conn.execute(insert(ver).values(method=method, **values).returning(ver.c.seq))
    seq = int(inserted.scalar_one())
    if exists:
        where = (cur.c.type == values["type"], cur.c.res_id == values["res_id"])
        await conn.execute(update(cur).where(*where).values(seq=seq, **values))
    else:
        await conn.execute(insert(cur).values(seq=seq, created_seq=seq, **values))


# PostgreSQL: the version and the current row in one statement, sent straight to the
# driver (a resource write is two statements' worth of SQLAlchemy work otherwise).
_PG_COLUMNS = (  # $1…$8, then the method as $9
    "type",
    "res_id",
    "version",
    "last_updated",
    "deleted",
    "content",
    "beneficiary",
    "domain",
)
_PG_VERSION = (
    "WITH v AS (INSERT INTO resource_version (type, res_id, version, last_updated, method, "
    "deleted, content, beneficiary, domain) VALUES ($1, $2, $3, $4, $9, $5, $6, $7, $8) "
    "RETURNING seq) "
)
_PG_NEW = _PG_VERSION + (
    "INSERT INTO resource_current (type, res_id, version, last_updated, deleted, content, "
    "beneficiary, domain, seq, created_seq) "
    "SELECT $1, $2, $3, $4, $5, $6, $7, $8, v.seq, v.seq FROM v"
)
_PG_NEXT = _PG_VERSION + (
    "UPDATE resource_current c SET version = $3, last_updated = $4, deleted = $5, "
    "content = $6, beneficiary = $7, domain = $8, seq = v.seq FROM v "
    "WHERE c.type = $1 AND c.res_id = $2"
)


async def _write_pg(
    conn: AsyncConnection, values: dict[str, Any], method: str, exists: bool
) -> None:
    driver = await raw.driver_of(conn)
    args = [*(values[name] for name in _PG_COLUMNS), method]
    sql = _PG_NEXT if exists else _PG_NEW
    raw.announce(conn, sql, args)
    await driver.execute(sql, *args)


async def count_visible(ctx: Context, resource_type: str) -> int:
    stmt = select(func.count()).where(
        cur.c.type == resource_type,
        cur.c.deleted.is_(False),
        ctx.policy.row_filter(cur, resource_type, "search-type"),
    )
    return int((await ctx.conn.execute(stmt)).scalar_one())


def _history_conditions(
    ctx: Context,
    resource_type: str | None,
    res_id: str | None,
    since: datetime | None,
    interaction: str,
) -> list[Any]:
    conds: list[Any] = [ctx.policy.row_filter(ver, resource_type, interaction)]
    if resource_type is not None:
        conds.append(ver.c.type == resource_type)
    if res_id is not None:
        conds.append(ver.c.res_id == res_id)
    if since is not None:
        conds.append(ver.c.last_updated >= since)
    return conds


async def history_rows(
    ctx: Context,
    resource_type: str | None,
    res_id: str | None,
    *,
    since: datetime | None,
    before_seq: int | None,
    limit: int,
    interaction: str,
) -> list[Any]:
    """Versions newest first, keyset-paged on seq."""
    conds = _history_conditions(ctx, resource_type, res_id, since, interaction)
    if before_seq is not None:
        conds.append(ver.c.seq < before_seq)
    stmt = (
        select(
            ver.c.seq,
            ver.c.type,
            ver.c.res_id,
            ver.c.version,
            ver.c.method,
            ver.c.deleted,
            ver.c.content,
            ver.c.last_updated,
        )
        .where(and_(*conds))
        .order_by(ver.c.seq.desc())
        .limit(limit)
    )
    return list((await ctx.conn.execute(stmt)).all())


async def history_total(
    ctx: Context,
    resource_type: str | None,
    res_id: str | None,
    *,
    since: datetime | None,
    interaction: str,
) -> int:
    conds = _history_conditions(ctx, resource_type, res_id, since, interaction)
    stmt = select(func.count()).select_from(ver).where(and_(*conds))
    return int((await ctx.conn.execute(stmt)).scalar_one())
