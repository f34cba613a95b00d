"""Process-wide state held by the app: settings, engine, plugins, the caller resolver."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db.engine import WriteGate
from app.fhir.access import OPEN, AccessPolicy
from app.fhir.context import Context, Plugins
from app.settings import Settings


async def _open_policy(_request: Request) -> AccessPolicy:
    return OPEN


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    plugins: Plugins
    write_gate: WriteGate
    # Resolves the caller of a request to its access policy (authentication plugs in here).
    policy_for: Callable[[Request], Awaitable[AccessPolicy]] = _open_policy
    # Extra CapabilityStatement content contributed by plugins (security, operations).
    capability_extras: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    # Awaited in order when the app starts (e.g. storing the shipped conformance resources).
    startup: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)
    # Autocommit reads planned once whatever their values (PostgreSQL; db.engine).
    planned_once: AsyncEngine | None = None

    @cached_property
    def read_engine(self) -> AsyncEngine:
        """The same pool in autocommit mode, for requests that only read."""
        return self.engine.execution_options(isolation_level="AUTOCOMMIT")

    def context(
        self, conn: AsyncConnection, policy: AccessPolicy = OPEN, request_id: str = ""
    ) -> Context:
        """The Context of one unit of work on `conn`, for `policy`'s caller."""
        return Context(
            conn=conn,
            base_url=self.settings.fhir_base,
            plugins=self.plugins,
            policy=policy,
            request_id=request_id,
            planned_once=self.planned_once,
        )

    def gate(self, write: bool) -> Any:
        return self.write_gate if write else _NO_GATE


class _NoGate:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *_exc: object) -> None:
        return None


_NO_GATE = _NoGate()
