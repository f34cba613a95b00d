"""The SQL of a search: its conditions, its page and its count, as Parts (parts.py).

A page is read from resource_current in the search's order, created_seq last (the
tie-breaker, and the cursor of the paging links). From the cheapest:

- picked from the index: when the index alone decides the matches (every criterion an
  index lookup, the caller sees every row) and the order is the default one, the
  index rows carry the created_seq that order needs. The page's ids are picked there
  and only those rows of resource_current are read (`Patient?name=dupont`: 21 rows,
  not the 357 matches); a _has picks them among its sources' reference rows.
- counted once: in the default order, the matches' (res_id, created_seq) are found once
  under all the conditions; the page is picked among them and they are counted
  (chains, a caller's row filter);
- sorted, one criterion whose ids are found once, for the page and its count;
- the page under all its conditions, the count as a subquery of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    bindparam,
    column,
    func,
    intersect,
    select,
)
from sqlalchemy.sql.elements import True_

from app.db import raw
from app.db.tables import resource_current as cur
from app.db.tables import resource_version as ver
from app.fhir.context import Context
from app.fhir.search import filters
from app.fhir.search.criteria import Has
from app.fhir.search.filters import LIVE, Filters, InOrder, in_ids, type_is
from app.fhir.search.paging import SortKey, beyond, order_by
from app.fhir.search.parts import Part, const, join, leaf
from app.fhir.search.request import SearchRequest


@dataclass
class Where:
    """The WHERE of a search, and what lets the index alone find or count its matches."""

    conds: list[Part]
    sees_all: bool  # no row filter: the caller sees every row
    id_queries: list[Part | None]  # per criterion its id subquery, or None (:not, _id …)
    first: int  # conds[first + i] is the condition of criterion i
    # (res_id, created_seq) index rows of the first criterion, when the page can be
    # picked from the index
    in_order: InOrder | None = None
    # Every id query yields live resources only. Not so for _has: a source's index rows
    # still point at a target deleted since.
    live_ids: bool = True


_LIVE = const(LIVE)


def where(ctx: Context, request: SearchRequest, interaction: str, *, from_index: bool) -> Where:
    """The conditions; with `from_index`, what lets the page be picked from the index."""
    rtype = request.resource_type
    conds: list[Part] = [_LIVE]
    if rtype is not None:
        conds.append(const(type_is(cur, rtype)))
    elif request.types is not None:
        conds.append(leaf(lambda *types: cur.c.type.in_(types), *request.types))
    allowed = ctx.policy.row_filter(cur, rtype, interaction)
    sees_all = isinstance(allowed, True_)
    if not sees_all:
        conds.append(const(allowed))
    pickable = from_index and sees_all and not request.sort and not request.backward
    filters = Filters(ctx)
    found = Where(conds, sees_all, [], len(conds))
    for criterion in request.criteria:
        ordered = filters.ids_in_order(criterion) if pickable and not found.id_queries else None
        ids: Part | None
        if ordered is not None:
            found.in_order = ordered
            ids = ordered.ids
        else:
            ids = filters.matching_ids(criterion)
        found.id_queries.append(ids)
        found.live_ids = found.live_ids and not isinstance(criterion, Has)
        conds.append(in_ids(ids) if ids is not None else filters.condition(criterion))
    if None in found.id_queries:
        found.in_order = None
    if request.snapshot is not None:
        conds.append(leaf(lambda snapshot: cur.c.created_seq <= snapshot, request.snapshot))
    return found


def plans_alike(request: SearchRequest, where: Where, large: bool) -> bool:
    """Whether the page of this search can be planned once, whatever its values: a large
    result, read whole to be counted, in the default order, decided by one criterion
    whose values only feed index conditions, the caller seeing every row. Planned with
    its values, a page of several criteria may start from the one that is selective for
    those values; a small page may stop early along the created order."""
    return (
        large
        and where.sees_all
        and not request.sort
        and len(request.criteria) == 1
        and filters.plans_alike(request.criteria[0])
    )


def tuple_of(parts: list[Part]) -> Part:
    """The SQL of each part, as a tuple."""
    return join(lambda *built: built, *parts)


def count_statement(request: SearchRequest, where: Where) -> Part:
    """count(*) of the matches. When every criterion is an index lookup, nothing hides
    rows and no snapshot applies, the index alone answers: index rows only exist for
    live resources, so resource_current need not be read."""
    ids = where.id_queries
    if where.sees_all and where.live_ids and request.snapshot is None and ids and None not in ids:
        found = [i for i in ids if i is not None]
        if len(found) > 1:  # INTERSECT drops repeats
            return join(
                lambda *queries: select(func.count()).select_from(intersect(*queries).subquery()),
                *found,
            )
        return join(_count_ids, found[0])
    return join(
        lambda conds: select(func.count()).select_from(cur).where(*conds), tuple_of(where.conds)
    )


def _count_ids(ids: Any) -> Select[Any]:
    if isinstance(ids, Select):
        return select(func.count()).select_from(ids.distinct().subquery())
    matches = ids.subquery()  # a UNION ALL of index tables: the same id may come twice
    return select(func.count(matches.c[0].distinct()))


def page_statement(request: SearchRequest, where: Where, with_count: bool) -> Part:
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
        conds = list(where.conds)
        conds[where.first] = join(_found_once, ids[0])
        return _page(request, conds)
    return _page(request, where.conds, total=count_statement(request, where))


def _found_once(ids: Any) -> tuple[ColumnElement[bool], Select[Any]]:
    """The matches as a CTE: the page's condition on them, and their count."""
    found = ids.cte("matches")
    return cur.c.res_id.in_(select(found.c[0])), select(func.count(found.c[0].distinct()))


_NONE = const(None)  # an optional child that is not there


def _picked(request: SearchRequest, where: Where, with_count: bool) -> Part:
    """The page's ids picked from the index rows of the first criterion, in created
    order, the other criteria as id subqueries; then those resources."""
    assert where.in_order is not None and request.resource_type is not None
    res_id = where.in_order.res_id
    created_seq = where.in_order.created_seq

    def rows(found: Select[Any], snapshot: Any, *others: Any) -> Select[Any]:
        for ids in others:
            found = found.where(res_id.in_(ids))
        if snapshot is not None:
            found = found.where(created_seq <= snapshot)
        # A resource may have several matching rows, with one created_seq.
        return found.distinct()

    others = [ids for ids in where.id_queries[1:] if ids is not None]
    found = join(rows, where.in_order.rows, _value(request.snapshot), *others)
    return _of_picked(request, found, created_seq, with_count)


def _counted(request: SearchRequest, where: Where) -> Part:
    """The matches found once, under every condition, as (res_id, created_seq): counted,
    and the page's ids picked among them in created order; then those resources."""
    matches = join(
        lambda conds: select(cur.c.res_id, cur.c.created_seq).where(*conds), tuple_of(where.conds)
    )
    return _of_picked(request, matches, cur.c.created_seq, counted=True)


# The columns of the matches and picked subqueries, named without their subquery: the
# column collection of a fresh subquery costs more to build than the rest of a search.
picked_id = column("res_id", cur.c.res_id.type)
picked_seq = column("created_seq", cur.c.created_seq.type)


def _of_picked(
    request: SearchRequest, rows: Part, created_seq: ColumnElement[Any], counted: bool
) -> Part:
    """The page: the ids of `rows` (res_id first) picked in created order after the
    cursor, then those resources, with the total when counted."""
    assert request.resource_type is not None
    of_type = type_is(cur, request.resource_type)
    frame = _frame((), request.snapshot is None, False)

    def make(found: Select[Any], limit: Any, after: Any) -> Select[Any]:
        seq, total = created_seq, None
        if counted:
            matches = found.cte("matches")
            total = select(func.count()).select_from(matches).scalar_subquery()
            found, seq = select(picked_id, picked_seq).select_from(matches), picked_seq
        if after is not None:
            found = found.where(seq > after)
        picked = found.order_by(seq).limit(limit).subquery()
        ids = select(picked_id).select_from(picked)
        page = frame.where(LIVE, of_type, cur.c.res_id.in_(ids)).limit(limit)
        return page if total is None else page.add_columns(total.label("total"))

    cursor = request.cursor
    after = _value(cursor.values[-1] if cursor is not None else None)
    return join(make, rows, _limit(request), after)


def _value(value: Any) -> Part:
    """A bound value, or nothing when None."""
    return _NONE if value is None else leaf(lambda bound: bound, value)


def _limit(request: SearchRequest) -> Part:
    """count + 1 rows: one more tells whether another page follows."""
    return leaf(
        lambda bound: bindparam(bound.key, type_=Integer, required=False), request.count + 1
    )


def _page(request: SearchRequest, conds: list[Part], total: Part | None = None) -> Part:
    """The page query: matches, their sort values and created_seq (the cursor), the
    snapshot; the total as its last column when there is one (`total`, or a criterion
    found once, whose condition comes with the count)."""
    frame = _frame(tuple(request.sort), request.snapshot is None, request.backward)

    def make(built: tuple[Any, ...], limit: Any, count: Any, after: Any) -> Select[Any]:
        conditions = list(built)
        for i, condition in enumerate(conditions):
            if isinstance(condition, tuple):  # found once: its condition and its count
                conditions[i], count = condition
        if after is not None:
            conditions.append(after)
        stmt = frame.where(*conditions).limit(limit)
        if count is None:
            return stmt
        return stmt.add_columns(count.correlate(None).scalar_subquery().label("total"))

    cursor = request.cursor
    after = _NONE
    if cursor is not None:
        keys = [(key.expression, key.descending) for key in request.sort]
        after = beyond([*keys, (cur.c.created_seq, False)], cursor)
    return join(make, tuple_of(conds), _limit(request), total or _NONE, after)


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
