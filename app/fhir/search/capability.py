"""What the CapabilityStatement says about search, from the registry itself."""

from __future__ import annotations

from functools import cache
from typing import Any

from app.fhir.search.include import include_values, revinclude_values
from app.fhir.search.registry import SearchParam, common_params, params_for


def _entry(param: SearchParam) -> dict[str, Any]:
    return {"name": param.code, "definition": param.url, "type": param.type}


@cache
def type_search(resource_type: str) -> dict[str, Any]:
    """searchParam, searchInclude and searchRevInclude of one type's entry."""
    params = params_for(resource_type)
    return {
        "searchParam": [_entry(params[code]) for code in sorted(params)],
        "searchInclude": include_values(resource_type),
        "searchRevInclude": revinclude_values(resource_type),
    }


def system_search_params() -> list[dict[str, Any]]:
    params = common_params()
    return [_entry(params[code]) for code in sorted(params)]
