"""The demo case loaded by `relais demo`.

Julien Martin, 37, maintenance technician, was seriously injured in a road accident on
8 March 2025 in Lyon. His case is managed by Cap Parcours with a network of partners: the
CHU, a rehabilitation centre (SMR), the MDPH, the liable driver's insurer, his lawyer and
his wife. The story stands in November 2026, after the medical expertise that set the
consolidation date.

Every entry is a PUT with a fixed id, so loading the bundle twice creates nothing new.
Tasks are stored in the state the story has reached: load the bundle inside
`app.resources.rules.importing_history()` so Tasks past `requested` may be created.
"""

from __future__ import annotations

import base64
from typing import Any

from app.resources.conformance import (
    ACCIDENT_DATE_URL,
    ASSESSMENT_SCALE_SYSTEM,
    BIO_PSYCHO_SOCIAL_URL,
    CONSOLIDATION_DATE_URL,
    DINTILHAC_SYSTEM,
    ENCOUNTER_TYPE_SYSTEM,
    IDENTIFIER_TYPE_SYSTEM,
    SOCIAL_SITUATION_SYSTEM,
    concept_display,
)
from app.resources.domains import DOMAIN_SYSTEM
from app.resources.nir import INS_NIR_SYSTEM

Resource = dict[str, Any]

PATIENT = "Patient/demo-beneficiary"
CASE = "EpisodeOfCare/demo-case"
TEAM = "CareTeam/demo-network"
MASTER_PLAN = "CarePlan/demo-plan"
CASE_MANAGER = "PractitionerRole/demo-case-manager-role"
CASE_ORG = "Organization/demo-case-management"
CHU = "Organization/demo-chu"
SMR = "Organization/demo-smr"
MDPH = "Organization/demo-mdph"
INSURER = "Organization/demo-insurer"
LAW_FIRM = "Organization/demo-law-firm"
SPOUSE = "RelatedPerson/demo-spouse"
INTERVIEW = "Encounter/demo-interview"
HOSPITAL_STAY = "Encounter/demo-hospital-stay"

_SECURITY = "?_security=" + DOMAIN_SYSTEM + "|"


def _scope(resource_type: str, interactions: str, domain: str) -> str:
    return f"system/{resource_type}.{interactions}{_SECURITY}{domain}"


def _read(*domains: str) -> list[str]:
    return [_scope("*", "rs", domain) for domain in (*domains, "coordination")]


DEMO_PARTNERS: list[dict[str, Any]] = [
    {
        "name": "demo-cap-parcours",
        "organization_id": "demo-case-management",
        "organization_name": "Cap Parcours",
        "scopes": ["system/*.cruds"],
        "all_beneficiaries": False,
    },
    {
        "name": "demo-chu",
        "organization_id": "demo-chu",
        "organization_name": "CHU Lyon Confluence",
        "scopes": [
            *_read("medical"),
            _scope("Encounter", "cu", "medical"),
            _scope("Condition", "cu", "medical"),
            _scope("DocumentReference", "cu", "medical"),
            _scope("Task", "cu", "medical"),
            _scope("Task", "c", "coordination"),
        ],
        "all_beneficiaries": False,
    },
    {
        "name": "demo-smr",
        "organization_id": "demo-smr",
        "organization_name": "SMR Les Tilleuls",
        "scopes": [
            *_read("medical", "professional"),
            _scope("Encounter", "cu", "medical"),
            _scope("Observation", "cu", "medical"),
            _scope("DocumentReference", "cu", "medical"),
            _scope("Task", "u", "medical"),
            _scope("Task", "u", "professional"),
        ],
        "all_beneficiaries": False,
    },
    {
        "name": "demo-mdph",
        "organization_id": "demo-mdph",
        "organization_name": "MDPH du Rhône",
        "scopes": [
            *_read("social", "professional"),
            _scope("DocumentReference", "cu", "social"),
            _scope("Task", "cu", "social"),
            _scope("Goal", "u", "social"),
        ],
        "all_beneficiaries": False,
    },
    {
        "name": "demo-insurer",
        "organization_id": "demo-insurer",
        "organization_name": "MARA Assurances",
        "scopes": [
            *_read("financial", "professional"),
            _scope("ChargeItem", "cu", "financial"),
            _scope("Task", "u", "financial"),
        ],
        "all_beneficiaries": False,
    },
    {
        "name": "demo-law-firm",
        "organization_id": "demo-law-firm",
        "organization_name": "Cabinet Morel & Associés",
        "scopes": [
            *_read("legal", "financial", "professional"),
            _scope("DocumentReference", "cu", "legal"),
            _scope("ChargeItem", "cu", "financial"),
            _scope("Task", "u", "legal"),
        ],
        "all_beneficiaries": False,
    },
]


def demo_bundle() -> Resource:
    """A transaction Bundle creating (or refreshing) the whole demo case."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in demo_resources()
        ],
    }


def demo_resources() -> list[Resource]:
    """The resources of the demo case, each before the ones that reference it."""
    return [
        *_organizations(),
        *_case_manager(),
        _patient(),
        _spouse(),
        _care_team(),
        _episode(),
        *_consents(),
        _condition(),
        _hospital_stay(),
        _document(),
        _expertise_report(),
        *_goals(),
        _service_request(),
        *_appointments(),
        *_tasks(),
        *_care_plans(),
        *_charge_items(),
        _interview(),
        _communication(),
        _assessment(),
    ]


# --- small builders -------------------------------------------------------------------


def _ref(reference: str, display: str | None = None) -> Resource:
    value: Resource = {"reference": reference}
    if display:
        value["display"] = display
    return value


def _domain(code: str) -> Resource:
    return {
        "coding": [
            {"system": DOMAIN_SYSTEM, "code": code, "display": concept_display(DOMAIN_SYSTEM, code)}
        ]
    }


def _text(text: str) -> Resource:
    return {"text": text}


def _id(reference: str) -> str:
    return reference.split("/", 1)[1]


def _address(line: str, postal_code: str, city: str = "Lyon") -> Resource:
    return {"use": "work", "line": [line], "city": city, "postalCode": postal_code, "country": "FR"}


# --- who --------------------------------------------------------------------------------

_ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"


def _organization(
    reference: str, name: str, type_code: str, type_text: str, address: Resource
) -> Resource:
    return {
        "resourceType": "Organization",
        "id": _id(reference),
        "active": True,
        "type": [{"coding": [{"system": _ORG_TYPE, "code": type_code}], "text": type_text}],
        "name": name,
        "address": [address],
    }


def _organizations() -> list[Resource]:
    return [
        _organization(
            CASE_ORG,
            "Cap Parcours",
            "other",
            "Organisme de case management",
            _address("18 quai Claude Bernard", "69007"),
        ),
        _organization(
            CHU,
            "CHU Lyon Confluence",
            "prov",
            "Centre hospitalier universitaire",
            _address("3 cours Charlemagne", "69002"),
        ),
        _organization(
            SMR,
            "SMR Les Tilleuls",
            "prov",
            "Soins médicaux et de réadaptation",
            _address("41 chemin des Tilleuls", "69340", "Francheville"),
        ),
        _organization(
            MDPH,
            "MDPH du Rhône",
            "govt",
            "Maison départementale des personnes handicapées",
            _address("146 rue Pierre Corneille", "69003"),
        ),
        _organization(
            INSURER,
            "MARA Assurances",
            "ins",
            "Assureur du véhicule impliqué",
            _address("25 rue de la République", "69002"),
        ),
        _organization(
            LAW_FIRM,
            "Cabinet Morel & Associés",
            "bus",
            "Cabinet d'avocats (dommage corporel)",
            _address("9 place Bellecour", "69002"),
        ),
    ]


def _case_manager() -> list[Resource]:
    practitioner = {
        "resourceType": "Practitioner",
        "id": "demo-case-manager",
        "active": True,
        "name": [{"use": "official", "family": "Lefèvre", "given": ["Claire"]}],
        "telecom": [{"system": "email", "value": "claire.lefevre@cap-parcours.example"}],
        "gender": "female",
        "qualification": [{"code": _text("Diplôme universitaire de case management")}],
    }
    role = {
        "resourceType": "PractitionerRole",
        "id": _id(CASE_MANAGER),
        "active": True,
        "period": {"start": "2019-09-01"},
        "practitioner": _ref("Practitioner/demo-case-manager", "Claire Lefèvre"),
        "organization": _ref(CASE_ORG, "Cap Parcours"),
        "code": [_text("Case manager référente")],
        "telecom": [{"system": "phone", "value": "04 00 00 00 18", "use": "work"}],
    }
    return [practitioner, role]


def _patient() -> Resource:
    return {
        "resourceType": "Patient",
        "id": _id(PATIENT),
        "identifier": [
            {
                "use": "official",
                "type": {
                    "coding": [
                        {
                            "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203",
                            "code": "INS-NIR",
                            "display": "NIR définitif",
                        }
                    ]
                },
                "system": INS_NIR_SYSTEM,
                "value": "188036912304579",
            },
            {
                "use": "usual",
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                            "code": "PI",
                            "display": "Patient internal identifier",
                        }
                    ]
                },
                "system": "https://chu-lyon-confluence.example/fhir/sid/ipp",
                "value": "0004812377",
                "assigner": _ref(CHU, "CHU Lyon Confluence"),
            },
        ],
        "active": True,
        "name": [{"use": "official", "family": "Martin", "given": ["Julien", "Pierre"]}],
        "telecom": [{"system": "email", "value": "julien.martin@example.fr", "use": "home"}],
        "gender": "male",
        "birthDate": "1988-03-14",
        "address": [
            {
                "use": "home",
                "line": ["12 rue des Tanneurs"],
                "city": "Lyon",
                "postalCode": "69007",
                "country": "FR",
            }
        ],
        "maritalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                    "code": "M",
                    "display": "Married",
                }
            ]
        },
        "communication": [
            {
                "language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "fr-FR"}]},
                "preferred": True,
            }
        ],
    }


def _spouse() -> Resource:
    return {
        "resourceType": "RelatedPerson",
        "id": _id(SPOUSE),
        "active": True,
        "patient": _ref(PATIENT, "Julien Martin"),
        "relationship": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                        "code": "WIFE",
                        "display": "wife",
                    }
                ],
                "text": "Épouse, aidante principale",
            }
        ],
        "name": [{"use": "official", "family": "Martin", "given": ["Sophie"]}],
        "telecom": [{"system": "email", "value": "sophie.martin@example.fr"}],
        "gender": "female",
    }


def _member(reference: str, display: str, role: str, start: str) -> Resource:
    return {
        "role": [_text(role)],
        "member": _ref(reference, display),
        "period": {"start": start},
    }


def _care_team() -> Resource:
    return {
        "resourceType": "CareTeam",
        "id": _id(TEAM),
        "status": "active",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://loinc.org",
                        "code": "LA28865-6",
                        "display": "Longitudinal care-coordination focused care team",
                    }
                ]
            },
            _domain("coordination"),
        ],
        "name": "Réseau de Julien Martin",
        "subject": _ref(PATIENT, "Julien Martin"),
        "period": {"start": "2025-03-24"},
        "participant": [
            _member(CASE_ORG, "Cap Parcours", "Coordination du parcours", "2025-03-24"),
            _member(CASE_MANAGER, "Claire Lefèvre", "Case manager référente", "2025-03-24"),
            _member(CHU, "CHU Lyon Confluence", "Soins aigus et suivi orthopédique", "2025-03-24"),
            _member(SMR, "SMR Les Tilleuls", "Rééducation et réadaptation", "2025-04-02"),
            _member(MDPH, "MDPH du Rhône", "Compensation du handicap", "2025-05-12"),
            _member(INSURER, "MARA Assurances", "Assureur, indemnisation", "2025-03-24"),
            _member(LAW_FIRM, "Cabinet Morel & Associés", "Avocat de la victime", "2025-04-15"),
            _member(SPOUSE, "Sophie Martin", "Épouse, aidante", "2025-03-24"),
        ],
        "managingOrganization": [_ref(CASE_ORG, "Cap Parcours")],
        "note": [
            {"text": "Réseau constitué à l'ouverture du dossier, à la demande de l'assureur."}
        ],
    }


def _episode() -> Resource:
    claim_type = {"coding": [{"system": IDENTIFIER_TYPE_SYSTEM, "code": "claim-number"}]}
    court_type = {"coding": [{"system": IDENTIFIER_TYPE_SYSTEM, "code": "court-case"}]}
    return {
        "resourceType": "EpisodeOfCare",
        "id": _id(CASE),
        "extension": [
            {"url": ACCIDENT_DATE_URL, "valueDate": "2025-03-08"},
            {"url": CONSOLIDATION_DATE_URL, "valueDate": "2026-09-30"},
        ],
        "identifier": [
            {
                "type": claim_type,
                "system": "https://mara-assurances.example/sinistres",
                "value": "SIN-2025-0381127",
                "assigner": _ref(INSURER, "MARA Assurances"),
            },
            {
                "type": court_type,
                "system": "https://tj-lyon.example/rg",
                "value": "26/04512",
                "assigner": {"display": "Tribunal judiciaire de Lyon"},
            },
        ],
        "status": "active",
        "statusHistory": [{"status": "active", "period": {"start": "2025-03-24"}}],
        "type": [_text("Case management après un accident de la route")],
        "patient": _ref(PATIENT, "Julien Martin"),
        "managingOrganization": _ref(CASE_ORG, "Cap Parcours"),
        "period": {"start": "2025-03-24"},
        "careManager": _ref(CASE_MANAGER, "Claire Lefèvre"),
        "team": [_ref(TEAM, "Réseau de Julien Martin")],
    }


# --- consent ----------------------------------------------------------------------------


def _labels(*domains: str) -> list[Resource]:
    return [_domain(domain)["coding"][0] for domain in domains]


def _recipient(reference: str, display: str) -> Resource:
    return {
        "role": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "code": "IRCP",
                    "display": "information recipient",
                }
            ]
        },
        "reference": _ref(reference, display),
    }


def _consent(consent_id: str, date: str, provision: Resource) -> Resource:
    return {
        "resourceType": "Consent",
        "id": consent_id,
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                    "display": "Privacy Consent",
                }
            ]
        },
        "category": [
            {
                "coding": [
                    {"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}
                ]
            }
        ],
        "patient": _ref(PATIENT, "Julien Martin"),
        "dateTime": f"{date}T10:00:00+01:00",
        "performer": [_ref(PATIENT, "Julien Martin")],
        "organization": [_ref(CASE_ORG, "Cap Parcours")],
        "policyRule": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "OPTIN",
                    "display": "opt-in",
                }
            ]
        },
        "provision": provision,
    }


def _permit(actors: list[Resource], domains: list[str], start: str) -> Resource:
    return {
        "type": "permit",
        "period": {"start": start},
        "actor": actors,
        "securityLabel": _labels(*domains),
    }


def _consents() -> list[Resource]:
    compensation = _permit(
        [
            _recipient(INSURER, "MARA Assurances"),
            _recipient(LAW_FIRM, "Cabinet Morel & Associés"),
        ],
        ["financial", "professional", "legal"],
        "2025-04-15",
    )
    # The insurer is the other party of the compensation claim: no access to legal records.
    compensation["provision"] = [
        {
            "type": "deny",
            "actor": [_recipient(INSURER, "MARA Assurances")],
            "securityLabel": _labels("legal"),
        }
    ]
    return [
        _consent(
            "demo-consent-chu",
            "2025-03-24",
            _permit([_recipient(CHU, "CHU Lyon Confluence")], ["medical"], "2025-03-24"),
        ),
        _consent(
            "demo-consent-smr",
            "2025-04-02",
            _permit(
                [_recipient(SMR, "SMR Les Tilleuls")], ["medical", "professional"], "2025-04-02"
            ),
        ),
        _consent(
            "demo-consent-mdph",
            "2025-05-12",
            _permit([_recipient(MDPH, "MDPH du Rhône")], ["social", "professional"], "2025-05-12"),
        ),
        _consent("demo-consent-compensation", "2025-04-15", compensation),
    ]


# --- medical facts ----------------------------------------------------------------------


def _condition() -> Resource:
    return {
        "resourceType": "Condition",
        "id": "demo-condition",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "confirmed",
                }
            ]
        },
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "problem-list-item",
                    }
                ]
            },
            _domain("medical"),
        ],
        "code": _text("Fracture du plateau tibial droit opérée, traumatisme crânien léger"),
        "subject": _ref(PATIENT, "Julien Martin"),
        "onsetDateTime": "2025-03-08",
        "note": [{"text": "Accident de la voie publique : motocycliste percuté par une voiture."}],
    }


def _hospital_stay() -> Resource:
    return {
        "resourceType": "Encounter",
        "id": _id(HOSPITAL_STAY),
        "identifier": [
            {"system": "https://chu-lyon-confluence.example/fhir/sid/nda", "value": "250308412"}
        ],
        "status": "finished",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "IMP",
            "display": "inpatient encounter",
        },
        "serviceType": _text("Chirurgie orthopédique et traumatologique"),
        "subject": _ref(PATIENT, "Julien Martin"),
        "period": {"start": "2025-03-08T18:40:00+01:00", "end": "2025-04-02T11:00:00+02:00"},
        "reasonCode": [_text("Polytraumatisme après un accident de la voie publique")],
        "hospitalization": {"dischargeDisposition": _text("Transfert en SMR")},
        "serviceProvider": _ref(CHU, "CHU Lyon Confluence"),
    }


def _document() -> Resource:
    report = (
        "Compte rendu d'hospitalisation du 08/03/2025 au 02/04/2025. Ostéosynthèse du "
        "plateau tibial droit le 09/03/2025. Traumatisme crânien léger sans lésion à "
        "l'imagerie. Sortie vers le SMR Les Tilleuls pour rééducation."
    )
    return {
        "resourceType": "DocumentReference",
        "id": "demo-discharge-report",
        "status": "current",
        "docStatus": "final",
        "type": {
            "coding": [
                {"system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"}
            ],
            "text": "Compte rendu d'hospitalisation",
        },
        "category": [_domain("medical")],
        "subject": _ref(PATIENT, "Julien Martin"),
        "date": "2025-04-03T09:00:00+02:00",
        "author": [_ref(CHU, "CHU Lyon Confluence")],
        "custodian": _ref(CHU, "CHU Lyon Confluence"),
        "description": "Compte rendu d'hospitalisation, service d'orthopédie",
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "language": "fr",
                    "data": base64.b64encode(report.encode()).decode(),
                    "title": "Compte rendu d'hospitalisation",
                    "creation": "2025-04-03",
                }
            }
        ],
        "context": {"encounter": [_ref(HOSPITAL_STAY)]},
    }


def _expertise_report() -> Resource:
    summary = (
        "Expertise médicale amiable contradictoire du 06/10/2026. Consolidation fixée au "
        "30/09/2026. DFT total du 08/03/2025 au 11/07/2025 puis partiel. Souffrances "
        "endurées 3,5/7. DFP 12 %. Aide humaine : une heure par jour."
    )
    return {
        "resourceType": "DocumentReference",
        "id": "demo-expertise-report",
        "status": "current",
        "docStatus": "final",
        "type": _text("Rapport d'expertise médicale amiable contradictoire"),
        "category": [_domain("legal")],
        "subject": _ref(PATIENT, "Julien Martin"),
        "date": "2026-10-20T09:00:00+02:00",
        "author": [_ref(LAW_FIRM, "Cabinet Morel & Associés")],
        "description": "Rapport de l'expertise du 6 octobre 2026 : consolidation au 30 septembre "
        "2026.",
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "language": "fr",
                    "data": base64.b64encode(summary.encode()).decode(),
                    "title": "Rapport d'expertise (synthèse)",
                    "creation": "2026-10-20",
                }
            }
        ],
        "context": {"encounter": [_ref(CASE)]},
    }


# --- life project -----------------------------------------------------------------------

_ACHIEVEMENT = "http://terminology.hl7.org/CodeSystem/goal-achievement"


def _goal(
    domain: str,
    description: str,
    lifecycle: str,
    achievement: str | None,
    start: str,
    due: str,
    note: str,
) -> Resource:
    goal: Resource = {
        "resourceType": "Goal",
        "id": f"demo-goal-{domain}",
        "lifecycleStatus": lifecycle,
        "category": [_domain(domain)],
        "description": _text(description),
        "subject": _ref(PATIENT, "Julien Martin"),
        "startDate": start,
        "target": [{"dueDate": due}],
        "statusDate": "2026-11-10",
        "expressedBy": _ref(PATIENT, "Julien Martin"),
        "note": [{"text": note}],
    }
    if achievement:
        goal["achievementStatus"] = {"coding": [{"system": _ACHIEVEMENT, "code": achievement}]}
    return goal


def _goals() -> list[Resource]:
    goals = [
        _goal(
            "medical",
            "Marcher un kilomètre sans canne",
            "active",
            "improving",
            "2025-04-02",
            "2027-06-30",
            "Marche avec une canne sur 500 m en novembre 2026.",
        ),
        _goal(
            "social",
            "Obtenir la PCH pour l'aide humaine et l'aménagement de la salle de bains",
            "active",
            "in-progress",
            "2025-05-12",
            "2027-03-31",
            "Dossier déposé à la MDPH, passage en CDAPH attendu.",
        ),
        _goal(
            "legal",
            "Être indemnisé justement de tous mes préjudices",
            "active",
            "in-progress",
            "2025-04-15",
            "2027-12-31",
            "Consolidation fixée au 30/09/2026 par l'expertise du 06/10/2026.",
        ),
        _goal(
            "financial",
            "Ne pas avancer les frais en attendant l'indemnisation",
            "completed",
            "achieved",
            "2025-04-15",
            "2025-12-31",
            "Provision de 15 000 € versée par l'assureur en décembre 2025.",
        ),
        _goal(
            "professional",
            "Reprendre mon métier de technicien de maintenance sur un poste aménagé",
            "active",
            "no-progress",
            "2025-09-01",
            "2027-09-30",
            "Reprise repoussée : grande fatigabilité. Étude de poste demandée.",
        ),
        _goal(
            "personal",
            "Refaire de la randonnée en famille",
            "proposed",
            None,
            "2026-11-10",
            "2027-10-31",
            "Souhait exprimé lors de l'entretien du 10/11/2026.",
        ),
    ]
    goals[0]["addresses"] = [_ref("Condition/demo-condition")]
    return goals


# --- action plan and partner work ------------------------------------------------------


def _service_request() -> Resource:
    return {
        "resourceType": "ServiceRequest",
        "id": "demo-rehabilitation",
        "status": "active",
        "intent": "order",
        "category": [_domain("medical")],
        "code": _text("Rééducation en hôpital de jour : renforcement et balnéothérapie"),
        "subject": _ref(PATIENT, "Julien Martin"),
        "occurrencePeriod": {"start": "2026-10-05", "end": "2027-03-31"},
        "authoredOn": "2026-09-22",
        "requester": _ref(CHU, "CHU Lyon Confluence"),
        "performer": [_ref(SMR, "SMR Les Tilleuls")],
        "patientInstruction": "Deux séances par semaine, transport en VSL pris en charge.",
    }


def _appointment(
    appointment_id: str,
    domain: str,
    status: str,
    description: str,
    start: str,
    end: str,
    others: list[Resource],
) -> Resource:
    participants = [{"actor": _ref(PATIENT, "Julien Martin"), "status": "accepted"}]
    participants += [{"actor": other, "status": "accepted"} for other in others]
    return {
        "resourceType": "Appointment",
        "id": appointment_id,
        "status": status,
        "serviceCategory": [_domain(domain)],
        "description": description,
        "start": start,
        "end": end,
        "participant": participants,
    }


def _appointments() -> list[Resource]:
    return [
        _appointment(
            "demo-appointment-orthopedics",
            "medical",
            "booked",
            "Consultation de suivi orthopédique au CHU",
            "2027-02-03T10:30:00+01:00",
            "2027-02-03T11:00:00+01:00",
            [],
        ),
        _appointment(
            "demo-appointment-expertise",
            "legal",
            "fulfilled",
            "Expertise médicale amiable contradictoire",
            "2026-10-06T14:00:00+02:00",
            "2026-10-06T17:00:00+02:00",
            [],
        ),
        _appointment(
            "demo-appointment-synthesis",
            "coordination",
            "booked",
            "Réunion de synthèse du réseau",
            "2027-01-12T14:00:00+01:00",
            "2027-01-12T16:00:00+01:00",
            [_ref(CASE_MANAGER, "Claire Lefèvre"), _ref(SPOUSE, "Sophie Martin")],
        ),
    ]


def _task(
    task_id: str,
    domain: str,
    status: str,
    owner: Resource,
    title: str,
    description: str,
    authored: str,
    modified: str,
    due: str | None = None,
    reason: str | None = None,
) -> Resource:
    task: Resource = {
        "resourceType": "Task",
        "id": task_id,
        "status": status,
        "intent": "order",
        "priority": "routine",
        "code": {**_domain(domain), "text": title},
        "description": description,
        "for": _ref(PATIENT, "Julien Martin"),
        "authoredOn": authored,
        "lastModified": modified,
        "requester": _ref(CASE_MANAGER, "Claire Lefèvre"),
        "owner": owner,
    }
    if reason:
        task["statusReason"] = _text(reason)
    if due:
        task["restriction"] = {"period": {"end": due}}
    return task


def _tasks() -> list[Resource]:
    chu = _ref(CHU, "CHU Lyon Confluence")
    smr = _ref(SMR, "SMR Les Tilleuls")
    mdph = _ref(MDPH, "MDPH du Rhône")
    insurer = _ref(INSURER, "MARA Assurances")
    law_firm = _ref(LAW_FIRM, "Cabinet Morel & Associés")
    case_org = _ref(CASE_ORG, "Cap Parcours")
    rehabilitation = _task(
        "demo-task-rehabilitation",
        "medical",
        "in-progress",
        smr,
        "Rééducation en hôpital de jour",
        "Assurer les séances de rééducation prescrites et transmettre un bilan mensuel.",
        "2026-09-25T09:00:00+02:00",
        "2026-10-05T08:30:00+02:00",
        "2027-03-31",
    )
    rehabilitation["focus"] = _ref("ServiceRequest/demo-rehabilitation")
    return [
        _task(
            "demo-task-discharge-report",
            "medical",
            "completed",
            chu,
            "Compte rendu d'hospitalisation",
            "Transmettre le compte rendu d'hospitalisation à la case manager.",
            "2025-03-25T10:00:00+01:00",
            "2025-04-03T09:00:00+02:00",
        ),
        rehabilitation,
        _task(
            "demo-task-workplace-study",
            "professional",
            "requested",
            smr,
            "Étude de poste",
            "Réaliser avec l'ergothérapeute une étude du poste de technicien de maintenance "
            "en vue d'une reprise à temps partiel thérapeutique.",
            "2026-11-12T11:00:00+01:00",
            "2026-11-12T11:00:00+01:00",
            "2027-01-15",
        ),
        _task(
            "demo-task-pch",
            "social",
            "accepted",
            mdph,
            "Instruction de la demande de PCH",
            "Instruire la demande de prestation de compensation du handicap (aide humaine et "
            "aménagement du logement).",
            "2026-10-14T14:00:00+02:00",
            "2026-10-20T10:00:00+02:00",
            "2027-03-31",
        ),
        _task(
            "demo-task-mobility-card",
            "social",
            "rejected",
            mdph,
            "Carte mobilité inclusion en urgence",
            "Attribuer la carte mobilité inclusion (mention stationnement) en procédure d'urgence.",
            "2025-06-02T09:00:00+02:00",
            "2025-06-10T16:00:00+02:00",
            reason="Pas de procédure d'urgence pour cette demande : instruction selon le "
            "circuit ordinaire.",
        ),
        _task(
            "demo-task-provision",
            "financial",
            "completed",
            insurer,
            "Provision sur indemnisation",
            "Verser une provision à valoir sur l'indemnisation pour couvrir les frais avancés.",
            "2025-10-01T09:00:00+02:00",
            "2025-12-15T15:00:00+01:00",
        ),
        _task(
            "demo-task-vehicle",
            "financial",
            "on-hold",
            insurer,
            "Financement du véhicule adapté",
            "Prendre en charge l'aménagement du véhicule (boîte automatique, commandes au volant).",
            "2026-10-12T10:00:00+02:00",
            "2026-11-03T17:00:00+01:00",
            "2027-02-28",
            reason="En attente de deux devis d'aménagement.",
        ),
        _task(
            "demo-task-claim",
            "legal",
            "in-progress",
            law_firm,
            "Réclamation chiffrée",
            "Établir la réclamation chiffrée poste par poste à partir du rapport d'expertise "
            "et la transmettre à l'assureur.",
            "2026-10-08T09:00:00+02:00",
            "2026-10-15T12:00:00+02:00",
            "2027-01-31",
        ),
        _task(
            "demo-task-hiking-club",
            "personal",
            "draft",
            case_org,
            "Club de randonnée adaptée",
            "Rechercher avec Julien un club de randonnée handisport près de Lyon.",
            "2026-11-10T16:00:00+01:00",
            "2026-11-10T16:00:00+01:00",
        ),
        _task(
            "demo-task-synthesis",
            "coordination",
            "accepted",
            case_org,
            "Réunion de synthèse",
            "Préparer et animer la réunion de synthèse du réseau avec Julien et son épouse.",
            "2026-11-10T16:30:00+01:00",
            "2026-11-12T09:00:00+01:00",
            "2027-01-12",
        ),
    ]


def _plan(
    plan_id: str, domain: str, title: str, goals: list[str], activities: list[str]
) -> Resource:
    plan: Resource = {
        "resourceType": "CarePlan",
        "id": plan_id,
        "status": "active",
        "intent": "plan",
        "category": [_domain(domain)],
        "title": title,
        "subject": _ref(PATIENT, "Julien Martin"),
        "period": {"start": "2025-03-24"},
        "created": "2025-03-24",
        "author": _ref(CASE_MANAGER, "Claire Lefèvre"),
        "careTeam": [_ref(TEAM)],
        "goal": [_ref(f"Goal/{goal}") for goal in goals],
        "activity": [{"reference": _ref(activity)} for activity in activities],
    }
    if plan_id != _id(MASTER_PLAN):
        plan["partOf"] = [_ref(MASTER_PLAN)]
    return plan


def _care_plans() -> list[Resource]:
    master = _plan(
        _id(MASTER_PLAN),
        "coordination",
        "Plan d'action de Julien Martin",
        [
            f"demo-goal-{domain}"
            for domain in ("medical", "social", "legal", "financial", "professional", "personal")
        ],
        ["Task/demo-task-synthesis", "Appointment/demo-appointment-synthesis"],
    )
    master["description"] = (
        "Plan d'action co-construit avec Julien et révisé à chaque entretien. Il réunit les "
        "plans de chaque domaine."
    )
    return [
        master,
        _plan(
            "demo-plan-medical",
            "medical",
            "Volet médical",
            ["demo-goal-medical"],
            [
                "ServiceRequest/demo-rehabilitation",
                "Task/demo-task-discharge-report",
                "Task/demo-task-rehabilitation",
                "Appointment/demo-appointment-orthopedics",
            ],
        ),
        _plan(
            "demo-plan-social",
            "social",
            "Volet social",
            ["demo-goal-social"],
            ["Task/demo-task-pch", "Task/demo-task-mobility-card"],
        ),
        _plan(
            "demo-plan-legal",
            "legal",
            "Volet juridique",
            ["demo-goal-legal"],
            ["Appointment/demo-appointment-expertise", "Task/demo-task-claim"],
        ),
        _plan(
            "demo-plan-financial",
            "financial",
            "Volet financier",
            ["demo-goal-financial"],
            ["Task/demo-task-provision", "Task/demo-task-vehicle"],
        ),
        _plan(
            "demo-plan-professional",
            "professional",
            "Volet professionnel",
            ["demo-goal-professional"],
            ["Task/demo-task-workplace-study"],
        ),
        _plan(
            "demo-plan-personal",
            "personal",
            "Volet personnel",
            ["demo-goal-personal"],
            ["Task/demo-task-hiking-club"],
        ),
    ]


# --- costs ------------------------------------------------------------------------------


def _charge(
    head: str, status: str, amount: float, note: str, entered: str, period: Resource
) -> Resource:
    return {
        "resourceType": "ChargeItem",
        "id": f"demo-charge-{head.lower()}",
        "status": status,
        "code": {
            "coding": [
                {
                    "system": DINTILHAC_SYSTEM,
                    "code": head,
                    "display": concept_display(DINTILHAC_SYSTEM, head),
                }
            ]
        },
        "subject": _ref(PATIENT, "Julien Martin"),
        "context": _ref(CASE),
        "occurrencePeriod": period,
        "priceOverride": {"value": amount, "currency": "EUR"},
        "enterer": _ref(CASE_MANAGER, "Claire Lefèvre"),
        "enteredDate": entered,
        "note": [{"text": note}],
    }


def _charge_items() -> list[Resource]:
    before = {"start": "2025-03-08", "end": "2026-09-30"}
    after = {"start": "2026-10-01"}
    return [
        _charge(
            "DSA",
            "billed",
            3480.5,
            "Restes à charge : forfait hospitalier et dépassements d'honoraires.",
            "2025-06-15T10:00:00+02:00",
            before,
        ),
        _charge(
            "FD",
            "billable",
            1265.0,
            "Transports aux consultations et honoraires du médecin-conseil.",
            "2026-10-20T10:00:00+02:00",
            before,
        ),
        _charge(
            "PGPA",
            "billable",
            14820.0,
            "Perte de salaire jusqu'à la consolidation, indemnités journalières déduites.",
            "2026-10-20T10:00:00+02:00",
            before,
        ),
        _charge(
            "SE",
            "billable",
            8000.0,
            "Souffrances endurées évaluées à 3,5/7 par l'expert.",
            "2026-10-20T10:00:00+02:00",
            before,
        ),
        _charge(
            "ATP",
            "planned",
            9360.0,
            "Aide humaine après consolidation : une heure par jour, chiffrage annuel.",
            "2026-10-20T10:00:00+02:00",
            after,
        ),
        _charge(
            "FVA",
            "planned",
            12400.0,
            "Aménagement du véhicule : boîte automatique et commandes au volant (devis).",
            "2026-11-03T17:00:00+01:00",
            after,
        ),
        _charge(
            "PAF-S",
            "planned",
            4000.0,
            "Victime indirecte : Sophie Martin, épouse. Préjudice d'affection.",
            "2026-10-20T10:00:00+02:00",
            before,
        ),
    ]


# --- interviews -------------------------------------------------------------------------


def _interview() -> Resource:
    return {
        "resourceType": "Encounter",
        "id": _id(INTERVIEW),
        # Encounter has no category: the domain is given as a security label.
        "meta": {"security": [_domain("coordination")["coding"][0]]},
        "status": "finished",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "HH",
            "display": "home health",
        },
        "type": [
            {
                "coding": [
                    {
                        "system": ENCOUNTER_TYPE_SYSTEM,
                        "code": "interview",
                        "display": "Case-management interview",
                    }
                ],
                "text": "Entretien de suivi à domicile",
            }
        ],
        "subject": _ref(PATIENT, "Julien Martin"),
        "episodeOfCare": [_ref(CASE)],
        "participant": [
            {"individual": _ref(CASE_MANAGER, "Claire Lefèvre")},
            {"individual": _ref(SPOUSE, "Sophie Martin")},
        ],
        "period": {"start": "2026-11-10T14:00:00+01:00", "end": "2026-11-10T15:30:00+01:00"},
        "reasonCode": [_text("Point d'étape après l'expertise et révision du plan d'action")],
        "serviceProvider": _ref(CASE_ORG, "Cap Parcours"),
    }


def _communication() -> Resource:
    return {
        "resourceType": "Communication",
        "id": "demo-communication",
        "status": "completed",
        "category": [_domain("coordination")],
        "subject": _ref(PATIENT, "Julien Martin"),
        "encounter": _ref(INTERVIEW),
        "sent": "2026-11-12T09:15:00+01:00",
        "recipient": [_ref(PATIENT, "Julien Martin"), _ref(SPOUSE, "Sophie Martin")],
        "sender": _ref(CASE_MANAGER, "Claire Lefèvre"),
        "payload": [
            {
                "contentString": (
                    "Bonjour Julien, bonjour Sophie, suite à notre entretien du 10 novembre : "
                    "l'étude de poste est demandée au SMR, l'assureur attend les devis pour le "
                    "véhicule et la réunion de synthèse aura lieu le 12 janvier à 14 h. "
                    "Bien à vous, Claire Lefèvre."
                )
            }
        ],
    }


# --- assessment -------------------------------------------------------------------------


def _scale(link_id: str, code: str) -> Resource:
    display = concept_display(ASSESSMENT_SCALE_SYSTEM, code)
    coding = {"system": ASSESSMENT_SCALE_SYSTEM, "code": code, "display": display}
    return {"linkId": link_id, "answer": [{"valueCoding": coding}]}


def _situation(link_id: str, *codes: str) -> Resource:
    return {
        "linkId": link_id,
        "answer": [
            {
                "valueCoding": {
                    "system": SOCIAL_SITUATION_SYSTEM,
                    "code": code,
                    "display": concept_display(SOCIAL_SITUATION_SYSTEM, code),
                }
            }
            for code in codes
        ],
    }


def _answer(link_id: str, key: str, value: Any) -> Resource:
    return {"linkId": link_id, "answer": [{key: value}]}


def _assessment() -> Resource:
    return {
        "resourceType": "QuestionnaireResponse",
        "id": "demo-assessment",
        "questionnaire": BIO_PSYCHO_SOCIAL_URL,
        "status": "completed",
        "subject": _ref(PATIENT, "Julien Martin"),
        "encounter": _ref(INTERVIEW),
        "authored": "2026-11-10T15:30:00+01:00",
        "author": _ref(CASE_MANAGER, "Claire Lefèvre"),
        "source": _ref(PATIENT, "Julien Martin"),
        "item": [
            {
                "linkId": "bio",
                "item": [
                    {
                        "linkId": "bio.physique",
                        "item": [
                            _scale("bio.physique.mobilite", "2"),
                            _scale("bio.physique.autonomie", "1"),
                            _scale("bio.physique.douleur", "2"),
                            _scale("bio.physique.fatigue", "3"),
                            _answer(
                                "bio.physique.commentaire",
                                "valueString",
                                "Marche avec une canne, escaliers difficiles.",
                            ),
                        ],
                    },
                    {
                        "linkId": "bio.cognitif",
                        "item": [
                            _scale("bio.cognitif.memoire", "1"),
                            _scale("bio.cognitif.attention", "2"),
                            _scale("bio.cognitif.fonctions-executives", "1"),
                        ],
                    },
                ],
            },
            {
                "linkId": "psy",
                "item": [
                    _scale("psy.humeur", "1"),
                    _scale("psy.anxiete", "2"),
                    _scale("psy.adaptation", "2"),
                    _scale("psy.sommeil", "2"),
                    _answer("psy.suivi", "valueBoolean", True),
                ],
            },
            {
                "linkId": "social",
                "item": [
                    _situation("social.logement", "logement-a-adapter"),
                    _situation("social.soutien-familial", "soutien-important"),
                    _answer("social.aidant", "valueBoolean", True),
                    _situation(
                        "social.ressources", "indemnites-journalieres", "provisions-assureur"
                    ),
                    {
                        "linkId": "social.professionnel",
                        "item": [
                            _situation("social.professionnel.situation", "arret-travail"),
                            _answer(
                                "social.professionnel.metier",
                                "valueString",
                                "Technicien de maintenance industrielle",
                            ),
                            _situation("social.professionnel.reprise", "amenagement-poste"),
                            _answer("social.professionnel.rqth", "valueBoolean", False),
                        ],
                    },
                ],
            },
            {
                "linkId": "parole",
                "item": [
                    _answer(
                        "parole.situation",
                        "valueString",
                        "Je progresse mais je suis vite fatigué. Ne pas pouvoir travailler "
                        "me pèse, et je m'inquiète pour Sophie qui fait beaucoup.",
                    ),
                    _answer(
                        "parole.souhaits",
                        "valueString",
                        "Reprendre mon travail, même à mi-temps, retrouver une voiture que je "
                        "peux conduire et refaire de la randonnée en famille.",
                    ),
                ],
            },
        ],
    }
