"""Builders and shortcuts shared by the search tests."""

from __future__ import annotations

from typing import Any

from tests.support import FHIR

SYS = "https://relais.test/id"
DOMAIN = "https://relais.dev/fhir/CodeSystem/case-domain"


async def create(client: Any, body: dict[str, Any]) -> str:
    r = await client.post(f"/fhir/{body['resourceType']}", json=body, headers=FHIR)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def search(client: Any, url: str, params: Any = None, status: int = 200) -> dict[str, Any]:
    r = await client.get(url, params=params)
    assert r.status_code == status, r.text
    return dict(r.json())


def matches(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def included(bundle: dict[str, Any]) -> list[str]:
    return sorted(
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == "include"
    )


async def ids(client: Any, path: str, /, **params: Any) -> list[str]:
    return sorted(matches(await search(client, path, params)))


def person(uid: str, family: str, given: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": SYS, "value": f"{uid}-{family}"}],
        "name": [{"family": family, "given": [given]}],
        **extra,
    }


def goal(
    subject: str, text: str = "marcher", domain: str = "medical", **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Goal",
        "lifecycleStatus": "active",
        "category": [{"coding": [{"system": DOMAIN, "code": domain}]}],
        "description": {"text": text},
        "subject": {"reference": subject},
        **extra,
    }


def task(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Task", "status": "requested", "intent": "order", **extra}
