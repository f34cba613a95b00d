"""Issue 5, points 4 and 6: EpisodeOfCare/$case-summary, and achievements as history."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.parameters import Parameters
from sqlalchemy import event

from app.resources.demo_load import load_demo_case
from tests.case_support import (
    ACHIEVEMENT,
    FHIR,
    charge,
    day,
    domain_part,
    goal,
    interview,
    one,
    params,
    ref,
    references,
    small_case,
    task,
    transaction,
)

DEMO_SUMMARY = "/fhir/EpisodeOfCare/demo-case/$case-summary"


async def _summary(client, case_id: str) -> dict[str, Any]:
    r = await client.get(f"/fhir/EpisodeOfCare/{case_id}/$case-summary")
    assert r.status_code == 200, r.text
    body = r.json()
    Parameters.model_validate(body)  # a valid R4B Parameters
    return body


async def _load(client, resources: list[dict[str, Any]]) -> None:
    r = await client.post("/fhir", json=transaction(resources), headers=FHIR)
    assert r.status_code == 200, r.text


async def test_demo_case_summary_per_domain(backend, client):
    await load_demo_case(backend.app.state.relais)
    summary = await _summary(client, "demo-case")
    assert one(summary, "beneficiary")["valueReference"]["display"] == "Julien Pierre Martin"
    assert one(summary, "accidentDate")["valueDate"] == "2025-03-08"
    assert one(summary, "consolidationDate")["valueDate"] == "2026-09-30"
    claims = [p["valueIdentifier"]["value"] for p in params(summary, "identifier")]
    assert claims == ["SIN-2025-0381127", "26/04512"]
    codes = [one(p, "code")["valueCoding"]["code"] for p in params(summary, "domain")]
    assert codes == [
        "medical",
        "social",
        "legal",
        "financial",
        "professional",
        "personal",
        "coordination",
    ]

    medical = domain_part(summary, "medical")
    goals = params(medical, "goal")
    assert references(goals, "goal") == ["Goal/demo-goal-medical"]
    assert one(goals[0], "goal")["valueReference"]["display"] == "Marcher un kilomètre sans canne"
    assert one(goals[0], "lifecycleStatus")["valueCode"] == "active"
    assert one(goals[0], "achievementStatus")["valueCoding"]["code"] == "improving"
    assert one(goals[0], "dueDate")["valueDate"] == "2027-06-30"
    activities = {
        one(a, "activity")["valueReference"]["reference"]: a for a in params(medical, "activity")
    }
    # Open work only: the completed discharge report is not an activity any more.
    assert "Task/demo-task-discharge-report" not in activities
    rehab = activities["Task/demo-task-rehabilitation"]
    assert one(rehab, "status")["valueCode"] == "in-progress"
    assert one(rehab, "owner")["valueReference"]["reference"] == "Organization/demo-smr"
    assert "ServiceRequest/demo-rehabilitation" in activities

    financial = domain_part(summary, "financial")
    vehicle = next(
        a
        for a in params(financial, "activity")
        if one(a, "activity")["valueReference"]["reference"] == "Task/demo-task-vehicle"
    )
    assert one(vehicle, "statusReason")["valueString"] == "En attente de deux devis d'aménagement."
    costs = {
        one(c, "head")["valueCoding"]["code"]: (
            one(c, "planned")["valueMoney"]["value"],
            one(c, "engaged")["valueMoney"]["value"],
        )
        for c in params(financial, "cost")
    }
    assert costs == {
        "DSA": (0, 3480.5),
        "FD": (0, 1265),
        "PGPA": (0, 14820),
        "FVA": (12400, 0),
        "ATP": (9360, 0),
        "SE": (0, 8000),
        "PAF-S": (4000, 0),
    }
    total = one(financial, "costTotal")
    assert one(total, "planned")["valueMoney"] == {"value": 25760, "currency": "EUR"}
    assert one(total, "engaged")["valueMoney"] == {"value": 27565.5, "currency": "EUR"}
    insurer = references(params(financial, "partner"), "member")
    assert "Organization/demo-insurer" in insurer and "Organization/demo-chu" not in insurer

    coordination = domain_part(summary, "coordination")
    last = one(coordination, "lastInterview")
    assert one(last, "encounter")["valueReference"]["reference"] == "Encounter/demo-interview"
    assert one(last, "date")["valueDateTime"] == "2026-11-10T14:00:00+01:00"
    network = references(params(coordination, "partner"), "member")
    assert len(network) == 8 and "RelatedPerson/demo-spouse" in network
    roles = {
        one(p, "member")["valueReference"]["reference"]: one(p, "role")["valueString"]
        for p in params(coordination, "partner")
    }
    assert roles["Organization/demo-law-firm"] == "Avocat de la victime"


async def _advance(client, body: dict[str, Any], *statuses: str) -> None:
    for status in statuses:
        body["status"] = status
        r = await client.put(f"/fhir/Task/{body['id']}", json=body, headers=FHIR)
        assert r.status_code == 200, r.text


async def test_milestones_are_upcoming_and_in_date_order(client, uid):
    case = small_case(uid, consolidation=day(30))
    p, c = case["patient"], case["case"]
    partner = f"Organization/{case['partner']}"
    appointment = {
        "resourceType": "Appointment",
        "status": "booked",
        "serviceCategory": [
            {
                "coding": [
                    {"system": "https://relais.dev/fhir/CodeSystem/case-domain", "code": "legal"}
                ]
            }
        ],
        "description": "Audience au tribunal judiciaire",
        "participant": [{"actor": ref(f"Patient/{p}"), "status": "accepted"}],
    }
    due = {"period": {"end": day(20)}}
    open_task = task(f"t-{uid}", p, "legal", "requested", partner, restriction=due)
    done_task = task(f"done-{uid}", p, "legal", "requested", partner, restriction=due)
    await _load(
        client,
        [
            *case["resources"],
            {
                **appointment,
                "id": f"hearing-{uid}",
                "start": f"{day(10)}T09:00:00+01:00",
                "end": f"{day(10)}T10:00:00+01:00",
            },
            {
                **appointment,
                "id": f"past-{uid}",
                "start": f"{day(-10)}T09:00:00+01:00",
                "end": f"{day(-10)}T10:00:00+01:00",
            },
            open_task,
            done_task,
            goal(f"g-{uid}", p, "legal", "in-progress", due=day(40)),
            goal(f"ga-{uid}", p, "legal", "achieved", due=day(50)),
            interview(f"i1-{uid}", p, c, f"{day(-30)}T10:00:00+01:00"),
            interview(f"i2-{uid}", p, c, f"{day(-3)}T10:00:00+01:00"),
        ],
    )
    await _advance(client, open_task, "accepted")
    await _advance(client, done_task, "accepted", "in-progress", "completed")
    summary = await _summary(client, c)
    legal = domain_part(summary, "legal")
    kinds = [
        (one(m, "kind")["valueCode"], one(m, "focus")["valueReference"]["reference"])
        for m in params(legal, "milestone")
    ]
    assert kinds == [
        ("appointment", f"Appointment/hearing-{uid}"),
        ("task-due", f"Task/t-{uid}"),
        ("goal-target", f"Goal/g-{uid}"),
    ]
    coordination = domain_part(summary, "coordination")
    (consolidation,) = params(coordination, "milestone")
    assert one(consolidation, "kind")["valueCode"] == "consolidation"
    assert one(consolidation, "date")["valueDateTime"] == day(30)
    last = one(coordination, "lastInterview")
    assert one(last, "encounter")["valueReference"]["reference"] == f"Encounter/i2-{uid}"
    activities = references(params(legal, "activity"), "activity")
    assert activities == [f"Appointment/hearing-{uid}", f"Task/t-{uid}"]


async def _set_achievement(client, body: dict[str, Any], code: str) -> None:
    body["achievementStatus"] = {"coding": [{"system": ACHIEVEMENT, "code": code}]}
    r = await client.put(f"/fhir/Goal/{body['id']}", json=body, headers=FHIR)
    assert r.status_code == 200, r.text


async def test_achievements_are_history_and_latest_first(client, uid):
    case = small_case(uid)
    p = case["patient"]
    walk = goal(f"walk-{uid}", p, "medical", "in-progress", due="2030-01-01")
    job = goal(f"job-{uid}", p, "professional", "in-progress", due="2030-06-01")
    home = goal(f"home-{uid}", p, "medical", "no-change", due="2029-01-01")
    await _load(client, [*case["resources"], walk, job, home])
    await _set_achievement(client, walk, "improving")
    await _set_achievement(client, walk, "achieved")
    await _set_achievement(client, job, "achieved")

    # The timeline of a goal's achievement is its history, newest first.
    history = (await client.get(f"/fhir/Goal/{walk['id']}/_history")).json()
    timeline = [e["resource"]["achievementStatus"]["coding"][0]["code"] for e in history["entry"]]
    assert timeline == ["achieved", "improving", "in-progress"]
    assert history["entry"][0]["resource"]["meta"]["versionId"] == "3"

    summary = await _summary(client, case["case"])
    achievements = params(summary, "achievement")
    assert references(achievements, "goal") == [f"Goal/job-{uid}", f"Goal/walk-{uid}"]
    first, second = (one(a, "achievedOn")["valueDateTime"] for a in achievements)
    assert first > second
    assert one(achievements[0], "domain")["valueCode"] == "professional"
    medical = domain_part(summary, "medical")
    # Within a domain: achieved goals first, then the others by due date.
    assert references(params(medical, "goal"), "goal") == [f"Goal/walk-{uid}", f"Goal/home-{uid}"]

    # Falling back from achieved ends the achievement; reaching it again dates it anew.
    await _set_achievement(client, job, "not-achieved")
    summary = await _summary(client, case["case"])
    assert references(params(summary, "achievement"), "goal") == [f"Goal/walk-{uid}"]


async def _statements_for(backend, client, url: str) -> int:
    audit = getattr(backend.app.state, "relais_audit", None)
    if audit is not None:
        await audit.flush()
    engine = backend.app.state.relais.engine
    seen: list[str] = []

    def listener(_conn, _cursor, statement, *_args) -> None:
        # The operation's own reads; not a token renewal or the audit trail's writes.
        text = statement.lstrip().upper()
        if text.startswith("SELECT") and "RESOURCE_" in text:
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", listener)
    try:
        r = await client.get(url)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", listener)
    assert r.status_code == 200, r.text
    return len(seen)


async def test_summary_runs_a_fixed_number_of_statements(backend, client, uid, monkeypatch):
    # The client-revocation check runs at most once a second: keep it out of the count.
    monkeypatch.setattr(backend.app.state.relais_auth, "ACTIVE_TTL", 3600.0)
    small, big = small_case(uid), small_case(uid + "x")
    await _load(
        client, [*small["resources"], goal(f"g-{uid}", small["patient"], "social", "achieved")]
    )
    p, c, partner = big["patient"], big["case"], f"Organization/{big['partner']}"
    many: list[dict[str, Any]] = []
    for n, code in enumerate(["medical", "social", "legal", "financial", "professional"] * 6):
        many.append(goal(f"g{n}-{uid}", p, code, "achieved" if n % 3 else "improving"))
        many.append(task(f"t{n}-{uid}", p, code, "requested", partner))
        many.append(charge(f"c{n}-{uid}", p, c, "PGPA", "planned", 100.0 + n))
    await _load(client, [*big["resources"], *many])
    await _summary(client, small["case"])  # warm up (token, caches)
    url = "/fhir/EpisodeOfCare/{}/$case-summary"
    few = await _statements_for(backend, client, url.format(small["case"]))
    lots = await _statements_for(backend, client, url.format(big["case"]))
    assert few == lots, (few, lots)
    assert lots <= 6  # case, domains, records, goal history, names


async def test_unknown_or_misdirected_case_summary(client, uid):
    r = await client.get(f"/fhir/EpisodeOfCare/nope-{uid}/$case-summary")
    assert r.status_code == 404
    r = await client.get(f"/fhir/Patient/nope-{uid}/$case-summary")
    assert r.status_code == 404
    r = await client.delete(DEMO_SUMMARY)
    assert r.status_code in (404, 405)
