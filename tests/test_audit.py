"""Provenance for every write, AuditEvent for every read, search, write and denial."""

from __future__ import annotations

import dataclasses

import orjson
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.provenance import Provenance
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from app.audit.provenance import CLIENT_ID_SYSTEM
from app.db.tables import resource_current as cur
from app.fhir.search.extract import extract_index
from app.fhir.search.tables import TABLES
from tests.access_case import build_case
from tests.auth_support import FHIR

WRITE_ALL = "system/*.cruds"


def entries(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", [])]


async def flush(backend) -> None:
    await backend.app.state.relais_audit.flush()


async def test_every_write_has_a_provenance(backend, client, uid):
    case = await build_case(backend, uid, scope=WRITE_ALL)
    hospital = case.hospital
    body = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Scanner"},
        "subject": {"reference": f"Patient/{case.patient}"},
    }
    r = await hospital.http.post("/fhir/Observation", json=body, headers=FHIR)
    assert r.status_code == 201, r.text
    oid = r.json()["id"]
    r = await hospital.http.put(
        f"/fhir/Observation/{oid}", json={**r.json(), "status": "amended"}, headers=FHIR
    )
    assert r.status_code == 200
    assert (await hospital.http.delete(f"/fhir/Observation/{oid}")).status_code in (200, 204)

    r = await client.get(f"/fhir/Provenance?target=Observation/{oid}&_count=50")
    assert r.status_code == 200, r.text
    found = entries(r.json())
    activities = sorted(p["activity"]["coding"][0]["code"] for p in found)
    assert activities == ["CREATE", "DELETE", "UPDATE"]
    for provenance in found:
        Provenance.model_validate(provenance)  # a valid R4B Provenance
        author, enterer = provenance["agent"][:2]
        assert author["who"] == {"reference": hospital.organization}
        assert enterer["who"]["identifier"] == {
            "system": CLIENT_ID_SYSTEM,
            "value": hospital.client_id,
        }
        assert provenance["target"][0]["reference"].startswith(f"Observation/{oid}/_history/")
    # As visible as their target: the insurer sees neither.
    r = await case.insurer.http.get(f"/fhir/Provenance?target=Observation/{oid}")
    assert r.json()["total"] == 0


async def test_transaction_entries_get_their_provenance(backend, client, uid):
    patient_urn = "urn:uuid:0b4b1c0e-1111-4a55-9f7e-000000000001"
    observations = [
        {
            "resource": {
                "resourceType": "Observation",
                "status": status,
                "code": {"text": uid},
                "subject": {"reference": patient_urn},
            },
            "request": {"method": "POST", "url": "Observation"},
        }
        for status in ("final", "preliminary")
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient_urn,
                "resource": {"resourceType": "Patient", "gender": "other"},
                "request": {"method": "POST", "url": "Patient"},
            },
            *observations,
        ],
    }
    r = await client.post("/fhir", json=bundle, headers=FHIR)
    assert r.status_code == 200, r.text
    targets = [e["response"]["location"].split("/fhir/", 1)[1] for e in r.json()["entry"]]
    recorded = {}
    for target in targets:
        r = await client.get(f"/fhir/Provenance?target={target}")
        assert r.json()["total"] == 1, target
        recorded[target] = entries(r.json())[0]
    # One Provenance per activity, compartment and domain: the two Observations (same
    # case, medical) share theirs; the Patient has its own.
    patient, first, second = targets
    assert recorded[first]["id"] == recorded[second]["id"] != recorded[patient]["id"]
    listed = {t["reference"] for t in recorded[first]["target"]}
    assert listed == {first, second}  # locations name the version: Type/id/_history/1
    Provenance.model_validate(recorded[first])


async def test_a_refused_batch_entry_leaves_no_provenance_or_index_rows(backend, client, uid):
    """Provenances and index rows are written at the end of each batch entry; an entry
    refused after its write (the insurer may not see medical data) leaves none behind."""
    case = await build_case(backend, uid, scope=WRITE_ALL)
    hidden = f"refused-{uid}"
    observation = {
        "resourceType": "Observation",
        "id": hidden,
        "status": "final",
        "code": {"text": "Scanner"},
        "subject": {"reference": f"Patient/{case.patient}"},
    }
    charge = (await client.get(f"/fhir/ChargeItem/cost-{uid}")).json()
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": observation, "request": {"method": "PUT", "url": f"Observation/{hidden}"}},
            {
                "resource": {**charge, "status": "billed"},
                "request": {"method": "PUT", "url": f"ChargeItem/cost-{uid}"},
            },
        ],
    }
    r = await case.insurer.http.post("/fhir", json=bundle, headers=FHIR)
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses[0].startswith("403") and statuses[1].startswith("200"), statuses

    assert (await client.get(f"/fhir/Observation/{hidden}")).status_code == 404
    for query in (
        f"/fhir/Provenance?target=Observation/{hidden}",
        f"/fhir/Observation?_id={hidden}",
        f"/fhir/Observation?code:text=scanner&subject=Patient/{case.patient}",
    ):
        assert (await client.get(query)).json()["total"] == 0, query
    for table in TABLES.values():
        count = f"SELECT count(*) FROM {table.name} WHERE res_id = :rid"
        assert await backend.scalar(count, rid=hidden) == 0, table.name
    r = await client.get(f"/fhir/Provenance?target=ChargeItem/cost-{uid}")
    targets = [t["reference"] for p in entries(r.json()) for t in p["target"]]
    assert f"ChargeItem/cost-{uid}/_history/2" in targets, targets


async def test_every_request_and_denial_has_an_audit_event(backend, client, uid):
    case = await build_case(backend, uid, scope="system/*.rs system/Observation.c")
    insurer = case.insurer
    calls = [
        ("GET", f"/fhir/ChargeItem/cost-{uid}", 200, "read"),
        ("GET", f"/fhir/Observation/obs-{uid}", 404, "read"),  # hidden by the rule
        ("GET", f"/fhir/ChargeItem?_id=cost-{uid}", 200, "search-type"),
        ("GET", f"/fhir/ChargeItem/cost-{uid}/_history/1", 200, "vread"),
        ("DELETE", f"/fhir/ChargeItem/cost-{uid}", 403, "delete"),  # scope denies
        ("POST", "/fhir/Observation", 403, "create"),  # medical not consented
    ]
    body = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": f"Patient/{case.patient}"},
    }
    for method, path, status, _ in calls:
        kwargs = {"json": body, "headers": FHIR} if method == "POST" else {}
        r = await insurer.http.request(method, path, **kwargs)
        assert r.status_code == status, (path, r.text)
    r = await client.get("/fhir/Patient", auth=None)  # no token at all
    assert r.status_code == 401
    await flush(backend)

    r = await client.get(f"/fhir/AuditEvent?altid={insurer.client_id}&_count=100")
    assert r.status_code == 200, r.text
    events = entries(r.json())
    for event in events:
        AuditEvent.model_validate(event)  # a valid R4B AuditEvent
        assert event["agent"][0]["who"] == {"reference": insurer.organization}
    got = {
        (e["subtype"][0]["code"], e["outcome"], e["outcomeDesc"].split(" ")[1])
        for e in events
        if e["type"]["code"] == "rest"
    }
    for _, _path, status, interaction in calls:
        outcome = "0" if status < 400 else "4"
        assert (interaction, outcome, str(status)) in got, (interaction, status, got)
    search = next(e for e in events if e["subtype"][0]["code"] == "search-type")
    query = next(x for x in search["entity"] if "query" in x)
    assert query["description"].endswith(f"_id=cost-{uid}")
    # The token request that started it all is audited as a login.
    logins = [e for e in events if e["type"]["code"] == "110114"]
    assert logins and logins[0]["outcome"] == "0"

    r = await client.get("/fhir/AuditEvent?outcome=4&agent-name=unauthenticated&_count=1")
    assert r.status_code == 200
    r = await client.get("/fhir/AuditEvent?outcome=4&_count=200&_sort=-date")
    assert any(
        e["agent"][0]["who"].get("display") == "unauthenticated caller" for e in entries(r.json())
    )


async def test_partners_cannot_alter_audit_events(backend, client, uid):
    await client.get(f"/fhir/Patient?_id={uid}")
    await flush(backend)
    event = entries((await client.get("/fhir/AuditEvent?_count=1")).json())[0]
    url = f"/fhir/AuditEvent/{event['id']}"
    # Even the all-access client: the server writes the audit trail, nobody else.
    assert (await client.post("/fhir/AuditEvent", json=event, headers=FHIR)).status_code == 405
    assert (await client.put(url, json=event, headers=FHIR)).status_code == 405
    assert (await client.delete(url)).status_code == 405
    patch = [{"op": "replace", "path": "/outcome", "value": "0"}]
    headers = {"Content-Type": "application/json-patch+json"}
    assert (await client.patch(url, json=patch, headers=headers)).status_code == 405
    assert (await client.get(url)).json()["meta"]["versionId"] == "1"


async def test_audit_events_follow_the_access_rule(backend, client, uid):
    case = await build_case(backend, uid, scope="system/*.rs")
    await case.hospital.http.get(f"/fhir/Observation/obs-{uid}")
    await case.hospital.http.get(f"/fhir/Observation?_id=obs-{uid}")
    await flush(backend)
    url = f"/fhir/AuditEvent?altid={case.hospital.client_id}&subtype=read,search-type"
    assert r_total(await client.get(url)) == 2
    # The hospital sees the event about a medical record it may see; a search's event
    # (who looked for what, across cases) only clients registered for all beneficiaries.
    assert r_total(await case.hospital.http.get(url)) == 1
    assert r_total(await case.insurer.http.get(url)) == 0
    assert r_total(await case.manager.http.get(url)) == 1


def r_total(response) -> int:
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


async def test_audit_failures_never_fail_requests(backend, client, uid, tmp_path):
    trail = backend.app.state.relais_audit
    await trail.flush()
    broken = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/missing/dir/audit.db")
    real_state = trail.state
    trail.state = dataclasses.replace(real_state, engine=broken)
    dropped = trail.dropped
    try:
        r = await client.get(f"/fhir/Patient?_id={uid}")
        assert r.status_code == 200
        assert await trail.flush() == 0
        assert trail.dropped > dropped
    finally:
        trail.state = real_state
        await broken.dispose()
    r = await client.get(f"/fhir/Patient?_id={uid}")
    assert r.status_code == 200
    assert await trail.flush() >= 1


async def test_audit_index_rows_are_those_of_the_general_extractor(backend, client, uid):
    """AuditEvents and Provenances are indexed by a builder that knows their shape; what
    it writes must be what `relais reindex` (the FHIRPath extractor) would write."""
    case = await build_case(backend, uid, scope="system/*.cruds")
    insurer = case.insurer
    created = f"cost-{uid}"
    r = await insurer.http.get(f"/fhir/ChargeItem/{created}")
    r = await insurer.http.put(
        f"/fhir/ChargeItem/{created}", json={**r.json(), "status": "billed"}, headers=FHIR
    )
    assert r.status_code == 200, r.text
    patient = (await client.get(f"/fhir/Patient/{case.patient}")).json()
    r = await client.put(f"/fhir/Patient/{case.patient}", json=patient, headers=FHIR)
    assert r.status_code == 200, r.text  # a Provenance whose target is a Patient
    for path in (
        f"/fhir/ChargeItem/{created}",
        f"/fhir/ChargeItem/{created}/_history/1",
        f"/fhir/ChargeItem?subject=Patient/{case.patient}",
        f"/fhir/Patient/{case.patient}",
        f"/fhir/Observation/obs-{uid}",
        "/fhir/_history?_count=1",
    ):
        await insurer.http.get(path)
    await client.get("/fhir/Patient", auth=None)
    await flush(backend)

    state = backend.app.state.relais
    async with state.engine.connect() as conn:
        records = select(cur.c.type, cur.c.res_id, cur.c.content, cur.c.created_seq).where(
            cur.c.type.in_(("AuditEvent", "Provenance"))
        )
        found = (await conn.execute(records)).all()
        events = {(r.type, r.res_id): orjson.loads(r.content) for r in found}
        created = {(r.type, r.res_id): r.created_seq for r in found}
        stored: dict[str, dict[str, set]] = {rid: {} for rid in events}
        for kind, table in TABLES.items():
            query = select(table).where(table.c.type.in_(("AuditEvent", "Provenance")))
            for row in (await conn.execute(query)).mappings():
                key = (row["type"], row["res_id"])
                assert row["created_seq"] == created[key]  # the resource's place in order
                skip = ("type", "res_id", "created_seq", "target_seq")  # looked up on write
                values = tuple(v for k, v in row.items() if k not in skip)
                stored[key].setdefault(kind, set()).add(values)
    assert sum(1 for key in events if key[0] == "AuditEvent") >= 9
    assert sum(1 for key in events if key[0] == "Provenance") >= 2
    params = set()
    for key, record in events.items():
        rows = extract_index(key[0], record, state.settings.fhir_base)
        expected = {k: set(map(tuple, getattr(rows, k))) for k in TABLES}
        expected = {k: v for k, v in expected.items() if v}
        assert stored[key] == expected, (record, stored[key], expected)
        params |= {(key[0], row[0]) for found in expected.values() for row in found}
    assert ("Provenance", "patient") in params and ("AuditEvent", "patient") in params
