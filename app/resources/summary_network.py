"""The network in a case summary: the CareTeam's current members, per domain."""

from __future__ import annotations

from typing import Any

from app.fhir.references import relative_references
from app.resources.domains import as_list
from app.resources.summary_items import Part, Record, concept_text, day, group, optional, reference

Member = dict[str, Any]  # reference, display, role, period


def display_name(resource: dict[str, Any]) -> str | None:
    if isinstance(resource.get("name"), str):
        return str(resource["name"])
    for name in as_list(resource.get("name")):
        if isinstance(name, dict):
            if name.get("text"):
                return str(name["text"])
            parts = [*as_list(name.get("given")), name.get("family")]
            return " ".join(str(p) for p in parts if p) or None
    practitioner = resource.get("practitioner")
    if isinstance(practitioner, dict) and practitioner.get("display"):
        return str(practitioner["display"])
    return None


def team_members(episode: dict[str, Any], records: list[Record], today: str) -> dict[str, Member]:
    """Current members of the case's CareTeam(s) (`EpisodeOfCare.team`, else any active)."""
    named = {str(t.get("reference")) for t in as_list(episode.get("team")) if isinstance(t, dict)}
    teams = [r for r in records if r.type == "CareTeam"]
    if named:
        teams = [r for r in teams if r.reference in named]
    else:
        teams = [r for r in teams if r.resource.get("status") in (None, "active")]
    members: dict[str, Member] = {}
    for team in teams:
        for participant in as_list(team.resource.get("participant")):
            member = participant.get("member") if isinstance(participant, dict) else None
            ref = member.get("reference") if isinstance(member, dict) else None
            end = day((participant.get("period") or {}).get("end"))
            if not isinstance(ref, str) or (end is not None and end < today):
                continue
            roles = [concept_text(c) for c in as_list(participant.get("role"))]
            members[ref] = {
                "reference": ref,
                "display": member.get("display") if isinstance(member, dict) else None,
                "role": "; ".join(r for r in roles if r) or None,
                "period": participant.get("period"),
            }
    return members


def unnamed(team: dict[str, Member]) -> list[str | None]:
    return [ref for ref, member in team.items() if not member["display"]]


def partner_parts(
    records: list[Record], team: dict[str, Member], names: dict[str, str]
) -> list[Part]:
    """Network members that the domain's records name (owner, performer, author…)."""
    named: set[str] = set()
    for record in records:
        named |= {f"{t}/{i}" for t, i, _ in relative_references(record.resource, "")}
    return [
        group(
            "partner",
            [
                reference("member", ref, member["display"] or names.get(ref)),
                optional("role", "String", member["role"]),
                optional("period", "Period", member["period"]),
            ],
        )
        for ref, member in team.items()
        if ref in named
    ]
