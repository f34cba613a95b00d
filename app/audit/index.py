"""The search index rows of an AuditEvent, built straight from its known shape.

Every request writes an AuditEvent, so the general extractor (one FHIRPath plan per
search parameter, about 60 µs an event) would cost more than many requests do. The
server builds these events itself and knows which elements they carry; the rows are
the same as `extract_index("AuditEvent", …)` gives, which tests/test_audit_index.py
checks, so `relais reindex AuditEvent` rebuilds exactly what was written.
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
    rows.reference += [
        ReferenceRow("patient", *ref[1:])
        for ref in rows.reference
        if ref.param in ("agent", "entity") and ref.target_type == "Patient"
    ]
    rows.token = list(dict.fromkeys(rows.token))
    rows.reference = list(dict.fromkeys(rows.reference))
    return rows
