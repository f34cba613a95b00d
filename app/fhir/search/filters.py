"""Criteria turned into SQL conditions on resource_current, as Parts (parts.py).

Each criterion becomes `res_id IN (SELECT res_id FROM <index table> WHERE …)`: the
subqueries are uncorrelated, so both databases run them as semi-joins driven by
the most selective index. Chains and _has look through other resources; those
pass the caller's row filter too, so a hidden resource never makes a match.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    func,
    or_,
    select,
    tuple_,
)
from sqlalchemy.sql.elements import True_

from app.db.tables import resource_current as cur
from app.fhir.context import Context
from app.fhir.outcomes import FhirError
from app.fhir.search import match
from app.fhir.search.criteria import Chain, Criterion, Has, Match
from app.fhir.search.parts import Part, const, join, leaf
from app.fhir.search.tables import TABLES, search_reference
from app.fhir.search.values import DateValue, TokenValue

Condition = ColumnElement[bool]
SEARCH = "search-type"
LIVE = cur.c.deleted.is_(False)


# Conditions that recur in every statement are built once.
@cache
def type_is(table: Table, resource_type: str) -> Condition:
    return table.c.type == resource_type


@cache
def param_is(table: Table, code: str) -> Condition:
    return table.c.param == code


def visible(ctx: Context, resource_type: str) -> Condition | None:
    """The caller's row filter for a type it searches through; None when it sees all."""
    try:
        ctx.policy.check_interaction(resource_type, SEARCH)
    except FhirError:
        return match.FALSE
    condition = ctx.policy.row_filter(cur, resource_type, SEARCH)
    return None if isinstance(condition, True_) else condition


@dataclass(frozen=True)
class InOrder:
    """The index rows that decide one criterion, as (res_id, created_seq), a resource
    possibly more than once; the same as an id subquery; and those two columns, for the
    conditions added to the rows."""

    rows: Part
    ids: Part
    res_id: ColumnElement[Any]
    created_seq: ColumnElement[Any]


# _has reads its targets from the sources' reference rows: `link`. Its targets' liveness
# is checked against the deleted resources (`dead`, a small partial index); `target`
# gives the created_seq of a target the row was written before.
_LINK = search_reference.alias("link")
_DEAD = cur.alias("dead")
_TARGET = cur.alias("target")


def in_ids(ids: Part) -> Part:
    """res_id IN (the ids)."""
    return join(lambda found: cur.c.res_id.in_(found), ids)


class Filters:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def condition(self, criterion: Criterion) -> Part:
        """A condition on the resource_current row being searched."""
        if isinstance(criterion, Chain):
            return in_ids(self._chain(criterion))
        if isinstance(criterion, Has):
            return in_ids(self._has(criterion))
        if criterion.param.column is not None:
            return _column(criterion)
        if criterion.missing is not None:
            present = _having_rows(criterion.resource_type, _present(criterion))
            return _not_in(criterion, present) if criterion.missing else _in(criterion, present)
        found = _having_rows(criterion.resource_type, _matching(criterion))
        return _not_in(criterion, found) if criterion.modifier == "not" else _in(criterion, found)

    def matching_ids(self, criterion: Criterion) -> Part | None:
        """The ids a criterion keeps, when it keeps only ids from the index (no :not,
        :missing or column criterion); those ids are all of live resources."""
        if isinstance(criterion, Chain):
            return self._chain(criterion)
        if isinstance(criterion, Has):
            return self._has(criterion)
        if criterion.resource_type is None or not _is_plain(criterion):
            return None
        return _having_rows(criterion.resource_type, _matching(criterion))

    def ids_in_order(self, criterion: Criterion) -> InOrder | None:
        """The index rows a plain criterion keeps, when they all come from one table; the
        reference rows of a _has."""
        if isinstance(criterion, Has):
            return self._has_in_order(criterion)
        if criterion.resource_type is None or not _is_plain(criterion):
            return None
        assert isinstance(criterion, Match)
        (kind, condition), *more = _matching(criterion)
        if more:
            return None
        table = TABLES[kind]
        of_type = type_is(table, criterion.resource_type)
        rows = join(
            lambda found: select(table.c.res_id, table.c.created_seq).where(found, of_type),
            condition,
        )
        ids = join(lambda found: select(table.c.res_id).where(found, of_type), condition)
        return InOrder(rows, ids, table.c.res_id, table.c.created_seq)

    def ids(self, resource_type: str, criterion: Criterion) -> Part:
        """Ids of the resources of a type, visible to the caller, that match."""
        allowed = visible(self.ctx, resource_type)
        if allowed is None and _is_plain(criterion):
            # Index rows exist only for live resources: the index subquery is enough.
            assert isinstance(criterion, Match)
            return _having_rows(resource_type, _matching(criterion))
        of_type = type_is(cur, resource_type)

        def make(found: Condition) -> Select[Any]:
            stmt = select(cur.c.res_id).where(of_type, LIVE, found)
            if allowed is not None:
                stmt = stmt.where(allowed)
            return stmt.correlate(None)

        return join(make, self.condition(criterion))

    def _chain(self, chain: Chain) -> Part:
        of_type = type_is(search_reference, chain.resource_type)
        of_param = param_is(search_reference, chain.param.code)
        return join(
            lambda *branches: select(search_reference.c.res_id).where(
                of_type, of_param, or_(*branches)
            ),
            *[self._branch(target, inner) for target, inner in chain.targets],
        )

    def _branch(self, target: str, inner: Criterion) -> Part:
        ref = search_reference.c
        return join(
            lambda ids: and_(ref.target_type == target, ref.target_id.in_(ids)),
            self.ids(target, inner),
        )

    def _has(self, has: Has, sources: Part | None = None) -> Part:
        """The targets of `sources` (by default, the sources the _has matches)."""
        ref = search_reference.c
        of_type = type_is(search_reference, has.source_type)
        of_param = param_is(search_reference, has.param.code)
        target = has.resource_type
        return join(
            lambda ids: select(ref.target_id).where(
                of_type, of_param, ref.target_type == target, ref.res_id.in_(ids)
            ),
            sources or self.ids(has.source_type, has.inner),
        )

    def _has_in_order(self, has: Has) -> InOrder:
        """The targets of a _has, with their created_seq, from the sources' reference rows
        alone (see _has_frame)."""
        frame, created_seq = _has_frame(has.source_type, has.param.code, has.resource_type)
        sources = self.ids(has.source_type, has.inner)
        rows = join(lambda ids: frame.where(_LINK.c.res_id.in_(ids)), sources)
        return InOrder(rows, self._has(has, sources), _LINK.c.target_id, created_seq)


@cache
def _has_frame(source_type: str, code: str, target_type: str) -> tuple[Select[Any], Any]:
    """(res_id, created_seq) of the targets the reference rows of `source_type.code` point
    at, without the condition on the sources: a row written before its target existed
    looks the target up; a deleted target is left out. Built once: the same for every
    _has through the same parameter."""
    link = _LINK.c
    looked_up = (
        select(_TARGET.c.created_seq)
        .where(_TARGET.c.type == target_type, _TARGET.c.res_id == link.target_id)
        .scalar_subquery()
    )
    created_seq = func.coalesce(link.target_seq, looked_up).label("created_seq")
    deleted = (
        select(_DEAD.c.res_id)
        .where(_DEAD.c.deleted, _DEAD.c.type == target_type, _DEAD.c.res_id == link.target_id)
        .correlate(_LINK)
    )
    rows = select(link.target_id.label("res_id"), created_seq).where(
        link.type == source_type,
        link.param == code,
        link.target_type == target_type,
        ~deleted.exists(),
        created_seq.is_not(None),
    )
    return rows, created_seq


def plans_alike(criterion: Criterion) -> bool:
    """Whether a criterion's lookup uses its values only as equalities, lists or ranges
    on an index: a plan made once, without them, uses the index the same way. Not LIKE
    patterns (strings, :text, :contains, :below), from which only a plan made with the
    value can take index bounds; nor :not, :missing or composites."""
    if isinstance(criterion, Chain):
        return all(plans_alike(inner) for _target, inner in criterion.targets)
    if isinstance(criterion, Has):
        return plans_alike(criterion.inner)
    if criterion.param.column is not None or criterion.missing is not None:
        return False
    kind, modifier = criterion.param.type, criterion.modifier
    if kind == "string":
        return modifier == "exact"
    if kind == "uri":
        return modifier != "below"
    if kind == "token":
        return modifier in (None, "of-type")
    return kind in ("reference", "date", "number", "quantity")  # reference: any modifier


def _having_rows(resource_type: str | None, where: list[tuple[str, Part]]) -> Part:
    """Resources with index rows meeting any of the (table, condition) pairs."""
    selects = [_rows_of(TABLES[kind], resource_type, condition) for kind, condition in where]
    if len(selects) == 1:
        return selects[0]
    return join(lambda first, *more: first.union_all(*more), *selects)


def _rows_of(table: Table, resource_type: str | None, condition: Part) -> Part:
    if resource_type is None:
        return join(lambda found: select(table.c.type, table.c.res_id).where(found), condition)
    of_type = type_is(table, resource_type)
    return join(lambda found: select(table.c.res_id).where(found, of_type), condition)


def _is_plain(criterion: Criterion) -> bool:
    return (
        isinstance(criterion, Match)
        and criterion.param.column is None
        and criterion.missing is None
        and criterion.modifier != "not"
    )


def _in(criterion: Match, ids: Part) -> Part:
    if criterion.resource_type is None:
        return join(lambda found: tuple_(cur.c.type, cur.c.res_id).in_(found), ids)
    return in_ids(ids)


def _not_in(criterion: Match, ids: Part) -> Part:
    if criterion.resource_type is None:
        return join(lambda found: tuple_(cur.c.type, cur.c.res_id).not_in(found), ids)
    return join(lambda found: cur.c.res_id.not_in(found), ids)


def _present(criterion: Match) -> list[tuple[str, Part]]:
    """Any value at all, for :missing (a Reference may carry only an identifier)."""
    code = criterion.param.code
    kinds = [criterion.param.type]
    if criterion.param.type == "reference":
        kinds.append("token")
    return [(kind, const(param_is(TABLES[kind], code))) for kind in kinds]


def _matching(criterion: Match) -> list[tuple[str, Part]]:
    param = criterion.param
    kind = param.type
    if kind == "reference" and criterion.modifier == "identifier":
        kind = "token"
    table = TABLES[kind]
    values = list(criterion.values)
    if kind == "token":
        found = match.tokens(table, values)
    elif kind == "composite":
        found = join(match.any_of, *[match.composite(table, param.components, v) for v in values])
    else:
        found = join(match.any_of, *[_value(kind, table, criterion.modifier, v) for v in values])
    of_param = param_is(table, param.code)
    return [(kind, join(lambda condition: and_(of_param, condition), found))]


def _value(kind: str, table: Any, modifier: str | None, value: Any) -> Part:
    if kind == "string":
        return match.string(table, value, modifier)
    if kind == "reference":
        return match.reference(table, value)
    if kind == "date":
        return match.date(table, value)
    if kind == "number":
        return match.number(table, value)
    if kind == "quantity":
        return match.quantity(table, value)
    return match.uri(table, value, modifier)


def _column(criterion: Match) -> Part:
    """_id and _lastUpdated: columns of resource_current itself."""
    if criterion.param.code == "_id":
        ids = [v.code for v in criterion.values if isinstance(v, TokenValue) and v.code]
        if criterion.modifier == "not":
            return leaf(lambda *found: ~cur.c.res_id.in_(found), *ids)
        return leaf(lambda *found: cur.c.res_id.in_(found), *ids)
    moment = cur.c.last_updated
    return join(
        match.any_of,
        *[
            match.in_range(moment, moment, v, match.date_bounds(v))
            for v in criterion.values
            if isinstance(v, DateValue)
        ],
    )
