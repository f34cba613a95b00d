"""_sort keys and keyset paging.

A page link carries the snapshot (the highest change number when the search
began: later creations stay out) and a cursor (the sort values of the row the
page starts after, or before, with created_seq as the last tie-breaker). Unlike
an offset, a cursor does not shift when rows before it come or go.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, false, func, or_, select

from app.db.tables import resource_current as cur
from app.fhir.search.criteria import lookup_param
from app.fhir.search.parts import Part, leaf
from app.fhir.search.tables import TABLES
from app.fhir.search.values import Invalid

# The index column a parameter type sorts on.
SORT_COLUMNS = {
    "string": "value_norm",
    "token": "code",
    "number": "value",
    "quantity": "value",
    "uri": "uri",
    "reference": "target_id",
}


@dataclass(frozen=True)
class SortKey:
    code: str
    descending: bool
    expression: ColumnElement[Any]
    kind: str  # how a cursor value is read back: date, number or text


def parse_sort(resource_type: str | None, text: str) -> list[SortKey]:
    keys: list[SortKey] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        descending = item.startswith("-")
        code = item.removeprefix("-")
        param = lookup_param(resource_type, code)
        keys.append(_key(param.code, param.type, param.column, descending))
    if not keys:
        raise Invalid("_sort needs at least one parameter")
    return keys


@cache  # no values in it: one expression per parameter and direction, reused
def _key(code: str, kind: str, column: str | None, descending: bool) -> SortKey:
    if column is not None:
        read_as = "date" if kind == "date" else "text"
        return SortKey(code, descending, cur.c[column], read_as)
    if kind == "date":
        # Ascending on the earliest start, descending on the latest end (FHIR sort rule).
        table, name = TABLES["date"], ("high" if descending else "low")
    elif kind in SORT_COLUMNS:
        table, name = TABLES[kind], SORT_COLUMNS[kind]
    else:
        raise Invalid(f"Cannot sort on '{code}' ({kind})")
    aggregate = func.max if descending else func.min
    value = (
        select(aggregate(table.c[name]))
        .where(table.c.type == cur.c.type, table.c.res_id == cur.c.res_id, table.c.param == code)
        .scalar_subquery()
    )
    read_as = "date" if kind == "date" else ("number" if kind in ("number", "quantity") else "text")
    return SortKey(code, descending, value, read_as)


# --- cursors ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    values: tuple[Any, ...]  # one per sort key, then created_seq
    before: bool = False


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def encode_cursor(values: tuple[Any, ...]) -> str:
    raw = orjson.dumps([_plain(v) for v in values])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, keys: list[SortKey], before: bool) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        items = orjson.loads(raw)
    except (ValueError, orjson.JSONDecodeError):
        raise Invalid("malformed paging cursor") from None
    if not isinstance(items, list) or len(items) != len(keys) + 1:
        raise Invalid("the paging cursor does not match this search")
    if not isinstance(items[-1], int):
        raise Invalid("malformed paging cursor")
    values = [_read(item, key.kind) for item, key in zip(items, keys, strict=False)]
    return Cursor((*values, items[-1]), before)


def _read(item: Any, kind: str) -> Any:
    if item is None:
        return None
    try:
        if kind == "date":
            return datetime.fromisoformat(str(item))
        if kind == "number":
            return Decimal(str(item))
    except (ValueError, InvalidOperation):
        raise Invalid("malformed paging cursor") from None
    return str(item)


# --- SQL ---------------------------------------------------------------------------------------


def order_by(columns: Sequence[tuple[ColumnElement[Any], bool]], backward: bool) -> list[Any]:
    """Each key with NULLs last (first when paging backward), then the tie-breaker."""
    clauses: list[Any] = []
    for column, descending in columns:
        down = descending != backward
        ordered = column.desc() if down else column.asc()
        clauses.append(ordered.nulls_first() if backward else ordered.nulls_last())
    return clauses


def beyond(columns: list[tuple[ColumnElement[Any], bool]], cursor: Cursor) -> Part:
    """Rows strictly after the cursor in the page order (before it for a `previous` link).
    A value that is None shapes the SQL (IS NULL); the others are bound."""
    keys = tuple(columns)
    nulls = tuple(value is None for value in cursor.values)
    before = cursor.before

    def make(*bound: Any) -> ColumnElement[bool]:
        given = iter(bound)
        values = [None if null else next(given) for null in nulls]
        alternatives = []
        for i, (column, descending) in enumerate(keys):
            same = [_equal(c, v) for (c, _d), v in zip(keys[:i], values[:i], strict=True)]
            alternatives.append(and_(*same, _past(column, descending, values[i], before)))
        return or_(*alternatives)

    return leaf(make, *(value for value in cursor.values if value is not None))


def _equal(column: ColumnElement[Any], value: Any) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


def _past(
    column: ColumnElement[Any], descending: bool, value: Any, before: bool
) -> ColumnElement[bool]:
    if not before:  # NULLs come last
        if value is None:
            return false()
        return or_(column.is_(None), column < value if descending else column > value)
    if value is None:
        return column.is_not(None)
    return column > value if descending else column < value
