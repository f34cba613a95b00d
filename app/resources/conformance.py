"""Relais' own conformance resources, shipped as JSON files and served read-only."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

BASE = "https://relais.dev/fhir"
DINTILHAC_SYSTEM = f"{BASE}/CodeSystem/dintilhac"
IDENTIFIER_TYPE_SYSTEM = f"{BASE}/CodeSystem/identifier-type"
ENCOUNTER_TYPE_SYSTEM = f"{BASE}/CodeSystem/encounter-type"
ASSESSMENT_SCALE_SYSTEM = f"{BASE}/CodeSystem/assessment-scale"
SOCIAL_SITUATION_SYSTEM = f"{BASE}/CodeSystem/social-situation"
ACCIDENT_DATE_URL = f"{BASE}/StructureDefinition/accident-date"
CONSOLIDATION_DATE_URL = f"{BASE}/StructureDefinition/consolidation-date"
BIO_PSYCHO_SOCIAL_URL = f"{BASE}/Questionnaire/bio-psycho-social"

CONFORMANCE_DIR = Path(__file__).with_name("conformance")


@cache
def _resources() -> tuple[dict[str, Any], ...]:
    return tuple(
        json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(CONFORMANCE_DIR.glob("*.json"))
    )


def load_conformance_resources() -> list[dict[str, Any]]:
    """Every shipped resource; copies, so callers may change them freely."""
    return [copy.deepcopy(resource) for resource in _resources()]


@cache
def _shipped_ids() -> frozenset[tuple[str, str]]:
    return frozenset((r["resourceType"], r["id"]) for r in _resources())


@cache
def shipped_canonicals() -> frozenset[str]:
    """The canonical URLs of the shipped resources."""
    return frozenset(r["url"] for r in _resources())


def is_shipped(resource_type: str, resource_id: str) -> bool:
    """True for a resource Relais ships; such resources are read-only."""
    return (resource_type, resource_id) in _shipped_ids()


@cache
def code_system_codes(url: str) -> frozenset[str]:
    """The codes of a shipped CodeSystem (empty when Relais does not ship it)."""
    for resource in _resources():
        if resource["resourceType"] == "CodeSystem" and resource["url"] == url:
            return frozenset(_codes(resource.get("concept", [])))
    return frozenset()


def _codes(concepts: list[dict[str, Any]]) -> list[str]:
    found: list[str] = []
    for concept in concepts:
        found.append(concept["code"])
        found.extend(_codes(concept.get("concept", [])))
    return found


def concept_display(url: str, code: str) -> str | None:
    """The display of a code of a shipped CodeSystem."""
    for resource in _resources():
        if resource["resourceType"] == "CodeSystem" and resource["url"] == url:
            for concept in resource.get("concept", []):
                if concept["code"] == code:
                    display: str | None = concept.get("display")
                    return display
    return None


@cache
def code_system_order(url: str) -> tuple[str, ...]:
    """The top-level codes of a shipped CodeSystem, in the order it lists them."""
    for resource in _resources():
        if resource["resourceType"] == "CodeSystem" and resource["url"] == url:
            return tuple(concept["code"] for concept in resource.get("concept", []))
    return ()
