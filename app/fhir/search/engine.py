"""Search: one SQL statement for a page of matches, one more per round of includes,
and a count only when the page does not already tell the total (in the page statement
once a search of the same shape has needed one). The SQL is in `statements`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from app.db import raw
from app.db.tables import resource_current as cur
from app.fhir.context import Context, flush_held
from app.fhir.outcomes import FhirError
from app.fhir.search import statements
from app.fhir.search.include import fetch_includes
from app.fhir.search.paging import encode_cursor
from app.fhir.search.parts import Part, join, statement
from app.fhir.search.request import (
    DEFAULT_COUNT,
    MAX_COUNT,
    SearchRequest,
    read_request,
    whole_number,
)
from app.fhir.search.values import Invalid

__all__ = ["DEFAULT_COUNT", "MAX_COUNT", "SearchPage", "search", "search_ids"]

Row = tuple[str, str, str]  # (type, id, stored JSON)
Params = list[tuple[str, str]]


@dataclass
class SearchPage:
    resource_type: str | None
    matches: list[Row]
    includes: list[Row] = field(default_factory=list)
    total: int | None = None
    applied: Params = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    self_params: Params = field(default_factory=list)
    first_params: Params | None = None
    next_params: Params | None = None
    previous_params: Params | None = None
    count: int = DEFAULT_COUNT
    summary_count: bool = False


def _int_param(name: str, value: str, *, lo: int, hi: int) -> int:
    """A whole-number parameter clamped to [lo, hi] (also used by history paging)."""
    try:
        number = whole_number(name, value)
    except Invalid as exc:
        raise FhirError(400, "invalid", str(exc)) from None
    return max(lo, min(hi, number))


# Search shapes (type and parameter names) whose last first page did not hold every
# match. The next search of such a shape is read the way large results are cheapest:
# its page picked from the index where it can be, its count in the same statement.
# Small results are cheaper read plainly. Either way the page holds the same.
_LARGE: dict[tuple[Any, ...], bool] = {}
_MAX_SHAPES = 4096


def _shape(request: SearchRequest) -> tuple[Any, ...]:
    return (request.resource_type, tuple(name for name, _ in request.applied))


def _large(request: SearchRequest) -> bool:
    if request.cursor is not None:
        return True  # a later page: the result is more than a page
    return _LARGE.get(_shape(request), False)


def _remember(request: SearchRequest, more: bool) -> None:
    if request.cursor is None:
        if len(_LARGE) >= _MAX_SHAPES:
            _LARGE.clear()
        _LARGE[_shape(request)] = more


async def _rows(ctx: Context, part: Part, *, planned_once: bool = False) -> list[Any]:
    """The rows of a statement built once per shape, with this search's values. With
    `planned_once`, on a connection of the pool planned once when the request reads in
    autocommit: each statement then sees what is committed, whichever connection runs
    it. A transaction keeps its own connection, the one that sees its own writes."""
    stmt, values = statement(part)
    engine = ctx.planned_once
    if planned_once and engine is not None and _autocommit(ctx.conn.sync_connection):
        async with engine.connect() as conn:
            return await raw.every(conn, stmt, values)
    return await raw.every(ctx.conn, stmt, values)


def _autocommit(conn: Connection | None) -> bool:
    return conn is not None and conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"


async def _count(ctx: Context, request: SearchRequest, where: statements.Where) -> int:
    return int((await _rows(ctx, statements.count_statement(request, where)))[0][0])


def _link(request: SearchRequest, snapshot: int | None, cursor: tuple[str, str] | None) -> Params:
    params = list(request.applied)
    if snapshot is not None:
        params.append(("_snapshot", str(snapshot)))
    if cursor is not None:
        params.append(cursor)
    return params


async def search(
    ctx: Context,
    resource_type: str | None,
    query: list[tuple[str, str]],
    *,
    strict: bool = False,
) -> SearchPage:
    request = read_request(resource_type, query, strict=strict, base_url=ctx.base_url)
    await flush_held(ctx)
    interaction = "search-type" if resource_type else "search-system"
    large = _large(request)
    where = statements.where(ctx, request, interaction, from_index=large)
    page = SearchPage(
        resource_type,
        [],
        applied=request.applied,
        ignored=request.ignored,
        count=request.count,
        summary_count=request.summary_count,
    )
    if request.summary_count or request.count == 0:
        page.total = await _count(ctx, request, where)
        page.self_params = _link(request, request.snapshot, None)
        return page
    with_count = large and request.total != "none"
    once = statements.plans_alike(request, where, large)
    rows = await _rows(
        ctx, statements.page_statement(request, where, with_count), planned_once=once
    )
    more = len(rows) > request.count
    _remember(request, more)
    rows = rows[: request.count]
    if request.backward:
        rows.reverse()
    page.matches = [(r[0], r[1], r[2]) for r in rows]
    _paging_links(page, request, rows, more)
    if request.total != "none":
        if request.cursor is None and not more:
            page.total = len(rows)  # the whole result is on this page
        elif with_count and rows:
            page.total = int(rows[0].total)
        else:
            page.total = await _count(ctx, request, where)
    if request.includes and page.matches:
        page.includes = await fetch_includes(ctx, request.includes, page.matches)
    return page


def _paging_links(page: SearchPage, request: SearchRequest, rows: list[Any], more: bool) -> None:
    """self as asked; first, previous and next under the snapshot of the first page."""
    cursor = request.cursor
    backward = request.backward
    snapshot = request.snapshot
    if snapshot is None and rows:
        snapshot = int(rows[0].snap or 0)
    width = len(request.sort) + 1  # a row's cursor: its sort values, then created_seq

    def at(row: Any, relation: str) -> tuple[str, str]:
        return relation, encode_cursor(tuple(row[3 : 3 + width]))

    current = None
    if cursor is not None:
        current = ("_before" if backward else "_after", encode_cursor(cursor.values))
    page.self_params = _link(request, request.snapshot, current)
    page.first_params = _link(request, snapshot, None)
    if rows and (more or backward):
        page.next_params = _link(request, snapshot, at(rows[-1], "_after"))
    if rows and (more if backward else cursor is not None):
        page.previous_params = _link(request, snapshot, at(rows[0], "_before"))


async def search_ids(
    ctx: Context, resource_type: str, query: list[tuple[str, str]], *, limit: int
) -> list[str]:
    """Ids matching a condition (conditional create/update/delete); unknown params fail."""
    request = read_request(resource_type, query, strict=True, base_url=ctx.base_url)
    if not request.criteria:
        raise FhirError(412, "invalid", "A conditional request needs at least one criterion")
    await flush_held(ctx)
    where = statements.where(ctx, request, "search-type", from_index=False)
    conds = statements.tuple_of(where.conds)
    found = join(lambda built: select(cur.c.res_id).where(*built).limit(limit), conds)
    return [r.res_id for r in await _rows(ctx, found)]
