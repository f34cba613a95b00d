"""_summary and _elements on stored JSON, without rebuilding models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from app.fhir.outcomes import FhirError
from app.fhir.types import mandatory_elements, summary_elements

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}
SUMMARY_MODES = frozenset({"true", "false", "text", "data", "count"})


@dataclass(frozen=True)
class Shape:
    summary: str | None = None
    elements: tuple[str, ...] | None = None

    @property
    def is_identity(self) -> bool:
        return self.elements is None and self.summary in (None, "false", "count")


def parse_shape(params: list[tuple[str, str]]) -> Shape:
    summary = None
    elements: list[str] | None = None
    for name, value in params:
        if name == "_summary":
            if value not in SUMMARY_MODES:
                raise FhirError(400, "invalid", f"_summary must be one of {sorted(SUMMARY_MODES)}")
            summary = value
        elif name == "_elements":
            elements = (elements or []) + [e.strip() for e in value.split(",") if e.strip()]
    return Shape(summary, tuple(elements) if elements is not None else None)


def _subsetted(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    resource["meta"] = meta
    return resource


def shape_resource(resource: dict[str, Any], shape: Shape) -> dict[str, Any]:
    resource_type = resource.get("resourceType", "")
    keep: set[str] | None = None
    if shape.elements is not None:
        keep = {e.split(".", 1)[0] for e in shape.elements} | mandatory_elements(resource_type)
    elif shape.summary == "true":
        keep = set(summary_elements(resource_type))
    elif shape.summary == "text":
        keep = {"text", "id", "meta"} | mandatory_elements(resource_type)
    elif shape.summary == "data":
        out = {k: v for k, v in resource.items() if k != "text"}
        return _subsetted(out)
    if keep is None:
        return resource
    keep.add("resourceType")
    out = {k: v for k, v in resource.items() if k in keep}
    return _subsetted(out)


def shape_bytes(content: bytes, shape: Shape) -> bytes:
    if shape.is_identity:
        return content
    return orjson.dumps(shape_resource(orjson.loads(content), shape))
