"""Thin FastAPI routes: parse the request, dispatch to an interaction, render the result."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.fhir import bundles
from app.fhir.capability import capability_statement
from app.fhir.context import Context, flush_held, hold_writes
from app.fhir.interactions import Result
from app.fhir.outcomes import FhirError
from app.fhir.router import dispatch
from app.state import AppState

FHIR_JSON = "application/fhir+json"
JSON_TYPES = frozenset({"application/fhir+json", "application/json"})
PATCH_TYPES = frozenset(
    {"application/json-patch+json", "application/fhir+json", "application/json"}
)
FORM = "application/x-www-form-urlencoded"
XML_FORMATS = frozenset({"xml", "text/xml", "application/xml", "application/fhir+xml"})
PASSED_HEADERS = ("if-match", "if-none-exist", "if-none-match", "prefer", "if-modified-since")

router = APIRouter()


def _media(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise FhirError(413, "too-long", f"The body exceeds {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise FhirError(413, "too-long", f"The body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise FhirError(400, "structure", "The request body is empty")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FhirError(400, "structure", f"Malformed JSON: {exc}") from None


def media_for(fmt: str | None, accept: str | None) -> str:
    """The response media type for `_format` and the Accept header; 406 for XML."""
    wanted = _media(accept)
    if fmt is not None:
        if fmt in XML_FORMATS:
            raise FhirError(406, "not-supported", "Relais serves JSON only")
        return "application/json" if fmt in ("json", "application/json") else FHIR_JSON
    if wanted in XML_FORMATS:
        raise FhirError(406, "not-supported", "Relais serves JSON only")
    return "application/json" if wanted == "application/json" else FHIR_JSON


def response_type(request: Request, query: list[tuple[str, str]]) -> str:
    return media_for(dict(query).get("_format"), request.headers.get("accept"))


def result_headers(result: Result) -> dict[str, str]:
    """ETag, Last-Modified and Location of an interaction's result."""
    headers = dict(result.headers)
    if result.version is not None:
        headers["ETag"] = f'W/"{result.version}"'
    if result.last_updated is not None:
        headers["Last-Modified"] = bundles.http_date(result.last_updated)
    if result.location and result.status == 201:
        headers["Location"] = result.location
    return headers


def render(
    request: Request,
    result: Result,
    media: str,
    query: list[tuple[str, str]],
    write: bool,
) -> Response:
    headers = result_headers(result)
    body = result.body
    if write and result.is_resource:
        prefer = request.headers.get("prefer", "")
        if "return=minimal" in prefer:
            body = None
        elif "return=OperationOutcome" in prefer:
            body = result.outcome_for_prefer()
    if result.status == 204:
        body = None
    if body is not None and dict(query).get("_pretty") == "true":
        body = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)
    if request.method == "HEAD":
        body = None
    return Response(
        content=body or b"",
        status_code=result.status,
        headers=headers,
        media_type=f"{media}; charset=utf-8" if body is not None else None,
    )


@contextlib.asynccontextmanager
async def _savepoint(ctx: Context) -> AsyncIterator[None]:
    async with ctx.conn.begin_nested():
        yield


async def handle(request: Request) -> Response:
    state: AppState = request.app.state.relais
    method = request.method
    path = request.url.path.removeprefix("/fhir")
    query = parse_qsl(request.url.query, keep_blank_values=True)
    media = response_type(request, query)
    body: Any = None
    is_search_post = method == "POST" and path.endswith("/_search")
    if method in ("POST", "PUT", "PATCH"):
        content_type = _media(request.headers.get("content-type"))
        raw = await read_body(request, state.settings.max_body_bytes)
        if is_search_post:
            if raw.strip() and content_type != FORM:
                raise FhirError(415, "not-supported", f"_search takes {FORM}")
            query = query + parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        else:
            allowed = PATCH_TYPES if method == "PATCH" else JSON_TYPES
            if content_type not in allowed:
                raise FhirError(
                    415, "not-supported", f"Unsupported media type '{content_type or 'none'}'"
                )
            body = parse_json(raw)
    headers = {h: request.headers[h] for h in PASSED_HEADERS if h in request.headers}
    policy = await state.policy_for(request)
    write = method in ("POST", "PUT", "PATCH", "DELETE") and not is_search_post
    # Reads run without BEGIN/COMMIT: one statement each, two round trips saved.
    connection = state.engine.begin() if write else state.read_engine.connect()
    async with state.gate(write), connection as conn:
        ctx = state.context(conn, policy, getattr(request.state, "request_id", ""))
        if write:
            hold_writes(ctx)  # index rows and Provenances: one statement each, at the end
        if path in ("", "/") and method == "POST":
            result = await _bundle(ctx, request, body)
        else:
            result = await dispatch(ctx, method, path, body, headers, query=query)
        await flush_held(ctx)
    return render(request, result, media, query, write)


async def _bundle(ctx: Context, request: Request, body: Any) -> Result:
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise FhirError(400, "invalid", "POST to the base takes a batch or transaction Bundle")
    with_resource = "return=minimal" not in request.headers.get("prefer", "")
    out = await bundles.process(
        ctx,
        body,
        dispatch,
        with_resource=with_resource,
        savepoint=lambda: _savepoint(ctx),
    )
    return Result(status=200, body=out, is_resource=False)


async def metadata(request: Request) -> Response:
    state: AppState = request.app.state.relais
    query = parse_qsl(request.url.query)
    media = response_type(request, query)
    body = capability_statement(state)
    result = Result(status=200, body=body, is_resource=False)
    return render(request, result, media, query, False)


def _add(path: str, methods: list[str], name: str, summary: str) -> None:
    router.add_api_route(
        path,
        handle,
        methods=methods,
        name=name,
        summary=summary,
        response_class=Response,
        responses={200: {"content": {FHIR_JSON: {}}}},
    )


router.add_api_route(
    "/fhir/metadata", metadata, methods=["GET"], name="capabilities", summary="CapabilityStatement"
)
_add("/fhir", ["POST"], "bundle", "Process a batch or transaction Bundle")
_add("/fhir", ["GET"], "search_system", "Search across all types")
_add("/fhir/_history", ["GET"], "history_system", "History of every resource")
_add("/fhir/{type}", ["GET"], "search_type", "Search a type")
_add("/fhir/{type}", ["POST"], "create", "Create (If-None-Exist for conditional create)")
_add("/fhir/{type}", ["PUT"], "conditional_update", "Conditional update")
_add("/fhir/{type}", ["DELETE"], "conditional_delete", "Conditional delete")
_add("/fhir/{type}/_search", ["POST"], "search_post", "Search a type (form body)")
_add("/fhir/{type}/_history", ["GET"], "history_type", "History of a type")
_add("/fhir/{type}/{id}", ["GET"], "read", "Read (or a type-level $operation)")
router.add_api_route("/fhir/{type}/{id}", handle, methods=["HEAD"], include_in_schema=False)
_add("/fhir/{type}/{id}", ["POST"], "type_operation", "Type-level $operation")
_add("/fhir/{type}/{id}", ["PUT"], "update", "Update or create with a client id")
_add("/fhir/{type}/{id}", ["PATCH"], "patch", "JSON Patch or FHIRPath Patch")
_add("/fhir/{type}/{id}", ["DELETE"], "delete", "Delete")
_add("/fhir/{type}/{id}/_history", ["GET"], "history_instance", "History of a resource")
_add("/fhir/{type}/{id}/_history/{vid}", ["GET"], "vread", "Read a version")
_add("/fhir/{type}/{id}/{operation}", ["GET"], "instance_operation_get", "Instance $operation")
_add("/fhir/{type}/{id}/{operation}", ["POST"], "instance_operation", "Instance $operation")
