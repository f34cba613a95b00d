"""Domain labels are decided by the server on write, one per record, and a writer
cannot place a record in a domain its scopes do not cover (403)."""

from __future__ import annotations

from app.resources.conformance import DINTILHAC_SYSTEM
from app.resources.domains import DOMAIN_SYSTEM
from tests.access_case import category, put
from tests.auth_support import FHIR, partner

# Writes medical records; reads the case records (coordination) it refers to.
MEDICAL_WRITER = (
    f"system/*.cruds?_security={DOMAIN_SYSTEM}|medical"
    f" system/*.rs?_security={DOMAIN_SYSTEM}|coordination"
)


def domain_labels(resource: dict) -> list[str]:
    return [
        c["code"]
        for c in resource.get("meta", {}).get("security", [])
        if c["system"] == DOMAIN_SYSTEM
    ]


async def test_server_assigns_exactly_one_label(backend, client, uid):
    await put(client, {"resourceType": "Patient", "id": f"lp-{uid}"})
    subject = {"reference": f"Patient/lp-{uid}"}
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    cases = [
        (observation, "medical"),  # the type's default
        ({**observation, "category": category("professional")}, "professional"),
        (
            {
                "resourceType": "ChargeItem",
                "status": "billable",
                "code": {"coding": [{"system": DINTILHAC_SYSTEM, "code": "PGPF"}]},
                "priceOverride": {"value": 10, "currency": "EUR"},
            },
            "financial",
        ),
        ({"resourceType": "Task", "status": "draft", "intent": "order"}, "coordination"),
        ({"resourceType": "Patient", "gender": "male"}, "coordination"),
    ]
    for body, expected in cases:
        body = dict(body)
        if body["resourceType"] != "Patient":
            body["subject" if body["resourceType"] != "Task" else "for"] = subject
        r = await client.post(f"/fhir/{body['resourceType']}", json=body, headers=FHIR)
        assert r.status_code == 201, r.text
        stored = (await client.get(r.headers["location"])).json()
        assert domain_labels(stored) == [expected], stored
        # Whatever labels of that system the writer sends, one label is stored.
        body["meta"] = {"security": [{"system": DOMAIN_SYSTEM, "code": c} for c in ("x", expected)]}
        r = await client.post(f"/fhir/{body['resourceType']}", json=body, headers=FHIR)
        assert r.status_code == 201, r.text
        assert domain_labels(r.json()) == [expected]
    r = await client.put(
        f"/fhir/Organization/lo-{uid}",
        json={"resourceType": "Organization", "id": f"lo-{uid}", "name": "x"},
        headers=FHIR,
    )
    assert domain_labels(r.json()) == []  # outside any compartment: no label


async def test_writer_cannot_choose_a_domain_outside_its_scopes(backend, client, uid):
    await put(client, {"resourceType": "Patient", "id": f"lw-{uid}"})
    writer = (await partner(backend, MEDICAL_WRITER, all_beneficiaries=True)).http
    subject = {"reference": f"Patient/lw-{uid}"}
    ok = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": subject,
    }
    r = await writer.post("/fhir/Observation", json=ok, headers=FHIR)
    assert r.status_code == 201, r.text
    assert domain_labels(r.json()) == ["medical"]
    oid = r.json()["id"]

    legal = {**ok, "category": category("legal")}
    r = await writer.post("/fhir/Observation", json=legal, headers=FHIR)
    assert r.status_code == 403, r.text
    cost = {
        "resourceType": "ChargeItem",
        "status": "billable",
        "code": {"coding": [{"system": DINTILHAC_SYSTEM, "code": "DSA"}]},
        "subject": subject,
        "priceOverride": {"value": 10, "currency": "EUR"},
    }
    r = await writer.post("/fhir/ChargeItem", json=cost, headers=FHIR)
    assert r.status_code == 403, r.text
    # Moving its own record to another domain is refused too, and changes nothing.
    r = await writer.put(f"/fhir/Observation/{oid}", json={**legal, "id": oid}, headers=FHIR)
    assert r.status_code == 403, r.text
    stored = (await client.get(f"/fhir/Observation/{oid}")).json()
    assert domain_labels(stored) == ["medical"] and stored["meta"]["versionId"] == "1"
