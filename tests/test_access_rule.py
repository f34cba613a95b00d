"""The access rule (SPEC §5) over HTTP: a case with a hospital, an insurer and a lawyer
in the CareTeam under different Consents, a managing organisation and an outsider."""

from __future__ import annotations

import asyncio
import time

from tests.access_case import (
    Case,
    build_case,
    care_team,
    consent,
    instant,
    member,
    provision,
    put,
)
from tests.auth_support import FHIR

WRITE_ALL = "system/*.cruds"


def seen(case: Case, who: str) -> set[str]:
    """What each party must see of the beneficiary's records."""
    return {
        "manager": set(case.resources),
        "hospital": case.of_domains("coordination", "medical"),
        "insurer": case.of_domains("coordination", "financial"),
        "lawyer": case.of_domains("coordination", "legal"),
        "outsider": set(),
    }[who]


def parties(case: Case) -> dict:
    return {
        "manager": case.manager,
        "hospital": case.hospital,
        "insurer": case.insurer,
        "lawyer": case.lawyer,
        "outsider": case.outsider,
    }


def ids(bundle: dict, mode: str = "match") -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode", "match") == mode
    }


async def test_each_party_reads_exactly_its_domains(backend, uid):
    case = await build_case(backend, uid)
    for who, party in parties(case).items():
        expected = seen(case, who)
        for reference in case.resources:
            r = await party.http.get(f"/fhir/{reference}")
            if reference in expected:
                assert r.status_code == 200, (who, reference, r.text)
            else:
                assert r.status_code == 404, (who, reference, r.status_code)
                assert r.json()["resourceType"] == "OperationOutcome"


async def test_search_total_and_paging_count_only_what_is_visible(backend, uid):
    case = await build_case(backend, uid)
    everything = ",".join(r.split("/")[1] for r in case.resources)
    for who, party in parties(case).items():
        expected = seen(case, who)
        # System-level search across the case's records, two per page.
        r = await party.http.get(f"/fhir?_id={everything}&_total=accurate&_count=2")
        assert r.status_code == 200, r.text
        bundle = r.json()
        assert bundle["total"] == len(expected), who
        found = ids(bundle)
        while nxt := next((lk for lk in bundle["link"] if lk["relation"] == "next"), None):
            bundle = (await party.http.get(nxt["url"], follow_redirects=True)).json()
            found |= ids(bundle)
        assert found == expected, who
        # Type level, by compartment, with a count only.
        r = await party.http.get(f"/fhir/Observation?subject=Patient/{case.patient}&_summary=count")
        assert r.status_code == 200, r.text
        assert r.json()["total"] == (1 if f"Observation/obs-{uid}" in expected else 0), who


async def test_include_revinclude_chain_and_has_respect_the_rule(backend, uid):
    case = await build_case(backend, uid)
    hospital, insurer, outsider = case.hospital, case.insurer, case.outsider
    patient = f"Patient/{case.patient}"

    url = (
        f"/fhir/Patient?_id={case.patient}&_revinclude=Observation:subject"
        "&_revinclude=ChargeItem:subject&_revinclude=DocumentReference:subject"
    )
    bundle = (await hospital.http.get(url)).json()
    assert ids(bundle) == {patient}
    assert ids(bundle, "include") == {f"Observation/obs-{uid}"}
    bundle = (await insurer.http.get(url)).json()
    assert ids(bundle, "include") == {f"ChargeItem/cost-{uid}"}
    bundle = (await outsider.http.get(url)).json()
    assert ids(bundle) == set() and ids(bundle, "include") == set()

    # _include into a hidden target: the match is there, the hidden Patient is not.
    url = f"/fhir/ChargeItem?_id=cost-{uid}&_include=ChargeItem:subject"
    bundle = (await insurer.http.get(url)).json()
    assert ids(bundle, "include") == {patient}

    # Chaining through the Patient: nobody finds records through a Patient it cannot see.
    family = f"Martin-{uid}"
    url = f"/fhir/Observation?subject:Patient.family={family}&_total=accurate"
    assert (await hospital.http.get(url)).json()["total"] == 1
    assert (await insurer.http.get(url)).json()["total"] == 0
    assert (await outsider.http.get(url)).json()["total"] == 0

    # _has: the insurer cannot learn that a medical Observation exists.
    url = f"/fhir/Patient?_id={case.patient}&_has:Observation:subject:status=final"
    assert ids((await hospital.http.get(url)).json()) == {patient}
    assert ids((await insurer.http.get(url)).json()) == set()


async def test_history_levels_hide_other_domains(backend, uid):
    case = await build_case(backend, uid)
    obs = f"/fhir/Observation/obs-{uid}"
    assert (await case.hospital.http.get(f"{obs}/_history")).status_code == 200
    assert (await case.insurer.http.get(f"{obs}/_history")).status_code == 404
    assert (await case.insurer.http.get(f"{obs}/_history/1")).status_code == 404

    for who, party in parties(case).items():
        expected = seen(case, who)
        for path in ("/fhir/_history?_count=1000", "/fhir/ChargeItem/_history?_count=1000"):
            r = await party.http.get(path)
            assert r.status_code == 200, r.text
            listed = {
                f"{e['resource']['resourceType']}/{e['resource']['id']}"
                for e in r.json().get("entry", [])
                if "resource" in e
            }
            mine = {x for x in listed if x in case.resources}
            if path.startswith("/fhir/ChargeItem"):
                expected_here = {x for x in expected if x.startswith("ChargeItem/")}
            else:
                expected_here = expected
            assert mine == expected_here, (who, path)


async def test_batch_entries_are_checked_one_by_one(backend, uid):
    case = await build_case(backend, uid)
    refs = sorted(case.resources)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": ref}} for ref in refs],
    }
    r = await case.insurer.http.post("/fhir", json=bundle, headers=FHIR)
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    expected = seen(case, "insurer")
    for ref, status in zip(refs, statuses, strict=True):
        assert status.startswith("200" if ref in expected else "404"), (ref, status)


async def test_writes_follow_the_rule(backend, uid):
    case = await build_case(backend, uid, scope=WRITE_ALL)
    subject = {"reference": f"Patient/{case.patient}"}
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Radiographie"},
        "subject": subject,
    }
    r = await case.hospital.http.post("/fhir/Observation", json=observation, headers=FHIR)
    assert r.status_code == 201, r.text
    # The insurer may write, but not into a domain it is not consented for: the write
    # is refused after it was made, and rolled back with its Provenance.
    count = "SELECT count(*) FROM resource_version WHERE type IN ('Observation', 'Provenance')"
    before = await backend.scalar(count)
    r = await case.insurer.http.post("/fhir/Observation", json=observation, headers=FHIR)
    assert r.status_code == 403, r.text
    assert await backend.scalar(count) == before
    # The same when the write is the transaction's first statement (no reference to check).
    count = "SELECT count(*) FROM resource_version WHERE type IN ('Patient', 'Provenance')"
    before = await backend.scalar(count)
    patient = {"resourceType": "Patient", "gender": "female"}
    r = await case.insurer.http.post("/fhir/Patient", json=patient, headers=FHIR)
    assert r.status_code == 403, r.text
    assert await backend.scalar(count) == before
    # ... nor change, patch or delete what it cannot see (404, like a read).
    obs = f"/fhir/Observation/obs-{uid}"
    current = (await case.hospital.http.get(obs)).json()
    r = await case.insurer.http.put(obs, json=current, headers=FHIR)
    assert r.status_code == 404
    patch = [{"op": "replace", "path": "/status", "value": "amended"}]
    headers = {"Content-Type": "application/json-patch+json"}
    assert (await case.insurer.http.patch(obs, json=patch, headers=headers)).status_code == 404
    assert (await case.insurer.http.delete(obs)).status_code == 404
    r = await case.hospital.http.patch(obs, json=patch, headers=headers)
    assert r.status_code == 200, r.text
    # Conditional forms do not find hidden resources either.
    r = await case.insurer.http.delete(f"/fhir/Observation?_id=obs-{uid}")
    assert r.status_code in (200, 204)
    assert (await case.hospital.http.get(obs)).status_code == 200
    r = await case.insurer.http.put(
        f"/fhir/Observation?_id=obs-{uid}", json={**current, "status": "cancelled"}, headers=FHIR
    )
    assert r.status_code in (403, 404), r.text
    assert (await case.hospital.http.get(obs)).json()["status"] == "amended"
    r = await case.insurer.http.post(
        "/fhir/Observation",
        json=observation,
        headers={**FHIR, "If-None-Exist": f"_id=obs-{uid}"},
    )
    assert r.status_code == 403
    # Only the managing organisation changes who sees what.
    team = (await case.lawyer.http.get(f"/fhir/CareTeam/{case.team}")).json()
    assert (
        await case.lawyer.http.put(f"/fhir/CareTeam/{case.team}", json=team, headers=FHIR)
    ).status_code == 403
    r = await case.manager.http.put(f"/fhir/CareTeam/{case.team}", json=team, headers=FHIR)
    assert r.status_code == 200, r.text


async def test_revoking_the_consent_cuts_access_on_the_next_request(backend, uid):
    case = await build_case(backend, uid)
    obs = f"/fhir/Observation/obs-{uid}"
    assert (await case.hospital.http.get(obs)).status_code == 200
    cid = f"/fhir/Consent/consent-h-{uid}"
    body = (await case.manager.http.get(cid)).json()
    r = await case.manager.http.put(cid, json={**body, "status": "inactive"}, headers=FHIR)
    assert r.status_code == 200, r.text
    assert (await case.hospital.http.get(obs)).status_code == 404
    # Coordination records went with it: the Consent was the hospital's only permit.
    assert (await case.hospital.http.get(f"/fhir/Patient/{case.patient}")).status_code == 404
    r = await case.manager.http.put(cid, json={**body, "status": "active"}, headers=FHIR)
    assert (await case.hospital.http.get(obs)).status_code == 200
    assert (await case.manager.http.delete(cid)).status_code in (200, 204)
    assert (await case.hospital.http.get(obs)).status_code == 404


async def test_ending_a_membership_cuts_access(backend, uid):
    case = await build_case(backend, uid)
    doc = f"/fhir/DocumentReference/doc-{uid}"
    assert (await case.lawyer.http.get(doc)).status_code == 200
    others = [member(p.organization) for p in (case.hospital, case.insurer)]

    # Ended now by the case manager: gone on the very next request.
    ended = member(case.lawyer.organization, start="2026-01-01", end=instant(-1))
    await put(case.manager.http, care_team(case.team, case.patient, [*others, ended]))
    assert (await case.lawyer.http.get(doc)).status_code == 404

    # A period that ends by itself, with no write at all when it does.
    ending = member(case.lawyer.organization, start="2026-01-01", end=instant(3))
    await put(case.manager.http, care_team(case.team, case.patient, [*others, ending]))
    assert (await case.lawyer.http.get(doc)).status_code == 200
    deadline = time.time() + 10
    while (await case.lawyer.http.get(doc)).status_code == 200 and time.time() < deadline:
        await asyncio.sleep(0.5)
    assert (await case.lawyer.http.get(doc)).status_code == 404
    assert time.time() < deadline

    # A membership that has not started yet gives nothing yet.
    later = member(case.lawyer.organization, start=instant(3600))
    await put(case.manager.http, care_team(case.team, case.patient, [*others, later]))
    assert (await case.lawyer.http.get(doc)).status_code == 404


async def test_consent_semantics(backend, uid):
    """Nested deny wins; a separate deny wins; coordination follows any permit unless
    denied; a deny without a label removes everything; a root deny is an opt-in base."""
    case = await build_case(backend, uid)
    lawyer, patient = case.lawyer, case.patient
    doc = f"/fhir/DocumentReference/doc-{uid}"
    pat = f"/fhir/Patient/{patient}"
    goal = f"/fhir/Goal/goal-{uid}"
    extra = f"/fhir/Consent/consent-x-{uid}"
    org = lawyer.organization

    async def now_sees() -> tuple[int, int, int]:
        return tuple([(await lawyer.http.get(p)).status_code for p in (doc, pat, goal)])

    assert await now_sees() == (200, 200, 404)
    # A separate Consent that denies legal to the lawyer wins over the permit.
    await put(
        case.manager.http, consent(f"consent-x-{uid}", patient, provision("deny", [org], ["legal"]))
    )
    assert await now_sees() == (404, 404, 404)
    # Denying coordination only: the legal records stay, the case records go.
    await put(
        case.manager.http,
        consent(f"consent-x-{uid}", patient, provision("deny", [org], ["coordination"])),
    )
    assert await now_sees() == (200, 404, 404)
    # An opt-in base (root deny, nobody named) with a nested permit adds social.
    await put(
        case.manager.http,
        consent(
            f"consent-x-{uid}",
            patient,
            provision("deny", nested=[provision("permit", [org], ["social"])]),
        ),
    )
    assert await now_sees() == (200, 200, 200)
    # A permit limited in time: over once its period ends.
    await put(
        case.manager.http,
        consent(
            f"consent-x-{uid}",
            patient,
            provision("permit", [org], ["social"], period={"end": instant(-60)}),
        ),
    )
    assert await now_sees() == (200, 200, 404)
    assert (await case.manager.http.delete(extra)).status_code in (200, 204)
    assert await now_sees() == (200, 200, 404)
