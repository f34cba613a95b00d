"""create_app(settings) -> FastAPI."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware

from app.auth.setup import install as install_auth
from app.db.engine import WriteGate, make_engine, make_planned_once_engine
from app.fhir import http as fhir_http
from app.fhir.bindings import check_required_bindings
from app.fhir.context import Context, Plugins
from app.fhir.outcomes import FhirError
from app.fhir.references import check_references
from app.fhir.repository import flush_new
from app.fhir.search.extract import indexed_params
from app.fhir.search.indexing import flush_index, index_on_write
from app.fhir.shortcut import GetShortcut
from app.fhir.types import SUPPORTED, model_class
from app.fhir.validate_op import register as register_validate
from app.observability import ObservabilityMiddleware, configure_logging, metrics_payload
from app.resources.labels import label
from app.resources.plugin import install as install_case_model
from app.settings import Settings
from app.state import AppState

log = structlog.get_logger("relais")
OUTCOME_TYPE = "application/fhir+json; charset=utf-8"


async def _bindings(_ctx: Context, resource: dict[str, Any], _prev: dict[str, Any] | None) -> None:
    check_required_bindings(resource)


def core_plugins() -> Plugins:
    plugins = Plugins(labeler=label)
    plugins.validators.append(_bindings)
    plugins.validators.append(check_references)
    plugins.after_write.append(index_on_write)
    # The new resources first: the rows flushed after them read their created_seq.
    plugins.flushers += [flush_new, flush_index]
    register_validate(plugins)
    return plugins


def outcome_response(err: FhirError) -> Response:
    return Response(
        content=err.to_bytes(),
        status_code=err.status,
        media_type=OUTCOME_TYPE,
        headers=err.headers,
    )


def settle_memory() -> None:
    """Load what requests would otherwise load lazily (the FHIR models, the compiled
    search plans), then hide these long-lived objects from the garbage collector: a
    full collection walking them paused every request for about 70 ms."""
    for resource_type in SUPPORTED:
        model_class(resource_type)
        indexed_params(resource_type)
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.json_logs)
    engine = make_engine(settings)
    planned_once = make_planned_once_engine(settings)
    state = AppState(
        settings=settings,
        engine=engine,
        plugins=core_plugins(),
        write_gate=WriteGate(settings.is_sqlite),
        planned_once=planned_once,
    )
    install_case_model(state)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for hook in state.startup:
            await hook()
        settle_memory()
        yield
        await engine.dispose()
        if planned_once is not None:
            await planned_once.dispose()

    app = FastAPI(
        title="Relais",
        version="0.1.0",
        description="FHIR R4B server for the case management of bodily-injury victims.",
        lifespan=lifespan,
    )
    app.state.relais = state
    app.add_middleware(ObservabilityMiddleware)

    @app.exception_handler(FhirError)
    async def fhir_error(_request: Request, exc: FhirError) -> Response:
        return outcome_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        return outcome_response(FhirError(exc.status_code, code, str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> Response:
        return outcome_response(FhirError(400, "invalid", str(exc.errors()[:3])))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled", path=request.url.path, error=repr(exc))
        return outcome_response(FhirError(500, "exception", "Internal error"))

    @app.get("/healthz", tags=["ops"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="Readiness: the database answers")
    async def readyz() -> Response:
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            err = FhirError(503, "transient", f"Database unreachable: {type(exc).__name__}")
            return outcome_response(err)
        return Response(content=b'{"status":"ready"}', media_type="application/json")

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    async def metrics() -> Response:
        payload, content_type = metrics_payload()
        return Response(content=payload, media_type=content_type)

    app.include_router(fhir_http.router, tags=["fhir"])
    install_auth(app, state)
    # Innermost: behind authentication and auditing, ahead of the route table.
    routes = {
        r.name: r
        for r in fhir_http.router.routes
        if isinstance(r, APIRoute) and "GET" in (r.methods or ())
    }
    app.user_middleware.append(Middleware(GetShortcut, state=state, routes=routes))
    return app
