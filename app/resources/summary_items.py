"""The items of a case summary, read from stored resources (no SQL here).

Each function turns resources into Parameters parts; `Record` is one visible record
of the case with its domain label.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.resources.conformance import (
    CONSOLIDATION_DATE_URL,
    DINTILHAC_SYSTEM,
    ENCOUNTER_TYPE_SYSTEM,
    code_system_order,
    concept_display,
)
from app.resources.domains import as_list

Part = dict[str, Any]

ACHIEVED = frozenset({"achieved", "sustaining"})
CLOSED_GOALS = frozenset({"cancelled", "entered-in-error", "rejected"})
OPEN_STATUS = {
    "Task": frozenset(
        {"draft", "requested", "received", "accepted", "ready", "in-progress", "on-hold"}
    ),
    "ServiceRequest": frozenset({"draft", "active", "on-hold"}),
    "CommunicationRequest": frozenset({"draft", "active", "on-hold"}),
    "Appointment": frozenset(
        {"proposed", "pending", "booked", "arrived", "checked-in", "waitlist"}
    ),
}
PLANNED = frozenset({"planned"})
ENGAGED = frozenset({"billable", "billed"})


@dataclass
class Record:
    type: str
    id: str
    domain: str
    resource: dict[str, Any]

    @property
    def reference(self) -> str:
        return f"{self.type}/{self.id}"


# --- Parameters parts ---------------------------------------------------------------


def value(name: str, kind: str, data: Any) -> Part:
    return {"name": name, f"value{kind}": data}


def reference(name: str, target: str, display: str | None = None) -> Part:
    ref: dict[str, str] = {"reference": target}
    if display:
        ref["display"] = display
    return value(name, "Reference", ref)


def group(name: str, parts: list[Part | None]) -> Part:
    return {"name": name, "part": [p for p in parts if p is not None]}


def optional(name: str, kind: str, data: Any) -> Part | None:
    return value(name, kind, data) if data not in (None, "", [], {}) else None


def day(text: Any) -> str | None:
    """The last day a FHIR date or dateTime may mean, as YYYY-MM-DD (for comparisons)."""
    if not isinstance(text, str) or len(text) < 4:
        return None
    if len(text) == 4:
        return f"{text}-12-31"
    if len(text) == 7:
        return f"{text}-31"
    return text[:10]


def concept_text(concept: Any) -> str | None:
    if not isinstance(concept, dict):
        return None
    if concept.get("text"):
        return str(concept["text"])
    for coding in as_list(concept.get("coding")):
        if isinstance(coding, dict) and coding.get("display"):
            return str(coding["display"])
    return None


def money(amount: Decimal, currency: str) -> dict[str, Any]:
    number = int(amount) if amount == amount.to_integral_value() else float(amount)
    return {"value": number, "currency": currency}


# --- goals --------------------------------------------------------------------------


def achievement_code(goal: dict[str, Any]) -> str | None:
    for coding in as_list((goal.get("achievementStatus") or {}).get("coding")):
        if isinstance(coding, dict) and coding.get("code"):
            return str(coding["code"])
    return None


def goal_due(goal: dict[str, Any]) -> str | None:
    dues = [t.get("dueDate") for t in as_list(goal.get("target")) if isinstance(t, dict)]
    found = sorted(d for d in dues if isinstance(d, str))
    return found[0] if found else None


def goal_part(record: Record, achieved_on: str | None, name: str = "goal") -> Part:
    goal = record.resource
    status = goal.get("achievementStatus")
    coding = next((c for c in as_list((status or {}).get("coding")) if isinstance(c, dict)), None)
    return group(
        name,
        [
            reference("goal", record.reference, concept_text(goal.get("description"))),
            value("domain", "Code", record.domain) if name == "achievement" else None,
            optional("lifecycleStatus", "Code", goal.get("lifecycleStatus")),
            optional("achievementStatus", "Coding", coding),
            optional("achievedOn", "DateTime", achieved_on),
            optional("dueDate", "Date", goal_due(goal)),
        ],
    )


def goals(records: list[Record], achieved_on: dict[str, str]) -> list[Record]:
    """Goals worth showing: achieved ones first, latest achievement first, then by due date."""
    shown = [r for r in records if r.resource.get("lifecycleStatus") not in CLOSED_GOALS]
    achieved = [r for r in shown if r.id in achieved_on]
    achieved.sort(key=lambda r: (achieved_on[r.id], r.id), reverse=True)
    others = [r for r in shown if r.id not in achieved_on]
    others.sort(key=lambda r: (goal_due(r.resource) or "9999", r.id))
    return achieved + others


# --- activities ---------------------------------------------------------------------


def is_open(record: Record, today: str) -> bool:
    status = record.resource.get("status")
    if status not in OPEN_STATUS.get(record.type, frozenset()):
        return False
    if record.type == "Appointment":
        return (day(record.resource.get("start")) or today) >= today
    return True


def activity_title(resource: dict[str, Any]) -> str | None:
    for candidate in (resource.get("code"), resource.get("category")):
        for concept in as_list(candidate):
            text = concept_text(concept)
            if text:
                return text
    description = resource.get("description")
    return str(description) if description else None


def activity_owner(resource: dict[str, Any]) -> Any:
    if resource.get("owner"):
        return resource["owner"]
    performers = as_list(resource.get("performer")) or as_list(resource.get("recipient"))
    return performers[0] if performers else None


def activity_due(resource: dict[str, Any]) -> str | None:
    for candidate in (
        ((resource.get("restriction") or {}).get("period") or {}).get("end"),
        (resource.get("occurrencePeriod") or {}).get("end"),
        resource.get("occurrenceDateTime"),
        resource.get("start"),
    ):
        if isinstance(candidate, str):
            return candidate
    return None


def activity_part(record: Record) -> Part:
    resource = record.resource
    owner = activity_owner(resource)
    return group(
        "activity",
        [
            reference("activity", record.reference, activity_title(resource)),
            value("status", "Code", resource.get("status")),
            value("owner", "Reference", owner) if isinstance(owner, dict) else None,
            optional("dueDate", "DateTime", activity_due(resource)),
            optional("statusReason", "String", concept_text(resource.get("statusReason"))),
        ],
    )


# --- interviews ---------------------------------------------------------------------


def is_interview(record: Record) -> bool:
    if record.type != "Encounter":
        return False
    for concept in as_list(record.resource.get("type")):
        for coding in as_list((concept or {}).get("coding")):
            if coding.get("system") == ENCOUNTER_TYPE_SYSTEM and coding.get("code") == "interview":
                return True
    return False


def last_interview(records: list[Record]) -> Part | None:
    interviews = [r for r in records if is_interview(r)]
    if not interviews:
        return None
    latest = max(interviews, key=lambda r: str((r.resource.get("period") or {}).get("start")))
    encounter = latest.resource
    kind = next((concept_text(t) for t in as_list(encounter.get("type"))), None)
    reasons = [concept_text(c) for c in as_list(encounter.get("reasonCode"))]
    return group(
        "lastInterview",
        [
            reference("encounter", latest.reference, kind),
            optional("date", "DateTime", (encounter.get("period") or {}).get("start")),
            optional("status", "Code", encounter.get("status")),
            optional("summary", "String", "; ".join(r for r in reasons if r)),
        ],
    )


# --- milestones ---------------------------------------------------------------------


def milestones(
    records: list[Record], episode: dict[str, Any] | None, today: str
) -> list[tuple[str, Part]]:
    """(date, part) of upcoming dates: consolidation, appointments, task and goal dues."""
    found: list[tuple[str, str, str, str]] = []  # date, kind, description, focus
    if episode is not None:
        for extension in as_list(episode.get("extension")):
            if isinstance(extension, dict) and extension.get("url") == CONSOLIDATION_DATE_URL:
                when = extension.get("valueDate")
                if isinstance(when, str):
                    focus = f"EpisodeOfCare/{episode['id']}"
                    found.append((when, "consolidation", "Date de consolidation", focus))
    for record in records:
        resource = record.resource
        if record.type == "Appointment" and is_open(record, today):
            text = activity_title(resource) or "Rendez-vous"
            found.append((resource.get("start", ""), "appointment", text, record.reference))
        elif record.type == "Task" and is_open(record, today) and activity_due(resource):
            text = activity_title(resource) or "Échéance"
            found.append((str(activity_due(resource)), "task-due", text, record.reference))
        elif (
            record.type == "Goal"
            and goal_due(resource)
            and resource.get("lifecycleStatus") not in CLOSED_GOALS | {"completed"}
            and achievement_code(resource) not in ACHIEVED
        ):
            text = concept_text(resource.get("description")) or "Objectif"
            found.append((str(goal_due(resource)), "goal-target", text, record.reference))
    upcoming = sorted(m for m in found if (day(m[0]) or "") >= today)
    return [
        (
            when,
            group(
                "milestone",
                [
                    value("date", "DateTime", when),
                    value("kind", "Code", kind),
                    value("description", "String", text),
                    reference("focus", ref),
                ],
            ),
        )
        for when, kind, text, ref in upcoming
    ]


# --- costs --------------------------------------------------------------------------


def dintilhac_head(item: dict[str, Any]) -> str | None:
    for coding in as_list((item.get("code") or {}).get("coding")):
        if isinstance(coding, dict) and coding.get("system") == DINTILHAC_SYSTEM:
            return str(coding.get("code"))
    return None


def cost_parts(records: list[Record]) -> list[Part]:
    """Per Dintilhac head and currency: planned and engaged totals, number of lines."""
    totals: dict[tuple[str, str], dict[str, Decimal]] = defaultdict(
        lambda: {"planned": Decimal(0), "engaged": Decimal(0), "lines": Decimal(0)}
    )
    for record in records:
        item = record.resource
        head = dintilhac_head(item) if record.type == "ChargeItem" else None
        price = item.get("priceOverride") or {}
        status = item.get("status")
        if head is None or not isinstance(price.get("value"), int | float):
            continue
        if status not in PLANNED | ENGAGED:
            continue
        line = totals[(head, str(price.get("currency") or "EUR"))]
        line["planned" if status in PLANNED else "engaged"] += Decimal(str(price["value"]))
        line["lines"] += 1
    order = {code: n for n, code in enumerate(code_system_order(DINTILHAC_SYSTEM))}
    parts = []
    for (head, currency), line in sorted(totals.items(), key=lambda k: (order.get(k[0][0], 99), k)):
        coding = {"system": DINTILHAC_SYSTEM, "code": head}
        display = concept_display(DINTILHAC_SYSTEM, head)
        if display:
            coding["display"] = display
        parts.append(
            group(
                "cost",
                [
                    value("head", "Coding", coding),
                    value("planned", "Money", money(line["planned"], currency)),
                    value("engaged", "Money", money(line["engaged"], currency)),
                    value("lines", "Integer", int(line["lines"])),
                ],
            )
        )
    return parts


def cost_total(parts: list[Part]) -> list[Part]:
    sums: dict[str, dict[str, Decimal]] = defaultdict(
        lambda: {"planned": Decimal(0), "engaged": Decimal(0)}
    )
    for part in parts:
        items = {p["name"]: p for p in part["part"]}
        for key in ("planned", "engaged"):
            amount = items[key]["valueMoney"]
            sums[amount["currency"]][key] += Decimal(str(amount["value"]))
    return [
        group(
            "costTotal",
            [
                value("planned", "Money", money(line["planned"], currency)),
                value("engaged", "Money", money(line["engaged"], currency)),
            ],
        )
        for currency, line in sorted(sums.items())
    ]
