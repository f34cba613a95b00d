"""Search parameters per resource type: the official R4B ones plus Relais' own.

Both Bundles under `data/` are read once. The official expressions are unions
over many types (`Patient.name | Practitioner.name`); each SearchParam keeps
only the branches that apply to its resource type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

DATA_DIR = Path(__file__).parent / "data"
SOURCES = ("search-parameters.json", "relais-search-parameters.json")

GENERIC_BASES = ("Resource", "DomainResource")
PARAM_TYPES = frozenset(
    {"token", "string", "reference", "date", "quantity", "uri", "number", "composite", "special"}
)

# Common parameters answered by a column of resource_current, not an index table.
COLUMN_PARAMS = {"_id": "res_id", "_lastUpdated": "last_updated"}


class Component(NamedTuple):
    """One part of a composite parameter; `expression` is relative to the composite's."""

    code: str
    type: str
    expression: str


@dataclass(frozen=True)
class SearchParam:
    code: str
    type: str
    expression: str
    targets: tuple[str, ...] = ()
    components: tuple[Component, ...] = ()
    url: str = ""
    # Set for _id and _lastUpdated: the resource_current column to compare.
    column: str | None = None
    multiple_or: bool = True
    multiple_and: bool = True
    comparators: tuple[str, ...] = ()


def split_union(expression: str) -> list[str]:
    """Split a FHIRPath expression on its top-level `|` (outside parentheses and quotes)."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    for i, char in enumerate(expression):
        if char == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [part for part in parts if part]


def _root_name(branch: str) -> str:
    name = branch.lstrip("(")
    end = 0
    while end < len(name) and (name[end].isalnum() or name[end] == "_"):
        end += 1
    return name[:end]


def branches_for(expression: str, resource_type: str) -> list[str]:
    """The branches of a union that start at `resource_type` or at Resource/DomainResource."""
    roots = (resource_type, *GENERIC_BASES)
    return [b for b in split_union(expression) if _root_name(b) in roots]


@cache
def _definitions() -> tuple[dict[str, Any], ...]:
    """Every SearchParameter resource; Relais' own come last so they win on a clash."""
    found: list[dict[str, Any]] = []
    for name in SOURCES:
        bundle = json.loads((DATA_DIR / name).read_text(encoding="utf-8"))
        found.extend(entry["resource"] for entry in bundle.get("entry", []))
    return tuple(found)


@cache
def _types_by_url() -> dict[str, str]:
    return {d["url"]: d["type"] for d in _definitions()}


@cache
def _codes_by_url() -> dict[str, str]:
    return {d["url"]: d["code"] for d in _definitions()}


def _make(definition: dict[str, Any], resource_type: str) -> SearchParam | None:
    code: str = definition["code"]
    param_type: str = definition["type"]
    if code in COLUMN_PARAMS:
        return SearchParam(
            code=code,
            type=param_type,
            expression=definition.get("expression", ""),
            url=definition["url"],
            column=COLUMN_PARAMS[code],
            comparators=tuple(definition.get("comparator", ())),
        )
    if param_type not in PARAM_TYPES or not definition.get("expression"):
        return None
    branches = branches_for(definition["expression"], resource_type)
    if not branches:
        return None
    components: list[Component] = []
    for part in definition.get("component", ()):
        part_type = _types_by_url().get(part["definition"])
        part_code = _codes_by_url().get(part["definition"])
        if part_type is None or part_code is None:
            return None
        components.append(Component(part_code, part_type, part["expression"]))
    return SearchParam(
        code=code,
        type=param_type,
        expression=" | ".join(branches),
        targets=tuple(definition.get("target", ())),
        components=tuple(components),
        url=definition["url"],
        multiple_or=definition.get("multipleOr", True),
        multiple_and=definition.get("multipleAnd", True),
        comparators=tuple(definition.get("comparator", ())),
    )


@cache
def declared_params(resource_type: str) -> dict[str, SearchParam]:
    """Every search parameter defined for `resource_type`, by code (common ones included)."""
    params: dict[str, SearchParam] = {}
    for definition in _definitions():
        bases = definition["base"]
        if resource_type not in bases and not any(b in bases for b in GENERIC_BASES):
            continue
        param = _make(definition, resource_type)
        if param is not None:
            params[param.code] = param
    return params


@cache
def params_for(resource_type: str) -> dict[str, SearchParam]:
    """The searchable parameters of `resource_type`: declared ones minus those that
    cannot be indexed (see extract.skipped_params). Shared dict: do not modify it.
    """
    from app.fhir.search.extract import skipped_params  # extract builds on this module

    skipped = skipped_params(resource_type)
    return {code: p for code, p in declared_params(resource_type).items() if code not in skipped}


@cache
def common_params() -> dict[str, SearchParam]:
    """The parameters of every type (base Resource): what a system-level search takes."""
    params: dict[str, SearchParam] = {}
    for definition in _definitions():
        if "Resource" in definition["base"]:
            param = _make(definition, "Resource")
            if param is not None:
                params[param.code] = param
    return params


def get_param(resource_type: str, code: str) -> SearchParam | None:
    return params_for(resource_type).get(code)
