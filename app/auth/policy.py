"""The access rule of SPEC §5, as SQL: the only place it is written.

A partner client's request is served under a ClientPolicy built from its access
token. The engine ANDs `row_filter` into every query, so hidden rows are never
read, counted, included or listed, and they read as 404.

A row of `resource_current` or `resource_version` is visible when
1. a granted scope covers its type, the interaction's letter and its domain label, and
2. it lies outside every compartment (beneficiary NULL; AuditEvents excepted), or
   `access_grant` holds (its beneficiary, its domain) for the caller's organisation at
   this instant, or the client was registered for all beneficiaries.

The instant is the database's clock (`utc_now()`), so a filter depends only on the
client, the table, the type and the interaction: filters are built once and reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Select,
    and_,
    false,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from app.auth.scopes import interaction_letter, scope_set
from app.auth.tables import access_grant as grant
from app.db.tables import UTCDateTime
from app.fhir.outcomes import FhirError

# An AuditEvent outside any compartment tells who did what across cases: only
# clients registered for all beneficiaries see those.
AUDIT_TYPE = "AuditEvent"
SYSTEM_LEVEL = frozenset({"search-system", "history-system"})
INSTANCE_LEVEL = frozenset(
    {"read", "vread", "history-instance", "create", "update", "patch", "delete"}
)


class utc_now(FunctionElement[datetime]):
    """The current instant in the database, comparable with UTCDateTime columns."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(utc_now)
def _utc_now(_element: utc_now, _compiler: SQLCompiler, **_kw: Any) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(utc_now, "postgresql")
def _utc_now_pg(_element: utc_now, _compiler: SQLCompiler, **_kw: Any) -> str:
    return "statement_timestamp()"


@compiles(utc_now, "sqlite")
def _utc_now_sqlite(_element: utc_now, _compiler: SQLCompiler, **_kw: Any) -> str:
    # The text form SQLAlchemy stores SQLite datetimes in (UTC, microseconds).
    return "strftime('%Y-%m-%d %H:%M:%f000', 'now')"


@dataclass(frozen=True)
class Caller:
    """The authenticated client, from its access token."""

    client_id: str
    organization: str  # "Organization/<id>"
    scope: str
    all_beneficiaries: bool


@dataclass(frozen=True)
class Written:
    """A version the request wrote, for its AuditEvent."""

    type: str
    id: str
    version: int
    beneficiary: str | None
    domain: str | None


def granted_pairs(organization: str) -> Select[Any]:
    """(beneficiary, domain) pairs granted to the organisation now."""
    now = utc_now()
    return select(grant.c.beneficiary, grant.c.domain).where(
        grant.c.organization == organization,
        or_(grant.c.valid_from.is_(None), grant.c.valid_from <= now),
        or_(grant.c.valid_to.is_(None), grant.c.valid_to > now),
    )


@dataclass
class ClientPolicy:
    caller: Caller
    written: list[Written] = field(default_factory=list)
    name: str = "client"

    # --- AccessPolicy ------------------------------------------------------------------

    def check_interaction(self, resource_type: str, interaction: str) -> None:
        if not scope_set(self.caller.scope).allows(resource_type, interaction):
            raise FhirError(
                403,
                "forbidden",
                f"The granted scopes do not allow {interaction} on {resource_type}",
            )

    def row_filter(
        self, table: FromClause, resource_type: str | None, interaction: str
    ) -> ColumnElement[bool]:
        return _row_filter(table, resource_type, interaction, self.caller)

    def check_write(self, resource_type: str, resource: dict[str, Any], domain: str | None) -> None:
        if domain is None:
            return
        scopes = scope_set(self.caller.scope)
        meta = resource.get("meta")
        version = meta.get("versionId") if isinstance(meta, dict) else None
        creating = version == "1" or not scopes.allows(resource_type, "update")
        interaction = "create" if creating else "update"
        if not scopes.covers_domain(resource_type, interaction, domain):
            raise FhirError(
                403,
                "forbidden",
                f"The granted scopes do not allow writing {resource_type} in the '{domain}' domain",
            )

    def agent(self) -> dict[str, Any]:
        return {"reference": self.caller.organization}

    # --- checks used by the write hooks ------------------------------------------------

    async def manages(self, conn: AsyncConnection, beneficiary: str) -> bool:
        """True when the caller's organisation manages the beneficiary's case now."""
        if self.caller.all_beneficiaries:
            return True
        stmt = (
            granted_pairs(self.caller.organization)
            .where(grant.c.beneficiary == beneficiary, grant.c.kind == "manage")
            .limit(1)
        )
        return (await conn.execute(stmt)).first() is not None


# --- the rule ----------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _row_filter(
    table: FromClause, resource_type: str | None, interaction: str, caller: Caller
) -> ColumnElement[bool]:
    scoped = _scope_condition(table, resource_type, interaction, caller.scope)
    if caller.all_beneficiaries:
        return scoped
    compartment = _compartment_condition(table, resource_type, interaction, caller.organization)
    return and_(scoped, compartment)


def _scope_condition(
    table: FromClause, resource_type: str | None, interaction: str, scope: str
) -> ColumnElement[bool]:
    letter = interaction_letter(interaction)
    scopes = [
        s
        for s in scope_set(scope).scopes
        if letter in s.interactions
        and (resource_type is None or s.resource_type in ("*", resource_type))
    ]
    if not scopes:
        if resource_type is None and interaction in SYSTEM_LEVEL:
            raise FhirError(403, "forbidden", f"No granted scope allows {interaction}")
        return false()
    # Per type ("*" when the type is fixed or the scope is a wildcard): every domain,
    # or the domains of granular scopes (unlabelled rows pass: they need a scope only).
    every: set[str] = set()
    some: dict[str, set[str]] = {}
    for item in scopes:
        key = "*" if resource_type is not None else item.resource_type
        if item.domain is None:
            every.add(key)
        else:
            some.setdefault(key, set()).add(item.domain)
    if "*" in every:
        return true()
    conditions: list[ColumnElement[bool]] = []
    if every:
        conditions.append(table.c.type.in_(sorted(every)))
    for key, domains in sorted(some.items()):
        if key in every:
            continue
        in_domain = or_(table.c.domain.is_(None), table.c.domain.in_(sorted(domains)))
        conditions.append(in_domain if key == "*" else and_(table.c.type == key, in_domain))
    return or_(*conditions)


def _pair_key(table: FromClause) -> ColumnElement[str]:
    """beneficiary|domain: ids and domain codes never contain '|'."""
    key: ColumnElement[str] = table.c.beneficiary + "|" + table.c.domain
    return key


def _compartment_condition(
    table: FromClause, resource_type: str | None, interaction: str, organization: str
) -> ColumnElement[bool]:
    in_grant: ColumnElement[bool]
    if interaction in INSTANCE_LEVEL:
        # One row: a correlated EXISTS probes the (organization, beneficiary, domain)
        # index once, whatever the organisation's number of grants.
        now = utc_now()
        in_grant = (
            select(grant.c.id)
            .where(
                grant.c.organization == organization,
                grant.c.beneficiary == table.c.beneficiary,
                grant.c.domain == table.c.domain,
                or_(grant.c.valid_from.is_(None), grant.c.valid_from <= now),
                or_(grant.c.valid_to.is_(None), grant.c.valid_to > now),
            )
            .exists()
        )
    else:
        # Many rows (search, history): the organisation's grants hashed once per query,
        # as one text key (PostgreSQL hashes a single column much faster than a row).
        keys = granted_pairs(organization).with_only_columns(_pair_key(grant))
        in_grant = _pair_key(table).in_(keys)
    if resource_type == AUDIT_TYPE:
        return in_grant
    outside: ColumnElement[bool] = table.c.beneficiary.is_(None)
    if resource_type is None:
        outside = and_(outside, table.c.type != AUDIT_TYPE)
    return or_(outside, in_grant)
