"""Structural validation with fhir.resources; the model is discarded afterwards."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from app.fhir.outcomes import FhirError
from app.fhir.types import ID_RE, SUPPORTED, model_class


def fhirpath_of(resource_type: str, loc: tuple[Any, ...]) -> str:
    path = resource_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and not part.startswith("function-"):
            path += "." + part.removesuffix("__ext")
    return path


def check_structure(resource: Any, expected_type: str | None = None) -> dict[str, Any]:
    """Return the resource when it is a valid R4B resource of a supported type."""
    if not isinstance(resource, dict):
        raise FhirError(400, "structure", "The body must be a JSON object (a FHIR resource)")
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise FhirError(400, "structure", "The resource has no resourceType")
    if expected_type is not None and resource_type != expected_type:
        raise FhirError(
            400,
            "invalid",
            f"resourceType '{resource_type}' does not match the URL type '{expected_type}'",
            expression=["resourceType"],
        )
    if resource_type not in SUPPORTED:
        raise FhirError(422, "not-supported", f"Resource type '{resource_type}' is not supported")
    rid = resource.get("id")
    if rid is not None and (not isinstance(rid, str) or not ID_RE.match(rid)):
        raise FhirError(400, "invalid", f"'{rid}' is not a valid FHIR id", expression=["id"])
    try:
        model_class(resource_type).model_validate(resource)
    except ValidationError as exc:
        issues: list[dict[str, Any]] = []
        for err in exc.errors()[:20]:
            path = fhirpath_of(resource_type, tuple(err.get("loc", ())))
            issues.append(
                {
                    "severity": "error",
                    "code": "structure" if err.get("type") == "extra_forbidden" else "value",
                    "diagnostics": f"{path}: {err.get('msg')}",
                    "expression": [path],
                }
            )
        first = issues[0]
        raise FhirError(
            422,
            first["code"],
            first["diagnostics"],
            expression=first["expression"],
            issues=issues[1:],
        ) from None
    except (ValueError, TypeError) as exc:
        raise FhirError(422, "structure", f"{resource_type}: {exc}") from None
    return resource
