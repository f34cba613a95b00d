"""Bearer authentication and auditing of every FHIR and adapter request, in one place.

Protected: `/fhir/…` (except `metadata` and the SMART configuration) and `/adapters/…`.
A request without a valid token is answered 401 here, before any route runs, so a new
route cannot forget the check. The caller's policy is left in the request state for
`AppState.policy_for`; after the response, one AuditEvent records the request.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.audit.events import AuditRecord, classify
from app.audit.trail import AuditTrail
from app.auth.policy import ClientPolicy
from app.auth.service import AuthService
from app.fhir.asgi import send_outcome
from app.fhir.outcomes import FhirError

POLICY_KEY = "relais_policy"
PUBLIC = frozenset({"/fhir/metadata", "/fhir/.well-known/smart-configuration"})
_BUNDLE_KIND = re.compile(rb'"type"\s*:\s*"(batch|transaction)-response"')

log = structlog.get_logger("relais.auth")


def is_protected(path: str) -> bool:
    if path in PUBLIC:
        return False
    return (
        path == "/fhir"
        or path.startswith("/fhir/")
        or path == "/adapters"
        or path.startswith("/adapters/")
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class AccessMiddleware:
    def __init__(self, app: ASGIApp, service: AuthService, trail: AuditTrail) -> None:
        self.app = app
        self.service = service
        self.trail = trail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        try:
            policy = await self.service.authenticate(_header(scope, b"authorization"))
        except FhirError as err:
            await send_outcome(send, err)
            self._audit(scope, None, err.status, err.diagnostics)
            return
        state[POLICY_KEY] = policy
        status = 500
        bundle_kind: str | None = None
        sniff = scope["method"] == "POST" and scope["path"].rstrip("/") == "/fhir"

        async def send_wrapper(message: Message) -> None:
            nonlocal status, bundle_kind
            if message["type"] == "http.response.start":
                status = message["status"]
            elif sniff and bundle_kind is None and message["type"] == "http.response.body":
                found = _BUNDLE_KIND.search(message.get("body", b"")[:512])
                bundle_kind = found.group(1).decode() if found else ""
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self._audit(scope, policy, status, bundle_kind=bundle_kind)

    def _audit(
        self,
        scope: Scope,
        policy: ClientPolicy | None,
        status: int,
        description: str = "",
        bundle_kind: str | None = None,
    ) -> None:
        try:
            method, path = scope["method"], scope["path"]
            interaction, target = classify(method, path)
            if interaction == "transaction" and bundle_kind:
                interaction = bundle_kind
            record = AuditRecord(
                recorded=datetime.now(UTC),
                interaction=interaction,
                status=status,
                method=method,
                path=path,
                query=scope.get("query_string", b"").decode("latin-1"),
                request_id=str(scope.get("state", {}).get("request_id", "")),
                description=description,
            )
            if target is not None:
                record.entities.append(target)
            if policy is not None:
                record.client_id = policy.caller.client_id
                record.organization = policy.caller.organization
                record.entities += [(w.type, w.id, w.version) for w in policy.written]
                labels = {(w.beneficiary, w.domain) for w in policy.written}
                if len(labels) == 1:
                    record.labels = labels.pop()
                elif labels:
                    record.labels = (None, None)
            self.trail.record(record)
        except Exception as exc:  # auditing never fails the request
            log.error("audit_failed", error=repr(exc))
