"""GET read and vread as plain ASGI, ahead of the route table.

They are most of a partner's traffic and need nothing FastAPI adds (parameter
parsing, dependency solving, the walk through every route). Only the plain form is
taken here: with a query string, an Accept the shortcut does not serve or an id that
is not a FHIR id, the request goes on to the routes, which answer it the same way.
"""

from __future__ import annotations

from typing import Any

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.fhir import interactions as fx
from app.fhir.asgi import send_outcome, send_response
from app.fhir.context import Context
from app.fhir.http import media_for, result_headers
from app.fhir.outcomes import FhirError
from app.fhir.types import ID_RE, SUPPORTED
from app.state import AppState

log = structlog.get_logger("relais.http")


def _plain_read(scope: Scope) -> list[str] | None:
    """[type, id] or [type, id, version] when the request is a plain read or vread."""
    if scope["method"] != "GET" or scope["query_string"] or not scope["path"].startswith("/fhir/"):
        return None
    parts: list[str] = scope["path"][6:].split("/")
    if len(parts) == 4 and parts[2] == "_history":
        del parts[2]
    elif len(parts) != 2:
        return None
    if parts[0] not in SUPPORTED or not ID_RE.match(parts[1]):
        return None
    return parts


def _accept(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"accept":
            return str(value.decode("latin-1"))
    return None


class ReadShortcut:
    def __init__(self, app: ASGIApp, state: AppState, routes: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self.routes = routes  # "read" / "vread" -> the route, for metrics labels

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = _plain_read(scope) if scope["type"] == "http" else None
        if parts is None:
            await self.app(scope, receive, send)
            return
        try:
            media = media_for(None, _accept(scope))
        except FhirError:
            await self.app(scope, receive, send)  # the route answers 406
            return
        scope["route"] = self.routes["read" if len(parts) == 2 else "vread"]
        try:
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
            ctx = Context(
                conn=conn,
                base_url=state.settings.fhir_base,
                plugins=state.plugins,
                policy=policy,
                request_id=str(scope.get("state", {}).get("request_id", "")),
            )
            if len(parts) == 2:
                return await fx.read(ctx, parts[0], parts[1])
            return await fx.vread(ctx, parts[0], parts[1], parts[2])
