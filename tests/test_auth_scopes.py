"""Scopes decide interactions per type (403) and, when granular, the domains (404)."""

from __future__ import annotations

import pytest

from app.resources.domains import DOMAIN_SYSTEM
from tests.access_case import put, records
from tests.auth_support import FHIR, partner

MEDICAL_ONLY = f"system/*.rs?_security={DOMAIN_SYSTEM}|medical"


async def seed(backend, uid: str) -> None:
    admin = backend.client
    await put(admin, {"resourceType": "Patient", "id": f"sp-{uid}", "gender": "female"})
    await put(admin, {"resourceType": "Organization", "id": f"so-{uid}", "name": "Clinique"})
    await put(
        admin,
        {
            "resourceType": "EpisodeOfCare",
            "id": f"se-{uid}",
            "status": "active",
            "patient": {"reference": f"Patient/sp-{uid}"},
        },
    )
    for resource in records(uid, f"sp-{uid}", f"se-{uid}"):
        await put(admin, resource)


def observation() -> dict:
    # No subject: a reference must point at something the writer may read, and some
    # scopes below read nothing.
    return {"resourceType": "Observation", "status": "final", "code": {"text": "Tension"}}


# (scope, request, expected status): all clients here see every beneficiary, so only
# the scope decides.
CASES = [
    ("system/Patient.r", "GET /fhir/Patient/sp-{uid}", 200),
    ("system/Patient.r", "GET /fhir/Patient/sp-{uid}/_history/1", 200),
    ("system/Patient.r", "GET /fhir/Patient/sp-{uid}/_history", 200),
    ("system/Patient.r", "GET /fhir/Patient?_id=sp-{uid}", 403),
    ("system/Patient.r", "GET /fhir/Patient/_history", 403),
    ("system/Patient.r", "GET /fhir?_id=sp-{uid}", 403),
    ("system/Patient.r", "GET /fhir/_history", 403),
    ("system/Patient.r", "GET /fhir/Observation/obs-{uid}", 403),
    ("system/Patient.r", "POST /fhir/Patient", 403),
    ("system/Patient.s", "GET /fhir/Patient?_id=sp-{uid}", 200),
    ("system/Patient.s", "GET /fhir/Patient/_history", 200),
    ("system/Patient.s", "GET /fhir/Patient/sp-{uid}", 403),
    ("system/*.read", "GET /fhir/Observation/obs-{uid}", 200),
    ("system/*.read", "GET /fhir/Observation?_id=obs-{uid}", 200),
    ("system/*.read", "GET /fhir/_history?_count=1", 200),
    ("system/*.read", "POST /fhir/Observation", 403),
    ("system/*.write", "POST /fhir/Observation", 201),
    ("system/*.write", "GET /fhir/Observation/obs-{uid}", 403),
    ("system/*.write", "GET /fhir/Observation?_id=obs-{uid}", 403),
    ("system/*.*", "POST /fhir/Observation", 201),
    ("system/*.*", "GET /fhir/Observation/obs-{uid}", 200),
    ("system/Observation.c", "POST /fhir/Observation", 201),
    ("system/Observation.c", "DELETE /fhir/Observation/obs-{uid}", 403),
    ("system/Observation.r", "PATCH /fhir/Observation/obs-{uid}", 403),
    ("system/Observation.ru system/Patient.r", "PATCH /fhir/Observation/obs-{uid}", 200),
    ("system/Observation.rd", "DELETE /fhir/Goal/goal-{uid}", 403),
    ("system/Goal.d", "DELETE /fhir/Goal/goal-{uid}", 204),
    (MEDICAL_ONLY, "GET /fhir/Observation/obs-{uid}", 200),
    (MEDICAL_ONLY, "GET /fhir/ChargeItem/cost-{uid}", 404),  # hidden by domain, not 403
    (MEDICAL_ONLY, "GET /fhir/Organization/so-{uid}", 200),  # unlabelled: scope only
]


@pytest.mark.parametrize("scope,request_line,status", CASES)
async def test_scope_decides(backend, uid, scope, request_line, status):
    await seed(backend, uid)
    client = (await partner(backend, scope, all_beneficiaries=True)).http
    method, path = request_line.format(uid=uid).split(" ", 1)
    if method == "POST":
        r = await client.post(path, json=observation(), headers=FHIR)
    elif method == "PATCH":
        patch = [{"op": "replace", "path": "/status", "value": "amended"}]
        r = await client.patch(
            path, json=patch, headers={"Content-Type": "application/json-patch+json"}
        )
    else:
        r = await client.request(method, path)
    assert r.status_code == status, r.text
    if status >= 400:
        assert r.json()["resourceType"] == "OperationOutcome"


async def test_granular_scope_filters_search_and_total(backend, uid):
    await seed(backend, uid)
    client = (await partner(backend, MEDICAL_ONLY, all_beneficiaries=True)).http
    ids = f"sp-{uid},obs-{uid},cost-{uid},doc-{uid},goal-{uid},task-{uid},so-{uid}"
    r = await client.get(f"/fhir?_id={ids}&_total=accurate")
    assert r.status_code == 200, r.text
    found = {e["resource"]["id"] for e in r.json().get("entry", [])}
    assert found == {f"obs-{uid}", f"so-{uid}"}
    assert r.json()["total"] == 2
    r = await client.get(f"/fhir/ChargeItem?_id=cost-{uid}&_summary=count")
    assert r.json()["total"] == 0


async def test_two_granular_scopes_add_up(backend, uid):
    await seed(backend, uid)
    scope = f"{MEDICAL_ONLY} system/*.rs?_security={DOMAIN_SYSTEM}|financial"
    client = (await partner(backend, scope, all_beneficiaries=True)).http
    assert (await client.get(f"/fhir/ChargeItem/cost-{uid}")).status_code == 200
    assert (await client.get(f"/fhir/Observation/obs-{uid}")).status_code == 200
    assert (await client.get(f"/fhir/DocumentReference/doc-{uid}")).status_code == 404
