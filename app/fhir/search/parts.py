"""Search statements built once per shape, their values bound per request.

Two searches that differ only in their values — `Task?patient=A&status=requested` and
`Task?patient=B&status=requested` — have the same SQL. Building it with SQLAlchemy and
finding its compiled form cost a short search more server time than running it, so
each piece of a statement is a Part: the values it binds, in order, and a function
that builds its SQL from bind parameters standing for them. A request only makes its
Parts; the statement is built the first time its shape is seen and reused after.

A Part's shape is its function's code and closure (the tables, columns, prefixes and
constant conditions it was made with) and its children's shapes. Values never enter
the closure: they are the function's arguments. So a shape is known without building
anything, and two Parts alike in shape build the same SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BindParameter, bindparam

# Closure values kept as they are in a shape; anything else (tables, columns, SQL
# constants, parameter definitions) by identity, kept alive by the cached statement.
_PLAIN = (str, int, float, bool, Decimal, datetime, type(None))


class Part:
    """A piece of SQL: a leaf binds `values` and builds with one bind parameter per
    value; a join builds from its children's SQL."""

    __slots__ = ("children", "key", "make", "values")

    def __init__(
        self, make: Callable[..., Any], values: tuple[Any, ...], children: tuple[Part, ...]
    ):
        self.make = make
        self.values = values
        self.children = children
        self.key: Hashable = (
            make.__code__,
            _closure(make),
            len(values),
            *(c.key for c in children),
        )

    def build(self, binds: Binds) -> Any:
        if self.children:
            return self.make(*(child.build(binds) for child in self.children))
        return self.make(*binds.take(len(self.values)))

    def bound(self, into: list[Any]) -> list[Any]:
        """The values in the order build() binds them."""
        if self.children:
            for child in self.children:
                child.bound(into)
        else:
            into.extend(self.values)
        return into


def leaf(make: Callable[..., Any], *values: Any) -> Part:
    """SQL binding `values`: make(*params), a bind parameter per value, in order."""
    return Part(make, values, ())


def join(make: Callable[..., Any], *children: Part) -> Part:
    """SQL made of other Parts: make(*their SQL). A join binds no value of its own."""
    return Part(make, (), children)


def const(sql: Any) -> Part:
    """A piece of SQL without values (a cached condition, a row filter)."""
    return Part(lambda: sql, (), ())


def _closure(make: Callable[..., Any]) -> tuple[Any, ...]:
    cells = make.__closure__
    if not cells:
        return ()
    return tuple(_shape_of(cell.cell_contents) for cell in cells)


def _shape_of(value: Any) -> Any:
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, tuple):
        return tuple(_shape_of(v) for v in value)
    if isinstance(value, Part):  # its values would not be bound in order
        raise TypeError("a Part is passed to join(), never closed over")
    return id(value)


class Binds:
    """The bind parameters of a statement being built: v0, v1, … in binding order."""

    def __init__(self) -> None:
        self.count = 0

    def take(self, n: int) -> list[BindParameter[Any]]:
        first = self.count
        self.count += n
        return [bindparam(f"v{i}", required=False) for i in range(first, first + n)]


class Built:
    """A statement built for a shape, with the Part it was built from (which keeps the
    objects its shape names by identity alive)."""

    __slots__ = ("part", "statement")
    made = 0  # statements built since the start (a shape seen again builds nothing)

    def __init__(self, part: Part) -> None:
        self.part = part
        self.statement = part.build(Binds())
        Built.made += 1


_BUILT: dict[Hashable, Built] = {}
_MAX_SHAPES = 2048


def statement(part: Part) -> tuple[Any, dict[str, Any]]:
    """The statement of `part`'s shape, built once, and the values of this `part`."""
    found = _BUILT.get(part.key)
    if found is None:
        if len(_BUILT) >= _MAX_SHAPES:
            _BUILT.clear()
        found = _BUILT[part.key] = Built(part)
    values = part.bound([])
    return found.statement, {f"v{i}": value for i, value in enumerate(values)}
