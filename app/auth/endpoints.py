"""OAuth endpoints (/auth/token, /auth/jwks, /auth/introspect) and the SMART configuration."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from app.audit.events import AuditRecord
from app.audit.trail import AuditTrail
from app.auth.errors import OAuthError
from app.auth.scopes import SUPPORTED_SCOPES_EXAMPLES
from app.auth.service import AuthService, Throttled
from app.fhir.outcomes import FhirError

FORM = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_FORM_BYTES = 64 * 1024

router = APIRouter(tags=["auth"])


def _service(request: Request) -> AuthService:
    service: AuthService = request.app.state.relais_auth
    return service


def _trail(request: Request) -> AuditTrail:
    trail: AuditTrail = request.app.state.relais_audit
    return trail


def _error(err: OAuthError) -> JSONResponse:
    headers = dict(NO_STORE)
    if err.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="relais"'
    return JSONResponse(err.body(), status_code=err.status, headers=headers)


async def _form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != FORM:
        raise OAuthError("invalid_request", f"the token request must be {FORM}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise OAuthError("invalid_request", "the token request is too large")
    form = await request.form()
    values: dict[str, str] = {}
    for name, value in form.multi_items():
        if not isinstance(value, str):
            raise OAuthError("invalid_request", f"{name} must be a plain form field")
        if name in values:
            raise OAuthError("invalid_request", f"{name} is repeated")
        values[name] = value
    return values


@router.post("/auth/token", summary="OAuth2 token endpoint (SMART Backend Services)")
async def token(request: Request) -> Response:
    service = _service(request)
    record = AuditRecord(
        recorded=datetime.now(UTC),
        interaction="login",
        status=200,
        method="POST",
        path="/auth/token",
        request_id=getattr(request.state, "request_id", ""),
    )
    try:
        issued = await service.issue(await _form(request), request.headers.get("authorization"))
    except OAuthError as err:
        record.status, record.description = err.status, f"{err.error}: {err.description}"
        _trail(request).record(record)
        return _error(err)
    except Throttled as exc:
        record.status, record.description = 429, "throttled after repeated failures"
        _trail(request).record(record)
        body = {
            "error": "invalid_client",
            "error_description": f"too many failed attempts; retry after {exc.retry_after} s",
        }
        headers = {**NO_STORE, "Retry-After": str(exc.retry_after)}
        return JSONResponse(body, status_code=429, headers=headers)
    record.client_id, record.organization = issued.client_id, issued.organization
    record.description = f"token issued, scope {issued.scope}"
    _trail(request).record(record)
    return JSONResponse(issued.body(), headers=NO_STORE)


@router.get("/auth/jwks", summary="The server's public token-signing keys")
async def jwks(request: Request) -> Response:
    return JSONResponse(
        _service(request).jwks(),
        media_type="application/jwk-set+json",
        headers={"Cache-Control": "public, max-age=3600"},
    )


@router.post("/auth/introspect", summary="RFC 7662 token introspection")
async def introspect(request: Request) -> Response:
    """Callers authenticate with their own bearer token; a client may introspect its own
    tokens, a client registered for all beneficiaries any token."""
    service = _service(request)
    try:
        caller = await service.authenticate(request.headers.get("authorization"))
        form = await _form(request)
    except OAuthError as err:
        return _error(err)
    except FhirError as exc:
        body = {"error": "invalid_token", "error_description": exc.diagnostics}
        return JSONResponse(body, status_code=401, headers={**NO_STORE, **exc.headers})
    answer = await service.introspect(form.get("token", ""))
    own = answer.get("client_id") == caller.caller.client_id
    if answer["active"] and not (own or caller.caller.all_beneficiaries):
        answer = {"active": False}
    return JSONResponse(answer, headers=NO_STORE)


def smart_configuration(service: AuthService) -> dict[str, Any]:
    base = service.issuer
    return {
        "issuer": base,
        "jwks_uri": f"{base}/auth/jwks",
        "token_endpoint": service.token_url,
        "introspection_endpoint": f"{base}/auth/introspect",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": SUPPORTED_SCOPES_EXAMPLES,
        "capabilities": [
            "client-confidential-asymmetric",
            "client-confidential-symmetric",
            "permission-v1",
            "permission-v2",
        ],
    }


@router.get(
    "/fhir/.well-known/smart-configuration",
    summary="SMART configuration (public)",
)
async def smart_config(request: Request) -> Response:
    return JSONResponse(smart_configuration(_service(request)))
