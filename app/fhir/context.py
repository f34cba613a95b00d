"""What every interaction receives: the connection, the caller's policy and the plugins."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.fhir.access import OPEN, AccessPolicy


@dataclass
class Stored:
    """One written version, handed to after-write hooks."""

    type: str
    id: str
    version: int
    last_updated: datetime
    method: str
    resource: dict[str, Any] | None  # None when deleted
    previous: dict[str, Any] | None
    beneficiary: str | None
    domain: str | None


# (ctx, resource, previous) -> None; raises FhirError to refuse the write.
Validator = Callable[["Context", dict[str, Any], dict[str, Any] | None], Awaitable[None]]
# (ctx, stored) -> None; runs inside the write transaction.
AfterWrite = Callable[["Context", Stored], Awaitable[None]]
# resource -> (beneficiary, domain label)
Labeler = Callable[[dict[str, Any]], tuple[str | None, str | None]]
# ctx -> None; writes what was held for the transaction (see hold_writes).
Flusher = Callable[["Context"], Awaitable[None]]


@dataclass(frozen=True)
class OperationCall:
    """A $operation request, as the router hands it to the operation's handler."""

    method: str
    resource_type: str | None  # None at system level
    res_id: str | None  # set at instance level
    query: list[tuple[str, str]]
    body: Any
    headers: dict[str, str]


# (ctx, call) -> Result, for $operations
Operation = Callable[["Context", OperationCall], Awaitable[Any]]


def _no_labels(_resource: dict[str, Any]) -> tuple[str | None, str | None]:
    return None, None


@dataclass
class Plugins:
    """Extension points the resource-agnostic engine calls; filled in by create_app."""

    labeler: Labeler = _no_labels
    validators: list[Validator] = field(default_factory=list)
    after_write: list[AfterWrite] = field(default_factory=list)
    # Run in order by flush_held; a flusher that adds index rows comes before the index's.
    flushers: list[Flusher] = field(default_factory=list)
    # (type or None for system level, instance level?, name) -> handler
    operations: dict[tuple[str | None, bool, str], Operation] = field(default_factory=dict)
    read_only: Callable[[str, str], bool] = lambda _t, _i: False


@dataclass
class Context:
    conn: AsyncConnection
    base_url: str  # the FHIR base, e.g. http://127.0.0.1:8000/fhir
    plugins: Plugins
    policy: AccessPolicy = OPEN
    request_id: str = ""
    adapter: str | None = None
    # Autocommit reads planned once whatever their values (db.engine), when there is one.
    planned_once: AsyncEngine | None = None
    # Per-unit-of-work scratch: a transaction's urn:uuid ids, held writes (hold_writes)
    extra: dict[str, Any] = field(default_factory=dict)


# --- writes held until the end of a transaction -------------------------------------------
# After-write hooks that write more rows (search index, Provenance) may hold them while
# a request's transaction runs and write them all with one statement per table at the
# end. Whoever owns the transaction calls flush_held before committing, and searches
# call it first so they see their own transaction.

HOLD = "held-writes"


def hold_writes(ctx: Context) -> None:
    ctx.extra.setdefault(HOLD, {})


def held(ctx: Context, key: str) -> list[Any] | None:
    """The list a hook appends its held rows to; None when writes are not held."""
    holding: dict[str, list[Any]] | None = ctx.extra.get(HOLD)
    return None if holding is None else holding.setdefault(key, [])


def take_held(ctx: Context, key: str) -> list[Any]:
    holding: dict[str, list[Any]] = ctx.extra.get(HOLD, {})
    return holding.pop(key, [])


def discard_held(ctx: Context) -> None:
    """Forget what was held since the last flush (its savepoint was rolled back)."""
    if HOLD in ctx.extra:
        ctx.extra[HOLD] = {}


async def flush_held(ctx: Context) -> None:
    for flush in ctx.plugins.flushers:
        await flush(ctx)
