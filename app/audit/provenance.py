"""A Provenance for every write, stored in the write's own transaction.

Stored in bulk (repository.insert_new) with its search index rows; when the request
holds its writes, every Provenance of the transaction goes in one statement at the
end. It commits or rolls back with the write it records. It carries
the compartment and domain label of its target, so it is exactly as visible as the
target.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from app.audit.index import provenance_index
from app.fhir import repository as repo
from app.fhir.context import Context, Stored, held, take_held
from app.fhir.search.indexing import index_new
from app.resources.domains import DOMAIN_SYSTEM

CLIENT_ID_SYSTEM = "https://relais.dev/fhir/sid/client-id"
ADAPTER_SYSTEM = "https://relais.dev/fhir/sid/adapter"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
UNRECORDED = frozenset({"Provenance", "AuditEvent"})
PENDING = "provenance"

ACTIVITY = {"POST": "CREATE", "PUT": "UPDATE", "PATCH": "UPDATE", "DELETE": "DELETE"}


def _participant(code: str) -> dict[str, Any]:
    return {"coding": [{"system": PARTICIPANT_TYPE, "code": code}]}


def provenance_agents(ctx: Context) -> list[dict[str, Any]]:
    """The organisation (author), the client software (enterer), the adapter if any."""
    who = ctx.policy.agent()
    agents: list[dict[str, Any]] = [{"type": _participant("author"), "who": who}]
    client_id = getattr(getattr(ctx.policy, "caller", None), "client_id", None)
    if client_id:
        agents.append(
            {
                "type": _participant("enterer"),
                "who": {
                    "identifier": {"system": CLIENT_ID_SYSTEM, "value": client_id},
                    "display": f"client {client_id}",
                },
                "onBehalfOf": who,
            }
        )
    if ctx.adapter:
        agents.append(
            {
                "type": _participant("assembler"),
                "who": {
                    "identifier": {"system": ADAPTER_SYSTEM, "value": ctx.adapter},
                    "display": f"Relais {ctx.adapter} adapter",
                },
            }
        )
    return agents


def build_provenance(ctx: Context, stored: Stored) -> dict[str, Any]:
    operation = ACTIVITY.get(stored.method, "UPDATE")
    if stored.method == "PUT" and stored.version == 1:
        operation = "CREATE"
    resource: dict[str, Any] = {
        "resourceType": "Provenance",
        "target": [{"reference": f"{stored.type}/{stored.id}/_history/{stored.version}"}],
        "recorded": repo.instant(stored.last_updated),
        "activity": {"coding": [{"system": DATA_OPERATION, "code": operation}]},
        "agent": provenance_agents(ctx),
    }
    return resource


async def provenance_hook(ctx: Context, stored: Stored) -> None:
    if stored.type in UNRECORDED:
        return
    resource = build_provenance(ctx, stored)
    resource["id"] = str(uuid.uuid4())
    meta: dict[str, Any] = {"versionId": "1", "lastUpdated": repo.instant(stored.last_updated)}
    if stored.domain is not None:
        meta["security"] = [{"system": DOMAIN_SYSTEM, "code": stored.domain}]
    resource["meta"] = meta
    item = (resource, stored)
    pending = held(ctx, PENDING)
    if pending is None:
        await _store(ctx, [item])
    else:
        pending.append(item)


async def flush_provenance(ctx: Context) -> None:
    """Flusher: the held Provenances, before the index flush (it adds their rows)."""
    items = take_held(ctx, PENDING)
    if items:
        await _store(ctx, items)


async def _store(ctx: Context, items: list[tuple[dict[str, Any], Stored]]) -> None:
    """Written by the server, not the caller: the caller's write checks do not apply,
    and no other after-write hook concerns a Provenance."""
    versions = [
        repo.NewVersion(
            "Provenance",
            resource["id"],
            orjson.dumps(resource).decode(),
            stored.last_updated,
            stored.beneficiary,
            stored.domain,
        )
        for resource, stored in items
    ]
    await repo.insert_new(ctx.conn, versions)
    rows = [(r["id"], provenance_index(r, ctx.base_url)) for r, _ in items]
    await index_new(ctx, "Provenance", rows)
