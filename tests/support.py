"""Small builders shared by the tests."""

from __future__ import annotations

from typing import Any

FHIR = {"Content-Type": "application/fhir+json"}


def patient(family: str = "Dupont", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"family": family, "given": ["Hélène"]}],
        "gender": "female",
        "birthDate": "1984-03-02",
    }
    body.update(extra)
    return body


def identifier(system: str, value: str) -> list[dict[str, str]]:
    return [{"system": system, "value": value}]


def etag_version(response: Any) -> int:
    return int(response.headers["etag"].removeprefix('W/"').removesuffix('"'))
