"""Bundles assembled as bytes from stored JSON, and batch/transaction processing."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import orjson

from app.fhir.context import Context, discard_held, flush_held, hold_writes
from app.fhir.outcomes import FhirError
from app.fhir.references import DEFERRED
from app.fhir.references import verify as verify_references
from app.fhir.render import Shape, shape_bytes
from app.fhir.repository import instant
from app.fhir.search.engine import SearchPage

STATUS_TEXT = {
    200: "200 OK",
    201: "201 Created",
    204: "204 No Content",
    304: "304 Not Modified",
}


def _link(relation: str, url: str) -> dict[str, str]:
    return {"relation": relation, "url": url}


def _url(base: str, path: str, params: list[tuple[str, str]] | None) -> str:
    return f"{base}/{path}" + (f"?{urlencode(params)}" if params else "")


def _assemble(head: dict[str, Any], entries: list[bytes]) -> bytes:
    """Splice pre-serialised entries into the Bundle without re-parsing them."""
    head_bytes = orjson.dumps(head)
    if not entries:
        return head_bytes
    return head_bytes[:-1] + b',"entry":[' + b",".join(entries) + b"]}"


def _head(kind: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": instant(_now())},
        "type": kind,
    }


def search_entry(base: str, rtype: str, rid: str, content: bytes, mode: str) -> bytes:
    full_url = orjson.dumps(f"{base}/{rtype}/{rid}")
    return (
        b'{"fullUrl":'
        + full_url
        + b',"resource":'
        + content
        + b',"search":{"mode":"'
        + mode.encode()
        + b'"}}'
    )


def searchset(ctx: Context, path: str, page: SearchPage, shape: Shape) -> bytes:
    base = ctx.base_url
    head = _head("searchset")
    if page.total is not None:
        head["total"] = page.total
    links = [_link("self", _url(base, path, page.self_params or None))]
    for relation, params in (
        ("first", page.first_params),
        ("previous", page.previous_params),
        ("next", page.next_params),
    ):
        if params is not None:
            links.append(_link(relation, _url(base, path, params)))
    head["link"] = links
    entries = [
        search_entry(base, t, i, shape_bytes(c.encode(), shape), "match")
        for t, i, c in page.matches
    ]
    entries += [
        search_entry(base, t, i, shape_bytes(c.encode(), shape), "include")
        for t, i, c in page.includes
    ]
    if page.ignored:
        issues = [
            {"severity": "warning", "code": "not-supported", "diagnostics": f"Ignored {why}"}
            for why in page.ignored
        ]
        oo = orjson.dumps({"resourceType": "OperationOutcome", "issue": issues})
        entries.append(b'{"resource":' + oo + b',"search":{"mode":"outcome"}}')
    return _assemble(head, entries)


def history(
    ctx: Context,
    path: str,
    rows: list[Any],
    total: int | None,
    next_params: list[tuple[str, str]] | None,
    self_params: list[tuple[str, str]],
) -> bytes:
    base = ctx.base_url
    head = _head("history")
    if total is not None:
        head["total"] = total
    links = [_link("self", _url(base, path, self_params or None))]
    if next_params is not None:
        links.append(_link("next", _url(base, path, next_params)))
    head["link"] = links
    entries = []
    for r in rows:
        full = f"{base}/{r.type}/{r.res_id}"
        method = "POST" if r.method == "POST" else r.method
        url = r.type if method == "POST" else f"{r.type}/{r.res_id}"
        status = "410 Gone" if r.deleted else ("201 Created" if r.version == 1 else "200 OK")
        entry: dict[str, Any] = {
            "fullUrl": full,
            "request": {"method": method, "url": url},
            "response": {
                "status": status,
                "etag": f'W/"{r.version}"',
                "lastModified": instant(r.last_updated),
            },
        }
        raw = orjson.dumps(entry)
        if r.content is not None:
            raw = raw[:-1] + b',"resource":' + r.content.encode() + b"}"
        entries.append(raw)
    return _assemble(head, entries)


def _now() -> Any:
    from app.fhir.repository import now_utc

    return now_utc()


# --- batch and transaction -------------------------------------------------

# dispatch(ctx, method, url, body, headers) -> Result
Dispatch = Callable[[Context, str, str, Any, dict[str, str]], Awaitable[Any]]

# Internal header: the id a transaction gave a urn:uuid POST entry; never taken from HTTP.
ASSIGNED_ID = "x-relais-assigned-id"

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


def _entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise FhirError(400, "structure", "Bundle.entry must be a list")
    for n, entry in enumerate(entries):
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or not request.get("method") or not request.get("url"):
            raise FhirError(
                400,
                "required",
                f"Bundle.entry[{n}].request needs a method and a url",
                expression=[f"Bundle.entry[{n}].request"],
            )
        if request["method"] not in ORDER:
            raise FhirError(
                400,
                "invalid",
                f"Bundle.entry[{n}].request.method '{request['method']}' is not supported",
            )
    return entries


def _entry_headers(request: dict[str, Any]) -> dict[str, str]:
    headers = {}
    for field, header in (
        ("ifMatch", "if-match"),
        ("ifNoneExist", "if-none-exist"),
        ("ifNoneMatch", "if-none-match"),
        ("ifModifiedSince", "if-modified-since"),
    ):
        if request.get(field):
            headers[header] = str(request[field])
    return headers


def _rewrite(value: Any, mapping: dict[str, str]) -> Any:
    """Replace urn:uuid references (and their use in string values) with Type/id."""
    if isinstance(value, dict):
        return {k: _rewrite(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, mapping) for v in value]
    if isinstance(value, str) and value in mapping:
        return mapping[value]
    return value


def response_entry(result: Any, with_resource: bool) -> dict[str, Any]:
    response: dict[str, Any] = {"status": STATUS_TEXT.get(result.status, str(result.status))}
    if result.location:
        response["location"] = result.location
    if result.version is not None:
        response["etag"] = f'W/"{result.version}"'
    if result.last_updated is not None:
        response["lastModified"] = instant(result.last_updated)
    entry: dict[str, Any] = {"response": response}
    if result.resource_type and result.res_id and result.is_resource:
        entry["fullUrl"] = f"{result.base}/{result.resource_type}/{result.res_id}"
    if with_resource and result.body is not None:
        entry["resource"] = orjson.loads(result.body)
    return entry


def error_entry(err: FhirError) -> dict[str, Any]:
    return {
        "response": {
            "status": str(err.status),
            "outcome": err.to_outcome(),
        }
    }


async def process(
    ctx: Context,
    bundle: dict[str, Any],
    dispatch: Dispatch,
    *,
    with_resource: bool,
    savepoint: Callable[[], Any],
) -> bytes:
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise FhirError(
            400, "invalid", "Only batch and transaction Bundles can be posted to the base"
        )
    entries = _entries(bundle)
    order = sorted(range(len(entries)), key=lambda n: ORDER[entries[n]["request"]["method"]])
    results: list[dict[str, Any] | None] = [None] * len(entries)
    if kind == "transaction":
        mapping = await _assign_ids(ctx, entries, dispatch)
        # Entries may reference ones processed later: check references once all exist.
        ctx.extra[DEFERRED] = []
        hold_writes(ctx)  # one index and one Provenance write for the whole Bundle
        for n in order:
            entry = _rewrite(entries[n], mapping)
            if not _creates(entry):
                await flush_held(ctx)  # it may read what the entries before it wrote
            try:
                result = await _run(ctx, entry, dispatch)
            except FhirError as err:
                err.diagnostics = f"Bundle.entry[{n}]: {err.diagnostics}"
                err.expression = err.expression or [f"Bundle.entry[{n}]"]
                raise
            results[n] = response_entry(result, with_resource)
        await flush_held(ctx)
        await verify_references(ctx, ctx.extra.pop(DEFERRED))
    else:
        for n in order:
            try:
                async with savepoint():
                    result = await _run(ctx, entries[n], dispatch)
                    await flush_held(ctx)  # inside the entry's savepoint
                results[n] = response_entry(result, with_resource)
            except FhirError as err:
                discard_held(ctx)  # rolled back with the savepoint
                results[n] = error_entry(err)
    out = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": f"{kind}-response",
        "entry": results,
    }
    return orjson.dumps(out)


def _creates(entry: dict[str, Any]) -> bool:
    """A plain create (POST to a type): it reads nothing another entry wrote."""
    request = entry["request"]
    return request["method"] == "POST" and "/" not in request["url"].strip("/")


async def _run(ctx: Context, entry: dict[str, Any], dispatch: Dispatch) -> Any:
    request = entry["request"]
    body = entry.get("resource")
    if request["method"] == "PATCH" and body is not None and body.get("resourceType") == "Binary":
        body = _binary_patch(body)
    headers = _entry_headers(request)
    if "_assigned_id" in request:
        headers[ASSIGNED_ID] = request["_assigned_id"]
    result = await dispatch(ctx, request["method"], request["url"], body, headers)
    result.base = ctx.base_url
    return result


def _binary_patch(binary: dict[str, Any]) -> Any:
    import base64

    try:
        return orjson.loads(base64.b64decode(binary.get("data", "")))
    except ValueError as exc:
        raise FhirError(400, "invalid", f"Binary JSON Patch is not valid JSON: {exc}") from None


async def _assign_ids(
    ctx: Context, entries: list[dict[str, Any]], dispatch: Dispatch
) -> dict[str, str]:
    """Give each urn:uuid POST entry its id up front, so any entry may reference it."""
    mapping: dict[str, str] = {}
    for n, entry in enumerate(entries):
        full_url = entry.get("fullUrl")
        request = entry["request"]
        resource = entry.get("resource")
        if not isinstance(full_url, str) or not full_url.startswith("urn:uuid:"):
            continue
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            continue
        rtype = resource["resourceType"]
        if request["method"] == "POST":
            existing = await _existing_match(ctx, rtype, request.get("ifNoneExist"))
            if existing is not None:
                mapping[full_url] = f"{rtype}/{existing}"
            else:
                new_id = str(uuid.uuid4())
                request["_assigned_id"] = new_id
                mapping[full_url] = f"{rtype}/{new_id}"
        elif request["method"] == "PUT":
            mapping[full_url] = request["url"].split("?", 1)[0]
        if full_url in mapping and full_url in {e.get("fullUrl") for e in entries[:n]}:
            raise FhirError(400, "invalid", f"fullUrl {full_url} appears twice in the Bundle")
    return mapping


async def _existing_match(ctx: Context, rtype: str, condition: Any) -> str | None:
    if not isinstance(condition, str) or not condition:
        return None
    from urllib.parse import parse_qsl

    from app.fhir.search.engine import search_ids

    found = await search_ids(ctx, rtype, parse_qsl(condition.split("?", 1)[-1]), limit=2)
    return found[0] if len(found) == 1 else None


def http_date(value: Any) -> str:
    return format_datetime(value, usegmt=True)
