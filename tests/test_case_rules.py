"""Issue 5, points 2 and 3: business rules on write, and $validate without storing."""

from __future__ import annotations

from typing import Any

import pytest

from app.fhir.types import SUPPORTED_TYPES
from app.resources.conformance import ACCIDENT_DATE_URL, CONSOLIDATION_DATE_URL
from app.resources.domains import DOMAIN_SYSTEM
from app.resources.nir import INS_NIR_SYSTEM
from tests.auth_support import partner
from tests.case_support import (
    FHIR,
    charge,
    domain,
    goal,
    nir,
    ref,
    small_case,
    task,
    transaction,
)

VERSIONS = "SELECT count(*) FROM resource_version WHERE type <> 'AuditEvent'"


async def _case(client, uid: str) -> dict[str, Any]:
    case = small_case(uid)
    r = await client.post("/fhir", json=transaction(case["resources"]), headers=FHIR)
    assert r.status_code == 200, r.text
    return case


def _rule(response, rule: str) -> None:
    assert response.status_code == 422, response.text
    issue = response.json()["issue"][0]
    assert issue["code"] == "business-rule"
    assert issue["diagnostics"].startswith(f"{rule}:"), issue


async def _put(client, resource):
    url = f"/fhir/{resource['resourceType']}/{resource['id']}"
    return await client.put(url, json=resource, headers=FHIR)


def _broken(case: dict[str, Any], uid: str) -> dict[str, dict[str, Any]]:
    """One resource per rule that breaks it, for the write and the $validate tests."""
    p = case["patient"]
    no_domain = goal(f"g0-{uid}", p, "medical")
    no_domain["category"] = []
    orphan_plan = {
        "resourceType": "CarePlan",
        "id": f"cp-{uid}",
        "status": "active",
        "intent": "plan",
        "category": [domain("medical")],
        "subject": ref(f"Patient/{p}"),
    }
    no_price = charge(f"c0-{uid}", p, case["case"], "PGPA", "planned", 10.0)
    del no_price["priceOverride"]
    not_dintilhac = charge(f"c1-{uid}", p, case["case"], "PGPA", "planned", 10.0)
    not_dintilhac["code"] = {"coding": [{"system": "http://example.org/costs", "code": "X"}]}
    bad_nir = {
        "resourceType": "Patient",
        "id": f"np-{uid}",
        "identifier": [{"system": INS_NIR_SYSTEM, "value": "188036912304578"}],
    }
    dates = {
        "resourceType": "EpisodeOfCare",
        "id": f"e-{uid}",
        "status": "active",
        "patient": ref(f"Patient/{p}"),
        "extension": [
            {"url": ACCIDENT_DATE_URL, "valueDate": "2025-03-08"},
            {"url": CONSOLIDATION_DATE_URL, "valueDate": "2025-03-07"},
        ],
    }
    return {
        "goal-domain": no_domain,
        "careplan-part-of-master": orphan_plan,
        "task-workflow": task(
            f"t0-{uid}", p, "medical", "completed", f"Organization/{case['partner']}"
        ),
        "chargeitem-dintilhac": no_price,
        "chargeitem-dintilhac/code": not_dintilhac,
        "ins-nir-key": bad_nir,
        "consolidation-after-accident": dates,
    }


async def test_each_rule_refuses_with_422_naming_it(client, uid):
    case = await _case(client, uid)
    for name, resource in _broken(case, uid).items():
        _rule(await _put(client, resource), name.split("/")[0])


async def test_goal_needs_a_subject(client, uid):
    case = await _case(client, uid)
    orphan = goal(f"gs-{uid}", case["patient"], "social")
    del orphan["subject"]
    r = await _put(client, orphan)
    assert r.status_code == 422 and r.json()["issue"][0]["expression"] == ["Goal.subject"]


async def test_domain_careplan_must_share_the_master_subject(client, uid):
    case = await _case(client, uid)
    other = await _case(client, uid + "b")
    plan = {
        "resourceType": "CarePlan",
        "id": f"dp-{uid}",
        "status": "active",
        "intent": "plan",
        "category": [domain("social")],
        "subject": ref(f"Patient/{case['patient']}"),
        "partOf": [ref(f"CarePlan/{other['plan']}")],
    }
    _rule(await _put(client, plan), "careplan-part-of-master")
    plan["partOf"] = [ref(f"CarePlan/{case['plan']}")]
    assert (await _put(client, plan)).status_code == 201
    # A domain plan is not a master: nothing can be partOf it.
    sub = {**plan, "id": f"dp2-{uid}", "partOf": [ref(f"CarePlan/{plan['id']}")]}
    _rule(await _put(client, sub), "careplan-part-of-master")


async def test_task_referral_workflow(client, uid):
    case = await _case(client, uid)
    owner = f"Organization/{case['partner']}"
    t = task(f"t-{uid}", case["patient"], "medical", "requested", owner)
    assert (await _put(client, t)).status_code == 201
    for status in ("accepted", "in-progress"):
        assert (await _put(client, {**t, "status": status})).status_code == 200
    # Pausing needs a reason; so do rejecting, cancelling and failing.
    _rule(await _put(client, {**t, "status": "on-hold"}), "task-workflow")
    paused = {**t, "status": "on-hold", "statusReason": {"text": "En attente de devis"}}
    assert (await _put(client, paused)).status_code == 200
    assert (await _put(client, {**t, "status": "in-progress"})).status_code == 200
    _rule(await _put(client, {**t, "status": "requested"}), "task-workflow")
    assert (await _put(client, {**t, "status": "completed"})).status_code == 200
    # No way back from completed, except entered-in-error.
    _rule(await _put(client, {**t, "status": "in-progress"}), "task-workflow")
    assert (await _put(client, {**t, "status": "entered-in-error"})).status_code == 200

    refused = task(f"tr-{uid}", case["patient"], "social", "requested", owner)
    assert (await _put(client, refused)).status_code == 201
    _rule(await _put(client, {**refused, "status": "rejected"}), "task-workflow")
    reason = {"text": "Hors de notre champ"}
    assert (
        await _put(client, {**refused, "status": "rejected", "statusReason": reason})
    ).status_code == 200
    _rule(await _put(client, {**refused, "status": "accepted"}), "task-workflow")


async def test_task_workflow_applies_to_patch_too(client, uid):
    case = await _case(client, uid)
    t = task(f"tp-{uid}", case["patient"], "medical", "draft", f"Organization/{case['partner']}")
    assert (await _put(client, t)).status_code == 201
    patch = [{"op": "replace", "path": "/status", "value": "completed"}]
    r = await client.patch(
        f"/fhir/Task/{t['id']}", json=patch, headers={"Content-Type": "application/json-patch+json"}
    )
    _rule(r, "task-workflow")


@pytest.mark.parametrize("head", ["1880369123045", "294022A012345", "185102B012345"])
async def test_nir_key_including_corsica(client, uid, head):
    good = nir(head)
    patient = {
        "resourceType": "Patient",
        "id": f"n-{uid}",
        "identifier": [{"system": INS_NIR_SYSTEM, "value": good}],
    }
    assert (await _put(client, patient)).status_code == 201
    wrong = good[:-2] + f"{(int(good[-2:]) + 1) % 97:02d}"
    patient["identifier"][0]["value"] = wrong
    _rule(await _put(client, patient), "ins-nir-key")


async def test_dintilhac_cost_line_is_stored_with_code_and_price(client, uid):
    case = await _case(client, uid)
    line = charge(f"cl-{uid}", case["patient"], case["case"], "PAF-S", "planned", 4000.0)
    assert (await _put(client, line)).status_code == 201
    line["code"]["coding"][0]["code"] = "NOPE"
    _rule(await _put(client, line), "chargeitem-dintilhac")


# --- $validate ----------------------------------------------------------------------------


def _errors(outcome: dict[str, Any]) -> list[dict[str, Any]]:
    assert outcome["resourceType"] == "OperationOutcome"
    return [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]


async def test_validate_applies_every_rule_without_storing(backend, client, uid):
    case = await _case(client, uid)
    before = await backend.scalar(VERSIONS)
    for name, resource in _broken(case, uid).items():
        url = f"/fhir/{resource['resourceType']}/$validate"
        r = await client.post(url, json=resource, headers=FHIR)
        assert r.status_code == 200, r.text
        errors = _errors(r.json())
        assert errors and errors[0]["code"] == "business-rule", (name, errors)
        assert errors[0]["diagnostics"].startswith(name.split("/")[0]), (name, errors)
    assert await backend.scalar(VERSIONS) == before


async def test_validate_answers_all_ok_and_stores_nothing(backend, client, uid):
    case = await _case(client, uid)
    before = await backend.scalar(VERSIONS)
    good = goal(f"gv-{uid}", case["patient"], "personal", due="2030-01-01")
    r = await client.post("/fhir/Goal/$validate", json=good, headers=FHIR)
    assert r.status_code == 200
    assert r.json()["issue"] == [
        {"severity": "information", "code": "informational", "diagnostics": "All OK"}
    ]
    wrapped = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": good}]}
    r = await client.post("/fhir/Goal/$validate", json=wrapped, headers=FHIR)
    assert r.json()["issue"][0]["diagnostics"] == "All OK"
    assert await backend.scalar(VERSIONS) == before
    assert (await client.get(f"/fhir/Goal/{good['id']}")).status_code == 404


async def test_validate_reports_structure_bindings_and_references(client, uid):
    r = await client.post(
        "/fhir/Patient/$validate",
        json={"resourceType": "Patient", "gender": "bogus", "birthDate": "1980-01-01"},
        headers=FHIR,
    )
    assert [e["code"] for e in _errors(r.json())] == ["code-invalid"]
    r = await client.post(
        "/fhir/Patient/$validate",
        json={"resourceType": "Patient", "birthDate": "soon"},
        headers=FHIR,
    )
    assert _errors(r.json())[0]["expression"] == ["Patient.birthDate"]
    dangling = goal(f"gd-{uid}", f"missing-{uid}", "medical")
    r = await client.post("/fhir/Goal/$validate", json=dangling, headers=FHIR)
    errors = _errors(r.json())
    assert "does not exist or is not accessible" in errors[0]["diagnostics"]
    r = await client.post("/fhir/Goal/$validate", json={"resourceType": "Task"}, headers=FHIR)
    assert r.status_code == 200 and _errors(r.json())


async def test_validate_at_instance_level_checks_the_transition(backend, client, uid):
    case = await _case(client, uid)
    t = task(f"tv-{uid}", case["patient"], "legal", "requested", f"Organization/{case['partner']}")
    assert (await _put(client, t)).status_code == 201
    done = {**t, "status": "completed"}
    r = await client.post(f"/fhir/Task/{t['id']}/$validate", json=done, headers=FHIR)
    errors = _errors(r.json())
    assert errors[0]["diagnostics"].startswith("task-workflow: a Task cannot go from 'requested'")
    accepted = {**t, "status": "accepted"}
    r = await client.post(f"/fhir/Task/{t['id']}/$validate", json=accepted, headers=FHIR)
    assert r.json()["issue"][0]["diagnostics"] == "All OK"
    assert (await client.get(f"/fhir/Task/{t['id']}")).json()["status"] == "requested"
    r = await client.post(
        "/fhir/CodeSystem/dintilhac/$validate?mode=delete",
        json={"resourceType": "Parameters"},
        headers=FHIR,
    )
    assert _errors(r.json())[0]["code"] == "not-supported"


@pytest.mark.parametrize("resource_type", SUPPORTED_TYPES)
async def test_validate_on_every_type(client, resource_type):
    r = await client.post(
        f"/fhir/{resource_type}/$validate", json={"resourceType": resource_type}, headers=FHIR
    )
    assert r.status_code == 200, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"]


async def test_validate_refuses_what_is_not_a_request(client):
    r = await client.get("/fhir/Patient/$validate")
    assert r.status_code == 405
    r = await client.post("/fhir/Patient/$validate", json=[1, 2], headers=FHIR)
    assert r.status_code == 400
    r = await client.post(
        "/fhir/Patient/$validate?mode=sideways", json={"resourceType": "Patient"}, headers=FHIR
    )
    assert r.status_code == 400


async def test_validate_tells_when_the_scopes_do_not_cover_the_label(backend, client, uid):
    case = await _case(client, uid)
    medical_only = f"system/Goal.crs?_security={DOMAIN_SYSTEM}|medical system/Patient.rs"
    writer = await partner(backend, medical_only, all_beneficiaries=True)
    try:
        social = goal(f"gs-{uid}", case["patient"], "social")
        r = await writer.http.post("/fhir/Goal/$validate", json=social, headers=FHIR)
        assert [e["code"] for e in _errors(r.json())] == ["forbidden"]
        medical = goal(f"gm-{uid}", case["patient"], "medical")
        r = await writer.http.post("/fhir/Goal/$validate", json=medical, headers=FHIR)
        assert r.json()["issue"][0]["diagnostics"] == "All OK"
    finally:
        await writer.http.aclose()
