"""Search: one SQL statement for a page of matches, one more per round of includes,
and a count only when the page does not already tell the total.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, func, intersect, select
from sqlalchemy.sql.elements import True_

from app.db import raw
from app.db.tables import resource_current as cur
from app.db.tables import resource_version as ver
from app.fhir.context import Context, flush_held
from app.fhir.outcomes import FhirError
from app.fhir.search.filters import LIVE, Filters, type_is
from app.fhir.search.include import fetch_includes
from app.fhir.search.paging import beyond, encode_cursor, order_by
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


@dataclass
class Where:
    """The WHERE of a search, and what lets the index alone count its matches."""

    conds: list[ColumnElement[bool]]
    sees_all: bool  # no row filter: the caller sees every row
    id_queries: list[Any]  # per criterion its id subquery, or None (:not, :missing, _id …)


def _where(ctx: Context, request: SearchRequest, interaction: str) -> Where:
    rtype = request.resource_type
    conds: list[ColumnElement[bool]] = [LIVE]
    if rtype is not None:
        conds.append(type_is(cur, rtype))
    elif request.types is not None:
        conds.append(cur.c.type.in_(request.types))
    allowed = ctx.policy.row_filter(cur, rtype, interaction)
    sees_all = isinstance(allowed, True_)
    if not sees_all:
        conds.append(allowed)
    filters = Filters(ctx)
    id_queries = []
    for criterion in request.criteria:
        ids = filters.matching_ids(criterion)
        id_queries.append(ids)
        conds.append(cur.c.res_id.in_(ids) if ids is not None else filters.condition(criterion))
    if request.snapshot is not None:
        conds.append(cur.c.created_seq <= request.snapshot)
    return Where(conds, sees_all, id_queries)


async def _count(ctx: Context, request: SearchRequest, where: Where) -> int:
    stmt = _count_statement(request, where)
    return int((await raw.rows(ctx.conn, stmt))[0][0])


def _count_statement(request: SearchRequest, where: Where) -> Select[Any]:
    """count(*) of the matches. When every criterion is an index lookup, nothing hides
    rows and no snapshot applies, the index alone answers: index rows only exist for
    live resources, so resource_current need not be read."""
    ids = where.id_queries
    if where.sees_all and request.snapshot is None and ids and None not in ids:
        if len(ids) > 1:
            unique = intersect(*ids).subquery()  # INTERSECT drops repeats
            return select(func.count()).select_from(unique)
        if isinstance(ids[0], Select):
            return select(func.count()).select_from(ids[0].distinct().subquery())
    return select(func.count()).select_from(cur).where(*where.conds)


# Every visible row was created at or before this change: the page's snapshot.
_SNAPSHOT = select(func.max(ver.c.seq)).scalar_subquery().label("snap")
_PAGE_COLUMNS = (cur.c.type, cur.c.res_id, cur.c.content)
_SEQ_ASC = cur.c.created_seq.asc()
_SEQ_DESC = cur.c.created_seq.desc()


def _page_statement(request: SearchRequest, conds: list[ColumnElement[bool]]) -> Select[Any]:
    """The page query: matches, their sort values and created_seq (the cursor), the snapshot."""
    labels = [key.expression.label(f"k{i}") for i, key in enumerate(request.sort)]
    stmt = select(*_PAGE_COLUMNS, *labels, cur.c.created_seq).where(*conds)
    if request.snapshot is None:
        stmt = stmt.add_columns(_SNAPSHOT)
    cursor = request.cursor
    if cursor is not None:
        keys = [(key.expression, key.descending) for key in request.sort]
        stmt = stmt.where(beyond([*keys, (cur.c.created_seq, False)], cursor))
    backward = cursor is not None and cursor.before
    # ORDER BY names the labels: each sort value is computed once per row.
    ordered = [(label, key.descending) for label, key in zip(labels, request.sort, strict=True)]
    order = [*order_by(ordered, backward), _SEQ_DESC if backward else _SEQ_ASC]
    return stmt.order_by(*order).limit(request.count + 1)


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
    where = _where(ctx, request, interaction)
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
    rows = await raw.rows(ctx.conn, _page_statement(request, where.conds))
    more = len(rows) > request.count
    rows = rows[: request.count]
    if request.cursor is not None and request.cursor.before:
        rows.reverse()
    page.matches = [(r[0], r[1], r[2]) for r in rows]
    _paging_links(page, request, rows, more)
    if request.total != "none":
        if request.cursor is None and not more:
            page.total = len(rows)  # the whole result is on this page
        else:
            page.total = await _count(ctx, request, where)
    if request.includes and page.matches:
        page.includes = await fetch_includes(ctx, request.includes, page.matches)
    return page


def _paging_links(page: SearchPage, request: SearchRequest, rows: list[Any], more: bool) -> None:
    """self as asked; first, previous and next under the snapshot of the first page."""
    cursor = request.cursor
    backward = cursor is not None and cursor.before
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
    where = _where(ctx, request, "search-type")
    stmt = select(cur.c.res_id).where(*where.conds).limit(limit)
    return [r.res_id for r in await raw.rows(ctx.conn, stmt)]
