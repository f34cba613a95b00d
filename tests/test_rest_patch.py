"""PATCH with JSON Patch and FHIRPath Patch; the result is validated."""

from __future__ import annotations

from tests.support import FHIR, patient

JSON_PATCH = {"Content-Type": "application/json-patch+json"}


async def _new(client, uid):
    r = await client.post("/fhir/Patient", json=patient(uid), headers=FHIR)
    return r.json()["id"]


async def test_json_patch(client, uid):
    pid = await _new(client, uid)
    ops = [{"op": "replace", "path": "/birthDate", "value": "1990-01-01"}]
    r = await client.patch(f"/fhir/Patient/{pid}", json=ops, headers=JSON_PATCH)
    assert r.status_code == 200, r.text
    assert r.json()["birthDate"] == "1990-01-01"
    assert r.headers["etag"] == 'W/"2"'


async def test_json_patch_result_is_validated(backend, client, uid):
    pid = await _new(client, uid)
    ops = [{"op": "replace", "path": "/gender", "value": "robot"}]
    r = await client.patch(f"/fhir/Patient/{pid}", json=ops, headers=JSON_PATCH)
    assert r.status_code == 422
    ops = [{"op": "test", "path": "/gender", "value": "male"}]
    r = await client.patch(f"/fhir/Patient/{pid}", json=ops, headers=JSON_PATCH)
    assert r.status_code == 422
    r = await client.patch(f"/fhir/Patient/{pid}", json={"op": "nope"}, headers=JSON_PATCH)
    assert r.status_code == 400
    r = await client.get(f"/fhir/Patient/{pid}")
    assert r.json()["meta"]["versionId"] == "1"


async def test_json_patch_if_match(client, uid):
    pid = await _new(client, uid)
    ops = [{"op": "add", "path": "/active", "value": True}]
    r = await client.patch(
        f"/fhir/Patient/{pid}", json=ops, headers={**JSON_PATCH, "If-Match": 'W/"7"'}
    )
    assert r.status_code == 412
    r = await client.patch(
        f"/fhir/Patient/{pid}", json=ops, headers={**JSON_PATCH, "If-Match": 'W/"1"'}
    )
    assert r.status_code == 200


async def test_fhirpath_patch(client, uid):
    pid = await _new(client, uid)
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Patient.birthDate"},
                    {"name": "value", "valueDate": "1975-05-05"},
                ],
            },
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "add"},
                    {"name": "path", "valueString": "Patient"},
                    {"name": "name", "valueString": "identifier"},
                    {
                        "name": "value",
                        "part": [
                            {"name": "system", "valueUri": "urn:relais:test"},
                            {"name": "value", "valueString": uid},
                        ],
                    },
                ],
            },
        ],
    }
    r = await client.patch(f"/fhir/Patient/{pid}", json=params, headers=FHIR)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["birthDate"] == "1975-05-05"
    assert body["identifier"] == [{"system": "urn:relais:test", "value": uid}]


async def test_patch_missing_or_deleted(client, uid):
    r = await client.patch("/fhir/Patient/nobody", json=[], headers=JSON_PATCH)
    assert r.status_code == 404
    pid = await _new(client, uid)
    await client.delete(f"/fhir/Patient/{pid}")
    r = await client.patch(f"/fhir/Patient/{pid}", json=[], headers=JSON_PATCH)
    assert r.status_code == 410
    r = await client.patch(
        f"/fhir/Patient/{pid}", content=b"[]", headers={"Content-Type": "text/csv"}
    )
    assert r.status_code == 415
