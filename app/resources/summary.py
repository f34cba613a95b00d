"""`EpisodeOfCare/{id}/$case-summary`: the 360° view of a case, per domain the caller sees.

Answered as a Parameters resource (see docs/case-model.md). A fixed number of SQL
statements whatever the size of the case, each with the caller's row filter: the case
itself, the number of visible records per domain, the records the summary reads
(goals, activities, interviews, the network, cost lines), the versions of achieved goals
(when each was achieved) and the names of the partners that references leave unnamed.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, func, or_, select

from app.db.tables import resource_current as cur
from app.db.tables import resource_version as ver
from app.fhir.context import Context, OperationCall
from app.fhir.interactions import Result
from app.fhir.outcomes import FhirError
from app.fhir.repository import instant
from app.resources.case_rows import READ, SEARCH, case_conditions, read_anchor
from app.resources.conformance import ACCIDENT_DATE_URL, CONSOLIDATION_DATE_URL, concept_display
from app.resources.domains import DOMAIN_SYSTEM, DOMAINS, as_list
from app.resources.everything import TRAIL, parameters_as_query
from app.resources.summary_items import (
    ACHIEVED,
    Part,
    Record,
    achievement_code,
    activity_due,
    activity_part,
    concept_text,
    cost_parts,
    cost_total,
    day,
    goal_part,
    goals,
    group,
    is_open,
    last_interview,
    milestones,
    optional,
    reference,
    value,
)
from app.resources.summary_network import (
    Member,
    display_name,
    partner_parts,
    team_members,
    unnamed,
)

SUMMARY_TYPES = (
    "Goal",
    "Task",
    "ServiceRequest",
    "Appointment",
    "CommunicationRequest",
    "Encounter",
    "CareTeam",
    "ChargeItem",
)
ACTIVITY_TYPES = frozenset({"Task", "ServiceRequest", "Appointment", "CommunicationRequest"})


async def case_summary(
    ctx: Context,
    call: OperationCall,
) -> Result:
    res_id = call.res_id
    if call.method not in ("GET", "POST"):
        raise FhirError(405, "not-supported", "$case-summary takes a GET or a POST")
    if call.resource_type != "EpisodeOfCare" or res_id is None:
        raise FhirError(404, "not-supported", "$case-summary is invoked on EpisodeOfCare/{id}")
    parameters_as_query(call.body)  # a POST body, if any, is a Parameters; none is defined
    episode = await read_anchor(ctx, "EpisodeOfCare", res_id)
    conds = [*case_conditions(episode), ctx.policy.row_filter(cur, None, SEARCH)]
    counts = await _domain_counts(ctx, conds)
    records = await _records(ctx, conds)
    achieved_on = await _achievements(
        ctx,
        [r.id for r in records if r.type == "Goal" and achievement_code(r.resource) in ACHIEVED],
    )
    today = datetime.now(UTC).date().isoformat()
    team = team_members(episode, records, today)
    names = await _names(ctx, [*unnamed(team), _patient_reference(episode)])
    parameters = [
        *_case_parts(episode, names, today),
        *[
            goal_part(r, achieved_on[r.id], "achievement")
            for r in goals([r for r in records if r.type == "Goal"], achieved_on)
            if r.id in achieved_on
        ],
    ]
    by_domain: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_domain[record.domain].append(record)
    for domain in DOMAINS:
        if domain in counts:
            parameters.append(
                _domain_part(
                    domain,
                    counts[domain],
                    by_domain[domain],
                    episode,
                    team,
                    names,
                    achieved_on,
                    today,
                )
            )
    out = {"resourceType": "Parameters", "parameter": parameters}
    return Result(status=200, body=orjson.dumps(out), is_resource=False)


# --- queries ------------------------------------------------------------------------


async def _domain_counts(ctx: Context, conds: list[ColumnElement[bool]]) -> dict[str, int]:
    stmt = (
        select(cur.c.domain, func.count())
        .where(and_(*conds), cur.c.domain.is_not(None), cur.c.type.not_in(TRAIL))
        .group_by(cur.c.domain)
    )
    return {row[0]: int(row[1]) for row in (await ctx.conn.execute(stmt)).all()}


async def _records(ctx: Context, conds: list[ColumnElement[bool]]) -> list[Record]:
    stmt = select(cur.c.type, cur.c.res_id, cur.c.domain, cur.c.content).where(
        and_(*conds),
        cur.c.type.in_(SUMMARY_TYPES),
        # Of the encounters only interviews count: skip the others in SQL.
        or_(cur.c.type != "Encounter", cur.c.content.like('%/CodeSystem/encounter-type"%')),
    )
    rows = (await ctx.conn.execute(stmt.order_by(cur.c.created_seq))).all()
    return [Record(r.type, r.res_id, r.domain or "", orjson.loads(r.content)) for r in rows]


async def _achievements(ctx: Context, goal_ids: list[str]) -> dict[str, str]:
    """When each goal reached its current achieved (or sustaining) run, from its history.

    A goal created already achieved (a case loaded with its past) has no such change
    on record: its statusDate stands in when it has one.
    """
    if not goal_ids:
        return {}
    stmt = (
        select(ver.c.res_id, ver.c.version, ver.c.last_updated, ver.c.content)
        .where(
            ver.c.type == "Goal",
            ver.c.res_id.in_(goal_ids),
            ctx.policy.row_filter(ver, "Goal", "history-instance"),
        )
        .order_by(ver.c.res_id, ver.c.version)
    )
    since: dict[str, str | None] = {}
    for row in (await ctx.conn.execute(stmt)).all():
        goal = orjson.loads(row.content) if row.content else {}
        if achievement_code(goal) not in ACHIEVED:
            since[row.res_id] = None
        elif since.get(row.res_id) is None:
            imported = row.version == 1 and isinstance(goal.get("statusDate"), str)
            since[row.res_id] = goal["statusDate"] if imported else instant(row.last_updated)
    return {goal_id: when for goal_id, when in since.items() if when is not None}


async def _names(ctx: Context, references: list[str | None]) -> dict[str, str]:
    """Display names of referenced resources the caller may read, in one statement."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for ref in references:
        if ref and ref.count("/") == 1:
            ref_type, ref_id = ref.split("/")
            wanted[ref_type].add(ref_id)
    if not wanted:
        return {}
    stmt = select(cur.c.type, cur.c.res_id, cur.c.content).where(
        or_(*[and_(cur.c.type == t, cur.c.res_id.in_(sorted(ids))) for t, ids in wanted.items()]),
        cur.c.deleted.is_(False),
        ctx.policy.row_filter(cur, None, READ),
    )
    names = {}
    for row in (await ctx.conn.execute(stmt)).all():
        name = display_name(orjson.loads(row.content))
        if name:
            names[f"{row.type}/{row.res_id}"] = name
    return names


def _patient_reference(episode: dict[str, Any]) -> str | None:
    patient = episode.get("patient")
    return patient.get("reference") if isinstance(patient, dict) else None


# --- assembly -----------------------------------------------------------------------


def _case_parts(episode: dict[str, Any], names: dict[str, str], today: str) -> list[Part]:
    patient = episode.get("patient") or {}
    patient_ref = _patient_reference(episode)
    dates = {
        ext.get("url"): ext.get("valueDate")
        for ext in as_list(episode.get("extension"))
        if isinstance(ext, dict)
    }
    parts: list[Part | None] = [
        reference("case", f"EpisodeOfCare/{episode['id']}", _case_title(episode)),
        reference("beneficiary", patient_ref, names.get(patient_ref) or patient.get("display"))
        if patient_ref
        else None,
        optional("status", "Code", episode.get("status")),
        optional("managingOrganization", "Reference", episode.get("managingOrganization")),
        optional("careManager", "Reference", episode.get("careManager")),
        optional("accidentDate", "Date", dates.get(ACCIDENT_DATE_URL)),
        optional("consolidationDate", "Date", dates.get(CONSOLIDATION_DATE_URL)),
        *[value("identifier", "Identifier", i) for i in as_list(episode.get("identifier"))],
        value("asOf", "Date", today),
    ]
    return [p for p in parts if p is not None]


def _case_title(episode: dict[str, Any]) -> str | None:
    return next((concept_text(t) for t in as_list(episode.get("type"))), None)


def _domain_part(
    domain: str,
    count: int,
    records: list[Record],
    episode: dict[str, Any],
    team: dict[str, Member],
    names: dict[str, str],
    achieved_on: dict[str, str],
    today: str,
) -> Part:
    coding = {"system": DOMAIN_SYSTEM, "code": domain}
    display = concept_display(DOMAIN_SYSTEM, domain)
    if display:
        coding["display"] = display
    goal_records = goals([r for r in records if r.type == "Goal"], achieved_on)
    activities = [r for r in records if r.type in ACTIVITY_TYPES and is_open(r, today)]
    activities.sort(key=lambda r: (day(activity_due(r.resource)) or "9999", r.type, r.id))
    costs = cost_parts(records)
    upcoming = milestones(records, episode if domain == "coordination" else None, today)
    return group(
        "domain",
        [
            value("code", "Coding", coding),
            value("records", "Integer", count),
            *[goal_part(r, achieved_on.get(r.id)) for r in goal_records],
            *[activity_part(r) for r in activities],
            last_interview(records),
            *partner_parts(records, team, names),
            *[part for _when, part in upcoming],
            *costs,
            *cost_total(costs),
        ],
    )
