"""Business rules of the case model, checked on every create and update.

Each failure is a 422 OperationOutcome (`business-rule`) whose diagnostics start with
the rule's stable name: domain-label, goal-domain, careplan-part-of-master,
task-workflow, chargeitem-dintilhac, ins-nir-key, case-date-value,
consolidation-after-accident.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

from app.fhir.outcomes import FhirError
from app.resources.conformance import (
    ACCIDENT_DATE_URL,
    CONSOLIDATION_DATE_URL,
    DINTILHAC_SYSTEM,
    code_system_codes,
)
from app.resources.domains import (
    ALWAYS_COORDINATION,
    CATEGORY_ELEMENTS,
    COORDINATION,
    DEFAULT_DOMAIN,
    DOMAINS,
    PARTNER_DOMAINS,
    as_list,
    domain_codes,
)
from app.resources.nir import INS_NIR_SYSTEM, nir_key_valid


class Lookup(Protocol):
    """Reads the current stored version of a resource (None when absent or deleted)."""

    async def __call__(self, resource_type: str, resource_id: str, /) -> dict[str, Any] | None: ...


def rule_error(rule: str, explanation: str, expression: str) -> FhirError:
    return FhirError(422, "business-rule", f"{rule}: {explanation}", expression=[expression])


async def check_rules(
    resource: dict[str, Any], previous: dict[str, Any] | None, lookup: Lookup
) -> None:
    """Raise FhirError(422) when `resource` (replacing `previous`) breaks a rule."""
    resource_type = resource.get("resourceType")
    if resource_type == "Goal":
        check_goal(resource)
    elif resource_type == "CarePlan":
        await check_careplan(resource, lookup)
    elif resource_type == "Task":
        check_task(resource, previous)
    elif resource_type == "ChargeItem":
        check_charge_item(resource)
    elif resource_type == "Patient":
        check_patient(resource)
    elif resource_type == "EpisodeOfCare":
        check_case_dates(resource)
    check_domain_label(resource)


# --- domain-label -------------------------------------------------------------------


def check_domain_label(resource: dict[str, Any]) -> None:
    """A labelled resource names at most one known domain, and case records coordination."""
    resource_type = str(resource.get("resourceType"))
    if resource_type not in DEFAULT_DOMAIN and resource_type not in ALWAYS_COORDINATION:
        return
    element = next((e for e in CATEGORY_ELEMENTS if e in resource), "category")
    where = f"{resource_type}.{element}"
    codes = set(domain_codes(resource))
    unknown = sorted(codes.difference(DOMAINS))
    if unknown:
        raise rule_error("domain-label", f"unknown case domain {unknown[0]!r}", where)
    if len(codes) > 1:
        raise rule_error(
            "domain-label",
            f"a resource belongs to one domain, found {', '.join(sorted(codes))}",
            where,
        )
    if resource_type in ALWAYS_COORDINATION and codes and codes != {COORDINATION}:
        raise rule_error(
            "domain-label", f"a {resource_type} is always in the coordination domain", where
        )


# --- goal-domain --------------------------------------------------------------------


def check_goal(goal: dict[str, Any]) -> None:
    codes = domain_codes(goal)
    if len(codes) != 1 or codes[0] not in PARTNER_DOMAINS:
        raise rule_error(
            "goal-domain",
            "a Goal needs exactly one category coding of the case-domain system, one of "
            + ", ".join(PARTNER_DOMAINS),
            "Goal.category",
        )
    subject = goal.get("subject")
    if not isinstance(subject, dict) or not subject.get("reference"):
        raise rule_error("goal-domain", "a Goal needs a subject (the beneficiary)", "Goal.subject")


# --- careplan-part-of-master --------------------------------------------------------

_CAREPLAN_REFERENCE = re.compile(r"^CarePlan/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


async def check_careplan(plan: dict[str, Any], lookup: Lookup) -> None:
    rule = "careplan-part-of-master"
    partner = [code for code in domain_codes(plan) if code in PARTNER_DOMAINS]
    part_of = as_list(plan.get("partOf"))
    if not partner and not part_of:
        return  # the case's master plan
    if not partner:
        raise rule_error(
            rule,
            "a CarePlan with partOf is a domain plan and needs a category coding of a "
            "partner domain",
            "CarePlan.category",
        )
    if not part_of:
        raise rule_error(
            rule,
            f"a {partner[0]} CarePlan must be partOf the case's master CarePlan",
            "CarePlan.partOf",
        )
    if len(part_of) != 1:
        raise rule_error(
            rule, "a domain CarePlan is partOf exactly one master CarePlan", "CarePlan.partOf"
        )
    reference = part_of[0].get("reference") if isinstance(part_of[0], dict) else None
    match = _CAREPLAN_REFERENCE.match(reference) if isinstance(reference, str) else None
    if match is None:
        raise rule_error(rule, "partOf must reference CarePlan/<id>", "CarePlan.partOf")
    master = await lookup("CarePlan", match.group(1))
    if master is None:
        raise rule_error(rule, f"{reference} does not exist", "CarePlan.partOf")
    if master.get("partOf") or any(c in PARTNER_DOMAINS for c in domain_codes(master)):
        raise rule_error(
            rule,
            f"{reference} is not a master CarePlan (coordination, without partOf)",
            "CarePlan.partOf",
        )
    if _reference(plan.get("subject")) != _reference(master.get("subject")):
        raise rule_error(
            rule, f"{reference} is the plan of another beneficiary", "CarePlan.subject"
        )


def _reference(value: Any) -> str | None:
    if not isinstance(value, dict) or not isinstance(value.get("reference"), str):
        return None
    return str(value["reference"]).split("/_history/")[0]


# --- task-workflow ------------------------------------------------------------------

TASK_INITIAL = ("draft", "requested")
TASK_TRANSITIONS = {
    "draft": ("requested", "cancelled"),
    "requested": ("accepted", "rejected", "cancelled", "received"),
    "received": ("accepted", "rejected"),
    "accepted": ("in-progress", "cancelled", "on-hold"),
    "in-progress": ("completed", "on-hold", "failed", "cancelled"),
    "on-hold": ("in-progress", "cancelled", "failed"),
}
TASK_REASON_REQUIRED = ("rejected", "cancelled", "on-hold", "failed")

_importing_history: ContextVar[bool] = ContextVar("importing_history", default=False)


@contextmanager
def importing_history() -> Iterator[None]:
    """Lets Tasks be created in any status: for loading a case that already has a
    history (the demo case). Transitions and statusReason are still checked."""
    token = _importing_history.set(True)
    try:
        yield
    finally:
        _importing_history.reset(token)


def check_task(task: dict[str, Any], previous: dict[str, Any] | None) -> None:
    status = task.get("status")
    if not isinstance(status, str):
        return  # structure validation reports a missing status
    before = previous.get("status") if previous else None
    if before is None:
        if status not in TASK_INITIAL and not _importing_history.get():
            raise rule_error(
                "task-workflow",
                f"a new Task starts as draft or requested, not {status!r}",
                "Task.status",
            )
    elif status != before and status != "entered-in-error":
        allowed = TASK_TRANSITIONS.get(str(before), ())
        if status not in allowed:
            after = ", ".join(allowed) if allowed else "entered-in-error only"
            raise rule_error(
                "task-workflow",
                f"a Task cannot go from {before!r} to {status!r}; from {before!r} it can go "
                f"to {after}",
                "Task.status",
            )
    if status in TASK_REASON_REQUIRED and not _has_concept(task.get("statusReason")):
        raise rule_error(
            "task-workflow",
            f"statusReason is required when a Task is {status}",
            "Task.statusReason",
        )


def _has_concept(value: Any) -> bool:
    return isinstance(value, dict) and bool(value.get("text") or value.get("coding"))


# --- chargeitem-dintilhac -----------------------------------------------------------


def check_charge_item(item: dict[str, Any]) -> None:
    """A cost line of a case names a known Dintilhac head and a price (priceOverride)."""
    rule = "chargeitem-dintilhac"
    context = _reference(item.get("context")) or ""
    if not context.startswith("EpisodeOfCare/") and not item.get("subject"):
        return
    code = item.get("code")
    codings = [
        coding
        for coding in (as_list(code.get("coding")) if isinstance(code, dict) else [])
        if isinstance(coding, dict) and coding.get("system") == DINTILHAC_SYSTEM
    ]
    if not codings:
        raise rule_error(
            rule, f"ChargeItem.code needs a coding of {DINTILHAC_SYSTEM}", "ChargeItem.code"
        )
    heads = code_system_codes(DINTILHAC_SYSTEM)
    for coding in codings:
        if coding.get("code") not in heads:
            raise rule_error(
                rule, f"unknown Dintilhac head {coding.get('code')!r}", "ChargeItem.code"
            )
    price = item.get("priceOverride")
    if (
        not isinstance(price, dict)
        or isinstance(price.get("value"), bool)
        or not isinstance(price.get("value"), int | float | Decimal)
        or not price.get("currency")
    ):
        raise rule_error(
            rule,
            "a cost line needs its price in priceOverride (value and currency)",
            "ChargeItem.priceOverride",
        )


# --- ins-nir-key --------------------------------------------------------------------


def check_patient(patient: dict[str, Any]) -> None:
    for index, identifier in enumerate(as_list(patient.get("identifier"))):
        if not isinstance(identifier, dict) or identifier.get("system") != INS_NIR_SYSTEM:
            continue
        value = identifier.get("value")
        if not isinstance(value, str) or not nir_key_valid(value):
            raise rule_error(
                "ins-nir-key",
                "the INS-NIR is not 13 characters followed by its valid 2-digit control key",
                f"Patient.identifier[{index}].value",
            )


# --- consolidation-after-accident ---------------------------------------------------

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def check_case_dates(case: dict[str, Any]) -> None:
    accidents: list[tuple[date, date]] = []
    consolidations: list[tuple[date, date]] = []
    for index, extension in enumerate(as_list(case.get("extension"))):
        if not isinstance(extension, dict):
            continue
        url = extension.get("url")
        if url not in (ACCIDENT_DATE_URL, CONSOLIDATION_DATE_URL):
            continue
        span = _date_span(extension.get("valueDate"))
        if span is None:
            raise rule_error(
                "case-date-value",
                f"the extension {url} needs a valueDate",
                f"EpisodeOfCare.extension[{index}]",
            )
        (accidents if url == ACCIDENT_DATE_URL else consolidations).append(span)
    for _, consolidation_end in consolidations:
        for accident_start, _ in accidents:
            if consolidation_end < accident_start:
                raise rule_error(
                    "consolidation-after-accident",
                    "the consolidation date cannot precede the accident date",
                    "EpisodeOfCare.extension",
                )


def _date_span(value: Any) -> tuple[date, date] | None:
    """First and last day a FHIR date (possibly partial: YYYY or YYYY-MM) can mean."""
    match = _DATE.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    year, month, day = match.groups()
    try:
        if day:
            exact = date(int(year), int(month), int(day))
            return exact, exact
        if month:
            first = date(int(year), int(month), 1)
            following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
            return first, date.fromordinal(following.toordinal() - 1)
        return date(int(year), 1, 1), date(int(year), 12, 31)
    except ValueError:
        return None
