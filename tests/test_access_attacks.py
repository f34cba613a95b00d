"""Attempts to get around the access rule, each of which must fail."""

from __future__ import annotations

import re
import uuid

from tests.access_case import build_case, category, put
from tests.auth_support import FHIR


def listed(bundle: dict) -> set[str]:
    out = set()
    for entry in bundle.get("entry", []):
        if "resource" in entry:
            out.add(f"{entry['resource']['resourceType']}/{entry['resource']['id']}")
        elif "request" in entry:
            out.add(entry["request"]["url"].split("/_history")[0])
    return out


def same_words(text: str, *ids: str) -> str:
    for rid in ids:
        text = text.replace(rid, "<id>")
    return re.sub(r"[0-9a-f]{8,}", "<hex>", text)


async def test_vread_of_a_version_from_another_domain_or_case(backend, uid):
    case = await build_case(backend, uid)
    admin, hospital = backend.client, case.hospital
    # v1 in the legal domain, v2 moved to medical: the hospital may see v2 only.
    legal = {
        "resourceType": "Observation",
        "id": f"moved-{uid}",
        "status": "final",
        "code": {"text": "Expertise"},
        "category": category("legal"),
        "subject": {"reference": f"Patient/{case.patient}"},
    }
    await put(admin, legal)
    await put(admin, {**legal, "category": category("medical")})
    base = f"/fhir/Observation/moved-{uid}"
    assert (await hospital.http.get(base)).status_code == 200
    assert (await hospital.http.get(f"{base}/_history/2")).status_code == 200
    assert (await hospital.http.get(f"{base}/_history/1")).status_code == 404
    history = (await hospital.http.get(f"{base}/_history")).json()
    assert history["total"] == 1
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2"]

    # v1 belonged to another beneficiary the hospital has nothing to do with.
    await put(admin, {"resourceType": "Patient", "id": f"other-{uid}"})
    other = {**legal, "id": f"stray-{uid}", "category": category("medical")}
    await put(admin, {**other, "subject": {"reference": f"Patient/other-{uid}"}})
    await put(admin, other)
    base = f"/fhir/Observation/stray-{uid}"
    assert (await hospital.http.get(f"{base}/_history/2")).status_code == 200
    assert (await hospital.http.get(f"{base}/_history/1")).status_code == 404


async def test_guessing_ids_reveals_nothing(backend, uid):
    case = await build_case(backend, uid)
    insurer = case.insurer
    hidden = f"obs-{uid}"
    missing = f"obs-{uuid.uuid4().hex[:12]}"
    a = await insurer.http.get(f"/fhir/Observation/{hidden}")
    b = await insurer.http.get(f"/fhir/Observation/{missing}")
    assert a.status_code == b.status_code == 404
    assert same_words(a.text, hidden) == same_words(b.text, missing)
    for suffix in ("/_history", "/_history/1"):
        a = await insurer.http.get(f"/fhir/Observation/{hidden}{suffix}")
        b = await insurer.http.get(f"/fhir/Observation/{missing}{suffix}")
        assert a.status_code == b.status_code == 404, suffix
        assert same_words(a.text, hidden) == same_words(b.text, missing)
    # A hidden resource once deleted is still 404 (not 410: that would confirm it).
    assert (await backend.client.delete(f"/fhir/Observation/{hidden}")).status_code in (200, 204)
    assert (await insurer.http.get(f"/fhir/Observation/{hidden}")).status_code == 404
    assert (await case.hospital.http.get(f"/fhir/Observation/{hidden}")).status_code == 410
    # ... and its deletion does not show in the insurer's system history.
    history = (await insurer.http.get("/fhir/_history?_count=1000")).json()
    assert f"Observation/{hidden}" not in listed(history)
    history = (await case.hospital.http.get("/fhir/_history?_count=1000")).json()
    assert f"Observation/{hidden}" in listed(history)


async def test_include_and_revinclude_into_a_forbidden_domain(backend, uid):
    case = await build_case(backend, uid)
    hospital = case.hospital
    for url in (
        f"/fhir/Patient?_id={case.patient}&_revinclude=*",
        f"/fhir/EpisodeOfCare?_id={case.episode}&_revinclude=ChargeItem:context",
        f"/fhir/Patient?_id={case.patient}&_revinclude:iterate=*&_include:iterate=*",
        f"/fhir/Task?_id=task-{uid}&_include=*&_revinclude=*",
    ):
        r = await hospital.http.get(url)
        assert r.status_code == 200, (url, r.text)
        found = listed(r.json())
        assert f"ChargeItem/cost-{uid}" not in found, url
        assert f"DocumentReference/doc-{uid}" not in found, url
        assert f"Goal/goal-{uid}" not in found, url
    r = await case.outsider.http.get(f"/fhir/ChargeItem?_id=cost-{uid}&_include=*")
    assert listed(r.json()) == set()


async def test_chaining_and_has_through_forbidden_resources(backend, uid):
    case = await build_case(backend, uid)
    family = f"Martin-{uid}"
    # The outsider cannot use the Patient it cannot see as a stepping stone.
    # Strict handling: a probe whose parameter were not applied would fail, not pass.
    strict = {"Prefer": "handling=strict"}
    for url in (
        f"/fhir/Task?subject:Patient.family={family}&_total=accurate",
        f"/fhir/Patient?_has:Task:subject:status=requested&family={family}&_total=accurate",
    ):
        totals = []
        for caller in (case.hospital, case.outsider):
            r = await caller.http.get(url, headers=strict)
            assert r.status_code == 200, r.text
            totals.append(r.json()["total"])
        assert totals[0] > 0 and totals[1] == 0, (url, totals)  # the hospital finds the case
    # The lawyer cannot probe medical values through _has or a chain from its records.
    probe = f"/fhir/Patient?_id={case.patient}&_has:Observation:subject:value-string=GCS 15"
    assert (await case.hospital.http.get(probe)).json()["total"] == 1
    assert (await case.lawyer.http.get(probe)).json()["total"] == 0
    probe = f"/fhir/ChargeItem?context:EpisodeOfCare.patient={case.patient}&_total=accurate"
    assert (await case.insurer.http.get(probe)).json()["total"] == 1
    assert (await case.hospital.http.get(probe)).json()["total"] == 0


async def test_transaction_cannot_read_or_write_what_its_caller_cannot(backend, uid):
    case = await build_case(backend, uid, scope="system/*.cruds")
    insurer = case.insurer
    reads = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "GET", "url": f"ChargeItem/cost-{uid}"}},
            {"request": {"method": "GET", "url": f"Observation/obs-{uid}"}},
        ],
    }
    r = await insurer.http.post("/fhir", json=reads, headers=FHIR)
    assert r.status_code in (200, 404), r.text
    assert "GCS 15" not in r.text
    if r.status_code == 200:
        statuses = [e["response"]["status"] for e in r.json()["entry"]]
        assert statuses[1].startswith("404")
    observation = (await case.hospital.http.get(f"/fhir/Observation/obs-{uid}")).json()
    writes = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**observation, "status": "entered-in-error"},
                "request": {"method": "PUT", "url": f"Observation/obs-{uid}"},
            },
            {
                "resource": {"resourceType": "Organization", "name": f"org-{uid}"},
                "request": {"method": "POST", "url": "Organization"},
            },
        ],
    }
    r = await insurer.http.post("/fhir", json=writes, headers=FHIR)
    assert r.status_code == 404, r.text
    after = (await case.hospital.http.get(f"/fhir/Observation/obs-{uid}")).json()
    assert after["meta"]["versionId"] == observation["meta"]["versionId"]
    r = await backend.client.get(f"/fhir/Organization?name=org-{uid}&_summary=count")
    assert r.json()["total"] == 0  # all or nothing


async def test_a_reference_to_a_hidden_resource_looks_missing(backend, uid):
    case = await build_case(backend, uid, scope="system/*.cruds")
    hidden, missing = f"obs-{uid}", f"obs-{uuid.uuid4().hex[:12]}"

    def charge(target: str) -> dict:
        return {
            "resourceType": "ChargeItem",
            "status": "billable",
            "code": {
                "coding": [
                    {"system": "https://relais.dev/fhir/CodeSystem/dintilhac", "code": "DSA"}
                ]
            },
            "subject": {"reference": f"Patient/{case.patient}"},
            "priceOverride": {"value": 50, "currency": "EUR"},
            "supportingInformation": [{"reference": f"Observation/{target}"}],
        }

    a = await case.insurer.http.post("/fhir/ChargeItem", json=charge(hidden), headers=FHIR)
    b = await case.insurer.http.post("/fhir/ChargeItem", json=charge(missing), headers=FHIR)
    assert a.status_code == b.status_code == 422
    assert same_words(a.text, hidden) == same_words(b.text, missing)
    r = await case.insurer.http.post("/fhir/ChargeItem", json=charge(hidden), headers=FHIR)
    assert r.status_code == 422
    # The hospital, which sees the Observation, can refer to it (in its own domain).


async def test_everything_stays_within_the_callers_domains(backend, uid):
    case = await build_case(backend, uid)
    r = await case.insurer.http.get(f"/fhir/Patient/{case.patient}/$everything")
    assert r.status_code == 200, r.text
    found = listed(r.json())
    assert f"ChargeItem/cost-{uid}" in found
    assert f"Observation/obs-{uid}" not in found
    assert f"DocumentReference/doc-{uid}" not in found
    r = await case.outsider.http.get(f"/fhir/Patient/{case.patient}/$everything")
    assert r.status_code == 404
