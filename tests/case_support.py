"""Builders for case-model tests: a small case whose ids all carry a test's uid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.resources.conformance import (
    ACCIDENT_DATE_URL,
    CONSOLIDATION_DATE_URL,
    DINTILHAC_SYSTEM,
    ENCOUNTER_TYPE_SYSTEM,
)
from app.resources.domains import DOMAIN_SYSTEM
from app.resources.nir import INS_NIR_SYSTEM

FHIR = {"Content-Type": "application/fhir+json"}
ACHIEVEMENT = "http://terminology.hl7.org/CodeSystem/goal-achievement"


def nir(head: str) -> str:
    """`head` (13 characters, 2A/2B allowed) followed by its control key."""
    number = int(head.replace("2A", "19").replace("2B", "18"))
    return f"{head}{97 - number % 97:02d}"


def day(offset: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=offset)).isoformat()


def ref(reference: str, display: str | None = None) -> dict[str, str]:
    out = {"reference": reference}
    if display:
        out["display"] = display
    return out


def domain(code: str) -> dict[str, Any]:
    return {"coding": [{"system": DOMAIN_SYSTEM, "code": code}]}


def put(resource: dict[str, Any]) -> dict[str, Any]:
    url = f"{resource['resourceType']}/{resource['id']}"
    return {"resource": resource, "request": {"method": "PUT", "url": url}}


def transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [put(r) for r in resources]}


def goal(
    gid: str, patient: str, code: str, achievement: str | None = None, due: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Goal",
        "id": gid,
        "lifecycleStatus": "active",
        "category": [domain(code)],
        "description": {"text": f"Objectif {code}"},
        "subject": ref(f"Patient/{patient}"),
        "expressedBy": ref(f"Patient/{patient}"),
    }
    if achievement:
        body["achievementStatus"] = {"coding": [{"system": ACHIEVEMENT, "code": achievement}]}
    if due:
        body["target"] = [{"dueDate": due}]
    return body


def task(
    tid: str, patient: str, code: str, status: str, owner: str, **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": tid,
        "status": status,
        "intent": "order",
        "code": {**domain(code), "text": f"Tâche {tid}"},
        "for": ref(f"Patient/{patient}"),
        "owner": ref(owner),
        **extra,
    }


def charge(cid: str, patient: str, case: str, head: str, status: str, amount: float) -> dict:
    return {
        "resourceType": "ChargeItem",
        "id": cid,
        "status": status,
        "code": {"coding": [{"system": DINTILHAC_SYSTEM, "code": head}]},
        "subject": ref(f"Patient/{patient}"),
        "context": ref(f"EpisodeOfCare/{case}"),
        "priceOverride": {"value": amount, "currency": "EUR"},
    }


def small_case(uid: str, *, consolidation: str | None = None) -> dict[str, Any]:
    """Ids of a case with a patient, an organisation, a network and a master plan."""
    ids = {
        "patient": f"p-{uid}",
        "case": f"case-{uid}",
        "org": f"org-{uid}",
        "partner": f"partner-{uid}",
        "team": f"team-{uid}",
        "plan": f"plan-{uid}",
    }
    patient = ids["patient"]
    extensions = [{"url": ACCIDENT_DATE_URL, "valueDate": "2025-01-10"}]
    if consolidation:
        extensions.append({"url": CONSOLIDATION_DATE_URL, "valueDate": consolidation})
    ids["resources"] = [
        {"resourceType": "Organization", "id": ids["org"], "name": f"Case org {uid}"},
        {"resourceType": "Organization", "id": ids["partner"], "name": f"Partner {uid}"},
        {
            "resourceType": "Patient",
            "id": patient,
            "identifier": [{"system": INS_NIR_SYSTEM, "value": nir("1850169123045")}],
            "name": [{"family": "Test", "given": [uid]}],
        },
        {
            "resourceType": "CareTeam",
            "id": ids["team"],
            "status": "active",
            "subject": ref(f"Patient/{patient}"),
            "participant": [
                {"role": [{"text": "Coordination"}], "member": ref(f"Organization/{ids['org']}")},
                {
                    "role": [{"text": "Rééducation"}],
                    "member": ref(f"Organization/{ids['partner']}"),
                },
            ],
        },
        {
            "resourceType": "EpisodeOfCare",
            "id": ids["case"],
            "extension": extensions,
            "status": "active",
            "patient": ref(f"Patient/{patient}"),
            "managingOrganization": ref(f"Organization/{ids['org']}"),
            "team": [ref(f"CareTeam/{ids['team']}")],
        },
        {
            "resourceType": "CarePlan",
            "id": ids["plan"],
            "status": "active",
            "intent": "plan",
            "subject": ref(f"Patient/{patient}"),
        },
    ]
    return ids


def interview(eid: str, patient: str, case: str, start: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "meta": {"security": [{"system": DOMAIN_SYSTEM, "code": "coordination"}]},
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH"},
        "type": [{"coding": [{"system": ENCOUNTER_TYPE_SYSTEM, "code": "interview"}]}],
        "subject": ref(f"Patient/{patient}"),
        "episodeOfCare": [ref(f"EpisodeOfCare/{case}")],
        "period": {"start": start},
    }


def params(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Top-level parameters (or parts) called `name`."""
    items = body.get("parameter") or body.get("part") or []
    return [p for p in items if p["name"] == name]


def one(body: dict[str, Any], name: str) -> dict[str, Any]:
    found = params(body, name)
    assert len(found) == 1, (name, found)
    return found[0]


def domain_part(summary: dict[str, Any], code: str) -> dict[str, Any] | None:
    for part in params(summary, "domain"):
        if one(part, "code")["valueCoding"]["code"] == code:
            return part
    return None


def references(parts: list[dict[str, Any]], name: str) -> list[str]:
    return [one(p, name)["valueReference"]["reference"] for p in parts]
