"""Chaining, reverse chaining (_has), and the caller's row filter inside every subquery."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import ColumnElement, Table

from tests.search_helpers import SYS, create, goal, ids, included, matches, person, search, task


def service_request(subject: str, uid: str) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": f"cat-{uid}"}]}],
        "subject": {"reference": subject},
    }


async def test_chain_one_and_two_levels(client, uid):
    org = await create(client, {"resourceType": "Organization", "name": f"Hôpital {uid}"})
    pid = await create(
        client,
        person(uid, "Chaîne", "C", managingOrganization={"reference": f"Organization/{org}"}),
    )
    other = await create(client, person(uid, "Autre", "A"))
    mine = await create(client, goal(f"Patient/{pid}"))
    await create(client, goal(f"Patient/{other}"))

    by_identifier = {"subject:Patient.identifier": f"{SYS}|{uid}-Chaîne"}
    assert await ids(client, "/fhir/Goal", **by_identifier) == [mine]
    # Without a type: every target type that has the parameter.
    assert await ids(client, "/fhir/Goal", **{"subject.identifier": f"{SYS}|{uid}-Chaîne"}) == [
        mine
    ]
    # Two levels: Goal -> Patient -> Organization.
    two = {"subject:Patient.organization.name": f"hopital {uid}"}
    assert await ids(client, "/fhir/Goal", **two) == [mine]
    two = {"subject:Patient.organization:Organization.name": f"hopital {uid}"}
    assert await ids(client, "/fhir/Goal", **two) == [mine]

    sr = await create(client, service_request(f"Patient/{pid}", uid))
    tid = await create(client, task(focus={"reference": f"ServiceRequest/{sr}"}))
    await create(client, task(focus={"reference": f"Patient/{pid}"}))
    focus = {"focus:ServiceRequest.category": f"http://snomed.info/sct|cat-{uid}"}
    assert await ids(client, "/fhir/Task", **focus) == [tid]
    # Task -> ServiceRequest -> Patient (two levels).
    deep = {"focus:ServiceRequest.subject:Patient.name": "chaine"}
    got = await ids(client, "/fhir/Task", **deep, _id=tid)
    assert got == [tid]


async def test_reverse_chain_has(client, uid):
    hospital = await create(client, {"resourceType": "Organization", "name": f"CHU {uid}"})
    with_team = await create(client, person(uid, "Equipe", "E"))
    without = await create(client, person(uid, "Seul", "S"))
    await create(
        client,
        {
            "resourceType": "CareTeam",
            "status": "active",
            "subject": {"reference": f"Patient/{with_team}"},
            "participant": [{"member": {"reference": f"Organization/{hospital}"}}],
        },
    )
    found = await ids(
        client, "/fhir/Patient", **{"_has:CareTeam:subject:participant": f"Organization/{hospital}"}
    )
    assert found == [with_team]
    assert without not in found
    # _has then a chain inside it, and a nested _has.
    chained = {"_has:CareTeam:subject:participant:Organization.name": f"chu {uid}"}
    assert await ids(client, "/fhir/Patient", **chained) == [with_team]
    await create(client, goal(f"Patient/{with_team}", f"objectif {uid}"))
    both = f"{with_team},{without}"
    by_goal = {"_has:Goal:patient:lifecycle-status": "active"}
    assert await ids(client, "/fhir/Patient", **by_goal, _id=both) == [with_team]
    nested = {"_has:Goal:subject:_has:CareTeam:subject:participant": f"Organization/{hospital}"}
    r = await client.get("/fhir/Patient", params=nested, headers={"Prefer": "handling=strict"})
    assert r.status_code == 400  # a CareTeam's subject is never a Goal


async def test_bad_chains_are_reported(client, uid):
    for name in (
        "subject:Basic.name",
        "status.name",
        "_has:Nope:subject:code",
        "subject:Patient.nope",
    ):
        bundle = await search(client, "/fhir/Goal", {name: "x", "_id": uid})
        outcome = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
        assert outcome and name in outcome[0]["resource"]["issue"][0]["diagnostics"], name
        r = await client.get(
            "/fhir/Goal", params={name: "x"}, headers={"Prefer": "handling=strict"}
        )
        assert r.status_code == 400, name


# --- the row filter --------------------------------------------------------------------------


class HidingPolicy:
    """Sees everything except the listed ids: stands in for the access rule in these tests."""

    name = "test"

    def __init__(self, hidden: set[str]) -> None:
        self.hidden = sorted(hidden)

    def check_interaction(self, resource_type: str, interaction: str) -> None:
        return None

    def row_filter(
        self, table: Table, resource_type: str | None, interaction: str
    ) -> ColumnElement[bool]:
        return table.c.res_id.not_in(self.hidden)

    def check_write(self, resource_type: str, resource: dict[str, Any], domain: str | None) -> None:
        return None

    def agent(self) -> dict[str, Any]:
        return {"display": "test"}


@contextlib.contextmanager
def hiding(backend: Any, *hidden: str) -> Iterator[None]:
    state = backend.app.state.relais
    original = state.policy_for
    policy = HidingPolicy(set(hidden))

    async def policy_for(_request: Any) -> HidingPolicy:
        return policy

    state.policy_for = policy_for
    try:
        yield
    finally:
        state.policy_for = original


async def test_hidden_resources_never_match_count_or_include(backend, client, uid):
    org = await create(client, {"resourceType": "Organization", "name": f"Caché {uid}"})
    visible_p = await create(client, person(uid, "Visible", "V"))
    hidden_p = await create(client, person(uid, "Masque", "M"))
    g_visible = await create(client, goal(f"Patient/{visible_p}", f"v {uid}"))
    g_hidden = await create(client, goal(f"Patient/{hidden_p}", f"h {uid}"))
    g_hidden_goal = await create(client, goal(f"Patient/{visible_p}", f"x {uid}"))
    team = await create(
        client,
        {
            "resourceType": "CareTeam",
            "subject": {"reference": f"Patient/{hidden_p}"},
            "participant": [{"member": {"reference": f"Organization/{org}"}}],
        },
    )
    everyone = f"{SYS}|{uid}-Visible,{SYS}|{uid}-Masque"
    with hiding(backend, hidden_p, g_hidden_goal, team):
        bundle = await search(client, "/fhir/Patient", {"identifier": everyone})
        assert matches(bundle) == [visible_p] and bundle["total"] == 1
        bundle = await search(
            client, "/fhir/Patient", {"identifier": everyone, "_summary": "count"}
        )
        assert bundle["total"] == 1
        bundle = await search(client, "/fhir/Patient", {"identifier": everyone, "_count": "1"})
        assert bundle["total"] == 1
        # A chain through a hidden Patient matches nothing.
        chain = {"subject:Patient.identifier": f"{SYS}|{uid}-Masque"}
        assert await ids(client, "/fhir/Goal", **chain) == []
        # _has through a hidden CareTeam matches nothing.
        has = {"_has:CareTeam:subject:participant": f"Organization/{org}"}
        assert await ids(client, "/fhir/Patient", **has) == []
        # _include never brings a hidden target; _revinclude never a hidden source.
        bundle = await search(
            client, "/fhir/Goal", {"_id": f"{g_visible},{g_hidden}", "_include": "Goal:subject"}
        )
        assert sorted(matches(bundle)) == sorted([g_visible, g_hidden])
        assert included(bundle) == [f"Patient/{visible_p}"]
        bundle = await search(
            client, "/fhir/Patient", {"_id": visible_p, "_revinclude": "Goal:subject"}
        )
        assert included(bundle) == [f"Goal/{g_visible}"]
        bundle = await search(client, "/fhir/Patient", {"_id": visible_p, "_revinclude": "*"})
        assert f"Goal/{g_hidden_goal}" not in included(bundle)
        # System level too.
        bundle = await search(client, "/fhir", {"_id": f"{visible_p},{hidden_p}"})
        assert matches(bundle) == [visible_p]
    # Without the filter, the same searches see everything.
    has = {"_has:CareTeam:subject:participant": f"Organization/{org}"}
    assert await ids(client, "/fhir/Patient", **has) == [hidden_p]


async def test_has_never_counts_a_deleted_target(client, uid):
    """_has finds targets through the index of the sources; a target deleted since is
    neither a match nor counted, on the first page or a counted one."""
    hospital = await create(client, {"resourceType": "Organization", "name": f"CHU {uid}"})
    patients = [await create(client, person(uid, f"Suivi{n}", "S")) for n in range(3)]
    for pid in patients:
        team = {
            "resourceType": "CareTeam",
            "subject": {"reference": f"Patient/{pid}"},
            "participant": [{"member": {"reference": f"Organization/{hospital}"}}],
        }
        await create(client, team)
    assert (await client.delete(f"/fhir/Patient/{patients[0]}")).status_code == 204
    has = {"_has:CareTeam:subject:participant": f"Organization/{hospital}"}
    assert await ids(client, "/fhir/Patient", **has) == sorted(patients[1:])
    for _ in range(2):  # the second one gets its count in the page
        bundle = await search(client, "/fhir/Patient", {**has, "_count": "1"})
        assert bundle["total"] == 2 and matches(bundle) == [patients[1]]
    after = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    page2 = await search(client, after.removeprefix("http://relais.test"))
    assert page2["total"] == 2 and matches(page2) == [patients[2]]
    assert not [link for link in page2["link"] if link["relation"] == "next"]
    bundle = await search(client, "/fhir/Patient", {**has, "_summary": "count"})
    assert bundle["total"] == 2


def care_team(subject: str, organization: str) -> dict[str, Any]:
    return {
        "resourceType": "CareTeam",
        "subject": {"reference": subject},
        "participant": [{"member": {"reference": f"Organization/{organization}"}}],
    }


async def has_pages(client: Any, has: dict[str, str]) -> tuple[list[str], int]:
    """Every match of a _has, one per page, and the total of the first page."""
    first = await search(client, "/fhir/Patient", {**has, "_count": "1"})
    found, bundle = matches(first), first
    while nxt := [link["url"] for link in bundle["link"] if link["relation"] == "next"]:
        assert len(found) <= first["total"], found  # a page repeated: the order is broken
        bundle = await search(client, nxt[0].removeprefix("http://relais.test"))
        found += matches(bundle)
    return found, first["total"]


async def test_has_pages_its_targets_in_their_created_order(client, uid):
    """The page order of _has is that of the targets' creation, not of the sources that
    point at them; the first page read plainly and then counted agree."""
    hospital = await create(client, {"resourceType": "Organization", "name": f"CHU {uid}"})
    patients = [await create(client, person(uid, f"Ordre{n}", "O")) for n in range(3)]
    for pid in reversed(patients):
        await create(client, care_team(f"Patient/{pid}", hospital))
    await create(client, care_team(f"Patient/{patients[1]}", hospital))  # twice, listed once
    has = {"_has:CareTeam:subject:participant": f"Organization/{hospital}"}
    for _ in range(2):  # the second one is read as a large result: picked and counted
        assert await has_pages(client, has) == (patients, 3)


async def test_has_finds_a_target_created_after_the_reference(client, uid):
    """An absolute reference under the base may name a resource that does not exist yet;
    once it is created, _has finds it, in its place, and a restored target comes back."""
    hospital = await create(client, {"resourceType": "Organization", "name": f"CHU {uid}"})
    early = await create(client, person(uid, "Tot", "T"))
    late = f"tard-{uid}"
    await create(client, care_team(f"http://relais.test/fhir/Patient/{late}", hospital))
    await create(client, care_team(f"Patient/{early}", hospital))
    has = {"_has:CareTeam:subject:participant": f"Organization/{hospital}"}
    for _ in range(2):
        assert await has_pages(client, has) == ([early], 1)
    r = await client.put(f"/fhir/Patient/{late}", json={**person(uid, "Tard", "T"), "id": late})
    assert r.status_code == 201, r.text
    for _ in range(2):
        assert await has_pages(client, has) == ([early, late], 2)
    assert (await client.delete(f"/fhir/Patient/{early}")).status_code == 204
    for _ in range(2):
        assert await has_pages(client, has) == ([late], 1)
    back = {**person(uid, "Tot", "T"), "id": early}
    assert (await client.put(f"/fhir/Patient/{early}", json=back)).status_code in (200, 201)
    for _ in range(2):  # restored: created first, listed first
        assert await has_pages(client, has) == ([early, late], 2)
