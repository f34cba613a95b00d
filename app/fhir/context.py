"""What every interaction receives: the connection, the caller's policy and the plugins."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.fhir.access import OPEN, AccessPolicy


@dataclass
class Stored:
    """One written version, handed to after-write hooks."""

    type: str
    id: str
    version: int
    seq: int
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
# (ctx, request) -> response, for $operations
Operation = Callable[..., Awaitable[Any]]


def _no_labels(_resource: dict[str, Any]) -> tuple[str | None, str | None]:
    return None, None


@dataclass
class Plugins:
    """Extension points the resource-agnostic engine calls; filled in by create_app."""

    labeler: Labeler = _no_labels
    validators: list[Validator] = field(default_factory=list)
    after_write: list[AfterWrite] = field(default_factory=list)
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
    # Set while a transaction Bundle runs: urn:uuid -> Type/id
    extra: dict[str, Any] = field(default_factory=dict)
