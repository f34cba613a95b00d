"""Result parameters (issue 3, point 5): includes, sort, count, total, summary, paging."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from app.fhir.search.parts import Built
from tests.search_helpers import SYS, create, goal, included, matches, person, search, task
from tests.support import watching

WRITES = re.compile(r"\b(INSERT|UPDATE|DELETE)\b")


def link(bundle, relation):
    found = [entry["url"] for entry in bundle["link"] if entry["relation"] == relation]
    return found[0] if found else None


async def follow(client, url):
    r = await client.get(url.removeprefix("http://relais.test"))
    assert r.status_code == 200, r.text
    return r.json()


async def test_include_revinclude_iterate_and_star(client, uid):
    org = await create(client, {"resourceType": "Organization", "name": f"Org {uid}"})
    pid = await create(
        client,
        person(uid, "Inclus", "I", managingOrganization={"reference": f"Organization/{org}"}),
    )
    g1 = await create(client, goal(f"Patient/{pid}", "g1"))
    g2 = await create(client, goal(f"Patient/{pid}", "g2"))
    t1 = await create(
        client,
        task(**{"for": {"reference": f"Patient/{pid}"}, "focus": {"reference": f"Goal/{g1}"}}),
    )

    bundle = await search(client, "/fhir/Goal", {"_id": f"{g1},{g2}", "_include": "Goal:subject"})
    assert sorted(matches(bundle)) == sorted([g1, g2])
    assert included(bundle) == [f"Patient/{pid}"]  # once, though both goals point at it
    assert bundle["total"] == 2  # includes are not counted
    modes = [e["search"]["mode"] for e in bundle["entry"]]
    assert modes == ["match", "match", "include"]

    bundle = await search(client, "/fhir/Goal", {"_id": g1, "_include": "Goal:subject:Patient"})
    assert included(bundle) == [f"Patient/{pid}"]
    bundle = await search(client, "/fhir/Goal", {"_id": g1, "_include": "Goal:subject:Group"})
    assert included(bundle) == []
    bundle = await search(client, "/fhir/Goal", {"_id": g1, "_include": "*"})
    assert included(bundle) == [f"Patient/{pid}"]

    # :iterate follows the included Patient to its Organization.
    params = [
        ("_id", g1),
        ("_include", "Goal:subject"),
        ("_include:iterate", "Patient:organization"),
    ]
    bundle = await search(client, "/fhir/Goal", params)
    assert included(bundle) == [f"Organization/{org}", f"Patient/{pid}"]
    params = [("_id", g1), ("_include", "Goal:subject"), ("_include", "Patient:organization")]
    bundle = await search(client, "/fhir/Goal", params)
    assert included(bundle) == [f"Patient/{pid}"]  # without :iterate, one step only

    bundle = await search(client, "/fhir/Patient", {"_id": pid, "_revinclude": "Goal:subject"})
    assert included(bundle) == sorted([f"Goal/{g1}", f"Goal/{g2}"])
    bundle = await search(client, "/fhir/Patient", {"_id": pid, "_revinclude": "*"})
    assert {f"Goal/{g1}", f"Goal/{g2}", f"Task/{t1}"} <= set(included(bundle))
    # _revinclude then :iterate _revinclude: Patient <- Goal <- Task (focus).
    params = [("_id", pid), ("_revinclude", "Goal:subject"), ("_revinclude:iterate", "Task:focus")]
    bundle = await search(client, "/fhir/Patient", params)
    assert f"Task/{t1}" in included(bundle)
    # Organization <- Patient (revinclude), then Patient -> Goal? No: Goal:subject is forward.
    params = [
        ("_id", org),
        ("_revinclude", "Patient:organization"),
        ("_revinclude:iterate", "Goal:subject"),
    ]
    bundle = await search(client, "/fhir/Organization", params)
    assert {f"Patient/{pid}", f"Goal/{g1}", f"Goal/{g2}"} <= set(included(bundle))


async def test_include_statements_are_reused_with_each_search_own_ids(client, uid):
    """A round of includes is built once per shape and reused: each search still gets
    the targets of its own matches, whichever came first."""
    people = [await create(client, person(uid, f"Reuse{n}", "R")) for n in range(3)]
    goals = [await create(client, goal(f"Patient/{pid}", f"r{n}")) for n, pid in enumerate(people)]
    for _ in range(2):
        for n, gid in enumerate(goals):
            bundle = await search(client, "/fhir/Goal", {"_id": gid, "_include": "Goal:subject"})
            assert included(bundle) == [f"Patient/{people[n]}"]
        both = f"{goals[0]},{goals[2]}"
        bundle = await search(client, "/fhir/Goal", {"_id": both, "_include": "Goal:subject"})
        assert included(bundle) == sorted(f"Patient/{people[n]}" for n in (0, 2))
        bundle = await search(
            client, "/fhir/Patient", {"_id": people[1], "_revinclude": "Goal:subject"}
        )
        assert included(bundle) == [f"Goal/{goals[1]}"]


async def test_deleted_targets_are_not_included(client, uid):
    pid = await create(client, person(uid, "Efface", "E"))
    gid = await create(client, goal(f"Patient/{pid}"))
    other = await create(client, goal(f"Patient/{pid}", "autre"))
    assert (await client.delete(f"/fhir/Goal/{other}")).status_code == 204
    bundle = await search(client, "/fhir/Patient", {"_id": pid, "_revinclude": "Goal:subject"})
    assert included(bundle) == [f"Goal/{gid}"]
    bundle = await search(client, "/fhir/Goal", {"_id": f"{gid},{other}"})
    assert matches(bundle) == [gid]


async def test_sort_on_several_keys(client, uid):
    made = {}
    for family, given, birth in [
        ("Bernard", "Zoé", "1990-01-01"),
        ("Bernard", "Anne", "1980-01-01"),
        ("Arnaud", "Marc", "1985-06-01"),
        ("Arnaud", "Luc", None),
    ]:
        body = person(
            uid, f"{family}{uid}", given, identifier=[{"system": SYS, "value": f"s-{uid}"}]
        )
        if birth:
            body["birthDate"] = birth
        made[given] = await create(client, body)
    mine = {"identifier": f"{SYS}|s-{uid}"}

    async def order(sort):
        bundle = await search(client, "/fhir/Patient", {**mine, "_sort": sort})
        by_id = {v: k for k, v in made.items()}
        return [by_id[i] for i in matches(bundle)]

    assert await order("birthdate") == ["Anne", "Marc", "Zoé", "Luc"]  # missing values last
    assert await order("-birthdate") == ["Zoé", "Marc", "Anne", "Luc"]
    assert await order("family,given") == ["Luc", "Marc", "Anne", "Zoé"]
    assert await order("-family,given") == ["Anne", "Zoé", "Luc", "Marc"]
    assert await order("family,-birthdate") == ["Marc", "Luc", "Zoé", "Anne"]
    assert (await order("_lastUpdated"))[0] == "Zoé"
    assert (await order("-_lastUpdated"))[0] == "Luc"
    # Sorted pages link to each other without repeats or gaps.
    seen = []
    bundle = await search(
        client, "/fhir/Patient", {**mine, "_sort": "-family,given", "_count": "1"}
    )
    while True:
        seen += matches(bundle)
        nxt = link(bundle, "next")
        if nxt is None:
            break
        bundle = await follow(client, nxt)
    assert seen == [made[g] for g in ("Anne", "Zoé", "Luc", "Marc")]
    # ... and back.
    back = []
    while (prev := link(bundle, "previous")) is not None:
        bundle = await follow(client, prev)
        back = matches(bundle) + back
    assert back == seen[:-1]
    # A key some resources lack: they come last, and paging crosses them both ways.
    bundle = await search(client, "/fhir/Patient", {**mine, "_sort": "-birthdate", "_count": "1"})
    forward = []
    while True:
        forward += matches(bundle)
        if (nxt := link(bundle, "next")) is None:
            break
        bundle = await follow(client, nxt)
    assert forward == [made[g] for g in ("Zoé", "Marc", "Anne", "Luc")]
    back = []
    while (prev := link(bundle, "previous")) is not None:
        bundle = await follow(client, prev)
        back = matches(bundle) + back
    assert back == forward[:-1]


async def test_count_total_and_summary(client, uid):
    mine = {"identifier": f"{SYS}|c-{uid}"}
    made = [
        await create(
            client,
            person(uid, f"Compte{n}", "C", identifier=[{"system": SYS, "value": f"c-{uid}"}]),
        )
        for n in range(25)
    ]
    bundle = await search(client, "/fhir/Patient", mine)
    assert len(matches(bundle)) == 20 and bundle["total"] == 25  # default _count is 20
    bundle = await search(client, "/fhir/Patient", {**mine, "_count": "5000"})
    assert len(matches(bundle)) == 25
    assert ("_count", "5000") in parse_qsl(urlsplit(link(bundle, "self")).query)
    bundle = await search(client, "/fhir/Patient", {**mine, "_count": "3", "_total": "none"})
    assert "total" not in bundle and len(matches(bundle)) == 3
    bundle = await search(client, "/fhir/Patient", {**mine, "_count": "3", "_total": "estimate"})
    assert bundle["total"] == 25
    bundle = await search(client, "/fhir/Patient", {**mine, "_count": "3", "_total": "accurate"})
    assert bundle["total"] == 25
    bundle = await search(client, "/fhir/Patient", {**mine, "_summary": "count"})
    assert bundle["total"] == 25 and "entry" not in bundle
    both = {**mine, "family:contains": "compte1", "_count": "3"}  # Compte1, Compte10-19
    bundle = await search(client, "/fhir/Patient", both)
    assert bundle["total"] == 11 and len(matches(bundle)) == 3
    bundle = await search(client, "/fhir/Patient", {**both, "gender:missing": "true"})
    assert bundle["total"] == 11
    bundle = await search(client, "/fhir/Patient", {**mine, "_count": "0"})
    assert bundle["total"] == 25 and "entry" not in bundle
    # _elements and _summary shape the matches.
    bundle = await search(client, "/fhir/Patient", {**mine, "_elements": "gender", "_count": "1"})
    resource = bundle["entry"][0]["resource"]
    assert "name" not in resource and resource["meta"]["tag"][0]["code"] == "SUBSETTED"
    bundle = await search(client, "/fhir/Patient", {**mine, "_summary": "true", "_count": "1"})
    assert bundle["entry"][0]["resource"]["id"] in made


async def test_paging_is_stable_while_resources_are_created(client, uid):
    mine = {"identifier": f"{SYS}|p-{uid}"}

    def body(n):
        return person(uid, f"Page{n}", "P", identifier=[{"system": SYS, "value": f"p-{uid}"}])

    existing = [await create(client, body(n)) for n in range(7)]
    bundle = await search(client, "/fhir/Patient", {**mine, "_count": "3"})
    assert bundle["total"] == 7
    first_url = link(bundle, "first")
    seen = matches(bundle)
    n = 100
    while (nxt := link(bundle, "next")) is not None:
        await create(client, body(n))  # created while paging: not part of this search
        n += 1
        bundle = await follow(client, nxt)
        assert bundle["total"] == 7
        seen += matches(bundle)
    assert seen == existing  # creation order, no repeats, no gaps
    # A deletion between pages does not shift the next page.
    bundle = await follow(client, first_url)
    assert matches(bundle) == existing[:3]
    assert (await client.delete(f"/fhir/Patient/{existing[2]}")).status_code == 204
    bundle = await follow(client, link(bundle, "next"))
    assert matches(bundle) == existing[3:6]
    # A new search sees the new ones.
    bundle = await search(client, "/fhir/Patient", {**mine, "_count": "50"})
    assert bundle["total"] == 7 - 1 + (n - 100)


async def test_pages_picked_from_the_index_match_pages_read_in_full(client, uid):
    """A resource with several matching index rows comes once, in creation order; the
    same search with a criterion the index alone cannot answer pages the same way."""
    names = [{"family": f"Doublon{uid}", "given": ["A"]}, {"family": f"Doublon{uid}bis"}]
    made = [
        await create(client, person(uid, f"D{n}", "D", name=names, gender="female"))
        for n in range(5)
    ]
    # Twice each: the second first page is read as a large result (picked, counted with it).
    for extra in ({}, {}, {"gender:missing": "false"}, {"gender:missing": "false"}):
        bundle = await search(client, "/fhir/Patient", {"name": f"doublon{uid}", **extra})
        assert (matches(bundle), bundle["total"]) == (made, 5)
        bundle = await search(
            client, "/fhir/Patient", {"name": f"doublon{uid}", "_count": "2", **extra}
        )
        assert bundle["total"] == 5
        seen = matches(bundle)
        while (nxt := link(bundle, "next")) is not None:
            bundle = await follow(client, nxt)
            assert bundle["total"] == 5
            seen += matches(bundle)
        assert seen == made


async def count_search_statements(backend, client, params):
    """SELECTs that read the search index while one search runs (auth and audit excluded)."""
    seen = []

    def listener(_conn, _cursor, statement, *_args):
        text = statement.lstrip().upper()
        reads = text.startswith(("SELECT", "WITH")) and not WRITES.search(text)
        if reads and "SEARCH_" in text:
            seen.append(statement)

    with watching(backend.app.state.relais, listener):
        bundle = await search(client, "/fhir/Goal", params)
    return len(seen), bundle


async def test_no_statement_per_result(backend, client, uid):
    small = await create(client, person(uid, "Petit", "P"))
    big = await create(client, person(uid, "Grand", "G"))
    await create(client, goal(f"Patient/{small}"))
    for n in range(12):
        gid = await create(client, goal(f"Patient/{big}", f"g{n}"))
        await create(client, task(focus={"reference": f"Goal/{gid}"}))
    query = {"_include": "Goal:subject", "_revinclude": "Task:focus", "_count": "50"}
    few, bundle = await count_search_statements(backend, client, {"subject": small, **query})
    assert len(matches(bundle)) == 1
    lots, bundle = await count_search_statements(backend, client, {"subject": big, **query})
    assert len(matches(bundle)) == 12 and len(included(bundle)) == 13
    assert few == lots == 2  # the page, then one statement for all includes


async def test_count_comes_with_the_page_once_a_search_needs_it(backend, client, uid):
    """A search whose first page did not hold every match gets its count in the page
    statement the next time; the totals are the same either way."""
    many = await create(client, person(uid, "Beaucoup", "B"))
    few = await create(client, person(uid, "Peu", "P"))
    for n in range(5):
        await create(client, goal(f"Patient/{many}", f"m{n}"))
    await create(client, goal(f"Patient/{few}", "p0"))

    def query(pid, **more):
        return {"subject": f"Patient/{pid}", "_count": "2", **more}

    statements, bundle = await count_search_statements(backend, client, query(many))
    assert bundle["total"] == 5 and len(matches(bundle)) == 2
    statements, bundle = await count_search_statements(backend, client, query(many))
    assert (statements, bundle["total"], len(matches(bundle))) == (1, 5, 2)
    # A later page always carries its count.
    statements, page2 = await count_search_statements(
        backend, client, dict(parse_qsl(urlsplit(link(bundle, "next")).query))
    )
    assert (statements, page2["total"], len(matches(page2))) == (1, 5, 2)
    # A shape whose last first page held everything goes back to counting apart.
    statements, bundle = await count_search_statements(backend, client, query(few))
    assert (statements, bundle["total"]) == (1, 1)
    statements, bundle = await count_search_statements(backend, client, query(many))
    assert (statements, bundle["total"]) == (2, 5)
    # A count that must read resource_current (a :missing criterion) gives the same.
    present = {"lifecycle-status:missing": "false"}
    statements, bundle = await count_search_statements(backend, client, query(few, **present))
    assert (statements, bundle["total"]) == (1, 1)
    for expected in (2, 1):
        statements, bundle = await count_search_statements(backend, client, query(many, **present))
        assert (statements, bundle["total"], len(matches(bundle))) == (expected, 5, 2)
    statements, bundle = await count_search_statements(backend, client, query(many, _total="none"))
    assert (statements, "total" in bundle) == (1, False)


async def test_searches_alike_in_shape_share_one_statement(client, uid):
    """A search's statement is built the first time its shape is seen; the same search
    with other values builds nothing and finds what its own values match."""
    people = {}
    for family in ("Alpha", "Beta"):
        pid = await create(client, person(uid, f"{family}{uid}", family[0]))
        people[family] = (pid, await create(client, goal(f"Patient/{pid}", family)))

    def queries(family: str) -> list[tuple[str, dict[str, str], str]]:
        pid, gid = people[family]
        name = f"{family}{uid}"
        return [
            ("/fhir/Patient", {"family": name}, pid),
            ("/fhir/Patient", {"identifier": f"{SYS}|{uid}-{name}"}, pid),
            ("/fhir/Goal", {"subject": f"Patient/{pid}", "_sort": "-_lastUpdated"}, gid),
            ("/fhir/Goal", {"subject:Patient.family": name}, gid),
            ("/fhir/Patient", {"_has:Goal:subject:_id": gid}, pid),
            ("/fhir/Patient", {"_id": pid, "_lastUpdated": "ge2020-01-01"}, pid),
        ]

    async def run(family: str) -> int:
        for path, params, expected in queries(family):
            assert matches(await search(client, path, params)) == [expected], (path, params)
        return Built.made

    await run("Alpha")  # builds, and settles each shape's reading (small results)
    settled = await run("Alpha")
    assert await run("Beta") == settled


async def test_large_results_of_one_equality_are_planned_once(backend, client, uid):
    """PostgreSQL: the page of a large result decided by one criterion whose values only
    feed index conditions is read on the pool whose statements are planned once; a string
    prefix, several criteria or a transaction keep plans made with the values."""
    state = backend.app.state.relais
    org = await create(client, {"resourceType": "Organization", "name": f"Plan {uid}"})
    people = [await create(client, person(uid, f"Once{uid}", f"{n}")) for n in range(3)]
    for pid in people:
        await create(client, goal(f"Patient/{people[0]}", f"once {pid}"))
        team = {
            "resourceType": "CareTeam",
            "subject": {"reference": f"Patient/{pid}"},
            "participant": [{"member": {"reference": f"Organization/{org}"}}],
        }
        await create(client, team)
    goals = f"/fhir/Goal?subject=Patient/{people[0]}&_count=2"
    has = f"/fhir/Patient?_has:CareTeam:subject:participant=Organization/{org}&_count=2"
    name = f"/fhir/Patient?name=once{uid}&_count=2"
    two = f"{goals}&lifecycle-status=active"

    async def pools(method: str, url: str, **kwargs: Any) -> tuple[set[str], Any]:
        seen: set[str] = set()

        def listener(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if "SEARCH_" in statement.upper() and not WRITES.search(statement.upper()):
                once = (
                    state.planned_once is not None and conn.engine is state.planned_once.sync_engine
                )
                seen.add("once" if once else "main")

        with watching(state, listener):
            r = await client.request(method, url, **kwargs)
        assert r.status_code == 200, r.text
        return seen, r.json()

    once = {"once"} if backend.name == "postgres" else {"main"}
    for url in (goals, has, name, two):
        await pools("GET", url)  # the first page tells the shape is large
    for url, where in ((goals, once), (has, once), (name, {"main"}), (two, {"main"})):
        seen, bundle = await pools("GET", url)
        assert (seen, bundle["total"], len(matches(bundle))) == (where, 3, 2), url
    entry = {"request": {"method": "GET", "url": goals.removeprefix("/fhir/")}}
    body = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    seen, bundle = await pools("POST", "/fhir", json=body)
    assert seen == {"main"} and bundle["entry"][0]["resource"]["total"] == 3
    if state.planned_once is not None:
        async with state.planned_once.connect() as conn:
            mode = await conn.exec_driver_sql("SHOW plan_cache_mode")
            assert mode.scalar() == "force_generic_plan"
