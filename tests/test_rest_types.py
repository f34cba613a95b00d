"""Every supported type is accepted, validated and served."""

from __future__ import annotations

from app.fhir.types import SUPPORTED_TYPES
from tests.support import FHIR, patient

DOMAIN = "https://relais.dev/fhir/CodeSystem/case-domain"
DINTILHAC = "https://relais.dev/fhir/CodeSystem/dintilhac"


def samples(pid: str, oid: str, uid: str) -> list[dict]:
    subject = {"reference": f"Patient/{pid}"}
    social = {"coding": [{"system": DOMAIN, "code": "social"}]}
    return [
        {"resourceType": "RelatedPerson", "patient": subject, "name": [{"family": "Dupont"}]},
        {"resourceType": "Practitioner", "name": [{"family": "Leroy", "given": ["Anne"]}]},
        {"resourceType": "PractitionerRole", "organization": {"reference": f"Organization/{oid}"}},
        {"resourceType": "EpisodeOfCare", "status": "active", "patient": subject},
        {"resourceType": "CareTeam", "status": "active", "subject": subject},
        {"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": subject},
        {
            "resourceType": "Goal",
            "lifecycleStatus": "active",
            "category": [social],
            "description": {"text": "Retrouver un logement adapté"},
            "subject": subject,
        },
        {"resourceType": "Task", "status": "requested", "intent": "order", "for": subject},
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "subject": subject,
        },
        {"resourceType": "Condition", "subject": subject, "code": {"text": "Fracture du fémur"}},
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "Douleur"},
            "subject": subject,
        },
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": subject,
        },
        {
            "resourceType": "Appointment",
            "status": "booked",
            "participant": [{"actor": subject, "status": "accepted"}],
        },
        {"resourceType": "Communication", "status": "completed", "subject": subject},
        {"resourceType": "CommunicationRequest", "status": "active", "subject": subject},
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": subject,
            "content": [{"attachment": {"contentType": "application/pdf", "title": "Rapport"}}],
        },
        {"resourceType": "Questionnaire", "status": "draft", "url": f"urn:relais:test:{uid}"},
        {"resourceType": "QuestionnaireResponse", "status": "completed", "subject": subject},
        {
            "resourceType": "Consent",
            "status": "active",
            "scope": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                        "code": "patient-privacy",
                    }
                ]
            },
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": subject,
        },
        {
            "resourceType": "ChargeItem",
            "status": "planned",
            "subject": subject,
            "code": {"coding": [{"system": DINTILHAC, "code": "DSA"}]},
            "priceOverride": {"value": 120.5, "currency": "EUR"},
        },
        {
            "resourceType": "Coverage",
            "status": "active",
            "beneficiary": subject,
            "payor": [{"reference": f"Organization/{oid}"}],
        },
        {"resourceType": "Group", "type": "person", "actual": True},
        {
            "resourceType": "Provenance",
            "target": [subject],
            "recorded": "2026-11-01T10:00:00Z",
            "agent": [{"who": {"reference": f"Organization/{oid}"}}],
        },
        {
            "resourceType": "Subscription",
            "status": "off",
            "reason": "test",
            "criteria": "Task?status=requested",
            "channel": {"type": "rest-hook", "endpoint": "https://example.org/hook"},
        },
        {"resourceType": "SubscriptionTopic", "status": "draft", "url": f"urn:relais:topic:{uid}"},
        {
            "resourceType": "CodeSystem",
            "status": "draft",
            "content": "complete",
            "url": f"urn:relais:cs:{uid}",
        },
        {"resourceType": "ValueSet", "status": "draft", "url": f"urn:relais:vs:{uid}"},
        {
            "resourceType": "StructureDefinition",
            "url": f"urn:relais:sd:{uid}",
            "name": "Sample",
            "status": "draft",
            "kind": "resource",
            "abstract": False,
            "type": "Patient",
        },
        {"resourceType": "Binary", "contentType": "text/plain", "data": "Ym9uam91cg=="},
    ]


async def test_every_supported_type(client, uid):
    org = {"resourceType": "Organization", "name": f"Org {uid}"}
    oid = (await client.post("/fhir/Organization", json=org, headers=FHIR)).json()["id"]
    pid = (await client.post("/fhir/Patient", json=patient(uid), headers=FHIR)).json()["id"]
    bodies = samples(pid, oid, uid)
    covered = {"Patient", "Organization", "AuditEvent"} | {b["resourceType"] for b in bodies}
    assert covered == set(SUPPORTED_TYPES)
    for body in bodies:
        rtype = body["resourceType"]
        r = await client.post(f"/fhir/{rtype}", json=body, headers=FHIR)
        assert r.status_code == 201, (rtype, r.text)
        rid = r.json()["id"]
        got = await client.get(f"/fhir/{rtype}/{rid}")
        assert got.status_code == 200 and got.json()["resourceType"] == rtype
        # An element the type does not have is refused with its path.
        bad = await client.post(f"/fhir/{rtype}", json={**body, "bogus": 1}, headers=FHIR)
        assert bad.status_code == 422, rtype
        assert bad.json()["issue"][0]["expression"] == [f"{rtype}.bogus"]
