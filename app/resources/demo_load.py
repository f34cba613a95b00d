"""Loads the demo case through the engine's own transaction processing.

Idempotent: only the demo resources that are missing (or deleted) are written, in one
transaction Bundle. A resource changed since it was loaded (a Task someone accepted
while trying the API) is kept as it is rather than reset: resetting could break the
Task workflow, and running the demo twice must create nothing twice.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, or_, select

from app.db.tables import resource_current as cur
from app.fhir.bundles import process
from app.fhir.context import Context
from app.fhir.router import dispatch
from app.resources.demo import demo_bundle
from app.resources.publish import essence
from app.resources.rules import importing_history
from app.state import AppState


@dataclass
class DemoLoad:
    created: int
    unchanged: int
    kept: int  # changed since loaded, left alone


async def load_demo_case(state: AppState) -> DemoLoad:
    bundle = demo_bundle()
    entries = bundle["entry"]
    async with state.gate(True), state.engine.begin() as conn:
        ctx = state.context(conn)
        stored = await _stored(ctx, [e["resource"] for e in entries])
        missing, unchanged, kept = [], 0, 0
        for entry in entries:
            resource = entry["resource"]
            current = stored.get((resource["resourceType"], resource["id"]))
            if current is None:
                missing.append(entry)
            elif current == _labelled(state, resource):
                unchanged += 1
            else:
                kept += 1
        if missing:
            with importing_history():
                await process(
                    ctx,
                    {**bundle, "entry": missing},
                    dispatch,
                    with_resource=False,
                    savepoint=conn.begin_nested,
                )
    return DemoLoad(created=len(missing), unchanged=unchanged, kept=kept)


def _labelled(state: AppState, resource: dict[str, Any]) -> dict[str, Any]:
    """The resource as the server stores it (with its domain label)."""
    labelled = copy.deepcopy(resource)
    state.plugins.labeler(labelled)
    return essence(labelled)


async def _stored(
    ctx: Context, resources: list[dict[str, Any]]
) -> dict[tuple[str, str], dict[str, Any]]:
    keys = [(r["resourceType"], r["id"]) for r in resources]
    stmt = select(cur.c.type, cur.c.res_id, cur.c.content).where(
        or_(*[and_(cur.c.type == t, cur.c.res_id == i) for t, i in keys]),
        cur.c.deleted.is_(False),
    )
    rows = (await ctx.conn.execute(stmt)).all()
    return {(r.type, r.res_id): essence(orjson.loads(r.content)) for r in rows}
