"""Plugs the case model into the engine: rules, read-only conformance, operations."""

from __future__ import annotations

from functools import partial
from typing import Any

import orjson

from app.fhir import repository as repo
from app.fhir.context import Context
from app.resources.conformance import is_shipped, shipped_canonicals
from app.resources.everything import everything
from app.resources.publish import publish_conformance
from app.resources.rules import check_rules, rule_error
from app.resources.summary import case_summary
from app.state import AppState


def install(state: AppState) -> None:
    plugins = state.plugins
    plugins.validators.append(check_case_rules)
    plugins.read_only = is_shipped
    plugins.operations[("Patient", True, "everything")] = everything
    plugins.operations[("EpisodeOfCare", True, "everything")] = everything
    plugins.operations[("EpisodeOfCare", True, "case-summary")] = case_summary
    state.startup.append(partial(publish_conformance, state))


async def check_case_rules(
    ctx: Context, resource: dict[str, Any], previous: dict[str, Any] | None
) -> None:
    """The business rules of app.resources.rules, reading what the writer may see."""

    async def lookup(resource_type: str, resource_id: str) -> dict[str, Any] | None:
        row = await repo.read_current(ctx, resource_type, resource_id, "read")
        if row is None or row.deleted or row.content is None:
            return None
        found: dict[str, Any] = orjson.loads(row.content)
        return found

    check_canonical(resource)
    await check_rules(resource, previous, lookup)


def check_canonical(resource: dict[str, Any]) -> None:
    """Only Relais publishes resources at its own canonical URLs."""
    url = resource.get("url")
    if not isinstance(url, str) or url not in shipped_canonicals():
        return
    if not is_shipped(str(resource.get("resourceType")), str(resource.get("id"))):
        raise rule_error(
            "shipped-canonical", f"{url} is published by Relais; use another canonical URL", "url"
        )
