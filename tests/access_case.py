"""A beneficiary's case with a network of partners, for the access-rule tests.

The case-management organisation manages the case (EpisodeOfCare); a hospital, an
insurer and a lawyer are CareTeam members, each with its own Consent:

- hospital: permit medical;
- insurer: permit financial and medical, with a nested deny of medical;
- lawyer: permit legal.

An outsider has the same scopes but no place in the case. One record per domain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from app.auth.grants import CONSENT_SCOPE_CODE
from app.resources.conformance import DINTILHAC_SYSTEM
from app.resources.domains import DOMAIN_SYSTEM
from tests.auth_support import FHIR, Partner, partner

READ_ALL = "system/*.rs"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
ROLE = {
    "coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}
    ]
}


def ref(reference: str) -> dict[str, str]:
    return {"reference": reference}


def label(code: str) -> dict[str, str]:
    return {"system": DOMAIN_SYSTEM, "code": code}


def category(code: str) -> list[dict[str, Any]]:
    return [{"coding": [label(code)]}]


def instant(offset_seconds: float = 0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=offset_seconds)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def provision(
    kind: str,
    actors: list[str] | None = None,
    domains: list[str] | None = None,
    nested: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": kind, **extra}
    if actors:
        body["actor"] = [{"role": ROLE, "reference": ref(a)} for a in actors]
    if domains:
        body["securityLabel"] = [label(d) for d in domains]
    if nested:
        body["provision"] = nested
    return body


def consent(cid: str, patient: str, root: dict[str, Any], status: str = "active") -> dict:
    return {
        "resourceType": "Consent",
        "id": cid,
        "status": status,
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": CONSENT_SCOPE_CODE}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": ref(f"Patient/{patient}"),
        "dateTime": "2026-01-15",
        "policyRule": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}
            ]
        },
        "provision": root,
    }


def care_team(tid: str, patient: str, members: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "CareTeam",
        "id": tid,
        "status": "active",
        "subject": ref(f"Patient/{patient}"),
        "participant": members,
    }


def member(org: str, **period: str) -> dict[str, Any]:
    body: dict[str, Any] = {"member": ref(org)}
    if period:
        body["period"] = period
    return body


def records(uid: str, patient: str, episode: str) -> list[dict[str, Any]]:
    """One record per domain of the beneficiary."""
    subject = ref(f"Patient/{patient}")
    return [
        {
            "resourceType": "Observation",
            "id": f"obs-{uid}",
            "status": "final",
            "code": {"text": "Bilan neurologique"},
            "subject": subject,
            "valueString": "GCS 15",
        },
        {
            "resourceType": "ChargeItem",
            "id": f"cost-{uid}",
            "status": "billable",
            "code": {"coding": [{"system": DINTILHAC_SYSTEM, "code": "DSA"}]},
            "subject": subject,
            "context": ref(f"EpisodeOfCare/{episode}"),
            "priceOverride": {"value": 1200, "currency": "EUR"},
        },
        {
            "resourceType": "DocumentReference",
            "id": f"doc-{uid}",
            "status": "current",
            "category": category("legal"),
            "subject": subject,
            "description": "Jugement du tribunal",
            "content": [{"attachment": {"contentType": "application/pdf", "title": "jugement"}}],
        },
        {
            "resourceType": "Goal",
            "id": f"goal-{uid}",
            "lifecycleStatus": "active",
            "category": category("social"),
            "description": {"text": "Retrouver un logement adapté"},
            "subject": subject,
        },
        {
            "resourceType": "Task",
            "id": f"task-{uid}",
            "status": "requested",
            "intent": "order",
            "for": subject,
            "description": "Organiser la réunion de synthèse",
        },
    ]


DOMAIN_OF = {
    "Patient": "coordination",
    "EpisodeOfCare": "coordination",
    "CareTeam": "coordination",
    "Consent": "coordination",
    "Task": "coordination",
    "Observation": "medical",
    "ChargeItem": "financial",
    "DocumentReference": "legal",
    "Goal": "social",
}


@dataclass
class Case:
    uid: str
    patient: str
    episode: str
    team: str
    manager: Partner
    hospital: Partner
    insurer: Partner
    lawyer: Partner
    outsider: Partner
    resources: dict[str, str] = field(default_factory=dict)  # "Type/id" -> domain

    def of_domains(self, *domains: str) -> set[str]:
        return {r for r, d in self.resources.items() if d in domains}


async def put(client: Any, resource: dict[str, Any]) -> dict[str, Any]:
    url = f"/fhir/{resource['resourceType']}/{resource['id']}"
    r = await client.put(url, json=resource, headers=FHIR)
    assert r.status_code in (200, 201), f"{url}: {r.status_code} {r.text}"
    body: dict[str, Any] = r.json()
    return body


async def build_case(backend: Any, uid: str, scope: str = READ_ALL) -> Case:
    admin = backend.client
    manager = await partner(backend, "system/*.cruds", org_id=f"cm-{uid}")
    hospital = await partner(backend, scope, org_id=f"chu-{uid}")
    insurer = await partner(backend, scope, org_id=f"ins-{uid}")
    lawyer = await partner(backend, scope, org_id=f"law-{uid}")
    outsider = await partner(backend, scope, org_id=f"out-{uid}")
    patient, episode, team = f"pat-{uid}", f"eoc-{uid}", f"ct-{uid}"
    case = Case(uid, patient, episode, team, manager, hospital, insurer, lawyer, outsider)
    await put(
        admin,
        {
            "resourceType": "Patient",
            "id": patient,
            "name": [{"family": f"Martin-{uid}", "given": ["Lucas"]}],
            "gender": "male",
            "birthDate": "1990-04-12",
        },
    )
    await put(
        admin,
        {
            "resourceType": "EpisodeOfCare",
            "id": episode,
            "status": "active",
            "patient": ref(f"Patient/{patient}"),
            "managingOrganization": ref(manager.organization),
            "period": {"start": "2026-01-10"},
        },
    )
    members = [member(p.organization) for p in (hospital, insurer, lawyer)]
    await put(admin, care_team(team, patient, members))
    consents = [
        consent(
            f"consent-h-{uid}", patient, provision("permit", [hospital.organization], ["medical"])
        ),
        consent(
            f"consent-i-{uid}",
            patient,
            provision(
                "permit",
                [insurer.organization],
                ["financial", "medical"],
                nested=[provision("deny", domains=["medical"])],
            ),
        ),
        consent(f"consent-l-{uid}", patient, provision("permit", [lawyer.organization], ["legal"])),
    ]
    for resource in [*consents, *records(uid, patient, episode)]:
        await put(admin, resource)
    for resource_type, rid in [
        ("Patient", patient),
        ("EpisodeOfCare", episode),
        ("CareTeam", team),
        *[("Consent", c["id"]) for c in consents],
        *[(r["resourceType"], r["id"]) for r in records(uid, patient, episode)],
    ]:
        case.resources[f"{resource_type}/{rid}"] = DOMAIN_OF[resource_type]
    return case
