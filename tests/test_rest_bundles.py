"""Batch (independent entries) and transaction (all-or-nothing, urn:uuid rewriting)."""

from __future__ import annotations

from sqlalchemy import event

from tests.case_support import domain
from tests.support import FHIR, patient

# AuditEvents are written for every request (in the background): not counted.
COUNT_SQL = "SELECT count(*) FROM resource_version WHERE type <> 'AuditEvent'"


def entry(method, url, resource=None, full_url=None, **request):
    e = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        e["resource"] = resource
    if full_url:
        e["fullUrl"] = full_url
    return e


async def test_transaction_rewrites_urn_uuid(client, uid):
    pat = "urn:uuid:11111111-1111-4111-8111-" + uid
    org = "urn:uuid:22222222-2222-4222-8222-" + uid
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            # The patient references the organisation that comes after it.
            entry("POST", "Patient", patient(uid, managingOrganization={"reference": org}), pat),
            entry("POST", "Organization", {"resourceType": "Organization", "name": uid}, org),
        ],
    }
    r = await client.post("/fhir", json=bundle, headers=FHIR)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    assert [e["response"]["status"] for e in out["entry"]] == ["201 Created", "201 Created"]
    pid = out["entry"][0]["resource"]["id"]
    oid = out["entry"][1]["resource"]["id"]
    got = (await client.get(f"/fhir/Patient/{pid}")).json()
    assert got["managingOrganization"]["reference"] == f"Organization/{oid}"


async def test_transaction_is_all_or_nothing(backend, client, uid):
    before = await backend.scalar(COUNT_SQL)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            entry("POST", "Patient", patient(uid)),
            entry("POST", "Patient", {"resourceType": "Patient", "gender": "bogus"}),
        ],
    }
    r = await client.post("/fhir", json=bundle, headers=FHIR)
    assert r.status_code == 422
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "Bundle.entry[1]" in r.json()["issue"][0]["diagnostics"]
    assert await backend.scalar(COUNT_SQL) == before


async def test_transaction_order_delete_post_put_get(client, uid):
    r = await client.post("/fhir/Patient", json=patient(uid), headers=FHIR)
    victim = r.json()["id"]
    pid = f"t-{uid}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            entry("GET", f"Patient/{pid}"),
            entry("PUT", f"Patient/{pid}", patient("Put", id=pid)),
            entry("POST", "Patient", patient("Posted")),
            entry("DELETE", f"Patient/{victim}"),
        ],
    }
    r = await client.post("/fhir", json=bundle, headers=FHIR)
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    # GET runs last, so it sees the PUT of the same transaction.
    assert statuses == ["200 OK", "201 Created", "201 Created", "204 No Content"]
    assert r.json()["entry"][0]["resource"]["name"][0]["family"] == "Put"
    assert (await client.get(f"/fhir/Patient/{victim}")).status_code == 410


async def test_batch_entries_are_independent(backend, client, uid):
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            entry("POST", "Patient", patient(uid)),
            entry("POST", "Patient", {"resourceType": "Patient", "gender": "bogus"}),
            entry("GET", "Patient/does-not-exist"),
            entry("PUT", f"Patient/b-{uid}", patient(uid, id=f"b-{uid}")),
        ],
    }
    r = await client.post("/fhir", json=bundle, headers=FHIR)
    assert r.status_code == 200
    out = r.json()
    assert out["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses[0] == "201 Created" and statuses[3] == "201 Created"
    assert statuses[1] == "422" and statuses[2] == "404"
    assert out["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert (await client.get(f"/fhir/Patient/b-{uid}")).status_code == 200


async def test_bad_bundles(client):
    r = await client.post(
        "/fhir", json={"resourceType": "Bundle", "type": "collection"}, headers=FHIR
    )
    assert r.status_code == 400
    r = await client.post("/fhir", json=patient(), headers=FHIR)
    assert r.status_code == 400
    bad = {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": patient()}]}
    r = await client.post("/fhir", json=bad, headers=FHIR)
    assert r.status_code == 400
    bad = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "TRACE", "url": "Patient"}}],
    }
    r = await client.post("/fhir", json=bad, headers=FHIR)
    assert r.status_code == 400


async def test_conditional_create_on_id(client, uid):
    pid = f"c-{uid}"
    await client.put(f"/fhir/Patient/{pid}", json=patient(uid, id=pid), headers=FHIR)
    r = await client.post(
        "/fhir/Patient", json=patient(uid), headers={**FHIR, "If-None-Exist": f"_id={pid}"}
    )
    assert r.status_code == 200 and r.json()["id"] == pid
    r = await client.post(
        "/fhir/Patient", json=patient(uid), headers={**FHIR, "If-None-Exist": f"_id=x{pid}"}
    )
    assert r.status_code == 201


async def test_conditional_update_and_delete(client, uid):
    pid = f"u-{uid}"
    r = await client.put(f"/fhir/Patient?_id={pid}", json=patient(uid, id=pid), headers=FHIR)
    assert r.status_code == 201
    r = await client.put(f"/fhir/Patient?_id={pid}", json=patient("Neuf"), headers=FHIR)
    assert r.status_code == 200 and r.json()["id"] == pid
    r = await client.delete(f"/fhir/Patient?_id={pid}")
    assert r.status_code == 204
    assert (await client.get(f"/fhir/Patient/{pid}")).status_code == 410


async def test_transaction_creates_are_written_together_and_seen_by_later_entries(
    backend, client, uid
):
    """A transaction's creates are held and written in one statement; a rule that reads
    an earlier entry (a domain plan's master plan) sees it, and the created order is
    the entries' order."""
    urn = "urn:uuid:{}-0000-4000-8000-" + uid[:12].ljust(12, "0")
    pat, master, medical = (urn.format(n) for n in ("aaaaaaaa", "bbbbbbbb", "cccccccc"))
    plan = {"resourceType": "CarePlan", "status": "active", "intent": "plan"}
    entries = [
        entry("POST", "Patient", patient(uid), pat),
        entry("POST", "CarePlan", {**plan, "subject": {"reference": pat}}, master),
        entry(
            "POST",
            "CarePlan",
            {
                **plan,
                "subject": {"reference": pat},
                "category": [domain("medical")],
                "partOf": [{"reference": master}],
            },
            medical,
        ),
    ]
    goals = [
        {
            "resourceType": "Goal",
            "lifecycleStatus": "active",
            "category": [domain("medical")],
            "description": {"text": f"objectif {n} {uid}"},
            "subject": {"reference": pat},
        }
        for n in range(4)
    ]
    entries += [entry("POST", "Goal", g) for g in goals]
    inserts: dict[str, int] = {"resource_version": 0, "resource_current": 0}

    def listener(_conn, _cursor, statement, parameters, *_args):
        for table in inserts:
            if f"INSERT INTO {table}" in statement and uid in str(parameters):
                inserts[table] += 1

    engine = backend.app.state.relais.engine
    event.listen(engine.sync_engine, "before_cursor_execute", listener)
    try:
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        r = await client.post("/fhir", json=bundle, headers=FHIR)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", listener)
    assert r.status_code == 200, r.text
    out = [e["resource"] for e in r.json()["entry"]]
    # The rule read the master plan before the rest was written: two statements per
    # table, one with the patient, one with the goals (not one per resource: 5 with the
    # uid), on SQLite too.
    assert inserts == {"resource_version": 2, "resource_current": 2}
    pid = out[0]["id"]
    assert out[2]["partOf"][0]["reference"] == f"CarePlan/{out[1]['id']}"
    for resource in out:
        got = await client.get(f"/fhir/{resource['resourceType']}/{resource['id']}")
        assert got.status_code == 200 and got.json() == resource
    found = (await client.get("/fhir/Goal", params={"subject": f"Patient/{pid}"})).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [g["id"] for g in out[3:]]
