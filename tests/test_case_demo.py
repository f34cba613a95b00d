"""Issue 5, point 7: `relais demo`, idempotent, in French, and the case seen by partners."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shlex
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from app.cli import cli
from app.fhir.types import SUPPORTED
from app.resources.demo import DEMO_PARTNERS
from app.resources.demo_load import load_demo_case
from tests.auth_support import BASE, partner
from tests.case_support import domain_part, one, params, references

STORED = "SELECT count(*) FROM resource_version WHERE type NOT IN ('AuditEvent', 'Provenance')"
SUMMARY = "/fhir/EpisodeOfCare/demo-case/$case-summary"


def _domains(summary: dict[str, Any]) -> list[str]:
    return [one(d, "code")["valueCoding"]["code"] for d in params(summary, "domain")]


async def test_loading_the_demo_twice_creates_nothing_twice(backend, client):
    state = backend.app.state.relais
    await load_demo_case(state)
    before = await backend.scalar(STORED)
    again = await load_demo_case(state)
    assert again.created == 0 and again.unchanged + again.kept == 57
    assert await backend.scalar(STORED) == before
    patient = (await client.get("/fhir/Patient/demo-beneficiary")).json()
    assert patient["meta"]["versionId"] == "1"


async def test_the_demo_is_written_in_french(backend, client):
    await load_demo_case(backend.app.state.relais)
    summary = (await client.get(SUMMARY)).json()
    goals = [
        one(g, "goal")["valueReference"]["display"]
        for d in params(summary, "domain")
        for g in params(d, "goal")
    ]
    assert "Reprendre mon métier de technicien de maintenance sur un poste aménagé" in goals
    assert "Refaire de la randonnée en famille" in goals
    titles = [
        one(a, "activity")["valueReference"].get("display")
        for d in params(summary, "domain")
        for a in params(d, "activity")
    ]
    assert "Étude de poste" in titles and "Réunion de synthèse" in titles


async def test_a_changed_demo_resource_is_kept(backend, client, uid):
    """Someone tried the API on the demo: reloading neither resets nor duplicates it."""
    state = backend.app.state.relais
    await load_demo_case(state)
    spouse = (await client.get("/fhir/RelatedPerson/demo-spouse")).json()
    spouse["telecom"] = [{"system": "phone", "value": f"06 {uid[:8]}"}]
    r = await client.put("/fhir/RelatedPerson/demo-spouse", json=spouse)
    assert r.status_code == 200
    again = await load_demo_case(state)
    assert again.created == 0 and again.kept >= 1
    kept = (await client.get("/fhir/RelatedPerson/demo-spouse")).json()
    assert kept["telecom"] == spouse["telecom"]


def _run_demo(env: dict[str, str], keys: Path, *args: str) -> Any:
    runner = CliRunner()
    return runner.invoke(cli, ["demo", "--keys-dir", str(keys), *args], env=env)


def _form(command: str) -> dict[str, str]:
    """The form fields of the printed curl command."""
    words = shlex.split(command.replace("\\\n", " "))
    form = {}
    for flag, value in itertools.pairwise(words):
        if flag in ("-d", "--data-urlencode"):
            name, _, data = value.partition("=")
            form[name] = data
    return form


async def test_relais_demo_command(backend, client, tmp_path):
    env = {
        "RELAIS_DATABASE_URL": backend.url,
        "RELAIS_BASE_URL": BASE,
        "RELAIS_SIGNING_KEY_FILE": str(backend.settings.signing_key_path()),
        "RELAIS_LOG_LEVEL": "WARNING",
    }
    keys = tmp_path / "demo-keys"
    first = await asyncio.to_thread(_run_demo, env, keys)
    assert first.exit_code == 0, first.output
    for item in DEMO_PARTNERS:
        assert (keys / f"{item['name']}.key.pem").is_file()
        assert (keys / f"{item['name']}.jwks.json").is_file()
    second = await asyncio.to_thread(_run_demo, env, keys)
    assert second.exit_code == 0, second.output
    assert "Demo case: 0 resources created" in second.output
    ids = re.findall(r"demo-cap-parcours  Organization/\S+  (\S+)", first.output)
    assert ids and ids[0] in second.output  # the client is kept, not registered twice

    # The printed token request works as it is.
    command = second.output[second.output.index("curl -s -X POST") :]
    form = _form(command.split("\nOther partners")[0])
    assert form["grant_type"] == "client_credentials"
    r = await client.post("/auth/token", data=form, auth=None)
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    r = await client.get(SUMMARY, headers={"Authorization": f"Bearer {token}"}, auth=None)
    assert r.status_code == 200, r.text
    assert len(_domains(r.json())) == 7

    insurer = await asyncio.to_thread(_run_demo, env, keys, "--token", "demo-insurer")
    assert insurer.exit_code == 0, insurer.output
    assert "system/ChargeItem.cu" in _form(insurer.output)["scope"]


async def _demo_partner(backend, name: str) -> httpx.AsyncClient:
    item = next(p for p in DEMO_PARTNERS if p["name"] == name)
    found = await partner(backend, " ".join(item["scopes"]), org_id=item["organization_id"])
    return found.http


async def test_insurer_and_lawyer_see_only_their_domains(backend, client):
    await load_demo_case(backend.app.state.relais)
    insurer = await _demo_partner(backend, "demo-insurer")
    lawyer = await _demo_partner(backend, "demo-law-firm")
    try:
        seen_by_insurer = (await insurer.get(SUMMARY)).json()
        # The Consent denies the insurer the legal domain that the law firm sees.
        assert _domains(seen_by_insurer) == ["financial", "professional", "coordination"]
        financial = domain_part(seen_by_insurer, "financial")
        assert len(params(financial, "cost")) == 7
        assert "Goal/demo-goal-legal" not in references(
            params(seen_by_insurer, "achievement"), "goal"
        )

        seen_by_lawyer = (await lawyer.get(SUMMARY)).json()
        assert _domains(seen_by_lawyer) == ["legal", "financial", "professional", "coordination"]
        legal = domain_part(seen_by_lawyer, "legal")
        assert references(params(legal, "activity"), "activity") == ["Task/demo-task-claim"]

        # The same rule on $everything and on plain reads.
        everything = (await insurer.get("/fhir/Patient/demo-beneficiary/$everything")).json()
        types = {e["resource"]["resourceType"] for e in everything["entry"]}
        assert "Condition" not in types and "ChargeItem" in types
        assert (
            await insurer.get("/fhir/DocumentReference/demo-expertise-report")
        ).status_code == 404
        assert (
            await lawyer.get("/fhir/DocumentReference/demo-expertise-report")
        ).status_code == 200
        assert (await lawyer.get("/fhir/Condition/demo-condition")).status_code == 404
    finally:
        await insurer.aclose()
        await lawyer.aclose()


def _doc_examples() -> list[dict[str, Any]]:
    text = (Path(__file__).resolve().parents[1] / "docs" / "case-model.md").read_text()
    blocks = re.findall(r"```json\n(.*?)\n```", text, re.DOTALL)
    return [json.loads(b) for b in blocks]


async def test_case_model_examples_pass_validate(backend, client):
    """docs/case-model.md: every resource example is valid R4B and passes the rules."""
    await load_demo_case(backend.app.state.relais)
    examples = [e for e in _doc_examples() if e["resourceType"] in SUPPORTED]
    assert len(examples) >= 14
    for example in examples:
        url = f"/fhir/{example['resourceType']}/{example['id']}/$validate"
        r = await client.post(url, json=example, headers={"Content-Type": "application/fhir+json"})
        assert r.json()["issue"][0]["diagnostics"] == "All OK", (example["id"], r.text)
