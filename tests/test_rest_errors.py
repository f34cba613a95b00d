"""Every bad input is an OperationOutcome with the right status, and writes nothing."""

from __future__ import annotations

import pytest

from tests.support import FHIR, patient

# AuditEvents are written for failed requests too (in the background): not counted.
COUNT_SQL = (
    "SELECT (SELECT count(*) FROM resource_version WHERE type <> 'AuditEvent')"
    " + (SELECT count(*) FROM resource_current WHERE type <> 'AuditEvent')"
)


def assert_outcome(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] in ("error", "fatal")
    return body


BAD_CREATES = [
    ("malformed json", b'{"resourceType": "Patient",', 400),
    ("not an object", b'["Patient"]', 400),
    ("empty body", b"", 400),
    ("type mismatch", b'{"resourceType": "Observation", "status": "final", "code": {}}', 400),
    ("invalid element", b'{"resourceType": "Patient", "birthDate": "1984-13-45"}', 422),
    ("unknown element", b'{"resourceType": "Patient", "colour": "blue"}', 422),
    ("required binding", b'{"resourceType": "Patient", "gender": "bogus"}', 422),
    ("missing required", b'{"resourceType": "Patient", "link": [{"type": "seealso"}]}', 422),
    ("bad id", b'{"resourceType": "Patient", "id": "no spaces allowed"}', 400),
    (
        "dangling reference",
        b'{"resourceType": "Patient", "managingOrganization": {"reference": "Organization/nope"}}',
        422,
    ),
]


@pytest.mark.parametrize("label,raw,status", BAD_CREATES, ids=[c[0] for c in BAD_CREATES])
async def test_bad_create_writes_nothing(backend, client, label, raw, status):
    before = await backend.scalar(COUNT_SQL)
    r = await client.post("/fhir/Patient", content=raw, headers=FHIR)
    assert_outcome(r, status)
    assert await backend.scalar(COUNT_SQL) == before


async def test_invalid_element_names_the_path(client):
    r = await client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "name": [{"given": [42]}]},
        headers=FHIR,
    )
    body = assert_outcome(r, 422)
    assert body["issue"][0]["expression"] == ["Patient.name[0].given[0]"]


async def test_put_errors(client, uid):
    before = patient(uid, id="abc")
    r = await client.put(f"/fhir/Patient/other-{uid}", json=before, headers=FHIR)
    assert_outcome(r, 400)
    r = await client.put(f"/fhir/Patient/{uid}", json=patient(uid), headers=FHIR)
    assert_outcome(r, 400)
    r = await client.put("/fhir/Patient/bad$id", json=patient(uid, id="bad$id"), headers=FHIR)
    assert_outcome(r, 400)


async def test_unknown_type_and_method(client):
    assert_outcome(await client.get("/fhir/Spaceship/1"), 404)
    assert_outcome(await client.get("/fhir/Spaceship"), 404)
    assert_outcome(await client.post("/fhir/Spaceship", json={}, headers=FHIR), 404)
    assert_outcome(await client.request("PATCH", "/fhir/Patient"), 405)
    assert_outcome(await client.delete("/fhir/metadata"), 405)
    assert_outcome(
        await client.put("/fhir/AuditEvent/x", json={"resourceType": "AuditEvent"}, headers=FHIR),
        405,
    )


async def test_unsupported_media_type(backend, client):
    before = await backend.scalar(COUNT_SQL)
    r = await client.post(
        "/fhir/Patient", content=b"<Patient/>", headers={"Content-Type": "application/xml"}
    )
    assert_outcome(r, 415)
    r = await client.post("/fhir/Patient", content=b"{}", headers={"Content-Type": "text/plain"})
    assert_outcome(r, 415)
    assert await backend.scalar(COUNT_SQL) == before


async def test_body_too_large(backend, client):
    before = await backend.scalar(COUNT_SQL)
    big = (
        b'{"resourceType":"Patient","text":{"status":"generated","div":"'
        + b"x" * (10 * 1024 * 1024)
        + b'"}}'
    )
    r = await client.post("/fhir/Patient", content=big, headers=FHIR)
    assert_outcome(r, 413)
    assert await backend.scalar(COUNT_SQL) == before


async def test_bad_etag_and_version(client, uid):
    r = await client.post("/fhir/Patient", json=patient(uid), headers=FHIR)
    pid = r.json()["id"]
    r = await client.put(
        f"/fhir/Patient/{pid}", json=patient(uid, id=pid), headers={**FHIR, "If-Match": "garbage"}
    )
    assert_outcome(r, 400)
    assert_outcome(await client.get(f"/fhir/Patient/{pid}/_history/abc"), 404)
    assert_outcome(await client.get("/fhir/Patient/missing-one"), 404)
