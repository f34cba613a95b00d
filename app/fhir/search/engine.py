"""Search: turns query parameters into one SQL statement over resource_current.

Paging is keyset-based on created_seq with a snapshot bound, so a page never repeats
or skips a resource that existed when the search began.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, select

from app.db.tables import resource_current as cur
from app.fhir.context import Context
from app.fhir.outcomes import FhirError

DEFAULT_COUNT = 20
MAX_COUNT = 1000

# Parameters that shape the result rather than filter it.
RESULT_PARAMS = frozenset(
    {"_count", "_total", "_summary", "_elements", "_format", "_pretty", "_snapshot", "_after"}
)


@dataclass
class SearchPage:
    resource_type: str | None
    matches: list[tuple[str, str, str]]  # (type, id, content)
    includes: list[tuple[str, str, str]] = field(default_factory=list)
    total: int | None = None
    applied: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    next_params: list[tuple[str, str]] | None = None
    first_params: list[tuple[str, str]] | None = None
    count: int = DEFAULT_COUNT
    summary_count: bool = False


def _int_param(name: str, value: str, *, lo: int, hi: int) -> int:
    if not value.isdigit():
        raise FhirError(400, "invalid", f"{name} must be a whole number, got '{value}'")
    return max(lo, min(hi, int(value)))


def _id_condition(value: str) -> ColumnElement[bool]:
    return cur.c.res_id.in_([v for v in value.split(",") if v])


def _conditions(
    resource_type: str | None, query: list[tuple[str, str]], strict: bool, page: SearchPage
) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    for name, value in query:
        if name in RESULT_PARAMS:
            continue
        if name == "_id":
            conds.append(_id_condition(value))
            page.applied.append((name, value))
            continue
        if strict:
            raise FhirError(400, "not-supported", f"Unknown search parameter '{name}'")
        page.ignored.append(name)
    return conds


def _base(
    ctx: Context, resource_type: str | None, interaction: str
) -> tuple[Select[Any], list[ColumnElement[bool]]]:
    conds: list[ColumnElement[bool]] = [
        cur.c.deleted.is_(False),
        ctx.policy.row_filter(cur, resource_type, interaction),
    ]
    if resource_type is not None:
        conds.append(cur.c.type == resource_type)
    return select(cur.c.type, cur.c.res_id, cur.c.content, cur.c.created_seq), conds


async def search(
    ctx: Context,
    resource_type: str | None,
    query: list[tuple[str, str]],
    *,
    strict: bool = False,
) -> SearchPage:
    interaction = "search-type" if resource_type else "search-system"
    params = dict(query)
    count = _int_param("_count", params.get("_count", str(DEFAULT_COUNT)), lo=0, hi=MAX_COUNT)
    page = SearchPage(resource_type=resource_type, matches=[], count=count)
    stmt, conds = _base(ctx, resource_type, interaction)
    conds += _conditions(resource_type, query, strict, page)
    total_mode = params.get("_total", "accurate")
    page.summary_count = params.get("_summary") == "count"
    if total_mode != "none" or page.summary_count:
        total_stmt = select(func.count()).select_from(cur).where(and_(*conds))
        page.total = int((await ctx.conn.execute(total_stmt)).scalar_one())
    if page.summary_count:
        return page
    snapshot = params.get("_snapshot")
    if snapshot is None:
        snap_stmt = select(func.max(cur.c.created_seq))
        snapshot = str((await ctx.conn.execute(snap_stmt)).scalar_one() or 0)
    snap = _int_param("_snapshot", snapshot, lo=0, hi=2**62)
    after = _int_param("_after", params.get("_after", "0"), lo=0, hi=2**62)
    conds += [cur.c.created_seq <= snap, cur.c.created_seq > after]
    rows = (
        await ctx.conn.execute(
            stmt.where(and_(*conds)).order_by(cur.c.created_seq).limit(count + 1)
        )
    ).all()
    page.matches = [(r.type, r.res_id, r.content) for r in rows[:count]]
    keep = [(k, v) for k, v in query if k not in {"_snapshot", "_after"}]
    page.first_params = [*keep, ("_snapshot", str(snap))]
    if len(rows) > count and count > 0:
        last = rows[count - 1].created_seq
        page.next_params = [*keep, ("_snapshot", str(snap)), ("_after", str(last))]
    return page


async def search_ids(
    ctx: Context, resource_type: str, query: list[tuple[str, str]], *, limit: int
) -> list[str]:
    """Ids matching a condition (conditional create/update/delete); unknown params fail."""
    page = SearchPage(resource_type=resource_type, matches=[])
    _stmt, conds = _base(ctx, resource_type, "search-type")
    conds += _conditions(resource_type, query, True, page)
    if not page.applied:
        raise FhirError(412, "invalid", "A conditional request needs at least one criterion")
    rows = (await ctx.conn.execute(select(cur.c.res_id).where(and_(*conds)).limit(limit))).all()
    return [r.res_id for r in rows]
