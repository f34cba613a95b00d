"""After-write hooks of the access rule, run inside the write transaction.

- A change to an EpisodeOfCare, CareTeam or Consent rebuilds the beneficiary's grants;
  only a client that manages the case (or one registered for all beneficiaries) may
  make such a change, so nobody widens its own access.
- A partner may only write what it may then see: the new version must pass the
  caller's row filter, else the write is refused (403) and rolled back.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import delete, insert, select, text

from app.auth.grants import CASE_TYPES, compute_grants
from app.auth.policy import ClientPolicy, Written
from app.auth.tables import access_grant
from app.db.tables import resource_current as cur
from app.fhir.context import Context, Stored
from app.fhir.outcomes import FhirError
from app.fhir.repository import settle
from app.resources.domains import beneficiary_of


async def access_hook(ctx: Context, stored: Stored) -> None:
    client = ctx.policy if isinstance(ctx.policy, ClientPolicy) else None
    # For a client of all beneficiaries the row filter is its scopes, already checked.
    must_see = (
        client is not None and stored.resource is not None and not client.caller.all_beneficiaries
    )
    if stored.type in CASE_TYPES or must_see:
        await settle(ctx)  # what follows reads the resources written so far
    if stored.type in CASE_TYPES:
        affected = sorted(
            {b for b in (stored.beneficiary, _beneficiary(stored.previous)) if b is not None}
        )
        for beneficiary in affected:
            if client is not None and not await client.manages(ctx.conn, beneficiary):
                raise FhirError(
                    403,
                    "forbidden",
                    f"Only the organisation managing the case may change its {stored.type}",
                )
        for beneficiary in affected:
            await rebuild_grants(ctx, beneficiary)
    if client is None:
        return
    if must_see and not await _visible(ctx, client, stored):
        raise FhirError(
            403,
            "forbidden",
            f"The caller may not write {stored.type} in the '{stored.domain}' domain of "
            "this beneficiary",
        )
    client.written.append(
        Written(stored.type, stored.id, stored.version, stored.beneficiary, stored.domain)
    )


def _beneficiary(resource: dict[str, Any] | None) -> str | None:
    return beneficiary_of(resource) if resource is not None else None


async def _visible(ctx: Context, client: ClientPolicy, stored: Stored) -> bool:
    interaction = "create" if stored.version == 1 else "update"
    stmt = select(cur.c.version).where(
        cur.c.type == stored.type,
        cur.c.res_id == stored.id,
        client.row_filter(cur, stored.type, interaction),
    )
    return (await ctx.conn.execute(stmt)).first() is not None


async def rebuild_grants(ctx: Context, beneficiary: str) -> None:
    """Recompute every grant over one beneficiary from its current case records."""
    conn = ctx.conn
    if conn.dialect.name == "postgresql":
        # Serialise rebuilds per beneficiary: each then reads the other's committed records.
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"grant:{beneficiary}"}
        )
    rows = await conn.execute(
        select(cur.c.content).where(
            cur.c.beneficiary == beneficiary,
            cur.c.type.in_(CASE_TYPES),
            cur.c.deleted.is_(False),
        )
    )
    resources = [orjson.loads(r.content) for r in rows if r.content]
    grants = compute_grants(resources)
    await conn.execute(delete(access_grant).where(access_grant.c.beneficiary == beneficiary))
    if grants:
        await conn.execute(
            insert(access_grant),
            [
                {
                    "beneficiary": beneficiary,
                    "organization": g.organization,
                    "domain": g.domain,
                    "kind": g.kind,
                    "valid_from": g.valid_from,
                    "valid_to": g.valid_to,
                    "source": g.source,
                }
                for g in grants
            ],
        )
