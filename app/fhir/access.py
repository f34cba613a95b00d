"""The seam where the access rule plugs into the engine.

The engine asks an AccessPolicy two things: may this caller perform this interaction
on this type at all (else 403), and which rows may it see (a filter added to the SQL).
The open policy is for trusted in-process callers (CLI, demo loader) and tests of the core.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import ColumnElement, Table, true


class AccessPolicy(Protocol):
    name: str

    def check_interaction(self, resource_type: str, interaction: str) -> None:
        """Raise FhirError 403 when no scope covers the type and interaction."""

    def row_filter(
        self, table: Table, resource_type: str | None, interaction: str
    ) -> ColumnElement[bool]:
        """A SQL condition on `table` (resource_current or resource_version columns)."""

    def check_write(self, resource_type: str, resource: dict[str, Any], domain: str | None) -> None:
        """Raise FhirError 403 when the caller may not write a resource with that label."""

    def agent(self) -> dict[str, Any]:
        """Who acts, for Provenance and AuditEvent."""


class OpenPolicy:
    name = "system"

    def check_interaction(self, resource_type: str, interaction: str) -> None:
        return None

    def row_filter(
        self, table: Table, resource_type: str | None, interaction: str
    ) -> ColumnElement[bool]:
        return true()

    def check_write(self, resource_type: str, resource: dict[str, Any], domain: str | None) -> None:
        return None

    def agent(self) -> dict[str, Any]:
        return {"display": "Relais"}


OPEN = OpenPolicy()
