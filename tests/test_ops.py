"""CapabilityStatement, health, metrics, request ids, OpenAPI drift."""

from __future__ import annotations

import json
from pathlib import Path

from app.fhir.types import SUPPORTED_TYPES
from app.openapi import render_openapi
from tests.support import FHIR


async def test_capability_statement(client):
    r = await client.get("/fhir/metadata")
    assert r.status_code == 200
    cs = r.json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.3.0"
    types = {res["type"] for res in cs["rest"][0]["resource"]}
    assert types == set(SUPPORTED_TYPES)


async def test_every_advertised_interaction_is_served(client, uid):
    """No interaction the CapabilityStatement lists may answer 405."""
    cs = (await client.get("/fhir/metadata")).json()
    org = (
        await client.post(
            "/fhir/Organization", json={"resourceType": "Organization", "name": uid}, headers=FHIR
        )
    ).json()
    calls = {
        "read": ("GET", f"/fhir/Organization/{org['id']}", None),
        "vread": ("GET", f"/fhir/Organization/{org['id']}/_history/1", None),
        "history-instance": ("GET", f"/fhir/Organization/{org['id']}/_history", None),
        "history-type": ("GET", "/fhir/Organization/_history", None),
        "search-type": ("GET", "/fhir/Organization?_id=" + org["id"], None),
        "update": ("PUT", f"/fhir/Organization/{org['id']}", {**org, "name": uid + "2"}),
        "patch": ("PATCH", f"/fhir/Organization/{org['id']}", []),
        "create": ("POST", "/fhir/Organization", {"resourceType": "Organization", "name": uid}),
        "delete": ("DELETE", f"/fhir/Organization/{org['id']}", None),
    }
    entry = next(res for res in cs["rest"][0]["resource"] if res["type"] == "Organization")
    for interaction in [i["code"] for i in entry["interaction"]]:
        method, url, body = calls[interaction]
        ctype = "application/json-patch+json" if method == "PATCH" else "application/fhir+json"
        r = await client.request(
            method, url, json=body, headers={"Content-Type": ctype} if body is not None else {}
        )
        assert r.status_code not in (404, 405, 500), (interaction, r.status_code, r.text)
    audit = next(res for res in cs["rest"][0]["resource"] if res["type"] == "AuditEvent")
    assert {i["code"] for i in audit["interaction"]}.isdisjoint(
        {"create", "update", "delete", "patch"}
    )


async def test_health_ready_metrics_request_id(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200
    r = await client.get("/fhir/Patient/nope", headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await client.get("/fhir/metadata")
    assert len(r.headers["x-request-id"]) == 32
    text = (await client.get("/metrics")).text
    assert 'relais_http_requests_total{method="GET",route="/fhir/{type}/{id}",status="404"}' in text
    assert "relais_http_request_duration_seconds_bucket" in text


def test_openapi_is_current():
    checked_in = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"
    assert checked_in.read_text() == render_openapi(), "run `relais openapi` and commit the result"
    assert "/fhir/{type}/{id}" in json.loads(checked_in.read_text())["paths"]


async def test_migrations_give_the_planner_statistics_on_the_index(backend):
    """PostgreSQL: extended statistics over (type, param, value) of the index tables, so
    that AuditEvents, which fill most of them, do not hide the other types from ANALYZE."""
    assert await backend.scalar("SELECT version_num FROM alembic_version") == "0006"
    if backend.name != "postgres":
        return  # SQLite keeps no extended statistics
    names = "SELECT count(*) FROM pg_statistic_ext WHERE stxname LIKE 'st_search_%'"
    assert await backend.scalar(names) == 7
    # 0005: the string index carries what a page picked from the index reads.
    covering = (
        "SELECT indexdef LIKE '%INCLUDE (res_id, created_seq)' FROM pg_indexes "
        "WHERE indexname = 'ix_search_string_value'"
    )
    assert await backend.scalar(covering) is True
    # 0006: the reference lookups of a _has read the index alone.
    source = (
        "SELECT indexdef LIKE '%(type, res_id, param) INCLUDE (target_type, target_id, "
        "target_seq)' FROM pg_indexes WHERE indexname = 'ix_search_reference_source'"
    )
    assert await backend.scalar(source) is True
