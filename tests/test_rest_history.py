"""Instance, type and system history: newest first, paged with _count and _since."""

from __future__ import annotations

import asyncio

from tests.support import FHIR, patient


async def test_instance_history_newest_first(client, uid):
    r = await client.post("/fhir/Patient", json=patient(uid), headers=FHIR)
    pid = r.json()["id"]
    for family in ("Martin", "Bernard"):
        await client.put(f"/fhir/Patient/{pid}", json=patient(family, id=pid), headers=FHIR)
    await client.delete(f"/fhir/Patient/{pid}")
    r = await client.get(f"/fhir/Patient/{pid}/_history")
    assert r.status_code == 200
    bundle = r.json()
    assert bundle["type"] == "history" and bundle["total"] == 4
    versions = [e["response"]["etag"] for e in bundle["entry"]]
    assert versions == ['W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']
    assert bundle["entry"][0]["request"]["method"] == "DELETE"
    assert "resource" not in bundle["entry"][0]
    assert bundle["entry"][1]["resource"]["name"][0]["family"] == "Bernard"
    assert bundle["entry"][3]["request"] == {"method": "POST", "url": "Patient"}


async def test_history_paging(client, uid):
    r = await client.post("/fhir/Patient", json=patient(uid), headers=FHIR)
    pid = r.json()["id"]
    for n in range(4):
        await client.put(f"/fhir/Patient/{pid}", json=patient(f"{uid}{n}", id=pid), headers=FHIR)
    seen = []
    url = f"/fhir/Patient/{pid}/_history?_count=2"
    while url:
        page = (await client.get(url)).json()
        seen += [e["response"]["etag"] for e in page["entry"]]
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        url = nxt[0].removeprefix("http://relais.test") if nxt else None
    assert seen == [f'W/"{v}"' for v in range(5, 0, -1)]


async def test_type_and_system_history_since(client, uid):
    await asyncio.sleep(0.01)
    r = await client.post(
        "/fhir/Organization", json={"resourceType": "Organization", "name": uid}, headers=FHIR
    )
    created = r.json()["meta"]["lastUpdated"]
    oid = r.json()["id"]
    r = await client.get("/fhir/Organization/_history", params={"_since": created})
    ids = [e["resource"]["id"] for e in r.json()["entry"]]
    assert oid in ids
    r = await client.get("/fhir/_history", params={"_since": created, "_count": 50})
    assert r.status_code == 200
    assert oid in [e.get("resource", {}).get("id") for e in r.json()["entry"]]
    r = await client.get("/fhir/_history", params={"_since": "2999-01-01T00:00:00Z"})
    assert r.json()["total"] == 0 and "entry" not in r.json()
    r = await client.get("/fhir/_history", params={"_since": "yesterday"})
    assert r.status_code == 400
    r = await client.get("/fhir/Patient/does-not-exist/_history")
    assert r.status_code == 404
