"""`Patient/{id}/$everything` and `EpisodeOfCare/{id}/$everything`.

One SQL statement pages through the beneficiary's records (the indexed beneficiary
column, keyset-paged on created_seq) with the caller's row filter in it, so paging and
the total only ever count what the caller may see; a second one adds the resources
outside any compartment that the page references (organisations, practitioners).
Parameters: `_since`, `_type`, `_count`, plus `_summary` / `_elements`.

Provenance and AuditEvent records of the beneficiary (one per write, one per access)
are about the record, not part of it: they are returned only when `_type` names them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, func, or_, select

from app.db.tables import resource_current as cur
from app.fhir.bundles import searchset
from app.fhir.context import Context, OperationCall
from app.fhir.interactions import Result
from app.fhir.outcomes import FhirError
from app.fhir.references import relative_references
from app.fhir.render import parse_shape
from app.fhir.router import parse_instant
from app.fhir.search.engine import SearchPage
from app.fhir.types import SUPPORTED
from app.resources.case_rows import SEARCH, case_conditions, compartment, read_anchor

DEFAULT_COUNT = 50
MAX_COUNT = 1000
SHAPING = frozenset({"_summary", "_elements", "_format", "_pretty"})
KEPT = ("_since", "_type", "_count")
TRAIL = ("Provenance", "AuditEvent")


async def everything(
    ctx: Context,
    call: OperationCall,
) -> Result:
    resource_type, res_id = call.resource_type, call.res_id
    if call.method not in ("GET", "POST"):
        raise FhirError(405, "not-supported", "$everything takes a GET or a POST")
    if resource_type is None or res_id is None:
        raise FhirError(404, "not-supported", "$everything is invoked on a Patient or a case")
    query = [*call.query, *parameters_as_query(call.body)]
    anchor = await read_anchor(ctx, resource_type, res_id)
    conds = case_conditions(anchor) if resource_type == "EpisodeOfCare" else compartment(res_id)
    conds.append(ctx.policy.row_filter(cur, None, SEARCH))
    page = SearchPage(resource_type=None, matches=[])
    types = _filters(query, conds, page)
    total_stmt = select(func.count()).select_from(cur).where(and_(*conds))
    page.total = int((await ctx.conn.execute(total_stmt)).scalar_one())
    after = _whole("_after", _last(query, "_after") or "0", 2**62)
    stmt = (
        select(cur.c.type, cur.c.res_id, cur.c.content, cur.c.created_seq)
        .where(and_(*conds), cur.c.created_seq > after)
        .order_by(cur.c.created_seq)
        .limit(page.count + 1)
    )
    rows = (await ctx.conn.execute(stmt)).all() if page.count else []
    page.matches = [(r.type, r.res_id, r.content) for r in rows[: page.count]]
    page.includes = await _supporting(ctx, page.matches, types)
    page.self_params = list(page.applied)
    page.first_params = list(page.applied)
    if len(rows) > page.count:
        page.next_params = [*page.applied, ("_after", str(rows[page.count - 1].created_seq))]
    path = f"{resource_type}/{res_id}/$everything"
    return Result(
        status=200, body=searchset(ctx, path, page, parse_shape(query)), is_resource=False
    )


def _filters(
    query: list[tuple[str, str]], conds: list[ColumnElement[bool]], page: SearchPage
) -> set[str] | None:
    """Add the _type and _since conditions; set the page size; return the types asked."""
    types: set[str] | None = None
    for name, value in query:
        if name == "_type":
            asked = {t.strip() for t in value.split(",") if t.strip()}
            unknown = sorted(asked - SUPPORTED)
            if unknown:
                raise FhirError(400, "invalid", f"_type: unknown resource type {unknown[0]}")
            types = asked if types is None else types | asked
        elif name == "_since":
            conds.append(cur.c.last_updated >= parse_instant("_since", value))
        elif name not in (*KEPT, "_after", *SHAPING):
            page.ignored.append(f"{name}: not a parameter of $everything")
        if name in KEPT:
            page.applied.append((name, value))
    if types is not None:
        conds.append(cur.c.type.in_(sorted(types)))
    else:
        conds.append(cur.c.type.not_in(TRAIL))
    page.count = _whole("_count", _last(query, "_count") or str(DEFAULT_COUNT), MAX_COUNT)
    return types


def _last(query: list[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in query if k == name]
    return values[-1] if values else None


def _whole(name: str, value: str, high: int) -> int:
    if not value.isdigit():
        raise FhirError(400, "invalid", f"{name} must be a whole number, got '{value}'")
    return min(int(value), high)


async def _supporting(
    ctx: Context, matches: list[tuple[str, str, str]], types: set[str] | None
) -> list[tuple[str, str, str]]:
    """Resources outside any compartment that the page references, once each."""
    on_page = {(t, i) for t, i, _ in matches}
    wanted: dict[str, set[str]] = defaultdict(set)
    for _t, _i, content in matches:
        for ref_type, ref_id, _path in relative_references(orjson.loads(content), ""):
            if (ref_type, ref_id) not in on_page and (types is None or ref_type in types):
                wanted[ref_type].add(ref_id)
    if not wanted:
        return []
    stmt = select(cur.c.type, cur.c.res_id, cur.c.content).where(
        or_(*[and_(cur.c.type == t, cur.c.res_id.in_(sorted(ids))) for t, ids in wanted.items()]),
        cur.c.beneficiary.is_(None),
        cur.c.deleted.is_(False),
        ctx.policy.row_filter(cur, None, SEARCH),
    )
    rows = (await ctx.conn.execute(stmt.order_by(cur.c.type, cur.c.res_id))).all()
    return [(r.type, r.res_id, r.content) for r in rows]


VALUE_KEYS = (
    "valueString",
    "valueCode",
    "valueInstant",
    "valueDateTime",
    "valueInteger",
    "valueUnsignedInt",
    "valuePositiveInt",
    "valueUri",
)


def parameters_as_query(body: Any) -> list[tuple[str, str]]:
    """The parameters of a POSTed Parameters resource, as query pairs."""
    if body is None:
        return []
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise FhirError(400, "invalid", "The body of an operation POST is a Parameters resource")
    pairs = []
    for param in body.get("parameter") or []:
        if not isinstance(param, dict) or not isinstance(param.get("name"), str):
            raise FhirError(400, "invalid", "Each Parameters.parameter needs a name")
        value = next((param[k] for k in VALUE_KEYS if k in param), None)
        if value is None:
            raise FhirError(400, "invalid", f"Parameter {param['name']} needs a simple value")
        pairs.append((param["name"], str(value)))
    return pairs
