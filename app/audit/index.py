"""The search index rows of the records the server writes, built from their known shape.

Every request writes an AuditEvent and every write a Provenance, so the general
extractor (one FHIRPath plan per search parameter, about 60 µs a record) would cost
more than many requests do. The server builds these records itself and knows which
elements they carry; the rows are the same as `extract_index(…)` gives, which
tests/test_audit.py checks on what was stored, so `relais reindex` rebuilds exactly
what was written.
"""

from __future__ import annotations

from typing import Any

from app.fhir.search.extract import (
    IndexRows,
    ReferenceRow,
    add_date,
    add_reference,
    add_token,
)


def _codings(code: str, value: Any, rows: IndexRows, base: str | None) -> None:
    if isinstance(value, dict):
        add_token(code, value, "Coding", base, rows)


def audit_index(event: dict[str, Any], base: str | None) -> IndexRows:
    rows = IndexRows()
    add_token("action", event.get("action"), "code", base, rows)
    add_token("outcome", event.get("outcome"), "code", base, rows)
    _codings("type", event.get("type"), rows, base)
    for subtype in event.get("subtype", ()):
        _codings("subtype", subtype, rows, base)
    for label in event.get("meta", {}).get("security", ()):
        _codings("_security", label, rows, base)
    add_date("date", event.get("recorded"), "instant", base, rows)
    for agent in event.get("agent", ()):
        add_token("altid", agent.get("altId"), "string", base, rows)
        add_reference("agent", agent.get("who"), "Reference", base, rows)
    for entity in event.get("entity", ()):
        _codings("entity-type", entity.get("type"), rows, base)
        _codings("entity-role", entity.get("role"), rows, base)
        add_reference("entity", entity.get("what"), "Reference", base, rows)
    _patient(rows, ("agent", "entity"))
    return _unique(rows)


def provenance_index(provenance: dict[str, Any], base: str | None) -> IndexRows:
    rows = IndexRows()
    for target in provenance.get("target", ()):
        add_reference("target", target, "Reference", base, rows)
    add_date("recorded", provenance.get("recorded"), "instant", base, rows)
    for agent in provenance.get("agent", ()):
        add_token("agent-type", agent.get("type"), "CodeableConcept", base, rows)
        add_reference("agent", agent.get("who"), "Reference", base, rows)
    for label in provenance.get("meta", {}).get("security", ()):
        _codings("_security", label, rows, base)
    _patient(rows, ("target",))
    return _unique(rows)


def _patient(rows: IndexRows, params: tuple[str, ...]) -> None:
    """`patient`: the references of `params` that point at a Patient."""
    rows.reference += [
        ReferenceRow("patient", *ref[1:])
        for ref in rows.reference
        if ref.param in params and ref.target_type == "Patient"
    ]


def _unique(rows: IndexRows) -> IndexRows:
    rows.token = list(dict.fromkeys(rows.token))
    rows.reference = list(dict.fromkeys(rows.reference))
    return rows
