"""Domain labels of the case model and the beneficiary a resource belongs to.

Every stored record of a beneficiary carries one code of the case-domain CodeSystem in
`meta.security`. `assign_domain` gives the label the server sets on write:

1. Patient, EpisodeOfCare and Consent are always `coordination` (case-level records; a
   Consent's own domains are in its provisions, not its label). A CarePlan without
   `partOf` is the case's master plan and is always `coordination`.
2. Otherwise a coding of the case-domain system in `category`, `serviceCategory`
   (Appointment) or `code` (Task, ChargeItem, Observation...) decides.
3. Otherwise a case-domain coding the writer put in `meta.security` decides, for types
   that have neither category nor code (Encounter, QuestionnaireResponse, RelatedPerson).
4. Otherwise the type's default:
   - coordination: CareTeam, CarePlan (sub-plan without a domain), Goal, Task,
     Communication, CommunicationRequest, DocumentReference, QuestionnaireResponse,
     RelatedPerson;
   - medical: Condition, Observation, Encounter, Appointment, ServiceRequest;
   - financial: ChargeItem, Coverage.

Types outside any beneficiary's compartment (Organization, Practitioner, PractitionerRole,
the conformance resources, Subscription, Binary, Group, AuditEvent, Provenance) get no
label (None): a scope alone governs them.
"""

from __future__ import annotations

import re
from typing import Any

DOMAIN_SYSTEM = "https://relais.dev/fhir/CodeSystem/case-domain"
DOMAINS = (
    "medical",
    "social",
    "legal",
    "financial",
    "professional",
    "personal",
    "coordination",
)
PARTNER_DOMAINS = DOMAINS[:-1]
COORDINATION = "coordination"

ALWAYS_COORDINATION = frozenset({"Patient", "EpisodeOfCare", "Consent"})

DEFAULT_DOMAIN = {
    "CareTeam": COORDINATION,
    "CarePlan": COORDINATION,
    "Goal": COORDINATION,
    "Task": COORDINATION,
    "Communication": COORDINATION,
    "CommunicationRequest": COORDINATION,
    "DocumentReference": COORDINATION,
    "QuestionnaireResponse": COORDINATION,
    "RelatedPerson": COORDINATION,
    "Condition": "medical",
    "Observation": "medical",
    "Encounter": "medical",
    "Appointment": "medical",
    "ServiceRequest": "medical",
    "ChargeItem": "financial",
    "Coverage": "financial",
}

# Elements whose codings may carry the domain, in order of precedence.
CATEGORY_ELEMENTS = ("category", "serviceCategory", "code")

# The element holding the beneficiary, per type (Patient compartment of FHIR R4B; Relais
# also places Task in it through Task.for).
BENEFICIARY_ELEMENT = {
    "RelatedPerson": "patient",
    "EpisodeOfCare": "patient",
    "Consent": "patient",
    "Coverage": "beneficiary",
    "Task": "for",
    "Goal": "subject",
    "CarePlan": "subject",
    "CareTeam": "subject",
    "ChargeItem": "subject",
    "Encounter": "subject",
    "Observation": "subject",
    "Condition": "subject",
    "Communication": "subject",
    "CommunicationRequest": "subject",
    "DocumentReference": "subject",
    "QuestionnaireResponse": "subject",
    "ServiceRequest": "subject",
}

_PATIENT_REFERENCE = re.compile(r"^Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


def domain_codes(resource: dict[str, Any]) -> list[str]:
    """Codes of the case-domain system found in the resource's category-like elements."""
    codes: list[str] = []
    for element in CATEGORY_ELEMENTS:
        for concept in as_list(resource.get(element)):
            if not isinstance(concept, dict):
                continue
            for coding in as_list(concept.get("coding")):
                if isinstance(coding, dict) and coding.get("system") == DOMAIN_SYSTEM:
                    codes.append(str(coding.get("code")))
    return codes


def assign_domain(resource: dict[str, Any]) -> str | None:
    """The domain label the server stores on `resource` (None outside compartments)."""
    resource_type = resource.get("resourceType")
    if resource_type in ALWAYS_COORDINATION:
        return COORDINATION
    if resource_type not in DEFAULT_DOMAIN:
        return None
    if resource_type == "CarePlan" and not resource.get("partOf"):
        return COORDINATION
    for code in domain_codes(resource):
        if code in DOMAINS:
            return code
    meta = resource.get("meta")
    if isinstance(meta, dict):
        for coding in as_list(meta.get("security")):
            if (
                isinstance(coding, dict)
                and coding.get("system") == DOMAIN_SYSTEM
                and coding.get("code") in DOMAINS
            ):
                return str(coding["code"])
    return DEFAULT_DOMAIN[resource_type]


def beneficiary_of(resource: dict[str, Any]) -> str | None:
    """The id of the Patient whose compartment holds `resource`, or None.

    Only relative references `Patient/<id>` count. Group, Provenance and AuditEvent are
    left out: Relais treats them as records about resources, not of a beneficiary.
    """
    resource_type = resource.get("resourceType")
    if resource_type == "Patient":
        resource_id = resource.get("id")
        return resource_id if isinstance(resource_id, str) else None
    if resource_type == "Appointment":
        for participant in as_list(resource.get("participant")):
            if isinstance(participant, dict):
                found = patient_id(participant.get("actor"))
                if found:
                    return found
        return None
    element = BENEFICIARY_ELEMENT.get(str(resource_type))
    return patient_id(resource.get(element)) if element else None


def patient_id(reference: Any) -> str | None:
    """The id in a Reference of the form `Patient/<id>` (optionally versioned)."""
    if not isinstance(reference, dict):
        return None
    value = reference.get("reference")
    if not isinstance(value, str):
        return None
    match = _PATIENT_REFERENCE.match(value)
    return match.group(1) if match else None


def as_list(value: Any) -> list[Any]:
    """A repeating element as a list (a single value becomes a one-item list)."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
