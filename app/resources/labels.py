"""The labeler the engine calls on every write: compartment and the one domain label."""

from __future__ import annotations

from typing import Any

from app.resources.domains import DOMAIN_SYSTEM, assign_domain, beneficiary_of


def label(resource: dict[str, Any]) -> tuple[str | None, str | None]:
    """Set exactly one case-domain label in meta.security; return (beneficiary, domain)."""
    domain = assign_domain(resource)
    meta = resource.setdefault("meta", {})
    security = [c for c in meta.get("security", []) if c.get("system") != DOMAIN_SYSTEM]
    if domain is not None:
        security.append({"system": DOMAIN_SYSTEM, "code": domain})
    if security:
        meta["security"] = security
    else:
        meta.pop("security", None)
    return beneficiary_of(resource), domain
