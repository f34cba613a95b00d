"""SQL conditions selecting the records of a beneficiary or of one of their cases.

A beneficiary's records carry the beneficiary column (indexed with the domain). A case
(EpisodeOfCare) is the beneficiary's records minus their other cases and the records
linked to another case only: a beneficiary with two accidents has two cases, and a record
that names another EpisodeOfCare (Encounter.episodeOfCare, ChargeItem.context…) but not
this one belongs to that other case. Stored JSON is compact (orjson), so a reference
reads `"reference":"EpisodeOfCare/<id>"` in the text.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, not_, or_

from app.db.tables import resource_current as cur
from app.fhir import repository as repo
from app.fhir.context import Context
from app.fhir.outcomes import FhirError, not_found
from app.resources.domains import beneficiary_of

# Interactions under which the operations read: one resource, then sets of records.
READ = "read"
SEARCH = "search-system"


def compartment(beneficiary: str) -> list[ColumnElement[bool]]:
    return [cur.c.beneficiary == beneficiary, cur.c.deleted.is_(False)]


def of_case(episode_id: str) -> ColumnElement[bool]:
    mentions_a_case = cur.c.content.like('%"reference":"EpisodeOfCare/%')
    mentions_this = or_(
        cur.c.content.like(f'%"reference":"EpisodeOfCare/{episode_id}"%'),
        cur.c.content.like(f'%"reference":"EpisodeOfCare/{episode_id}/_history/%'),
    )
    other_case = and_(cur.c.type == "EpisodeOfCare", cur.c.res_id != episode_id)
    return and_(not_(other_case), or_(not_(mentions_a_case), mentions_this))


async def read_anchor(ctx: Context, resource_type: str, res_id: str) -> dict[str, Any]:
    """The resource an operation is invoked on, when the caller may read it."""
    ctx.policy.check_interaction(resource_type, READ)
    row = await repo.read_current(ctx, resource_type, res_id, READ)
    if row is None:
        raise not_found(f"{resource_type}/{res_id} not found")
    if row.deleted or row.content is None:
        raise FhirError(410, "deleted", f"{resource_type}/{res_id} has been deleted")
    resource: dict[str, Any] = orjson.loads(row.content)
    return resource


def case_conditions(episode: dict[str, Any]) -> list[ColumnElement[bool]]:
    """The records of the case `episode` (its beneficiary's, minus other cases')."""
    beneficiary = beneficiary_of(episode)
    if beneficiary is None:
        return [cur.c.type == "EpisodeOfCare", cur.c.res_id == episode["id"]]
    return [*compartment(beneficiary), of_case(str(episode["id"]))]
