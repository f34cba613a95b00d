"""SQL conditions that match one search value against the rows of an index table.

Each returns a Part (parts.py): the values it binds and how its SQL is built from bind
parameters standing for them, so that a condition of the same shape is built once.
A builder takes its values as arguments and closes over nothing that varies with them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, false, not_, or_, true

from app.fhir.search.extract import MAX_DATE, MAX_INDEXED, MIN_DATE
from app.fhir.search.parts import Part, const, join, leaf
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
Condition = ColumnElement[bool]
# Constant conditions, one object each: a Part names its constants by identity.
TRUE = true()
FALSE = false()


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# The patterns are built here, not in SQL, so PostgreSQL can use a pattern-ops index.
def prefix_pattern(text: str) -> str:
    return like_escape(text[:MAX_INDEXED]) + "%"


def inner_pattern(text: str) -> str:
    return "%" + like_escape(text[:MAX_INDEXED]) + "%"


def like(column: Column, pattern: Any) -> Condition:
    return column.like(pattern, escape="\\")


def any_of(*conditions: Condition) -> Condition:
    return or_(*conditions)


def all_of(*conditions: Condition) -> Condition:
    return and_(*conditions)


# --- token ----------------------------------------------------------------------------


def token(table: Table, value: SearchValue) -> Part:
    if isinstance(value, TextValue):
        return leaf(
            lambda first, inner: or_(like(table.c.text, first), like(table.c.text, inner)),
            prefix_pattern(value.text),
            inner_pattern(" " + value.text),
        )
    if isinstance(value, OfType):
        return leaf(
            lambda system, code, found: and_(
                table.c.type_system == system, table.c.type_code == code, table.c.code == found
            ),
            value.type_system,
            value.type_code,
            value.value,
        )
    assert isinstance(value, TokenValue)
    if value.system == "":  # `|code`: no system at all
        return leaf(lambda code: and_(table.c.code == code, table.c.system.is_(None)), value.code)
    if value.system is None:
        return leaf(lambda code: table.c.code == code, value.code)
    if value.code is None:
        return leaf(lambda system: table.c.system == system, value.system)
    return leaf(
        lambda code, system: and_(table.c.code == code, table.c.system == system),
        value.code,
        value.system,
    )


def tokens(table: Table, values: list[SearchValue]) -> Part:
    codes = [v.code for v in values if isinstance(v, TokenValue) and v.system is None]
    if len(codes) == len(values) and len(codes) > 1:
        # `status=a,b`: one IN, one index range per code
        return leaf(lambda *found: table.c.code.in_(found), *codes)
    return join(any_of, *[token(table, v) for v in values])


# --- string, uri ------------------------------------------------------------------------


def string(table: Table, value: SearchValue, modifier: str | None) -> Part:
    if isinstance(value, ExactValue):
        return leaf(lambda text: table.c.value_exact == text, value.text)
    assert isinstance(value, TextValue)
    if modifier == "contains":
        return leaf(lambda pattern: like(table.c.value_norm, pattern), inner_pattern(value.text))
    return leaf(lambda pattern: like(table.c.value_norm, pattern), prefix_pattern(value.text))


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


def uri(table: Table, value: SearchValue, modifier: str | None) -> Part:
    assert isinstance(value, UriValue)
    if modifier == "below":
        return leaf(lambda pattern: like(table.c.uri, pattern), prefix_pattern(value.uri))
    if modifier == "above":
        return leaf(lambda *found: table.c.uri.in_(found), *uri_prefixes(value.uri))
    return leaf(lambda found: table.c.uri == found, value.uri)


# --- reference ----------------------------------------------------------------------------


def reference(table: Table, value: SearchValue) -> Part:
    assert isinstance(value, ReferenceValue)
    c = table.c
    if value.url is not None:
        if value.version is not None:
            return leaf(
                lambda url, version: and_(c.url == url, c.target_version == version),
                value.url,
                value.version,
            )
        return leaf(lambda url: c.url == url, value.url)
    if value.type is not None:
        return leaf(
            lambda rid, rtype: and_(c.target_id == rid, c.target_type == rtype),
            value.id,
            value.type,
        )
    return leaf(lambda rid: c.target_id == rid, value.id)


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


def range_compare(low: Column, high: Column, prefix: str, ql: Any, qh: Any) -> Condition:
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


def in_range(low: Column, high: Column, value: DateValue, bounds: tuple[Any, Any]) -> Part:
    """A stored range against a date value whose search range is `bounds`."""
    prefix = value.prefix
    return leaf(lambda ql, qh: range_compare(low, high, prefix, ql, qh), *bounds)


def date(table: Table, value: SearchValue) -> Part:
    assert isinstance(value, DateValue)
    return in_range(table.c.low, table.c.high, value, date_bounds(value))


# --- number, quantity ---------------------------------------------------------------------------


def number_match(column: Column, value: NumberValue) -> Part:
    v = value.value
    prefix = value.prefix
    if prefix == "eq":
        return leaf(lambda lo, hi: and_(column >= lo, column < hi), value.low, value.high)
    if prefix == "ne":
        return leaf(lambda lo, hi: or_(column < lo, column >= hi), value.low, value.high)
    if prefix in ("gt", "sa"):
        return leaf(lambda x: column > x, v)
    if prefix in ("lt", "eb"):
        return leaf(lambda x: column < x, v)
    if prefix == "ge":
        return leaf(lambda x: column >= x, v)
    if prefix == "le":
        return leaf(lambda x: column <= x, v)
    margin = abs(v) / 10 or Decimal("0.1")
    return leaf(lambda lo, hi: and_(column >= lo, column <= hi), v - margin, v + margin)


def range_match(low: Column, high: Column, value: NumberValue) -> Part:
    """A stored Range [low, high] (either may be open) against a number."""
    prefix = value.prefix

    def make(v: Any) -> Condition:
        low_ok = or_(low.is_(None), low <= v)
        high_ok = or_(high.is_(None), high >= v)
        if prefix in ("eq", "ap"):
            return and_(low_ok, high_ok)
        if prefix == "ne":
            return not_(and_(low_ok, high_ok))
        if prefix in ("gt", "sa", "ge"):
            return or_(high.is_(None), high > v if prefix != "ge" else high >= v)
        return or_(low.is_(None), low < v if prefix != "le" else low <= v)

    return leaf(make, value.value)


def number(table: Table, value: SearchValue) -> Part:
    assert isinstance(value, NumberValue)
    return number_match(table.c.value, value)


def unit_match(table: Table, system: str | None, code: str | None) -> Part:
    """The unit conditions of a quantity, as a tuple of conditions."""
    if code is None:
        if system is None:
            return const(())
        return leaf(lambda s: (table.c.system == s,), system)
    if system is None:
        return leaf(lambda u: (or_(table.c.code == u, table.c.unit == u),), code)
    return leaf(lambda s, u: (table.c.system == s, table.c.code == u), system, code)


def quantity(table: Table, value: SearchValue) -> Part:
    assert isinstance(value, QuantityValue)
    c = table.c

    def make(number: Condition, bounded: Condition, units: tuple[Condition, ...]) -> Condition:
        amount = or_(and_(c.value.is_not(None), number), and_(c.value.is_(None), bounded))
        return and_(amount, *units)

    return join(
        make,
        number_match(c.value, value.number),
        range_match(c.low, c.high, value.number),
        unit_match(table, value.system, value.code),
    )


# --- composite ---------------------------------------------------------------------------


@cache  # one expression per table, component and key: the same in every statement
def _json_text(table: Table, index: int, key: str) -> Column:
    return table.c.components[(index, key)].as_string()


@cache
def _json_number(table: Table, index: int, key: str) -> Column:
    return table.c.components[(index, key)].as_float()


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def _text_equal(column: Column, value: Any) -> Part:
    return leaf(lambda found: column == found, value)


def component(table: Table, index: int, part: Component, value: SearchValue) -> Part:
    """One component of a composite value, against the JSON the row stores for it."""

    def text(key: str) -> Column:
        return _json_text(table, index, key)

    if part.type == "token" and isinstance(value, TokenValue):
        if index == 0:  # the first component is also in indexed columns
            return token(table, value)
        conds = [_text_equal(text("code"), value.code)] if value.code is not None else []
        if value.system:
            conds.append(_text_equal(text("system"), value.system))
        return join(all_of, *conds) if conds else const(TRUE)
    if part.type == "quantity" and isinstance(value, QuantityValue):
        conds = [number_match(_json_number(table, index, "value"), value.number)]
        if value.system is not None:
            conds.append(_text_equal(text("system"), value.system))
        if value.code is not None:
            code, unit = text("code"), text("unit")
            conds.append(leaf(lambda u: or_(code == u, unit == u), value.code))
        return join(all_of, *conds)
    if part.type == "number" and isinstance(value, NumberValue):
        return number_match(_json_number(table, index, "value"), value)
    if part.type == "date" and isinstance(value, DateValue):
        # Stored as ISO strings in UTC with microseconds: they compare as text.
        bounds = tuple(_iso(bound) for bound in date_bounds(value))
        return in_range(text("low"), text("high"), value, (bounds[0], bounds[1]))
    if part.type == "string" and isinstance(value, TextValue | ExactValue):
        column = text("value")
        return leaf(lambda pattern: like(column, pattern), prefix_pattern(value.text))
    if part.type == "uri" and isinstance(value, UriValue):
        return _text_equal(text("uri"), value.uri)
    if part.type == "reference" and isinstance(value, ReferenceValue):
        if value.url is not None:
            return _text_equal(text("url"), value.url)
        conds = [_text_equal(text("id"), value.id)]
        if value.type is not None:
            conds.append(_text_equal(text("type"), value.type))
        return join(all_of, *conds)
    return const(FALSE)


def composite(table: Table, parts: tuple[Component, ...], value: SearchValue) -> Part:
    assert isinstance(value, tuple)
    pairs = enumerate(zip(parts, value, strict=True))
    return join(all_of, *[component(table, i, part, v) for i, (part, v) in pairs])
