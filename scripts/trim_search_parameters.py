"""Regenerate app/fhir/search/data/search-parameters.json.

Keeps the official FHIR R4B SearchParameter definitions whose `base` includes a
type Relais serves (or Resource / DomainResource), without the bulky fields
(narrative, contacts, descriptions, XPath). Run from the repository root:

    python scripts/trim_search_parameters.py [../shared/fhir-r4b/search-parameters.json]

The source is the `search-parameters.json` published with the R4B (4.3.0)
specification; by default it is read from ../shared/fhir-r4b/.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from app.fhir.types import SUPPORTED_TYPES as ENGINE_TYPES

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT.parent / "shared" / "fhir-r4b" / "search-parameters.json"
TARGET = ROOT / "app" / "fhir" / "search" / "data" / "search-parameters.json"

SUPPORTED_TYPES = set(ENGINE_TYPES)
GENERIC_BASES = {"Resource", "DomainResource"}

KEPT_FIELDS = (
    "resourceType",
    "id",
    "url",
    "version",
    "name",
    "status",
    "code",
    "base",
    "type",
    "expression",
    "target",
    "multipleOr",
    "multipleAnd",
    "comparator",
    "modifier",
    "chain",
    "component",
)


def trim(source: dict[str, Any]) -> dict[str, Any]:
    entries = []
    for entry in source["entry"]:
        resource = entry["resource"]
        if not set(resource["base"]) & (SUPPORTED_TYPES | GENERIC_BASES):
            continue
        kept = {key: resource[key] for key in KEPT_FIELDS if key in resource}
        entries.append({"fullUrl": resource["url"], "resource": kept})
    entries.sort(key=lambda e: e["resource"]["id"])
    return {
        "resourceType": "Bundle",
        "id": "relais-r4b-search-parameters",
        "type": "collection",
        "entry": entries,
    }


def main() -> None:
    source_path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE
    source = json.loads(source_path.read_text(encoding="utf-8"))
    bundle = trim(source)
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(bundle, indent=1, ensure_ascii=False) + "\n"
    TARGET.write_text(text, encoding="utf-8")
    print(f"{len(bundle['entry'])} SearchParameters written to {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
