"""_include and _revinclude (with :iterate): one statement per round of inclusion.

Targets are read from resource_current through the reference index, each type
under the caller's row filter, so a hidden or deleted resource is never included.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, or_, select, tuple_, union_all
from sqlalchemy.sql.elements import False_

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


def _reference_params(source: str) -> list[SearchParam]:
    return [p for p in params_for(source).values() if p.type == "reference"]


def _param_filter(spec: IncludeSpec) -> ColumnElement[bool]:
    return ref.param == spec.param.code if spec.param is not None else ref.param.is_not(None)


def _seen_by_caller(ctx: Context, types: set[str]) -> ColumnElement[bool] | None:
    """The row filter over resources of any of `types`; None when the caller sees all."""
    allowed: list[ColumnElement[bool]] = []
    open_all = True
    for resource_type in sorted(types):
        condition = visible(ctx, resource_type)
        if isinstance(condition, False_):
            open_all = False  # no scope covers the type: nothing of it is included
            continue
        if condition is not None:
            open_all = False
            condition = and_(type_is(cur, resource_type), condition)
        allowed.append(type_is(cur, resource_type) if condition is None else condition)
    if open_all:
        return None
    return or_(*allowed) if allowed else false()


_LIVE_ROWS = select(cur.c.type, cur.c.res_id, cur.c.content).where(LIVE)
_KEY = tuple_(cur.c.type, cur.c.res_id)


def _live(ctx: Context, keys: Select[Any], types: set[str]) -> Select[Any] | None:
    """resource_current rows whose (type, id) is in `keys`, as the caller sees them."""
    stmt = _LIVE_ROWS.where(_KEY.in_(keys))
    condition = _seen_by_caller(ctx, types)
    if isinstance(condition, False_):
        return None
    return stmt if condition is None else stmt.where(condition)


@cache  # no ids in it: one condition per source type and spec, reused
def _path_from(source: str, spec: IncludeSpec) -> tuple[ColumnElement[bool], frozenset[str]] | None:
    """The reference rows a spec follows out of resources of `source`, and their targets."""
    params = [spec.param] if spec.param is not None else _reference_params(source)
    targets = {t for p in params for t in reference_targets(p)}
    if spec.target is not None:
        targets &= {spec.target}
    if not targets:
        return None
    condition = and_(
        type_is(search_reference, source),
        _param_filter(spec),
        ref.target_type.in_(sorted(targets)),
    )
    return condition, frozenset(targets)


def _forward(
    ctx: Context, specs: list[IncludeSpec], frontier: dict[str, list[str]]
) -> Select[Any] | None:
    """What the frontier's references point at: one statement for every spec."""
    paths: list[ColumnElement[bool]] = []
    reached: set[str] = set()
    for spec in specs:
        sources = [spec.source] if spec.source is not None else list(frontier)
        for source in sources:
            ids = frontier.get(source)
            if not ids:
                continue
            path = _path_from(source, spec)
            if path is None:
                continue
            condition, targets = path
            reached |= targets
            paths.append(and_(condition, ref.res_id.in_(ids)))
    if not paths:
        return None
    keys = select(ref.target_type, ref.target_id).where(or_(*paths))
    return _live(ctx, keys, reached)


def _reverse(
    ctx: Context, specs: list[IncludeSpec], frontier: dict[str, list[str]]
) -> Select[Any] | None:
    """What points at the frontier: one statement for every spec."""
    paths: list[ColumnElement[bool]] = []
    reached: set[str] = set()
    for spec in specs:
        sources = [spec.source] if spec.source is not None else list(SUPPORTED_TYPES)
        for source in sources:
            params = [spec.param] if spec.param is not None else _reference_params(source)
            targets = {t for p in params for t in reference_targets(p)} & set(frontier)
            if spec.target is not None:
                targets &= {spec.target}
            if not targets:
                continue
            reached.add(source)
            pointing = [
                and_(ref.target_type == target, ref.target_id.in_(frontier[target]))
                for target in sorted(targets)
            ]
            path = [_param_filter(spec), or_(*pointing)]
            if spec.source is not None:
                path.append(type_is(search_reference, source))
            paths.append(and_(*path))
    if not paths:
        return None
    keys = select(ref.type, ref.res_id).where(or_(*paths))
    return _live(ctx, keys, reached)


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
        forward = _forward(ctx, [s for s in active if not s.reverse], by_type)
        reverse = _reverse(ctx, [s for s in active if s.reverse], by_type)
        selects = [stmt for stmt in (forward, reverse) if stmt is not None]
        if not selects:
            break
        stmt = selects[0] if len(selects) == 1 else union_all(*selects)
        rows = await raw.rows(ctx.conn, stmt.limit(MAX_INCLUDED))
        frontier = []
        for row in rows:
            key = (row[0], row[1])
            if key not in seen:
                seen.add(key)
                frontier.append((row[0], row[1], row[2]))
        found += frontier
        active = [s for s in specs if s.iterate]
    return found
