"""Stores Relais' conformance resources at start, so `/fhir` serves them at their ids.

Idempotent: a resource whose stored content already matches its file is left alone, so
restarts write nothing; a changed file (a new Relais version) becomes a new version.
They are written through the engine (validation, search index, hooks) with the
read-only guard lifted for this one writer only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from sqlalchemy import and_, or_, select, text
from sqlalchemy.exc import IntegrityError

from app.db.tables import resource_current as cur
from app.fhir import interactions as fx
from app.fhir.context import Context
from app.resources.conformance import load_conformance_resources
from app.state import AppState

# Serialises concurrent starts (several workers) on PostgreSQL.
LOCK_KEY = 0x52454C41  # "RELA"


def essence(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without what the server sets on every write."""
    out = dict(resource)
    meta = out.pop("meta", None) or {}
    meta = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
    if meta:
        out["meta"] = meta
    return out


async def publish_conformance(state: AppState) -> int:
    """Store the shipped resources that are missing or changed; return how many."""
    plugins = dataclasses.replace(state.plugins, read_only=lambda _t, _i: False)
    resources = load_conformance_resources()
    try:
        async with state.gate(True), state.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            ctx = Context(conn=conn, base_url=state.settings.fhir_base, plugins=plugins)
            stored = await _stored(ctx, resources)
            changed = [r for r in resources if stored.get(_key(r)) != essence(r)]
            for resource in changed:
                await fx.update(ctx, resource["resourceType"], resource["id"], resource)
            return len(changed)
    except IntegrityError:
        return 0  # another process stored them at the same moment (SQLite has no lock)


def _key(resource: dict[str, Any]) -> tuple[str, str]:
    return resource["resourceType"], resource["id"]


async def _stored(
    ctx: Context, resources: list[dict[str, Any]]
) -> dict[tuple[str, str], dict[str, Any]]:
    wanted = or_(*[and_(cur.c.type == t, cur.c.res_id == i) for t, i in map(_key, resources)])
    stmt = select(cur.c.type, cur.c.res_id, cur.c.content).where(wanted, cur.c.deleted.is_(False))
    rows = (await ctx.conn.execute(stmt)).all()
    return {(r.type, r.res_id): essence(orjson.loads(r.content)) for r in rows}
