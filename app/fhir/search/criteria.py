"""Filter parameters parsed into criteria: a match, a chain, or a reverse chain (_has)."""

from __future__ import annotations

from dataclasses import dataclass

from app.fhir.search.registry import SearchParam, common_params, get_param
from app.fhir.search.values import (
    Invalid,
    SearchValue,
    parse_date,
    parse_number,
    parse_quantity,
    parse_reference_value,
    parse_string,
    parse_token,
    parse_uri,
    split_escaped,
)
from app.fhir.types import SUPPORTED, SUPPORTED_TYPES

MODIFIERS: dict[str, frozenset[str]] = {
    "token": frozenset({"not", "text", "missing", "of-type"}),
    "string": frozenset({"exact", "contains", "missing"}),
    "reference": frozenset({"identifier", "missing"}),  # and `:Type`
    "date": frozenset({"missing"}),
    "number": frozenset({"missing"}),
    "quantity": frozenset({"missing"}),
    "uri": frozenset({"below", "above", "missing"}),
    "composite": frozenset(),
}
COLUMN_MODIFIERS = {"_id": frozenset({"not"}), "_lastUpdated": frozenset()}


@dataclass(frozen=True)
class Match:
    """`param[:modifier]=v1,v2` on resource_type (None: any type)."""

    resource_type: str | None
    param: SearchParam
    modifier: str | None
    values: tuple[SearchValue, ...] = ()
    missing: bool | None = None  # set for :missing


@dataclass(frozen=True)
class Chain:
    """`param[:Type].rest=v`: resources whose reference points at a target matching rest."""

    resource_type: str
    param: SearchParam
    targets: tuple[tuple[str, Criterion], ...]


@dataclass(frozen=True)
class Has:
    """`_has:Source:param:rest=v`: resources some Source points at through param."""

    resource_type: str
    source_type: str
    param: SearchParam
    inner: Criterion


Criterion = Match | Chain | Has


def reference_targets(param: SearchParam) -> tuple[str, ...]:
    """The supported types a reference parameter may point at."""
    if not param.targets or "Resource" in param.targets:
        return SUPPORTED_TYPES
    return tuple(t for t in param.targets if t in SUPPORTED)


def lookup_param(resource_type: str | None, code: str) -> SearchParam:
    param = get_param(resource_type, code) if resource_type else common_params().get(code)
    if param is None:
        where = resource_type or "a system-level search"
        raise Invalid(f"Unknown search parameter '{code}' for {where}")
    return param


def parse_criterion(resource_type: str | None, name: str, raw: str, base_url: str) -> Criterion:
    if name.startswith("_has:"):
        return _parse_has(resource_type, name, raw, base_url)
    head, dot, rest = name.partition(".")
    code, colon, modifier = head.partition(":")
    param = lookup_param(resource_type, code)
    if dot:
        return _parse_chain(resource_type, param, modifier if colon else None, rest, raw, base_url)
    return _parse_match(resource_type, param, modifier if colon else None, raw, base_url)


def _parse_has(resource_type: str | None, name: str, raw: str, base_url: str) -> Has:
    parts = name.split(":", 3)
    if resource_type is None or len(parts) < 4 or not all(parts[1:]):
        raise Invalid(f"'{name}' is not _has:Type:reference:parameter")
    source_type, ref_code, rest = parts[1], parts[2], parts[3]
    if source_type not in SUPPORTED:
        raise Invalid(f"_has: unknown resource type '{source_type}'")
    param = get_param(source_type, ref_code)
    if param is None or param.type != "reference":
        raise Invalid(f"_has: '{ref_code}' is not a reference parameter of {source_type}")
    if resource_type not in reference_targets(param):
        raise Invalid(f"_has: {source_type}.{ref_code} never points at {resource_type}")
    inner = parse_criterion(source_type, rest, raw, base_url)
    return Has(resource_type, source_type, param, inner)


def _parse_chain(
    resource_type: str | None,
    param: SearchParam,
    modifier: str | None,
    rest: str,
    raw: str,
    base_url: str,
) -> Chain:
    if resource_type is None or param.type != "reference":
        raise Invalid(f"'{param.code}' cannot be chained")
    if modifier is not None and modifier not in reference_targets(param):
        raise Invalid(f"'{param.code}' does not point at '{modifier}'")
    candidates = (modifier,) if modifier else reference_targets(param)
    targets: list[tuple[str, Criterion]] = []
    problems: list[str] = []
    for target in candidates:
        try:
            targets.append((target, parse_criterion(target, rest, raw, base_url)))
        except Invalid as exc:
            problems.append(str(exc))
    if not targets:
        raise Invalid(problems[0] if len(problems) == 1 else f"Cannot chain '{param.code}.{rest}'")
    return Chain(resource_type, param, tuple(targets))


def _parse_match(
    resource_type: str | None, param: SearchParam, modifier: str | None, raw: str, base_url: str
) -> Match:
    allowed = COLUMN_MODIFIERS.get(param.code) if param.column else MODIFIERS.get(param.type)
    if allowed is None:
        raise Invalid(f"Parameter '{param.code}' of type {param.type} is not supported")
    is_type = param.type == "reference" and modifier in reference_targets(param)
    if modifier is not None and modifier not in allowed and not is_type:
        raise Invalid(f"Modifier ':{modifier}' is not supported on '{param.code}'")
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise Invalid(f"{param.code}:missing takes true or false, not '{raw}'")
        return Match(resource_type, param, modifier, missing=raw == "true")
    pieces = [p for p in split_escaped(raw, ",") if p]
    if not param.multiple_or and len(pieces) > 1:
        raise Invalid(f"'{param.code}' takes a single value")
    values = tuple(parse_value(param, modifier, piece, base_url) for piece in pieces)
    return Match(resource_type, param, modifier, values)


def parse_value(param: SearchParam, modifier: str | None, text: str, base_url: str) -> SearchValue:
    kind = param.type
    if kind == "token":
        return parse_token(text, modifier)
    if kind == "string":
        return parse_string(text, modifier)
    if kind == "reference":
        return parse_reference_value(text, reference_targets(param), modifier, base_url)
    if kind == "date":
        return parse_date(text)
    if kind == "number":
        return parse_number(text)
    if kind == "quantity":
        return parse_quantity(text)
    if kind == "uri":
        return parse_uri(text)
    if kind == "composite":
        parts = split_escaped(text, "$")
        if len(parts) != len(param.components):
            raise Invalid(f"'{text}' needs {len(param.components)} parts separated by '$'")
        return tuple(
            _component_value(part.type, piece, base_url)
            for part, piece in zip(param.components, parts, strict=True)
        )
    raise Invalid(f"Parameter '{param.code}' of type {kind} is not supported")


def _component_value(kind: str, text: str, base_url: str) -> SearchValue:
    if kind == "token":
        return parse_token(text, None)
    if kind == "string":
        return parse_string(text, None)
    if kind == "reference":
        return parse_reference_value(text, (), None, base_url)
    if kind == "date":
        return parse_date(text)
    if kind in ("number", "quantity"):
        return parse_quantity(text) if kind == "quantity" else parse_number(text)
    return parse_uri(text)
