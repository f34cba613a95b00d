"""The grant computation on its own (the HTTP tests show it end to end)."""

from __future__ import annotations

from datetime import UTC, datetime

from app.auth.grants import compute_grants
from app.auth.periods import parse_bound, period
from tests.access_case import care_team, consent, member, provision

HOSP, INS = "Organization/h", "Organization/i"


def granted(resources: list[dict]) -> dict[tuple[str, str], tuple]:
    return {
        (g.organization, g.domain): (g.valid_from, g.valid_to) for g in compute_grants(resources)
    }


def test_fhir_periods_are_inclusive_at_their_precision():
    assert parse_bound("2026-05-31", end=True) == datetime(2026, 6, 1, tzinfo=UTC)
    assert parse_bound("2026-12", end=True) == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_bound("2026", end=False) == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_bound("2026-05-31T10:00:00+02:00", end=True) == datetime(
        2026, 5, 31, 8, tzinfo=UTC
    )
    assert period({"start": "2026-02-01", "end": "2026-01-01"}) == []


def test_membership_and_consent_periods_intersect():
    team = care_team("t", "p", [member(HOSP, start="2026-01-01", end="2026-06-30")])
    permit = provision("permit", [HOSP], ["medical"], period={"start": "2026-03-01"})
    grants = granted([team, consent("c", "p", permit)])
    start, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC)
    assert grants[(HOSP, "medical")] == (start, end)
    assert grants[(HOSP, "coordination")] == (start, end)
    assert (HOSP, "legal") not in grants


def test_deny_rules():
    team = care_team("t", "p", [member(HOSP), member(INS)])
    base = provision("permit", [HOSP, INS], ["medical", "legal"])
    # A separate deny without actor removes legal for everybody.
    grants = granted(
        [team, consent("c1", "p", base), consent("c2", "p", provision("deny", domains=["legal"]))]
    )
    assert set(grants) == {
        (HOSP, "medical"),
        (INS, "medical"),
        (HOSP, "coordination"),
        (INS, "coordination"),
    }
    # A deny naming only a foreign label fails closed: every domain of that actor.
    foreign = provision("deny", [INS])
    foreign["securityLabel"] = [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
    ]
    grants = granted([team, consent("c1", "p", base), consent("c3", "p", foreign)])
    assert {o for o, _ in grants} == {HOSP}
    # A permit naming nobody grants nothing; an inactive Consent counts for nothing.
    assert granted([team, consent("c4", "p", provision("permit", domains=["medical"]))]) == {}
    assert granted([team, consent("c5", "p", base, status="inactive")]) == {}


def test_managing_organisation_gets_every_domain_of_active_episodes_only():
    episode = {
        "resourceType": "EpisodeOfCare",
        "id": "e",
        "status": "active",
        "managingOrganization": {"reference": "Organization/cm"},
        "period": {"start": "2026-01-01", "end": "2026-12-31"},
    }
    grants = granted([episode])
    assert len(grants) == 7
    assert grants[("Organization/cm", "legal")][1] == datetime(2027, 1, 1, tzinfo=UTC)
    assert granted([{**episode, "status": "finished"}]) == {}
