"""GET requests of the FHIR API as plain ASGI, ahead of the route table.

Reads and searches are most of a partner's traffic, and their routes all lead to
`http.handle`: they need nothing FastAPI adds (the walk through every route, parameter
parsing, dependency solving). A GET that one of those routes would take is handed to
`handle` here; a plain read or vread (no query string, a FHIR id, JSON wanted) takes a
shorter path still. Anything else goes on to the routes.
"""

from __future__ import annotations

from typing import Any

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.fhir import interactions as fx
from app.fhir.asgi import send_outcome, send_response
from app.fhir.http import handle, media_for, result_headers
from app.fhir.outcomes import FhirError
from app.fhir.types import ID_RE, SUPPORTED
from app.state import AppState

log = structlog.get_logger("relais.http")


def route_name(path: str) -> str | None:
    """The name of the route a GET of `path` reaches, when that route runs `handle`."""
    if path == "/fhir":
        return "search_system"
    if not path.startswith("/fhir/"):
        return None
    parts = path[6:].split("/")
    n = len(parts)
    if n == 1:
        if parts[0] in ("metadata", ""):
            return None
        return "history_system" if parts[0] == "_history" else "search_type"
    if not all(parts) or parts[0] == ".well-known":
        return None
    if n == 2:
        return "history_type" if parts[1] == "_history" else "read"
    if n == 3:
        return "history_instance" if parts[2] == "_history" else "instance_operation_get"
    if n == 4 and parts[2] == "_history":
        return "vread"
    return None


def _plain_read(scope: Scope, route: str) -> list[str] | None:
    """[type, id] or [type, id, version] when the request is a plain read or vread."""
    if route not in ("read", "vread") or scope["query_string"]:
        return None
    parts: list[str] = scope["path"][6:].split("/")
    if route == "vread":
        del parts[2]
    if parts[0] not in SUPPORTED or not ID_RE.match(parts[1]):
        return None
    return parts


def _accept(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"accept":
            return str(value.decode("latin-1"))
    return None


class GetShortcut:
    def __init__(self, app: ASGIApp, state: AppState, routes: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self.routes = routes  # route name -> route, for the metrics labels

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http" and scope["method"] == "GET":
            route = route_name(scope["path"])
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.routes[route]
        try:
            parts = _plain_read(scope, route)
            if parts is None:
                response = await handle(Request(scope, receive))
                await response(scope, receive, send)
                return
            media = media_for(None, _accept(scope))
            result = await self._read(scope, parts)
        except FhirError as err:
            await send_outcome(send, err)
            return
        except Exception as exc:  # the same answer as the app's last-resort handler
            log.exception("unhandled", path=scope["path"], error=repr(exc))
            await send_outcome(send, FhirError(500, "exception", "Internal error"))
            return
        headers = {"content-type": f"{media}; charset=utf-8", **result_headers(result)}
        await send_response(send, result.status, headers, result.body or b"")

    async def _read(self, scope: Scope, parts: list[str]) -> fx.Result:
        state = self.state
        policy = await state.policy_for(Request(scope))
        async with state.read_engine.connect() as conn:
            ctx = state.context(conn, policy, str(scope.get("state", {}).get("request_id", "")))
            if len(parts) == 2:
                return await fx.read(ctx, parts[0], parts[1])
            return await fx.vread(ctx, parts[0], parts[1], parts[2])
