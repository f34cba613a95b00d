"""The SQL of a search: its conditions, its page and its count.

A page is read from resource_current in the search's order, created_seq last (the
tie-breaker, and the cursor of the paging links). From the cheapest:

- picked from the index: when the index alone decides the matches (every criterion an
  index lookup, the caller sees every row) and the order is the default one, the
  index rows carry the created_seq that order needs. The page's ids are picked there
  and only those rows of resource_current are read (`Patient?name=dupont`: 21 rows,
  not the 357 matches).
- counted once: in the default order, the matches' (res_id, created_seq) are found once
  under all the conditions; the page is picked among them and they are counted
  (`_has`, chains, a caller's row filter);
- sorted, one criterion whose ids are found once, for the page and its count;
- the page under all its conditions, the count as a subquery of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, column, func, intersect, select
from sqlalchemy.sql.elements import True_

from app.db import raw
from app.db.tables import resource_current as cur
from app.db.tables import resource_version as ver
from app.fhir.context import Context
from app.fhir.search.criteria import Has
from app.fhir.search.filters import LIVE, Filters, InOrder, type_is
from app.fhir.search.paging import SortKey, beyond, order_by
from app.fhir.search.request import SearchRequest


@dataclass
class Where:
    """The WHERE of a search, and what lets the index alone find or count its matches."""

    conds: list[ColumnElement[bool]]
    sees_all: bool  # no row filter: the caller sees every row
    id_queries: list[Any]  # per criterion its id subquery, or None (:not, :missing, _id …)
    first: int  # conds[first + i] is the condition of criterion i
    # (res_id, created_seq) index rows of the first criterion, when the page can be
    # picked from the index
    in_order: InOrder | None = None
    # Every id query yields live resources only. Not so for _has: a source's index rows
    # still point at a target deleted since.
    live_ids: bool = True


def where(ctx: Context, request: SearchRequest, interaction: str, *, from_index: bool) -> Where:
    """The conditions; with `from_index`, what lets the page be picked from the index."""
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
    pickable = from_index and sees_all and not request.sort and not request.backward
    filters = Filters(ctx)
    found = Where(conds, sees_all, [], len(conds))
    for criterion in request.criteria:
        ordered = filters.ids_in_order(criterion) if pickable and not found.id_queries else None
        ids: Any
        if ordered is not None:
            found.in_order = ordered
            ids = ordered.ids
        else:
            ids = filters.matching_ids(criterion)
        found.id_queries.append(ids)
        found.live_ids = found.live_ids and not isinstance(criterion, Has)
        conds.append(cur.c.res_id.in_(ids) if ids is not None else filters.condition(criterion))
    if None in found.id_queries:
        found.in_order = None
    if request.snapshot is not None:
        conds.append(cur.c.created_seq <= request.snapshot)
    return found


def count_statement(request: SearchRequest, where: Where) -> Select[Any]:
    """count(*) of the matches. When every criterion is an index lookup, nothing hides
    rows and no snapshot applies, the index alone answers: index rows only exist for
    live resources, so resource_current need not be read."""
    ids = where.id_queries
    if where.sees_all and where.live_ids and request.snapshot is None and ids and None not in ids:
        if len(ids) > 1:
            unique = intersect(*ids).subquery()  # INTERSECT drops repeats
            return select(func.count()).select_from(unique)
        if isinstance(ids[0], Select):
            return select(func.count()).select_from(ids[0].distinct().subquery())
    return select(func.count()).select_from(cur).where(*where.conds)


def page_statement(request: SearchRequest, where: Where, with_count: bool) -> Select[Any]:
    """The page's rows (count + 1 of them, to tell whether more follow), with the total
    as one more column when `with_count`."""
    if where.in_order is not None:
        return _picked(request, where, with_count)
    if not with_count:
        return _page(request, where.conds)
    if not request.sort and request.resource_type and not request.backward:
        return _counted(request, where)
    ids = where.id_queries
    if (
        where.sees_all
        and where.live_ids
        and request.snapshot is None
        and len(ids) == 1
        and ids[0] is not None
    ):
        # One criterion decides the matches: they are found once, for both.
        found = ids[0].cte("matches")
        conds = list(where.conds)
        conds[where.first] = cur.c.res_id.in_(select(found.c[0]))
        total = select(func.count(found.c[0].distinct()))
        page = _page(request, conds)
    else:
        total = count_statement(request, where).correlate(None)
        page = _page(request, where.conds)
    return page.add_columns(total.scalar_subquery().label("total"))


def _picked(request: SearchRequest, where: Where, with_count: bool) -> Select[Any]:
    """The page's ids picked from the index rows of the first criterion, in created
    order, the other criteria as id subqueries; then those resources."""
    assert where.in_order is not None and request.resource_type is not None
    rows = where.in_order.rows
    res_id = where.in_order.res_id
    created_seq = where.in_order.created_seq
    for ids in where.id_queries[1:]:
        rows = rows.where(res_id.in_(ids))
    if request.snapshot is not None:
        rows = rows.where(created_seq <= request.snapshot)
    rows = rows.distinct()  # a resource may have several matching rows, with one created_seq
    if not with_count:
        return _of_picked(request, rows, created_seq, None)
    matches = rows.cte("matches")
    total = select(func.count()).select_from(matches).scalar_subquery()
    counted: Select[Any] = select(picked_id, picked_seq).select_from(matches)
    return _of_picked(request, counted, picked_seq, total)


def _counted(request: SearchRequest, where: Where) -> Select[Any]:
    """The matches found once, under every condition, as (res_id, created_seq): counted,
    and the page's ids picked among them in created order; then those resources."""
    matches = select(cur.c.res_id, cur.c.created_seq).where(*where.conds).cte("matches")
    total = select(func.count()).select_from(matches).scalar_subquery()
    return _of_picked(request, select(picked_id).select_from(matches), picked_seq, total)


# The columns of the matches and picked subqueries, named without their subquery: the
# column collection of a fresh subquery costs more to build than the rest of a search.
picked_id = column("res_id", cur.c.res_id.type)
picked_seq = column("created_seq", cur.c.created_seq.type)


def _of_picked(
    request: SearchRequest, rows: Select[Any], created_seq: ColumnElement[Any], total: Any
) -> Select[Any]:
    """The page: the ids of `rows` (res_id first) picked in created order after the
    cursor, then those resources, with the total when counted."""
    assert request.resource_type is not None
    cursor = request.cursor
    after = [] if cursor is None else [created_seq > cursor.values[-1]]
    picked = rows.where(*after).order_by(created_seq).limit(request.count + 1).subquery()
    ids = select(picked_id).select_from(picked)
    conds = [LIVE, type_is(cur, request.resource_type), cur.c.res_id.in_(ids)]
    page = _frame((), request.snapshot is None, False).where(*conds).limit(request.count + 1)
    return page if total is None else page.add_columns(total.label("total"))


def _page(request: SearchRequest, conds: list[ColumnElement[bool]]) -> Select[Any]:
    """The page query: matches, their sort values and created_seq (the cursor), the snapshot."""
    cursor = request.cursor
    stmt = _frame(tuple(request.sort), request.snapshot is None, request.backward).where(*conds)
    if cursor is not None:
        keys = [(key.expression, key.descending) for key in request.sort]
        stmt = stmt.where(beyond([*keys, (cur.c.created_seq, False)], cursor))
    return stmt.limit(request.count + 1)


# Every visible row was created at or before this change: the page's snapshot.
_SNAPSHOT = select(func.max(ver.c.seq)).scalar_subquery().label("snap")
_PAGE_COLUMNS = (cur.c.type, cur.c.res_id, cur.c.content)
_SEQ_ASC = cur.c.created_seq.asc()
_SEQ_DESC = cur.c.created_seq.desc()
_FRAMES = raw.IdentityCache(size=512)


def _frame(sort: tuple[SortKey, ...], snapshot: bool, backward: bool) -> Select[Any]:
    """Columns and ORDER BY of a page, without its conditions: the same for every search
    sorted alike (sort keys are built once per parameter and direction), so built once."""

    def build() -> Select[Any]:
        labels = [key.expression.label(f"k{i}") for i, key in enumerate(sort)]
        stmt = select(*_PAGE_COLUMNS, *labels, cur.c.created_seq)
        if snapshot:
            stmt = stmt.add_columns(_SNAPSHOT)
        # ORDER BY names the labels: each sort value is computed once per row.
        ordered = [(label, key.descending) for label, key in zip(labels, sort, strict=True)]
        return stmt.order_by(*order_by(ordered, backward), _SEQ_DESC if backward else _SEQ_ASC)

    frame: Select[Any] = _FRAMES.get(sort, build, snapshot, backward)
    return frame
