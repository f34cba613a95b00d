"""Search over the HTTP surface (issue 3, points 1, 6-8): GET and POST, handling,
the CapabilityStatement, Bundle entries, conditional operations and `relais reindex`."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy import delete, select
from typer.testing import CliRunner

from app.cli import cli
from app.db.tables import resource_current as cur
from app.fhir.search.registry import params_for
from app.fhir.search.tables import TABLES
from app.fhir.types import SUPPORTED_TYPES
from tests.search_helpers import SYS, create, goal, included, matches, person, search
from tests.support import FHIR

STRICT = {"Prefer": "handling=strict"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def self_params(bundle):
    url = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    return parse_qsl(urlsplit(url).query)


def comparable(bundle):
    return [
        (e["search"]["mode"], e.get("fullUrl"), e["resource"].get("id")) for e in bundle["entry"]
    ]


async def test_get_and_post_search_agree(client, uid):
    pid = await create(client, person(uid, f"Poste{uid}", "P"))
    await create(client, goal(f"Patient/{pid}"))
    query = f"name=poste{uid}&_revinclude=Goal:subject&_sort=-_lastUpdated&_count=5"
    by_get = await search(client, f"/fhir/Patient?{query}")
    r = await client.post("/fhir/Patient/_search", content=query, headers=FORM)
    assert r.status_code == 200, r.text
    by_post = r.json()
    assert comparable(by_get) == comparable(by_post)
    assert by_get["total"] == by_post["total"] == 1
    assert self_params(by_get) == self_params(by_post)
    # Parameters may be split between the URL and the form body.
    r = await client.post(
        f"/fhir/Patient/_search?name=poste{uid}", content="_count=5", headers=FORM
    )
    assert matches(r.json()) == [pid]


async def test_strict_and_lenient_handling(client, uid):
    pid = await create(client, person(uid, f"Strict{uid}", "S"))
    bad = [
        ("nonsense", "1"),  # unknown parameter
        ("birthdate", "yesterday"),  # malformed date
        ("gender:exact", "male"),  # modifier the type does not have
        ("_count", "many"),
        ("_sort", "nope"),
        ("_include", "Patient:nope"),
        ("_total", "maybe"),
    ]
    for name, value in bad:
        r = await client.get("/fhir/Patient", params={name: value}, headers=STRICT)
        assert r.status_code == 400, (name, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
        assert name in r.json()["issue"][0]["diagnostics"]
    # Lenient (the default): ignored, reported, and left out of the self link.
    params = [("family", f"strict{uid}"), *bad, ("_count", "2")]
    bundle = await search(client, "/fhir/Patient", params)
    assert matches(bundle) == [pid]
    outcome = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert len(outcome) == 1
    diagnostics = " ".join(i["diagnostics"] for i in outcome[0]["resource"]["issue"])
    for name, _value in bad:
        assert name in diagnostics
    assert self_params(bundle) == [("family", f"strict{uid}"), ("_count", "2")]
    # Lenient handling said explicitly; empty values are simply ignored.
    r = await client.get(
        "/fhir/Patient",
        params={"family": f"strict{uid}", "gender": ""},
        headers={"Prefer": "handling=lenient"},
    )
    assert matches(r.json()) == [pid] and self_params(r.json()) == [("family", f"strict{uid}")]


async def test_capability_statement_lists_search(client):
    r = await client.get("/fhir/metadata")
    statement = r.json()
    rest = statement["rest"][0]
    by_type = {entry["type"]: entry for entry in rest["resource"]}
    patient = by_type["Patient"]
    names = {p["name"] for p in patient["searchParam"]}
    assert {"_id", "_lastUpdated", "_tag", "_security", "_profile", "name", "identifier"} <= names
    assert all(p["definition"].startswith("http") and p["type"] for p in patient["searchParam"])
    assert "Patient:organization" in patient["searchInclude"]
    assert {"Goal:subject", "CareTeam:subject", "*"} <= set(patient["searchRevInclude"])
    claim = {p["name"] for p in by_type["EpisodeOfCare"]["searchParam"]}
    assert "claim-number" in claim  # Relais' own parameters are listed the same way
    assert {p["name"] for p in rest["searchParam"]} >= {"_id", "_lastUpdated", "_tag"}
    for rtype in SUPPORTED_TYPES:
        listed = {p["name"] for p in by_type[rtype]["searchParam"]}
        assert listed == set(params_for(rtype)), rtype


def _sample(kind: str, components=()) -> str:
    samples = {
        "token": "x",
        "string": "x",
        "reference": "x",
        "date": "ge2026",
        "number": "1",
        "quantity": "1",
        "uri": "http://x",
    }
    if kind == "composite":
        return "$".join(samples[c.type] for c in components)
    return samples[kind]


async def test_every_listed_parameter_is_accepted(client):
    for rtype in SUPPORTED_TYPES:
        for code, param in params_for(rtype).items():
            value = _sample(param.type, param.components)
            r = await client.get(f"/fhir/{rtype}", params={code: value}, headers=STRICT)
            assert r.status_code == 200, (rtype, code, r.text)
            if param.type == "composite" or param.column is not None:
                continue
            missing = {f"{code}:missing": "true", "_summary": "count"}
            r = await client.get(f"/fhir/{rtype}", params=missing, headers=STRICT)
            assert r.status_code == 200, (rtype, code, r.text)


async def test_searches_in_batch_and_transaction(client, uid):
    pid = await create(client, person(uid, f"Lot{uid}", "L"))
    gid = await create(client, goal(f"Patient/{pid}"))
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Patient?identifier={SYS}|{uid}-Lot{uid}"}},
            {
                "request": {
                    "method": "GET",
                    "url": f"Goal?subject=Patient/{pid}&_include=Goal:subject",
                }
            },
            {"request": {"method": "GET", "url": "Goal?nonsense=1"}},
        ],
    }
    r = await client.post("/fhir", json=batch, headers=FHIR)
    assert r.status_code == 200, r.text
    first, second, third = (e["resource"] for e in r.json()["entry"])
    assert first["type"] == "searchset" and matches(first) == [pid]
    assert matches(second) == [gid] and included(second) == [f"Patient/{pid}"]
    assert any(e["search"]["mode"] == "outcome" for e in third["entry"])
    # In a transaction the searches run last and see the entries written before them.
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "GET", "url": f"Patient?family=neuf{uid}"}},
            {
                "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{uid}",
                "resource": person(uid, f"Neuf{uid}", "N"),
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    r = await client.post("/fhir", json=transaction, headers=FHIR)
    assert r.status_code == 200, r.text
    found = r.json()["entry"][0]["resource"]
    assert (
        found["total"] == 1 and found["entry"][0]["resource"]["name"][0]["family"] == f"Neuf{uid}"
    )


async def test_conditional_operations_on_identifier(client, uid):
    body = person(uid, f"Cond{uid}", "C")
    condition = f"identifier={SYS}|{uid}-Cond{uid}"
    r = await client.post("/fhir/Patient", json=body, headers={**FHIR, "If-None-Exist": condition})
    assert r.status_code == 201
    pid = r.json()["id"]
    r = await client.post("/fhir/Patient", json=body, headers={**FHIR, "If-None-Exist": condition})
    assert r.status_code == 200 and r.json()["id"] == pid
    # In a transaction, twice in a row: the second finds the first.
    for _ in range(2):
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{uid}",
                    "resource": person(uid, f"Trans{uid}", "T"),
                    "request": {
                        "method": "POST",
                        "url": "Patient",
                        "ifNoneExist": f"identifier={SYS}|{uid}-Trans{uid}",
                    },
                },
                {
                    "resource": goal(f"urn:uuid:00000000-0000-4000-8000-{uid}"),
                    "request": {"method": "POST", "url": "Goal"},
                },
            ],
        }
        r = await client.post("/fhir", json=bundle, headers=FHIR)
        assert r.status_code == 200, r.text
    bundle = await search(
        client,
        "/fhir/Patient",
        {"identifier": f"{SYS}|{uid}-Trans{uid}", "_revinclude": "Goal:subject"},
    )
    assert len(matches(bundle)) == 1 and len(included(bundle)) == 2
    # Conditional update and delete by identifier.
    r = await client.put(
        f"/fhir/Patient?{condition}", json={**body, "gender": "other"}, headers=FHIR
    )
    assert r.status_code == 200 and r.json()["id"] == pid
    r = await client.delete(f"/fhir/Patient?{condition}")
    assert r.status_code == 204
    assert (await client.get(f"/fhir/Patient/{pid}")).status_code == 410
    # A condition naming an unknown parameter is refused.
    r = await client.post("/fhir/Patient", json=body, headers={**FHIR, "If-None-Exist": "nope=1"})
    assert r.status_code == 400


async def index_places(engine, pid):
    """The resource's created_seq, and those its index rows carry."""
    async with engine.connect() as conn:
        where = (cur.c.type == "Patient", cur.c.res_id == pid)
        own = await conn.scalar(select(cur.c.created_seq).where(*where))
        carried = set()
        for table in TABLES.values():
            query = select(table.c.created_seq).where(table.c.type == "Patient")
            carried |= set((await conn.scalars(query.where(table.c.res_id == pid))).all())
    return own, carried


async def test_reindex_command(backend, client, uid, monkeypatch):
    pid = await create(client, person(uid, f"Index{uid}", "I"))
    engine = backend.app.state.relais.engine
    # An update rewrites index rows: they keep the place of the resource's creation.
    await create(client, person(uid, "Autre", "A"))
    changed = person(uid, f"Index{uid}", "I", gender="female", id=pid)
    assert (await client.put(f"/fhir/Patient/{pid}", json=changed, headers=FHIR)).status_code == 200
    own, carried = await index_places(engine, pid)
    assert carried == {own}
    async with engine.begin() as conn:
        for table in TABLES.values():
            await conn.execute(
                delete(table).where(table.c.type == "Patient", table.c.res_id == pid)
            )
    assert matches(await search(client, "/fhir/Patient", {"family": f"index{uid}"})) == []
    env = {"RELAIS_DATABASE_URL": backend.url, "RELAIS_BASE_URL": backend.settings.base_url}
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["reindex", "Patient"], env=env)
    assert result.exit_code == 0, result.output
    assert matches(await search(client, "/fhir/Patient", {"family": f"index{uid}"})) == [pid]
    assert await index_places(engine, pid) == (own, {own})
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["reindex", "Nope"], env=env)
    assert result.exit_code == 2


async def test_reference_rows_carry_their_target_place(backend, client, uid):
    """A reference row carries its target's created_seq, as written and after a reindex
    of its resource's type: what _has pages by."""
    pid = await create(client, person(uid, "Cible", "C"))
    gid = await create(client, goal(f"Patient/{pid}"))
    engine = backend.app.state.relais.engine
    ref = TABLES["reference"]
    query = select(ref.c.target_seq).where(
        ref.c.type == "Goal", ref.c.res_id == gid, ref.c.param == "subject"
    )
    own, _ = await index_places(engine, pid)
    async with engine.connect() as conn:
        assert (await conn.scalars(query)).all() == [own]
    env = {"RELAIS_DATABASE_URL": backend.url, "RELAIS_BASE_URL": backend.settings.base_url}
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["reindex", "Goal"], env=env)
    assert result.exit_code == 0, result.output
    async with engine.connect() as conn:
        assert (await conn.scalars(query)).all() == [own]


async def test_conformance_resources_are_indexed(client):
    # Stored at start by the case model, through the engine: searchable like any other.
    bundle = await search(
        client, "/fhir/CodeSystem", {"url": "https://relais.dev/fhir/CodeSystem/case-domain"}
    )
    assert len(matches(bundle)) == 1
    bundle = await search(client, "/fhir/SubscriptionTopic", {"_summary": "count"})
    assert bundle["total"] >= 1


async def test_odd_values_never_fail(client, uid):
    await create(client, person(uid, f"Odd{uid}", "O"))
    odd = [
        ("birthdate", "ap9999"),
        ("birthdate", "ap0001"),
        ("birthdate", "2026-13-45"),
        ("name", "%"),
        ("name", "_"),
        ("name", "\\"),
        ("identifier", "a|b|c"),
        ("identifier", "|"),
        ("_count", "99999999999999999999"),
        ("_after", "!!!"),
        ("_before", "eyJ4IjoxfQ"),
        ("_snapshot", "-1"),
        ("_sort", ""),
        ("_sort", "-"),
        ("general-practitioner", "Patient/x/_history/1"),
        ("_has:Goal", "x"),
        ("_include", "*:*"),
        ("_revinclude:weird", "Goal:subject"),
    ]
    for name, value in odd:
        for headers in ({}, STRICT):
            r = await client.get("/fhir/Patient", params={name: value}, headers=headers)
            assert r.status_code in (200, 400), (name, value, r.status_code, r.text)
    r = await client.get("/fhir/Observation", params={"value-quantity": "1e400"})
    assert r.status_code == 200


async def test_index_rows_commit_with_the_resource(backend, client, uid):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": person(uid, f"Annule{uid}", "A"),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {"resourceType": "Patient", "gender": "bogus"},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    r = await client.post("/fhir", json=bundle, headers=FHIR)
    assert r.status_code == 422
    sql = "SELECT count(*) FROM search_string WHERE value_norm = :v"
    assert await backend.scalar(sql, v=f"annule{uid}") == 0
    assert matches(await search(client, "/fhir/Patient", {"family": f"annule{uid}"})) == []
    pid = await create(client, person(uid, f"Garde{uid}", "G"))
    assert await backend.scalar(sql, v=f"garde{uid}") == 3  # name, family, phonetic
    # An update replaces the rows; a delete removes them.
    body = {**person(uid, f"Change{uid}", "C"), "id": pid}
    assert (await client.put(f"/fhir/Patient/{pid}", json=body, headers=FHIR)).status_code == 200
    assert await backend.scalar(sql, v=f"garde{uid}") == 0
    assert await backend.scalar(sql, v=f"change{uid}") == 3
    assert (await client.delete(f"/fhir/Patient/{pid}")).status_code == 204
    assert await backend.scalar("SELECT count(*) FROM search_token WHERE res_id = :i", i=pid) == 0
