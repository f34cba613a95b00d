"""The CapabilityStatement, built from what is actually registered."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from app.fhir.search.capability import system_search_params, type_search
from app.fhir.types import SUPPORTED_TYPES, interactions_for

if TYPE_CHECKING:
    from app.state import AppState

VERSION = "0.1.0"


def _resource_entry(state: AppState, resource_type: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": resource_type,
        "interaction": [{"code": code} for code in interactions_for(resource_type)],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": "create" in interactions_for(resource_type),
        "conditionalCreate": "create" in interactions_for(resource_type),
        "conditionalUpdate": "update" in interactions_for(resource_type),
        "conditionalDelete": "single"
        if "delete" in interactions_for(resource_type)
        else "not-supported",
        "conditionalRead": "not-supported",
        **type_search(resource_type),
    }
    if "patch" in interactions_for(resource_type):
        entry["updateCreate"] = True
    ops = [
        {"name": name, "definition": f"{state.settings.fhir_base}/OperationDefinition/{name}"}
        # An operation may be registered at type and instance level: list it once.
        for name in sorted({n for (t, _i, n) in state.plugins.operations if t == resource_type})
    ]
    if ops:
        entry["operation"] = ops
    return entry


def build(state: AppState) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "Relais",
        "kind": "instance",
        "software": {"name": "Relais", "version": VERSION},
        "implementation": {
            "description": "Relais case-management FHIR server",
            "url": state.settings.fhir_base,
        },
        "fhirVersion": "4.3.0",
        "format": ["application/fhir+json", "application/json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "resource": [_resource_entry(state, t) for t in SUPPORTED_TYPES],
                "searchParam": system_search_params(),
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                    {"code": "search-system"},
                ],
                "operation": [
                    {
                        "name": name,
                        "definition": f"{state.settings.fhir_base}/OperationDefinition/{name}",
                    }
                    for (rtype, _instance, name) in state.plugins.operations
                    if rtype is None
                ],
            }
        ],
    }
    for extra in state.capability_extras:
        extra(statement)
    return statement


_CACHE: dict[int, bytes] = {}


def capability_statement(state: AppState) -> bytes:
    """Built once per app: what is registered does not change while it runs."""
    key = id(state)
    if key not in _CACHE:
        _CACHE[key] = orjson.dumps(build(state))
    return _CACHE[key]
