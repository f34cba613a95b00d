"""A Provenance for every write, stored in the write's own transaction.

Stored in bulk (repository.insert_new) with its search index rows; when the request
holds its writes, the Provenances of the transaction go in one statement at the end,
one for each (activity, compartment, domain label) with every write of the kind as a
target. It commits or rolls back with the writes it records. It carries the
compartment and domain label of its targets, so it is exactly as visible as they are.
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


def _operation(stored: Stored) -> str:
    if stored.method == "PUT" and stored.version == 1:
        return "CREATE"
    return ACTIVITY.get(stored.method, "UPDATE")


def build_provenance(ctx: Context, writes: list[Stored]) -> dict[str, Any]:
    """One Provenance for writes of one activity, compartment and domain label."""
    first = writes[0]
    meta: dict[str, Any] = {"versionId": "1", "lastUpdated": repo.instant(first.last_updated)}
    if first.domain is not None:
        meta["security"] = [{"system": DOMAIN_SYSTEM, "code": first.domain}]
    return {
        "resourceType": "Provenance",
        "id": str(uuid.uuid4()),
        "meta": meta,
        "target": [{"reference": f"{w.type}/{w.id}/_history/{w.version}"} for w in writes],
        "recorded": repo.instant(first.last_updated),
        "activity": {"coding": [{"system": DATA_OPERATION, "code": _operation(first)}]},
        "agent": provenance_agents(ctx),
    }


async def provenance_hook(ctx: Context, stored: Stored) -> None:
    if stored.type in UNRECORDED:
        return
    pending = held(ctx, PENDING)
    if pending is None:
        await _store(ctx, [build_provenance(ctx, [stored])], [stored])
    else:
        pending.append(stored)


async def flush_provenance(ctx: Context) -> None:
    """Flusher, before the index flush (it adds index rows). The writes of a transaction
    that share activity, compartment and domain label share one Provenance listing them
    all: as visible as each of its targets, and a fraction of the rows."""
    writes: list[Stored] = take_held(ctx, PENDING)
    groups: dict[tuple[str | None, str | None, str], list[Stored]] = {}
    for stored in writes:
        groups.setdefault((stored.beneficiary, stored.domain, _operation(stored)), []).append(
            stored
        )
    provenances = [build_provenance(ctx, group) for group in groups.values()]
    if provenances:
        await _store(ctx, provenances, [group[0] for group in groups.values()])


async def _store(ctx: Context, provenances: list[dict[str, Any]], labels: list[Stored]) -> None:
    """Written by the server, not the caller: the caller's write checks do not apply,
    and no other after-write hook concerns a Provenance. `labels`: a write of each
    Provenance, whose time, compartment and label it takes."""
    versions = [
        repo.NewVersion(
            "Provenance",
            resource["id"],
            orjson.dumps(resource).decode(),
            stored.last_updated,
            stored.beneficiary,
            stored.domain,
        )
        for resource, stored in zip(provenances, labels, strict=True)
    ]
    await repo.insert_new(ctx.conn, versions)
    rows = [(r["id"], provenance_index(r, ctx.base_url)) for r in provenances]
    await index_new(ctx, "Provenance", rows)
