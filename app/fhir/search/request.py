"""A search query string, read into what the engine runs: criteria, sort, includes, paging.

Unknown or malformed parameters fail with 400 under `Prefer: handling=strict`;
otherwise they are left out and reported. Empty values are ignored, as FHIR asks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.fhir.outcomes import FhirError
from app.fhir.search.criteria import Criterion, parse_criterion
from app.fhir.search.include import IncludeSpec, parse_include
from app.fhir.search.paging import Cursor, SortKey, decode_cursor, parse_sort
from app.fhir.search.values import Invalid
from app.fhir.types import SUPPORTED

DEFAULT_COUNT = 20
MAX_COUNT = 1000
TOTAL_MODES = frozenset({"none", "estimate", "accurate"})
# Answered by the HTTP layer or the Bundle renderer: not part of the search itself.
RENDER_PARAMS = frozenset({"_format", "_pretty"})
SHAPE_PARAMS = frozenset({"_summary", "_elements"})
PAGING_PARAMS = frozenset({"_snapshot", "_after", "_before"})


@dataclass
class SearchRequest:
    resource_type: str | None
    criteria: list[Criterion] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    includes: list[IncludeSpec] = field(default_factory=list)
    types: list[str] | None = None  # _type, at system level
    count: int = DEFAULT_COUNT
    total: str = "accurate"
    summary_count: bool = False
    snapshot: int | None = None
    cursor: Cursor | None = None
    applied: list[tuple[str, str]] = field(default_factory=list)  # in the order given
    ignored: list[str] = field(default_factory=list)  # "name: why"

    @property
    def backward(self) -> bool:
        """A page before the cursor (a `previous` link): read in reverse order."""
        return self.cursor is not None and self.cursor.before


def whole_number(name: str, value: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise Invalid(f"{name} must be a whole number, got '{value}'")
    return int(value)


class _Reader:
    def __init__(self, resource_type: str | None, base_url: str) -> None:
        self.request = SearchRequest(resource_type)
        self.base_url = base_url
        self.cursor: tuple[str, str] | None = None

    def read(self, name: str, value: str) -> None:
        request = self.request
        rtype = request.resource_type
        if name == "_count":
            request.count = min(whole_number(name, value), MAX_COUNT)
        elif name == "_total":
            if value not in TOTAL_MODES:
                raise Invalid(f"_total must be one of none, estimate, accurate; got '{value}'")
            request.total = value
        elif name == "_summary":
            request.summary_count = value == "count"
        elif name == "_elements":
            pass  # shaped when the Bundle is rendered
        elif name == "_sort":
            request.sort = parse_sort(rtype, value)
        elif name.partition(":")[0] in ("_include", "_revinclude"):
            request.includes.append(parse_include(rtype, name, value))
        elif name == "_type" and rtype is None:
            types = [t for t in value.split(",") if t]
            unknown = [t for t in types if t not in SUPPORTED]
            if unknown:
                raise Invalid(f"_type: unknown resource type {', '.join(unknown)}")
            asked = set(types) if request.types is None else set(request.types) & set(types)
            request.types = sorted(asked)  # a repeated _type narrows the types
        elif name == "_snapshot":
            request.snapshot = whole_number(name, value)
        elif name in ("_after", "_before"):
            self.cursor = (name, value)
        else:
            request.criteria.append(parse_criterion(rtype, name, value, self.base_url))


def read_request(
    resource_type: str | None,
    query: list[tuple[str, str]],
    *,
    strict: bool,
    base_url: str,
) -> SearchRequest:
    reader = _Reader(resource_type, base_url)
    request = reader.request
    for name, value in query:
        if name in RENDER_PARAMS or (value == "" and name not in SHAPE_PARAMS):
            continue
        try:
            reader.read(name, value)
        except Invalid as exc:
            _refuse(request, name, str(exc), strict)
            continue
        if name not in PAGING_PARAMS:
            request.applied.append((name, value))
    if reader.cursor is not None:
        name, value = reader.cursor
        try:
            request.cursor = decode_cursor(value, request.sort, before=name == "_before")
        except Invalid as exc:
            _refuse(request, name, str(exc), strict)
    return request


def _refuse(request: SearchRequest, name: str, reason: str, strict: bool) -> None:
    if strict:
        raise FhirError(400, "invalid", f"Search parameter '{name}': {reason}")
    request.ignored.append(f"{name}: {reason}")
