"""One dispatcher from (method, url) to an interaction, shared by HTTP and Bundle entries."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from app.fhir import interactions as fx
from app.fhir import repository as repo
from app.fhir.bundles import ASSIGNED_ID, history, searchset
from app.fhir.context import Context, OperationCall
from app.fhir.outcomes import FhirError
from app.fhir.render import parse_shape, shape_bytes
from app.fhir.search import engine

Query = list[tuple[str, str]]


def split_url(ctx: Context, url: str) -> tuple[list[str], Query]:
    if url.startswith(ctx.base_url):
        url = url[len(ctx.base_url) :]
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    return segments, parse_qsl(parts.query, keep_blank_values=True)


def parse_etag(value: str | None) -> int | None:
    if value is None:
        return None
    raw = value.strip()
    if raw.startswith("W/"):
        raw = raw[2:]
    raw = raw.strip('"')
    if not raw.isdigit():
        raise FhirError(400, "invalid", f"Malformed ETag '{value}' (expected W/\"n\")")
    return int(raw)


def parse_instant(name: str, value: str) -> datetime:
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FhirError(400, "invalid", f"{name} must be an instant, got '{value}'") from None
    if ts.tzinfo is None:
        raise FhirError(400, "invalid", f"{name} needs a time zone")
    return ts


async def dispatch(
    ctx: Context,
    method: str,
    url: str,
    body: Any,
    headers: dict[str, str],
    *,
    query: Query | None = None,
) -> fx.Result:
    segments, url_query = split_url(ctx, url)
    q = url_query if query is None else query
    n = len(segments)
    if n == 0:
        if method == "GET" and q:
            return await _search(ctx, None, q, headers)
        raise FhirError(405, "not-supported", f"{method} on the base is not supported here")
    if segments[0] == "metadata":
        raise FhirError(405, "not-supported", "metadata only answers GET")
    if segments[0] == "_history" and n == 1 and method == "GET":
        return await _history(ctx, None, None, q)
    if segments[-1].startswith("$"):
        return await _operation(ctx, method, segments, q, body, headers)
    rtype = segments[0]
    fx.check_type(rtype)
    if n == 1:
        return await _type_level(ctx, method, rtype, q, body, headers)
    if n == 2 and segments[1] == "_search" and method == "POST":
        return await _search(ctx, rtype, q, headers)
    if n == 2 and segments[1] == "_history" and method == "GET":
        return await _history(ctx, rtype, None, q)
    rid = segments[1]
    if n == 2:
        return await _instance(ctx, method, rtype, rid, q, body, headers)
    if n == 3 and segments[2] == "_history" and method == "GET":
        return await _history(ctx, rtype, rid, q)
    if n == 4 and segments[2] == "_history" and method == "GET":
        result = await fx.vread(ctx, rtype, rid, segments[3])
        return _shaped(result, q)
    raise FhirError(405, "not-supported", f"{method} {url} is not a supported interaction")


def _shaped(result: fx.Result, q: Query) -> fx.Result:
    shape = parse_shape(q)
    if result.body is not None and not shape.is_identity:
        result.body = shape_bytes(result.body, shape)
    return result


async def _type_level(
    ctx: Context, method: str, rtype: str, q: Query, body: Any, headers: dict[str, str]
) -> fx.Result:
    if method == "GET":
        return await _search(ctx, rtype, q, headers)
    if method == "POST":
        return await fx.create(
            ctx,
            rtype,
            body,
            if_none_exist=headers.get("if-none-exist"),
            assigned_id=headers.get(ASSIGNED_ID),
        )
    if method == "PUT" and q:
        return await fx.conditional_update(
            ctx, rtype, q, body, if_match=parse_etag(headers.get("if-match"))
        )
    if method == "DELETE" and q:
        return await fx.conditional_delete(ctx, rtype, q)
    raise FhirError(405, "not-supported", f"{method} /{rtype} is not supported")


async def _instance(
    ctx: Context,
    method: str,
    rtype: str,
    rid: str,
    q: Query,
    body: Any,
    headers: dict[str, str],
) -> fx.Result:
    if method in ("GET", "HEAD"):
        return _shaped(await fx.read(ctx, rtype, rid), q)
    if method == "PUT":
        return await fx.update(ctx, rtype, rid, body, if_match=parse_etag(headers.get("if-match")))
    if method == "DELETE":
        return await fx.delete(ctx, rtype, rid)
    if method == "PATCH":
        kind = "fhirpath-patch" if isinstance(body, dict) else "json-patch"
        return await fx.patch(
            ctx, rtype, rid, body, kind=kind, if_match=parse_etag(headers.get("if-match"))
        )
    raise FhirError(405, "not-supported", f"{method} on {rtype}/{rid} is not supported")


async def _search(ctx: Context, rtype: str | None, q: Query, headers: dict[str, str]) -> fx.Result:
    if rtype is not None:
        fx.check_allowed(ctx, rtype, "search-type")
    strict = "handling=strict" in headers.get("prefer", "").replace(" ", "")
    shape = parse_shape(q)
    page = await engine.search(ctx, rtype, q, strict=strict)
    body = searchset(ctx, rtype or "", page, shape)
    return fx.Result(status=200, body=body, is_resource=False)


async def _history(ctx: Context, rtype: str | None, rid: str | None, q: Query) -> fx.Result:
    interaction = "history-instance" if rid else ("history-type" if rtype else "history-system")
    if rtype is not None:
        fx.check_allowed(ctx, rtype, interaction)
    params = dict(q)
    count = engine._int_param("_count", params.get("_count", "20"), lo=1, hi=engine.MAX_COUNT)
    since = parse_instant("_since", params["_since"]) if "_since" in params else None
    before = params.get("_before_seq")
    before_seq = engine._int_param("_before_seq", before, lo=0, hi=2**62) if before else None
    rows = await repo.history_rows(
        ctx,
        rtype,
        rid,
        since=since,
        before_seq=before_seq,
        limit=count + 1,
        interaction=interaction,
    )
    if rid is not None and not rows and before_seq is None:
        raise FhirError(404, "not-found", f"{rtype}/{rid} not found")
    total = None
    if before_seq is None:
        total = await repo.history_total(ctx, rtype, rid, since=since, interaction=interaction)
    path = "/".join(p for p in (rtype, rid, "_history") if p)
    keep = [(k, v) for k, v in q if k in ("_count", "_since")]
    next_params = None
    if len(rows) > count:
        next_params = [*keep, ("_before_seq", str(rows[count - 1].seq))]
    body = history(ctx, path, rows[:count], total, next_params, keep)
    return fx.Result(status=200, body=body, is_resource=False)


async def _operation(
    ctx: Context,
    method: str,
    segments: list[str],
    q: Query,
    body: Any,
    headers: dict[str, str],
) -> fx.Result:
    name = segments[-1][1:]
    rtype = segments[0] if len(segments) >= 2 else None
    rid = segments[1] if len(segments) == 3 else None
    if rtype is not None:
        fx.check_type(rtype)
    handler = ctx.plugins.operations.get((rtype, rid is not None, name))
    if handler is None:
        handler = ctx.plugins.operations.get((None, rid is not None, name))
    if handler is None or len(segments) > 3:
        raise FhirError(404, "not-supported", f"Operation ${name} is not supported here")
    call = OperationCall(method, rtype, rid, q, body, headers)
    result: fx.Result = await handler(ctx, call)
    return result
