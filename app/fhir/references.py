"""Reference integrity on write: relative references must resolve to visible resources."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from sqlalchemy import and_, or_, select, tuple_

from app.db.tables import resource_current as cur
from app.fhir.context import Context
from app.fhir.outcomes import FhirError
from app.fhir.types import SUPPORTED

RELATIVE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]+)?$")
DEFERRED = "deferred_references"


def relative_references(value: Any, path: str) -> Iterator[tuple[str, str, str]]:
    """(type, id, path) of every relative reference in the resource, contained ones excluded."""
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str):
            match = RELATIVE.match(ref)
            if match:
                yield match.group(1), match.group(2), path
        for key, child in value.items():
            if key != "contained":
                yield from relative_references(child, f"{path}.{key}")
    elif isinstance(value, list):
        for n, child in enumerate(value):
            yield from relative_references(child, f"{path}[{n}]")


async def check_references(
    ctx: Context, resource: dict[str, Any], _previous: dict[str, Any] | None
) -> None:
    refs = list(relative_references(resource, resource.get("resourceType", "")))
    own = (resource.get("resourceType"), resource.get("id"))
    refs = [r for r in refs if (r[0], r[1]) != own]
    if not refs:
        return
    deferred = ctx.extra.get(DEFERRED)
    if deferred is not None:
        deferred.extend(refs)
        return
    await verify(ctx, refs)


async def verify(ctx: Context, refs: list[tuple[str, str, str]]) -> None:
    """One query for all references; a missing or hidden target is the same 422."""
    for rtype, rid, path in refs:
        if rtype not in SUPPORTED:
            raise FhirError(
                422,
                "invalid",
                f"{path}: reference to unsupported type {rtype}/{rid}",
                expression=[path],
            )
    keys = sorted({(t, i) for t, i, _ in refs})
    found: set[tuple[str, str]] = set()
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        stmt = select(cur.c.type, cur.c.res_id).where(
            or_(*[and_(cur.c.type == t, cur.c.res_id == i) for t, i in chunk])
            if ctx.conn.dialect.name == "sqlite"
            else tuple_(cur.c.type, cur.c.res_id).in_(chunk),
            cur.c.deleted.is_(False),
            ctx.policy.row_filter(cur, None, "read"),
        )
        found |= {(r.type, r.res_id) for r in (await ctx.conn.execute(stmt)).all()}
    for rtype, rid, path in refs:
        if (rtype, rid) not in found:
            raise FhirError(
                422,
                "invalid",
                f"{path}: {rtype}/{rid} does not exist or is not accessible",
                expression=[path],
            )
