"""The resource types Relais serves and what each one allows."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

SUPPORTED_TYPES: tuple[str, ...] = (
    "Patient",
    "RelatedPerson",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "EpisodeOfCare",
    "CareTeam",
    "CarePlan",
    "Goal",
    "Task",
    "ServiceRequest",
    "Condition",
    "Observation",
    "Encounter",
    "Appointment",
    "Communication",
    "CommunicationRequest",
    "DocumentReference",
    "Questionnaire",
    "QuestionnaireResponse",
    "Consent",
    "ChargeItem",
    "Coverage",
    "Group",
    "Provenance",
    "AuditEvent",
    "Subscription",
    "SubscriptionTopic",
    "CodeSystem",
    "ValueSet",
    "StructureDefinition",
    "Binary",
)
SUPPORTED = frozenset(SUPPORTED_TYPES)

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

ALL_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)

# Interactions a client may not perform on a type, whatever its scopes.
RESTRICTED: dict[str, frozenset[str]] = {
    "AuditEvent": frozenset({"create", "update", "patch", "delete"}),
    "Provenance": frozenset({"update", "patch", "delete"}),
}


def interactions_for(resource_type: str) -> tuple[str, ...]:
    denied = RESTRICTED.get(resource_type, frozenset())
    return tuple(i for i in ALL_INTERACTIONS if i not in denied)


@cache
def model_class(resource_type: str) -> Any:
    return get_fhir_model_class(resource_type)


@cache
def summary_elements(resource_type: str) -> frozenset[str]:
    """Top-level JSON names flagged as summary elements in the base spec."""
    names = {"id", "meta", "implicitRules"}
    for name, field in model_class(resource_type).model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and extra.get("summary_element_property"):
            names.add(field.alias or name)
    return frozenset(names)


@cache
def mandatory_elements(resource_type: str) -> frozenset[str]:
    names = {"id", "meta"}
    for name, field in model_class(resource_type).model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and extra.get("element_required"):
            names.add(field.alias or name)
    return frozenset(names)
