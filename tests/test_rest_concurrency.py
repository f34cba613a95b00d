"""Concurrent updates with the same If-Match: exactly one wins, no version lost."""

from __future__ import annotations

import asyncio

from tests.support import FHIR, patient


async def test_concurrent_if_match(backend, client, uid):
    r = await client.post("/fhir/Patient", json=patient(uid), headers=FHIR)
    pid = r.json()["id"]
    for _round in range(5):
        current = (await client.get(f"/fhir/Patient/{pid}")).headers["etag"]
        results = await asyncio.gather(
            *[
                client.put(
                    f"/fhir/Patient/{pid}",
                    json=patient(f"{uid}-{n}", id=pid),
                    headers={**FHIR, "If-Match": current},
                )
                for n in range(4)
            ]
        )
        codes = sorted(r.status_code for r in results)
        assert codes == [200, 412, 412, 412], codes
    versions = await backend.scalar(
        "SELECT count(DISTINCT version) FROM resource_version WHERE res_id = :id", id=pid
    )
    rows = await backend.scalar("SELECT count(*) FROM resource_version WHERE res_id = :id", id=pid)
    assert versions == rows == 6


async def test_concurrent_updates_without_if_match_lose_nothing(backend, client, uid):
    r = await client.post("/fhir/Patient", json=patient(uid), headers=FHIR)
    pid = r.json()["id"]
    results = await asyncio.gather(
        *[
            client.put(f"/fhir/Patient/{pid}", json=patient(f"{uid}-{n}", id=pid), headers=FHIR)
            for n in range(8)
        ]
    )
    assert all(r.status_code == 200 for r in results)
    etags = sorted(int(r.headers["etag"][3:-1]) for r in results)
    assert etags == list(range(2, 10))
