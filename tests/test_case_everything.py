"""Issue 5, point 5: Patient/$everything and EpisodeOfCare/$everything."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from tests.auth_support import partner
from tests.case_support import (
    FHIR,
    charge,
    domain,
    goal,
    interview,
    ref,
    small_case,
    task,
    transaction,
)


async def _load(client, resources: list[dict[str, Any]]) -> None:
    r = await client.post("/fhir", json=transaction(resources), headers=FHIR)
    assert r.status_code == 200, r.text


async def _pages(client, url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Follow next links; return every page and every entry."""
    pages, entries = [], []
    while url:
        r = await client.get(url)
        assert r.status_code == 200, r.text
        page = r.json()
        pages.append(page)
        entries += page.get("entry", [])
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), "")
    return pages, entries


def _ids(entries: list[dict[str, Any]], mode: str = "match") -> list[str]:
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in entries
        if e["search"]["mode"] == mode
    ]


def _records(case: dict[str, Any], uid: str) -> list[dict[str, Any]]:
    p, c = case["patient"], case["case"]
    partner_org = f"Organization/{case['partner']}"
    return [
        goal(f"g1-{uid}", p, "medical"),
        goal(f"g2-{uid}", p, "social"),
        task(f"t1-{uid}", p, "medical", "requested", partner_org),
        charge(f"c1-{uid}", p, c, "DSA", "billed", 120.0),
        interview(f"i1-{uid}", p, c, "2026-01-05T10:00:00+01:00"),
    ]


async def test_patient_everything_pages_through_the_compartment(client, uid):
    case = small_case(uid)
    await _load(client, [*case["resources"], *_records(case, uid)])
    pages, entries = await _pages(client, f"/fhir/Patient/{case['patient']}/$everything?_count=3")
    matches = _ids(entries)
    expected = {
        f"Patient/{case['patient']}",
        f"CareTeam/{case['team']}",
        f"EpisodeOfCare/{case['case']}",
        f"CarePlan/{case['plan']}",
        f"Goal/g1-{uid}",
        f"Goal/g2-{uid}",
        f"Task/t1-{uid}",
        f"ChargeItem/c1-{uid}",
        f"Encounter/i1-{uid}",
    }
    assert len(matches) == len(set(matches)) == 9 and set(matches) == expected
    assert len(pages) == 3 and all(p["total"] == 9 for p in pages)
    assert all(p["type"] == "searchset" for p in pages)
    # Organisations the records reference come along, once per page that needs them.
    assert f"Organization/{case['partner']}" in _ids(entries, "include")
    assert f"Organization/{case['org']}" in _ids(entries, "include")
    # Provenance of each write is left out unless asked for.
    assert not any(m.startswith("Provenance/") for m in matches)


async def test_everything_type_and_since(client, uid):
    case = small_case(uid)
    await _load(client, [*case["resources"], *_records(case, uid)])
    url = f"/fhir/Patient/{case['patient']}/$everything"
    _, entries = await _pages(client, url + "?_type=Goal,Task")
    assert sorted(_ids(entries)) == [f"Goal/g1-{uid}", f"Goal/g2-{uid}", f"Task/t1-{uid}"]
    # _type applies to the referenced resources too.
    assert _ids(entries, "include") == []
    _, entries = await _pages(client, url + "?_type=Task&_type=Task,Organization")
    assert _ids(entries) == [f"Task/t1-{uid}"]
    assert _ids(entries, "include") == [f"Organization/{case['partner']}"]

    await asyncio.sleep(0.01)
    since = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    await asyncio.sleep(0.01)
    late = goal(f"g3-{uid}", case["patient"], "personal")
    assert (
        await client.put(f"/fhir/Goal/{late['id']}", json=late, headers=FHIR)
    ).status_code == 201
    _, entries = await _pages(client, f"{url}?_since={since.replace('+', '%2B')}")
    assert _ids(entries) == [f"Goal/g3-{uid}"]

    r = await client.get(f"{url}?_type=Nonsense")
    assert r.status_code == 400
    r = await client.get(f"{url}?_since=yesterday")
    assert r.status_code == 400
    r = await client.get(f"/fhir/Patient/nobody-{uid}/$everything")
    assert r.status_code == 404


async def test_everything_by_post_with_parameters(client, uid):
    case = small_case(uid)
    await _load(client, [*case["resources"], *_records(case, uid)])
    body = {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "Goal"}]}
    r = await client.post(f"/fhir/Patient/{case['patient']}/$everything", json=body, headers=FHIR)
    assert r.status_code == 200, r.text
    assert sorted(_ids(r.json()["entry"])) == [f"Goal/g1-{uid}", f"Goal/g2-{uid}"]


async def test_episode_everything_keeps_to_its_case(client, uid):
    case = small_case(uid)
    p = case["patient"]
    second = {
        "resourceType": "EpisodeOfCare",
        "id": f"case2-{uid}",
        "status": "active",
        "patient": ref(f"Patient/{p}"),
    }
    await _load(
        client,
        [
            *case["resources"],
            *_records(case, uid),
            second,
            interview(f"i2-{uid}", p, second["id"], "2026-02-01T10:00:00+01:00"),
            charge(f"c2-{uid}", p, second["id"], "FD", "planned", 50.0),
        ],
    )
    _, first_case = await _pages(client, f"/fhir/EpisodeOfCare/{case['case']}/$everything")
    ids = set(_ids(first_case))
    assert {f"Encounter/i1-{uid}", f"ChargeItem/c1-{uid}", f"Goal/g1-{uid}"} <= ids
    assert f"EpisodeOfCare/{case['case']}" in ids and f"Patient/{p}" in ids
    assert not ids & {f"EpisodeOfCare/case2-{uid}", f"Encounter/i2-{uid}", f"ChargeItem/c2-{uid}"}

    _, other = await _pages(client, f"/fhir/EpisodeOfCare/case2-{uid}/$everything")
    ids = set(_ids(other))
    assert {f"Encounter/i2-{uid}", f"ChargeItem/c2-{uid}", f"Goal/g1-{uid}"} <= ids
    assert not ids & {f"EpisodeOfCare/{case['case']}", f"Encounter/i1-{uid}"}


async def test_everything_is_what_the_caller_may_see(backend, client, uid):
    """A partner in the network, with a Consent for the medical domain only."""
    case = small_case(uid)
    p = case["patient"]
    consent = {
        "resourceType": "Consent",
        "id": f"consent-{uid}",
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
        "patient": ref(f"Patient/{p}"),
        "provision": {
            "type": "permit",
            "actor": [
                {
                    "role": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "code": "IRCP",
                            }
                        ]
                    },
                    "reference": ref(f"Organization/{case['partner']}"),
                }
            ],
            "securityLabel": [domain("medical")["coding"][0]],
        },
    }
    await _load(client, [*case["resources"], *_records(case, uid), consent])
    rehab = await partner(backend, "system/*.rs", org_id=case["partner"])
    stranger = await partner(backend, "system/*.rs")
    try:
        _, entries = await _pages(rehab.http, f"/fhir/Patient/{p}/$everything?_count=2")
        seen = set(_ids(entries))
        assert {f"Goal/g1-{uid}", f"Task/t1-{uid}", f"Patient/{p}"} <= seen
        # Not the social goal, nor the financial cost line.
        assert not seen & {f"Goal/g2-{uid}", f"ChargeItem/c1-{uid}"}
        first = (await rehab.http.get(f"/fhir/Patient/{p}/$everything")).json()
        assert first["total"] == len(seen)

        summary = (await rehab.http.get(f"/fhir/EpisodeOfCare/{case['case']}/$case-summary")).json()
        codes = [
            next(x for x in d["part"] if x["name"] == "code")["valueCoding"]["code"]
            for d in summary["parameter"]
            if d["name"] == "domain"
        ]
        assert codes == ["medical", "coordination"]

        for url in (
            f"/fhir/Patient/{p}/$everything",
            f"/fhir/EpisodeOfCare/{case['case']}/$everything",
            f"/fhir/EpisodeOfCare/{case['case']}/$case-summary",
        ):
            assert (await stranger.http.get(url)).status_code == 404, url
    finally:
        await rehab.http.aclose()
        await stranger.http.aclose()
