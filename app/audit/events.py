"""AuditEvent resources built from what a request did (who, what, query, outcome)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.fhir.repository import instant
from app.resources.domains import DOMAIN_SYSTEM

EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"

READS = frozenset(
    {
        "read",
        "vread",
        "history-instance",
        "history-type",
        "history-system",
        "search-type",
        "search-system",
    }
)
ACTIONS = {"create": "C", "update": "U", "patch": "U", "delete": "D"}
QUERY_INTERACTIONS = frozenset(
    {"search-type", "search-system", "history-type", "history-system", "history-instance"}
)


@dataclass
class AuditRecord:
    """One audited request; turned into an AuditEvent when the buffer is flushed."""

    recorded: datetime
    interaction: str  # restful-interaction code, or "login" at the token endpoint
    status: int
    method: str
    path: str
    query: str = ""
    client_id: str | None = None
    organization: str | None = None
    request_id: str = ""
    # (type, id, version or None): the resource addressed and every version written
    entities: list[tuple[str, str, int | None]] = field(default_factory=list)
    # (beneficiary, domain) when known; else looked up from the first entity on flush
    labels: tuple[str | None, str | None] | None = None
    description: str = ""


def classify(method: str, path: str) -> tuple[str, tuple[str, str, int | None] | None]:
    """The restful-interaction code of a FHIR request and the resource it addresses."""
    if not path.startswith("/fhir"):
        return "operation", None
    parts = [p for p in path.removeprefix("/fhir").split("/") if p]
    n = len(parts)
    if n and parts[-1].startswith("$"):
        return "operation", ((parts[0], parts[1], None) if n == 3 else None)
    if n == 0:
        return ("search-system" if method in ("GET", "HEAD") else "transaction"), None
    if parts[0] == "_history":
        return "history-system", None
    if n == 1:
        by_method = {"POST": "create", "PUT": "update", "DELETE": "delete"}
        return by_method.get(method, "search-type"), None
    if parts[1] == "_search":
        return "search-type", None
    if parts[1] == "_history":
        return "history-type", None
    target = (parts[0], parts[1], None)
    if n == 2:
        by_method = {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        return by_method.get(method, "read"), target
    if n == 4 and parts[3].isdigit() and len(parts[3]) < 10:
        return "vread", (parts[0], parts[1], int(parts[3]))
    return "history-instance", target


def _outcome(status: int) -> str:
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


def _agent(record: AuditRecord) -> dict[str, Any]:
    agent: dict[str, Any] = {"requestor": True}
    if record.organization:
        agent["who"] = {"reference": record.organization}
    elif record.client_id:
        agent["who"] = {"display": f"client {record.client_id}"}
    else:
        agent["who"] = {"display": "unauthenticated caller"}
    if record.client_id:
        agent["altId"] = record.client_id
    return agent


def _entities(record: AuditRecord) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = []
    seen = set()
    for rtype, rid, version in record.entities:
        ref = f"{rtype}/{rid}" + (f"/_history/{version}" if version is not None else "")
        if ref in seen:
            continue
        seen.add(ref)
        entities.append({"what": {"reference": ref}, "type": {"system": ENTITY_TYPE, "code": "2"}})
    if record.query and record.interaction in QUERY_INTERACTIONS | {"operation"}:
        entities.append(
            {
                "type": {"system": ENTITY_TYPE, "code": "2"},
                "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
                "query": base64.b64encode(record.query.encode()).decode(),
                "description": f"{record.path}?{record.query}"[:1000],
            }
        )
    return entities


def build_audit_event(record: AuditRecord, domain: str | None) -> dict[str, Any]:
    if record.interaction == "login":
        event_type = {"system": DICOM, "code": "110114", "display": "User Authentication"}
        subtype = {"system": DICOM, "code": "110122", "display": "Login"}
        action = "E"
    else:
        event_type = {"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"}
        subtype = {"system": INTERACTION, "code": record.interaction}
        action = "R" if record.interaction in READS else ACTIONS.get(record.interaction, "E")
    description = f"HTTP {record.status} {record.method} {record.path}"
    if record.description:
        description += f": {record.description}"
    if record.request_id:
        description += f" (request {record.request_id})"
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": event_type,
        "subtype": [subtype],
        "action": action,
        "recorded": instant(record.recorded),
        "outcome": _outcome(record.status),
        "outcomeDesc": description[:2000],
        "agent": [_agent(record)],
        "source": {
            "observer": {"display": "Relais"},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
    }
    entities = _entities(record)
    if entities:
        event["entity"] = entities
    if domain is not None:
        event["meta"] = {"security": [{"system": DOMAIN_SYSTEM, "code": domain}]}
    return event
