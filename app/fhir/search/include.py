"""_include and _revinclude (with :iterate): one statement per round of inclusion.

Targets are read from resource_current through the reference index, each type
under the caller's row filter, so a hidden or deleted resource is never included.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    TypeDecorator,
    and_,
    any_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import False_
from sqlalchemy.types import TypeEngine

from app.db import raw
from app.db.tables import resource_current as cur
from app.fhir.context import Context
from app.fhir.search.criteria import reference_targets
from app.fhir.search.filters import LIVE, type_is, visible
from app.fhir.search.registry import SearchParam, get_param, params_for
from app.fhir.search.tables import search_reference
from app.fhir.search.values import Invalid
from app.fhir.types import SUPPORTED, SUPPORTED_TYPES

MAX_ROUNDS = 4  # :iterate stops after this many rounds
MAX_INCLUDED = 5000  # per round, against runaway graphs

ref = search_reference.c
Key = tuple[str, str]
Row = tuple[str, str, str]


@dataclass(frozen=True)
class IncludeSpec:
    source: str | None  # None: any type (`_revinclude=*`, or `_include=*` at system level)
    param: SearchParam | None  # None: every reference parameter of the source
    target: str | None
    reverse: bool
    iterate: bool


def parse_include(resource_type: str | None, name: str, value: str) -> IncludeSpec:
    base, _, modifier = name.partition(":")
    if modifier not in ("", "iterate", "recurse"):
        raise Invalid(f"Unknown modifier '{name}'")
    reverse = base == "_revinclude"
    iterate = bool(modifier)
    if value == "*":
        source = None if reverse else resource_type
        return IncludeSpec(source, None, None, reverse, iterate)
    parts = value.split(":")
    if len(parts) not in (2, 3) or parts[0] not in SUPPORTED:
        raise Invalid(f"{base}={value}: expected Type:parameter[:targetType]")
    param = get_param(parts[0], parts[1])
    if param is None or param.type != "reference":
        raise Invalid(f"{base}={value}: '{parts[1]}' is not a reference parameter of {parts[0]}")
    target = parts[2] if len(parts) == 3 else None
    if target is not None and target not in reference_targets(param):
        raise Invalid(f"{base}={value}: '{parts[1]}' does not point at {target}")
    return IncludeSpec(parts[0], param, target, reverse, iterate)


def include_values(resource_type: str) -> list[str]:
    """What the CapabilityStatement lists as searchInclude for a type."""
    codes = sorted(c for c, p in params_for(resource_type).items() if p.type == "reference")
    return ["*", *(f"{resource_type}:{code}" for code in codes)]


def revinclude_values(resource_type: str) -> list[str]:
    found = [
        f"{source}:{code}"
        for source in SUPPORTED_TYPES
        for code, param in sorted(params_for(source).items())
        if param.type == "reference" and resource_type in reference_targets(param)
    ]
    return ["*", *found]


# --- SQL ---------------------------------------------------------------------------------
# One statement per round, built once for the specs, the frontier's types and the
# caller's filters, and reused: the frontier's ids are one list parameter per type, so
# SQLAlchemy neither builds, keys nor renders it again, and PostgreSQL keeps it prepared.


def _reference_params(source: str) -> list[SearchParam]:
    return [p for p in params_for(source).values() if p.type == "reference"]


def _param_filter(spec: IncludeSpec) -> ColumnElement[bool]:
    return ref.param == spec.param.code if spec.param is not None else ref.param.is_not(None)


def _ids_of(column: ColumnElement[str], resource_type: str, dialect: str) -> ColumnElement[bool]:
    """`column` among the frontier's ids of a type, passed as the list parameter `ids_<type>`."""
    param = bindparam(f"ids_{resource_type}", type_=IdList(), required=False)
    if dialect == "postgresql":
        return column == any_(param)
    return column.in_(select(literal_column("value")).select_from(func.json_each(param)))


class IdList(TypeDecorator[list[str]]):
    """A list of ids as one parameter: a text[] on PostgreSQL, JSON text on SQLite."""

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(ARRAY(String()))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: list[str] | None, dialect: Dialect) -> Any:
        return value if dialect.name == "postgresql" else orjson.dumps(value).decode()


@dataclass(frozen=True)
class Path:
    """Reference rows a spec follows from the resources of one type of the frontier."""

    condition: ColumnElement[bool]  # on search_reference, without the ids
    frontier_type: str
    reverse: bool


def _targets(spec: IncludeSpec, source: str) -> set[str]:
    """The types the spec's references out of resources of `source` may point at."""
    params = [spec.param] if spec.param is not None else _reference_params(source)
    targets = {t for p in params for t in reference_targets(p)}
    return targets & {spec.target} if spec.target is not None else targets


@cache  # no ids in it: the paths of specs from a frontier of these types, reused
def _paths(
    specs: tuple[IncludeSpec, ...], types: frozenset[str]
) -> tuple[tuple[Path, ...], frozenset[str]]:
    """The paths the specs follow out of (or into) resources of `types`, and the types
    they reach."""
    paths: list[Path] = []
    reached: set[str] = set()
    for spec in specs:
        if spec.reverse:
            sources = [spec.source] if spec.source is not None else list(SUPPORTED_TYPES)
            pointed: set[str] = set()
            for source in sources:
                targets = _targets(spec, source) & types
                if targets:
                    reached.add(source)
                    pointed |= targets
            # Without a source type (`*`), one path per target serves every source.
            condition = [_param_filter(spec)]
            if spec.source is not None:
                condition.append(type_is(search_reference, spec.source))
            for target in sorted(pointed):
                on = and_(*condition, ref.target_type == target)
                paths.append(Path(on, target, reverse=True))
            continue
        sources = [spec.source] if spec.source is not None else sorted(types)
        for source in sources:
            if source not in types:
                continue
            targets = _targets(spec, source)
            if not targets:
                continue
            reached |= targets
            on = and_(
                type_is(search_reference, source),
                _param_filter(spec),
                ref.target_type.in_(sorted(targets)),
            )
            paths.append(Path(on, source, reverse=False))
    return tuple(paths), frozenset(reached)


def _seen_by_caller(ctx: Context, types: frozenset[str]) -> tuple[Any, ...]:
    """Per type reached, in order: the caller's row filter, None when it sees all of it,
    false() when no scope covers the type."""
    return tuple(visible(ctx, resource_type) for resource_type in sorted(types))


_LIVE_ROWS = select(cur.c.type, cur.c.res_id, cur.c.content).where(LIVE)
_KEY = tuple_(cur.c.type, cur.c.res_id)
_STATEMENTS = raw.IdentityCache()


def _statement(
    paths: tuple[Path, ...], reached: frozenset[str], seen: tuple[Any, ...], dialect: str
) -> Select[Any] | None:
    """resource_current rows at the other end of the paths, as the caller sees them."""
    allowed: list[ColumnElement[bool]] = []
    for resource_type, condition in zip(sorted(reached), seen, strict=True):
        if isinstance(condition, False_):
            continue  # no scope covers the type: nothing of it is included
        if condition is None:
            allowed.append(type_is(cur, resource_type))
        else:
            allowed.append(and_(type_is(cur, resource_type), condition))
    if not allowed:
        return None
    selects = []
    for reverse in (False, True):
        ways = [p for p in paths if p.reverse is reverse]
        if not ways:
            continue
        ends = (ref.type, ref.res_id) if reverse else (ref.target_type, ref.target_id)
        near = ref.target_id if reverse else ref.res_id
        on = [and_(p.condition, _ids_of(near, p.frontier_type, dialect)) for p in ways]
        selects.append(select(*ends).where(or_(*on)))
    keys = selects[0] if len(selects) == 1 else union_all(*selects)
    stmt = _LIVE_ROWS.where(_KEY.in_(keys))
    if any(c is not None for c in seen):  # some rows hidden: only those allowed
        stmt = stmt.where(or_(*allowed))
    return stmt.limit(MAX_INCLUDED)


def _round_statement(
    ctx: Context, specs: tuple[IncludeSpec, ...], types: frozenset[str]
) -> Select[Any] | None:
    """The statement of a round from a frontier of `types`; None when it reaches nothing."""
    paths, reached = _paths(specs, types)
    if not paths:
        return None
    dialect = ctx.conn.dialect.name
    filters = _seen_by_caller(ctx, reached)
    build = partial(_statement, paths, reached, filters, dialect)
    found: Select[Any] | None = _STATEMENTS.get(filters, build, specs, types, dialect)
    return found


async def fetch_includes(ctx: Context, specs: list[IncludeSpec], matches: list[Row]) -> list[Row]:
    """The resources the specs reach from the matches (and, with :iterate, from those)."""
    seen: set[Key] = {(t, i) for t, i, _ in matches}
    found: list[Row] = []
    frontier = matches
    active = specs
    for _round in range(MAX_ROUNDS):
        if not active or not frontier:
            break
        by_type: dict[str, list[str]] = defaultdict(list)
        for rtype, rid, _content in frontier:
            by_type[rtype].append(rid)
        stmt = _round_statement(ctx, tuple(active), frozenset(by_type))
        if stmt is None:
            break
        params = {f"ids_{rtype}": ids for rtype, ids in by_type.items()}
        rows = await raw.every(ctx.conn, stmt, params)
        frontier = []
        for row in rows:
            row_key = (row[0], row[1])
            if row_key not in seen:
                seen.add(row_key)
                frontier.append((row[0], row[1], row[2]))
        found += frontier
        active = [s for s in specs if s.iterate]
    return found
