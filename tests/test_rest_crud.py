"""Create, read, vread, update, delete and their headers, on both databases."""

from __future__ import annotations

from tests.support import FHIR, etag_version, patient


async def test_create_read_vread(client, uid):
    r = await client.post("/fhir/Patient", json=patient(uid), headers=FHIR)
    assert r.status_code == 201, r.text
    body = r.json()
    pid = body["id"]
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"].endswith(f"/fhir/Patient/{pid}/_history/1")
    assert "last-modified" in r.headers
    assert body["meta"]["versionId"] == "1"
    assert r.headers["content-type"].startswith("application/fhir+json")

    r = await client.get(f"/fhir/Patient/{pid}")
    assert r.status_code == 200
    assert r.json()["name"][0]["family"] == uid
    assert r.headers["etag"] == 'W/"1"'

    r = await client.get(f"/fhir/Patient/{pid}/_history/1")
    assert r.status_code == 200 and r.json()["meta"]["versionId"] == "1"
    r = await client.get(f"/fhir/Patient/{pid}/_history/9")
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_update_and_create_on_update(client, uid):
    pid = f"p-{uid}"
    r = await client.put(f"/fhir/Patient/{pid}", json=patient(uid, id=pid), headers=FHIR)
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == 'W/"1"'
    r = await client.put(f"/fhir/Patient/{pid}", json=patient("Martin", id=pid), headers=FHIR)
    assert r.status_code == 200
    assert etag_version(r) == 2
    r = await client.get(f"/fhir/Patient/{pid}/_history/1")
    assert r.json()["name"][0]["family"] == uid
    r = await client.get(f"/fhir/Patient/{pid}")
    assert r.json()["name"][0]["family"] == "Martin"


async def test_if_match(client, uid):
    r = await client.post("/fhir/Patient", json=patient(uid), headers=FHIR)
    pid = r.json()["id"]
    body = patient("Bernard", id=pid)
    r = await client.put(f"/fhir/Patient/{pid}", json=body, headers={**FHIR, "If-Match": 'W/"2"'})
    assert r.status_code == 412
    assert r.json()["resourceType"] == "OperationOutcome"
    r = await client.put(f"/fhir/Patient/{pid}", json=body, headers={**FHIR, "If-Match": 'W/"1"'})
    assert r.status_code == 200
    assert etag_version(r) == 2


async def test_delete_is_soft_and_idempotent(client, uid):
    r = await client.post("/fhir/Patient", json=patient(uid), headers=FHIR)
    pid = r.json()["id"]
    r = await client.delete(f"/fhir/Patient/{pid}")
    assert r.status_code == 204
    r = await client.get(f"/fhir/Patient/{pid}")
    assert r.status_code == 410
    assert r.json()["issue"][0]["code"] == "deleted"
    r = await client.delete(f"/fhir/Patient/{pid}")
    assert r.status_code == 204
    # The version before the deletion stays readable.
    r = await client.get(f"/fhir/Patient/{pid}/_history/1")
    assert r.status_code == 200
    r = await client.get(f"/fhir/Patient/{pid}/_history/2")
    assert r.status_code == 410
    r = await client.delete("/fhir/Patient/never-existed")
    assert r.status_code == 404
    # Update after delete brings it back as a new version.
    r = await client.put(f"/fhir/Patient/{pid}", json=patient(uid, id=pid), headers=FHIR)
    assert r.status_code == 201
    assert etag_version(r) == 3


async def test_prefer_return(client, uid):
    r = await client.post(
        "/fhir/Patient", json=patient(uid), headers={**FHIR, "Prefer": "return=minimal"}
    )
    assert r.status_code == 201 and r.content == b""
    assert r.headers["location"]
    r = await client.post(
        "/fhir/Patient",
        json=patient(uid),
        headers={**FHIR, "Prefer": "return=OperationOutcome"},
    )
    assert r.status_code == 201
    assert r.json()["resourceType"] == "OperationOutcome"
    r = await client.post(
        "/fhir/Patient",
        json=patient(uid),
        headers={**FHIR, "Prefer": "return=representation"},
    )
    assert r.json()["resourceType"] == "Patient"


async def test_summary_elements_pretty_format(client, uid):
    body = patient(
        uid,
        text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'},
    )
    body["maritalStatus"] = {"text": "Mariée"}
    r = await client.post("/fhir/Patient", json=body, headers=FHIR)
    pid = r.json()["id"]
    r = await client.get(f"/fhir/Patient/{pid}?_summary=true")
    data = r.json()
    assert "maritalStatus" not in data and "text" not in data and data["name"]
    assert any(t["code"] == "SUBSETTED" for t in data["meta"]["tag"])
    r = await client.get(f"/fhir/Patient/{pid}?_summary=data")
    assert "text" not in r.json() and "maritalStatus" in r.json()
    r = await client.get(f"/fhir/Patient/{pid}?_summary=text")
    assert set(r.json()) <= {"resourceType", "id", "meta", "text"}
    r = await client.get(f"/fhir/Patient/{pid}?_elements=birthDate")
    assert set(r.json()) == {"resourceType", "id", "meta", "birthDate"}
    r = await client.get(f"/fhir/Patient/{pid}?_pretty=true")
    assert b'\n  "' in r.content
    r = await client.get(f"/fhir/Patient/{pid}?_format=json")
    assert r.headers["content-type"].startswith("application/json")
    r = await client.get(f"/fhir/Patient/{pid}", headers={"Accept": "application/json"})
    assert r.headers["content-type"].startswith("application/json")
    r = await client.get(f"/fhir/Patient/{pid}?_summary=bogus")
    assert r.status_code == 400


async def test_every_supported_type_roundtrips(client, uid):
    samples = [
        {"resourceType": "Organization", "name": f"CHU {uid}"},
        {"resourceType": "Practitioner", "name": [{"family": "Leroy"}]},
        {"resourceType": "Group", "type": "person", "actual": True},
        {"resourceType": "Binary", "contentType": "text/plain", "data": "Ym9uam91cg=="},
        {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "description": "Évaluer le retour à domicile",
        },
    ]
    for sample in samples:
        r = await client.post(f"/fhir/{sample['resourceType']}", json=sample, headers=FHIR)
        assert r.status_code == 201, (sample["resourceType"], r.text)
        r = await client.get(f"/fhir/{sample['resourceType']}/{r.json()['id']}")
        assert r.status_code == 200
