"""SQL conditions that match one search value against the rows of an index table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, false, not_, or_, true

from app.fhir.search.extract import MAX_DATE, MAX_INDEXED, MIN_DATE
from app.fhir.search.registry import Component
from app.fhir.search.values import (
    DateValue,
    ExactValue,
    NumberValue,
    OfType,
    QuantityValue,
    ReferenceValue,
    SearchValue,
    TextValue,
    TokenValue,
    UriValue,
)

Column = ColumnElement[Any]


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def starts_with(column: Column, text: str) -> ColumnElement[bool]:
    # The pattern is built here, not in SQL, so PostgreSQL can use a pattern-ops index.
    return column.like(like_escape(text[:MAX_INDEXED]) + "%", escape="\\")


def contains(column: Column, text: str) -> ColumnElement[bool]:
    return column.like("%" + like_escape(text[:MAX_INDEXED]) + "%", escape="\\")


# --- token ----------------------------------------------------------------------------


def token(table: Table, value: SearchValue) -> ColumnElement[bool]:
    c = table.c
    if isinstance(value, TextValue):
        return or_(starts_with(c.text, value.text), contains(c.text, " " + value.text))
    if isinstance(value, OfType):
        return and_(
            c.type_system == value.type_system,
            c.type_code == value.type_code,
            c.code == value.value,
        )
    assert isinstance(value, TokenValue)
    conds: list[ColumnElement[bool]] = []
    if value.code is not None:
        conds.append(c.code == value.code)
    if value.system == "":
        conds.append(c.system.is_(None))
    elif value.system is not None:
        conds.append(c.system == value.system)
    return and_(*conds)


def tokens(table: Table, values: list[SearchValue]) -> ColumnElement[bool]:
    codes = [v.code for v in values if isinstance(v, TokenValue) and v.system is None]
    if len(codes) == len(values) and len(codes) > 1:
        return table.c.code.in_(codes)  # `status=a,b`: one IN, one index range per code
    return or_(*[token(table, v) for v in values])


# --- string, uri ------------------------------------------------------------------------


def string(table: Table, value: SearchValue, modifier: str | None) -> ColumnElement[bool]:
    if isinstance(value, ExactValue):
        return table.c.value_exact == value.text
    assert isinstance(value, TextValue)
    if modifier == "contains":
        return contains(table.c.value_norm, value.text)
    return starts_with(table.c.value_norm, value.text)


def uri_prefixes(uri: str) -> list[str]:
    """`uri` and each of its parents, cut at '/' (for :above)."""
    found = [uri]
    scheme_end = uri.find("://")
    floor = scheme_end + 3 if scheme_end >= 0 else 0
    current = uri.rstrip("/")
    while (cut := current.rfind("/")) > floor:
        current = current[:cut]
        found += [current, current + "/"]
    return found


def uri(table: Table, value: SearchValue, modifier: str | None) -> ColumnElement[bool]:
    assert isinstance(value, UriValue)
    if modifier == "below":
        return starts_with(table.c.uri, value.uri)
    if modifier == "above":
        return table.c.uri.in_(uri_prefixes(value.uri))
    return table.c.uri == value.uri


# --- reference ----------------------------------------------------------------------------


def reference(table: Table, value: SearchValue) -> ColumnElement[bool]:
    assert isinstance(value, ReferenceValue)
    c = table.c
    if value.url is not None:
        if value.version is not None:
            return and_(c.url == value.url, c.target_version == value.version)
        return c.url == value.url
    conds = [c.target_id == value.id]
    if value.type is not None:
        conds.append(c.target_type == value.type)
    return and_(*conds)


# --- date -------------------------------------------------------------------------------------


def date_bounds(value: DateValue) -> tuple[datetime, datetime]:
    """The search range; `ap` widens it by 10% of its distance from now (at least a day)."""
    if value.prefix != "ap":
        return value.low, value.high
    now = datetime.now(UTC)
    gap = max(abs(now - value.low), abs(now - value.high))
    margin = max(gap / 10, timedelta(days=1))
    low = value.low - margin if value.low - MIN_DATE > margin else MIN_DATE
    high = value.high + margin if MAX_DATE - value.high > margin else MAX_DATE
    return low, high


def range_compare(low: Column, high: Column, prefix: str, ql: Any, qh: Any) -> ColumnElement[bool]:
    """FHIR comparison of a stored range [low, high] with the search range [ql, qh]."""
    inside = and_(low >= ql, high <= qh)
    if prefix == "eq":
        return inside
    if prefix == "ne":
        return or_(low < ql, high > qh)
    if prefix == "gt":
        return high > qh
    if prefix == "lt":
        return low < ql
    if prefix == "ge":
        return or_(high > qh, inside)
    if prefix == "le":
        return or_(low < ql, inside)
    if prefix == "sa":
        return low > qh
    if prefix == "eb":
        return high < ql
    return and_(low <= qh, high >= ql)  # ap, on the widened range


def date(table: Table, value: SearchValue) -> ColumnElement[bool]:
    assert isinstance(value, DateValue)
    return range_compare(table.c.low, table.c.high, value.prefix, *date_bounds(value))


# --- number, quantity ---------------------------------------------------------------------------


def number_match(column: Column, value: NumberValue) -> ColumnElement[bool]:
    v = value.value
    prefix = value.prefix
    if prefix == "eq":
        return and_(column >= value.low, column < value.high)
    if prefix == "ne":
        return or_(column < value.low, column >= value.high)
    if prefix in ("gt", "sa"):
        return column > v
    if prefix in ("lt", "eb"):
        return column < v
    if prefix == "ge":
        return column >= v
    if prefix == "le":
        return column <= v
    margin = abs(v) / 10 or Decimal("0.1")
    return and_(column >= v - margin, column <= v + margin)


def range_match(low: Column, high: Column, value: NumberValue) -> ColumnElement[bool]:
    """A stored Range [low, high] (either may be open) against a number."""
    v = value.value
    prefix = value.prefix
    low_ok = or_(low.is_(None), low <= v)
    high_ok = or_(high.is_(None), high >= v)
    if prefix in ("eq", "ap"):
        return and_(low_ok, high_ok)
    if prefix == "ne":
        return not_(and_(low_ok, high_ok))
    if prefix in ("gt", "sa", "ge"):
        return or_(high.is_(None), high > v if prefix != "ge" else high >= v)
    return or_(low.is_(None), low < v if prefix != "le" else low <= v)


def number(table: Table, value: SearchValue) -> ColumnElement[bool]:
    assert isinstance(value, NumberValue)
    return number_match(table.c.value, value)


def unit_match(table: Table, system: str | None, code: str | None) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if system is not None:
        conds.append(table.c.system == system)
    if code is not None:
        by_unit = or_(table.c.code == code, table.c.unit == code)
        conds.append(table.c.code == code if system else by_unit)
    return conds


def quantity(table: Table, value: SearchValue) -> ColumnElement[bool]:
    assert isinstance(value, QuantityValue)
    c = table.c
    amount = or_(
        and_(c.value.is_not(None), number_match(c.value, value.number)),
        and_(c.value.is_(None), range_match(c.low, c.high, value.number)),
    )
    return and_(amount, *unit_match(table, value.system, value.code))


# --- composite ---------------------------------------------------------------------------


def _json_text(table: Table, index: int, key: str) -> Column:
    return table.c.components[(index, key)].as_string()


def _json_number(table: Table, index: int, key: str) -> Column:
    return table.c.components[(index, key)].as_float()


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def component(table: Table, index: int, part: Component, value: SearchValue) -> ColumnElement[bool]:
    """One component of a composite value, against the JSON the row stores for it."""
    text = lambda key: _json_text(table, index, key)  # noqa: E731
    if part.type == "token" and isinstance(value, TokenValue):
        if index == 0:  # the first component is also in indexed columns
            return token(table, value)
        conds = [text("code") == value.code] if value.code is not None else []
        if value.system:
            conds.append(text("system") == value.system)
        return and_(*conds) if conds else true()
    if part.type == "quantity" and isinstance(value, QuantityValue):
        conds = [number_match(_json_number(table, index, "value"), value.number)]
        if value.system is not None:
            conds.append(text("system") == value.system)
        if value.code is not None:
            conds.append(or_(text("code") == value.code, text("unit") == value.code))
        return and_(*conds)
    if part.type == "number" and isinstance(value, NumberValue):
        return number_match(_json_number(table, index, "value"), value)
    if part.type == "date" and isinstance(value, DateValue):
        # Stored as ISO strings in UTC with microseconds: they compare as text.
        ql, qh = (_iso(bound) for bound in date_bounds(value))
        return range_compare(text("low"), text("high"), value.prefix, ql, qh)
    if part.type == "string" and isinstance(value, TextValue | ExactValue):
        return starts_with(text("value"), value.text)
    if part.type == "uri" and isinstance(value, UriValue):
        return text("uri") == value.uri
    if part.type == "reference" and isinstance(value, ReferenceValue):
        if value.url is not None:
            return text("url") == value.url
        conds = [text("id") == value.id]
        if value.type is not None:
            conds.append(text("type") == value.type)
        return and_(*conds)
    return false()


def composite(
    table: Table, parts: tuple[Component, ...], value: SearchValue
) -> ColumnElement[bool]:
    assert isinstance(value, tuple)
    pairs = enumerate(zip(parts, value, strict=True))
    return and_(*[component(table, i, part, v) for i, (part, v) in pairs])
