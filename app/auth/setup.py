"""Plugs authentication, the access rule and the audit trail into the app."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from fastapi import FastAPI, Request
from starlette.middleware import Middleware

from app.audit.provenance import flush_provenance, provenance_hook
from app.audit.trail import AuditTrail
from app.auth.endpoints import router
from app.auth.hooks import access_hook
from app.auth.middleware import POLICY_KEY, AccessMiddleware
from app.auth.service import AuthService
from app.fhir.access import AccessPolicy
from app.fhir.search.indexing import flush_index
from app.state import AppState

log = structlog.get_logger("relais.auth")
HOUSEKEEPING_SECONDS = 60.0

SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def install(app: FastAPI, state: AppState) -> None:
    service = AuthService(state.settings, state.engine, state.write_gate)
    trail = AuditTrail(state)
    app.state.relais_auth = service
    app.state.relais_audit = trail

    async def policy_for(request: Request) -> AccessPolicy:
        policy: AccessPolicy | None = getattr(request.state, POLICY_KEY, None)
        if policy is None:
            policy = await service.authenticate(request.headers.get("authorization"))
        return policy

    state.policy_for = policy_for
    state.plugins.after_write += [access_hook, provenance_hook]
    flushers = state.plugins.flushers
    flushers.insert(flushers.index(flush_index), flush_provenance)  # it adds index rows
    state.capability_extras.append(lambda statement: _security(statement, service))
    # Before the FHIR routes: /fhir/.well-known/… would otherwise match /fhir/{type}/{id}.
    count = len(app.router.routes)
    app.include_router(router)
    app.router.routes[:] = app.router.routes[count:] + app.router.routes[:count]
    # Innermost user middleware: requests answered 401 are still logged and counted.
    app.user_middleware.append(Middleware(AccessMiddleware, service=service, trail=trail))
    _wrap_lifespan(app, service, trail)


def _security(statement: dict[str, Any], service: AuthService) -> None:
    base = service.issuer
    security = {
        "cors": False,
        "service": [
            {
                "coding": [
                    {
                        "system": SECURITY_SERVICE,
                        "code": "SMART-on-FHIR",
                        "display": "SMART-on-FHIR",
                    }
                ],
                "text": "SMART Backend Services (client_credentials, private_key_jwt)",
            }
        ],
        "description": (
            "Bearer access tokens from the token endpoint; scopes and the beneficiary's "
            f"consent decide what a partner sees. SMART configuration: "
            f"{service.audience}/.well-known/smart-configuration"
        ),
        "extension": [
            {
                "url": OAUTH_URIS,
                "extension": [
                    {"url": "token", "valueUri": service.token_url},
                    {"url": "introspect", "valueUri": f"{base}/auth/introspect"},
                ],
            }
        ],
    }
    for rest in statement.get("rest", []):
        rest["security"] = security


def _wrap_lifespan(app: FastAPI, service: AuthService, trail: AuditTrail) -> None:
    """Flush the audit trail before the app's own shutdown disposes of the engine."""
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[Any]:
        async with inner(app_) as value:
            stop = asyncio.Event()
            chores = asyncio.create_task(_housekeeping(service, stop))
            try:
                yield value
            finally:
                stop.set()
                await chores
                await trail.close()
                await service.aclose()

    app.router.lifespan_context = lifespan


async def _housekeeping(service: AuthService, stop: asyncio.Event) -> None:
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HOUSEKEEPING_SECONDS)
        if stop.is_set():
            return
        try:
            await service.purge_expired()
        except Exception as exc:
            log.error("purge_failed", error=repr(exc))
