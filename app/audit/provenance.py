"""A Provenance for every write, stored in the write's own transaction.

Written through the repository (not through HTTP), so it costs two inserts and its
search index rows, and it commits or rolls back with the write it records. It carries
the compartment and domain label of its target, so it is exactly as visible as the
target.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from app.fhir import repository as repo
from app.fhir.access import OPEN
from app.fhir.context import Context, Stored
from app.resources.domains import DOMAIN_SYSTEM

CLIENT_ID_SYSTEM = "https://relais.dev/fhir/sid/client-id"
ADAPTER_SYSTEM = "https://relais.dev/fhir/sid/adapter"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
UNRECORDED = frozenset({"Provenance", "AuditEvent"})

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
    res_id = str(uuid.uuid4())
    resource["id"] = res_id
    meta: dict[str, Any] = {"versionId": "1", "lastUpdated": repo.instant(stored.last_updated)}
    if stored.domain is not None:
        meta["security"] = [{"system": DOMAIN_SYSTEM, "code": stored.domain}]
    resource["meta"] = meta
    # Written by the server, not the caller: the caller's write checks do not apply.
    await repo.write_version(
        dataclasses.replace(ctx, policy=OPEN),
        "Provenance",
        res_id,
        resource,
        version=1,
        method="POST",
        previous=None,
        exists=False,
        timestamp=stored.last_updated,
        beneficiary=stored.beneficiary,
        domain=stored.domain,
    )
