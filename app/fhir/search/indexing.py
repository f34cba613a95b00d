"""Keeping the search index in step with the stored resources.

`index_on_write` runs after every write, in its transaction; `reindex` rebuilds
the index of whole types (after a change of parameters, or of the base URL).
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.tables import resource_current as cur
from app.fhir.context import Context, Stored, held, take_held
from app.fhir.search.extract import IndexRows, extract_index
from app.fhir.search.tables import (
    TABLES,
    IndexWrite,
    changed_kinds,
    write_indexes,
    write_many,
)

BATCH = 500


PENDING = "search.index"


async def index_on_write(ctx: Context, stored: Stored) -> None:
    """After-write hook: the version just written replaces the resource's index rows."""
    await _write_or_hold(ctx, [_index_write(ctx, stored)])


async def index_new(ctx: Context, resource_type: str, items: list[tuple[str, IndexRows]]) -> None:
    """Index new resources written in bulk (repository.insert_new): (id, rows) pairs."""
    writes = [IndexWrite(resource_type, rid, rows, replace=False) for rid, rows in items]
    await _write_or_hold(ctx, writes)


async def _write_or_hold(ctx: Context, writes: list[IndexWrite]) -> None:
    pending = held(ctx, PENDING)
    if pending is None:
        await write_indexes(ctx.conn, writes)
    else:
        pending.extend(writes)


def _index_write(ctx: Context, stored: Stored) -> IndexWrite:
    if stored.resource is None:
        return IndexWrite(stored.type, stored.id, None)
    rows = extract_index(stored.type, stored.resource, ctx.base_url)
    if stored.version == 1:  # nothing to replace
        return IndexWrite(stored.type, stored.id, rows, replace=False)
    kinds = None
    if stored.previous is not None:
        # Rewrite only the tables whose rows changed (a Task status change: tokens only).
        kinds = changed_kinds(extract_index(stored.type, stored.previous, ctx.base_url), rows)
    return IndexWrite(stored.type, stored.id, rows, kinds=kinds)


async def flush_index(ctx: Context) -> None:
    """Flusher: write the held index rows, one statement for all of them."""
    pending: list[IndexWrite] = take_held(ctx, PENDING)
    if not pending:
        return
    by_key: dict[tuple[str, str], list[IndexWrite]] = {}
    for write in pending:
        by_key.setdefault((write.type, write.res_id), []).append(write)
    writes = []
    for (rtype, rid), group in by_key.items():
        if len(group) == 1:
            writes.append(group[0])
        else:  # written twice: the last rows replace whatever stood before the transaction
            replace = any(w.replace for w in group)
            writes.append(IndexWrite(rtype, rid, group[-1].rows, replace=replace))
    await write_indexes(ctx.conn, writes)


async def reindex(conn: AsyncConnection, base_url: str, types: Iterable[str]) -> dict[str, int]:
    """Rebuild the index of every live resource of `types`; how many per type."""
    done: dict[str, int] = {}
    for resource_type in types:
        for table in TABLES.values():
            await conn.execute(delete(table).where(table.c.type == resource_type))
        count = 0
        last = ""
        while True:
            stmt = (
                select(cur.c.res_id, cur.c.content)
                .where(cur.c.type == resource_type, cur.c.deleted.is_(False), cur.c.res_id > last)
                .order_by(cur.c.res_id)
                .limit(BATCH)
            )
            rows = (await conn.execute(stmt)).all()
            if not rows:
                break
            batch = [
                (r.res_id, extract_index(resource_type, orjson.loads(r.content), base_url))
                for r in rows
            ]
            await write_many(conn, resource_type, batch)
            count += len(rows)
            last = rows[-1].res_id
        done[resource_type] = count
    return done
