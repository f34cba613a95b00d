"""Issue 5, point 1: Relais' conformance resources, loaded at start, served read-only."""

from __future__ import annotations

import pytest
from fhir.resources.R4B import get_fhir_model_class

from app.resources.conformance import load_conformance_resources
from app.resources.publish import publish_conformance
from tests.case_support import FHIR

VERSIONS = "SELECT count(*) FROM resource_version WHERE type = :t AND res_id = :i"


async def test_every_shipped_resource_is_served_at_its_id(client):
    for shipped in load_conformance_resources():
        path = f"/fhir/{shipped['resourceType']}/{shipped['id']}"
        r = await client.get(path)
        assert r.status_code == 200, (path, r.text)
        served = r.json()
        assert served["url"] == shipped["url"]
        get_fhir_model_class(served["resourceType"]).model_validate(served)


async def test_case_domain_codes_in_english_and_french(client):
    cs = (await client.get("/fhir/CodeSystem/case-domain")).json()
    concepts = {c["code"]: c for c in cs["concept"]}
    assert list(concepts) == [
        "medical",
        "social",
        "legal",
        "financial",
        "professional",
        "personal",
        "coordination",
    ]
    french = {
        c: next(d["value"] for d in v["designation"] if d["language"] == "fr")
        for c, v in concepts.items()
    }
    assert french["medical"] == "médical" and french["legal"] == "juridique"
    assert french["financial"] == "financier" and french["personal"] == "personnel"
    assert all(v["display"] for v in concepts.values())


async def test_dintilhac_has_every_head_with_label_definition_and_properties(client):
    cs = (await client.get("/fhir/CodeSystem/dintilhac")).json()
    concepts = {c["code"]: c for c in cs["concept"]}
    direct = ["DSA", "FD", "PGPA", "DSF", "FLA", "FVA", "ATP", "PGPF", "IP", "PSU"]
    direct += ["DFT", "SE", "PET", "DFP", "PA", "PEP", "PS", "PE", "PPE", "PEV"]
    death = ["FO-D", "PR-D", "FD-D", "PAC-D", "PAF-D"]
    survival = ["PR-S", "FD-S", "PAF-S", "PEX-S"]
    assert set(concepts) == {*direct, *death, *survival}
    for code, concept in concepts.items():
        assert concept["display"] and concept["definition"], code
        props = {p["code"]: p["valueCode"] for p in concept["property"]}
        assert set(props) == {"nature", "temporalite", "victime"}, code
    props = {c: {p["code"]: p["valueCode"] for p in v["property"]} for c, v in concepts.items()}
    assert props["PGPA"] == {
        "nature": "patrimonial",
        "temporalite": "temporaire",
        "victime": "directe",
    }
    assert (
        props["DFP"]["nature"] == "extra-patrimonial" and props["DFP"]["temporalite"] == "permanent"
    )
    assert all(props[c]["victime"] == "indirecte-deces" for c in death)
    assert all(props[c]["victime"] == "indirecte-survie" for c in survival)
    assert concepts["SE"]["display"] == "Souffrances endurées"


async def test_value_sets_extensions_and_questionnaire(client):
    for vs_id, system in (
        ("case-domain", "https://relais.dev/fhir/CodeSystem/case-domain"),
        ("dintilhac", "https://relais.dev/fhir/CodeSystem/dintilhac"),
        ("identifier-type", "https://relais.dev/fhir/CodeSystem/identifier-type"),
    ):
        vs = (await client.get(f"/fhir/ValueSet/{vs_id}")).json()
        assert vs["compose"]["include"][0]["system"] == system
    for sd_id in ("accident-date", "consolidation-date"):
        sd = (await client.get(f"/fhir/StructureDefinition/{sd_id}")).json()
        assert sd["type"] == "Extension" and sd["context"][0]["expression"] == "EpisodeOfCare"
        value = next(e for e in sd["differential"]["element"] if e["path"] == "Extension.value[x]")
        assert value["type"] == [{"code": "date"}]
    q = (await client.get("/fhir/Questionnaire/bio-psycho-social")).json()
    groups = {item["linkId"]: item for item in q["item"]}
    assert list(groups) == ["bio", "psy", "social", "parole"]
    assert [i["linkId"] for i in groups["bio"]["item"]] == ["bio.physique", "bio.cognitif"]
    assert "social.professionnel" in [i["linkId"] for i in groups["social"]["item"]]
    assert "social.soutien-familial" in [i["linkId"] for i in groups["social"]["item"]]
    assert [i["linkId"] for i in groups["parole"]["item"]] == [
        "parole.situation",
        "parole.souhaits",
    ]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/fhir/CodeSystem/dintilhac"),
        ("DELETE", "/fhir/CodeSystem/case-domain"),
        ("PATCH", "/fhir/Questionnaire/bio-psycho-social"),
        ("DELETE", "/fhir/StructureDefinition/accident-date"),
    ],
)
async def test_shipped_resources_are_read_only(client, method, path):
    current = (await client.get(path)).json()
    body: object = None
    headers = {}
    if method == "PUT":
        body, headers = {**current, "title": "changed"}, FHIR
    elif method == "PATCH":
        body = [{"op": "replace", "path": "/title", "value": "changed"}]
        headers = {"Content-Type": "application/json-patch+json"}
    r = await client.request(method, path, json=body, headers=headers)
    assert r.status_code == 405, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert (await client.get(path)).json() == current


async def test_nobody_else_publishes_at_relais_canonicals(client):
    fake = {
        "resourceType": "CodeSystem",
        "url": "https://relais.dev/fhir/CodeSystem/dintilhac",
        "status": "active",
        "content": "not-present",
    }
    r = await client.post("/fhir/CodeSystem", json=fake, headers=FHIR)
    assert r.status_code == 422
    assert r.json()["issue"][0]["diagnostics"].startswith("shipped-canonical")


async def test_loading_at_start_is_idempotent(backend, client):
    before = await backend.scalar(VERSIONS, t="CodeSystem", i="dintilhac")
    assert before >= 1
    assert await publish_conformance(backend.app.state.relais) == 0
    assert await backend.scalar(VERSIONS, t="CodeSystem", i="dintilhac") == before
