"""`relais clients add | list | revoke`, run as the real command on the test database."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import httpx
from joserfc.jwk import ECKey, RSAKey

from app.auth.keys import public_jwks
from app.auth.service import AuthService
from tests.auth_support import assertion, new_key, token_form

RELAIS = str(Path(sys.executable).with_name("relais"))


async def relais(backend, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "RELAIS_DATABASE_URL": backend.url, "RELAIS_LOG_LEVEL": "WARNING"}
    proc = await asyncio.create_subprocess_exec(
        RELAIS, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def add(backend, *args: str) -> dict:
    code, out, err = await relais(backend, "clients", "add", *args)
    assert code == 0, err
    return json.loads(out)  # exactly one JSON object on stdout


async def get_token(client: httpx.AsyncClient, key, client_id: str, kid: str, scope: str):
    form = token_form(assertion(key, client_id, kid=kid), scope)
    return await client.post("/auth/token", data=form, auth=None)


async def test_generate_key_then_token_then_revoke(backend, client, tmp_path, uid):
    org = f"Organization/cli-{uid}"
    made = await add(
        backend,
        f"hospital-{uid}",
        "--organization",
        org,
        "--organization-name",
        "CHU de Lyon",
        "--generate-key",
        str(tmp_path / "keys"),
        "--scope",
        "system/Patient.rs system/Observation.cruds",
    )
    assert set(made) == {"client_id", "kid", "key_file"}
    key_file = Path(made["key_file"])
    assert key_file == tmp_path / "keys" / f"hospital-{uid}.key.pem"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    jwks = json.loads((tmp_path / "keys" / f"hospital-{uid}.jwks.json").read_text())
    assert jwks["keys"][0]["kid"] == made["kid"] and "d" not in jwks["keys"][0]

    # The Organization did not exist: it was created with the given name.
    r = await client.get(f"/fhir/{org}")
    assert r.status_code == 200 and r.json()["name"] == "CHU de Lyon"

    # The partner uses the private key file exactly as written (PKCS#8 PEM, RS384).
    key = RSAKey.import_key(key_file.read_bytes())
    r = await get_token(client, key, made["client_id"], made["kid"], "system/Patient.rs")
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert (
        await client.get("/fhir/Patient?_count=1", headers=bearer, auth=None)
    ).status_code == 200

    code, out, _ = await relais(backend, "clients", "list")
    listed = {c["client_id"]: c for c in json.loads(out)}
    entry = listed[made["client_id"]]
    assert entry["organization"] == org and entry["active"] is True
    assert entry["auth"] == "private_key_jwt"

    code, out, err = await relais(backend, "clients", "revoke", made["client_id"])
    assert code == 0, err
    # No new token ...
    r = await get_token(client, key, made["client_id"], made["kid"], "system/Patient.rs")
    assert r.status_code == 400 and r.json()["error"] == "invalid_client"
    # ... and the live one stops working (revocation is checked at most ACTIVE_TTL late).
    await asyncio.sleep(AuthService.ACTIVE_TTL + 0.1)
    r = await client.get("/fhir/Patient?_count=1", headers=bearer, auth=None)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    code, out, _ = await relais(backend, "clients", "list")
    assert {c["client_id"]: c for c in json.loads(out)}[made["client_id"]]["active"] is False

    code, _, err = await relais(backend, "clients", "revoke", "no-such-client")
    assert code != 0 and "No client" in err


async def test_es384_key_jwks_file_secret_and_url(backend, client, tmp_path, uid):
    org = f"Organization/cli2-{uid}"
    made = await add(
        backend,
        f"insurer-{uid}",
        "--organization",
        org,
        "--generate-key",
        str(tmp_path),
        "--key-type",
        "ES384",
        "--scope",
        "system/*.rs",
    )
    key = ECKey.import_key(Path(made["key_file"]).read_bytes())
    r = await get_token(client, key, made["client_id"], made["kid"], "system/*.rs")
    assert r.status_code == 200, r.text
    # The Organization exists now: a second client of it does not recreate it.
    r = await client.get(f"/fhir/{org}")
    assert r.json()["name"] == f"insurer-{uid}" and r.json()["meta"]["versionId"] == "1"

    partner_key = new_key("ES384")
    jwks_file = tmp_path / "partner.jwks.json"
    jwks_file.write_text(json.dumps(public_jwks(partner_key)))
    made = await add(
        backend, f"lawyer-{uid}", "--organization", org, "--jwks-file", str(jwks_file),
        "--scope", "system/*.rs",
    )  # fmt: skip
    kid = partner_key.thumbprint()
    assert made["kid"] == kid
    r = await get_token(client, partner_key, made["client_id"], kid, "system/*.rs")
    assert r.status_code == 200, r.text

    made = await add(
        backend, f"bench-{uid}", "--organization", org, "--secret", "--scope", "system/*.rs",
        "--all-beneficiaries",
    )  # fmt: skip
    assert set(made) == {"client_id", "client_secret"}
    form = {"grant_type": "client_credentials", "scope": "system/*.rs"}
    r = await client.post("/auth/token", data=form, auth=(made["client_id"], made["client_secret"]))
    assert r.status_code == 200, r.text

    made = await add(
        backend, f"remote-{uid}", "--organization", org,
        "--jwks-url", "https://partner.example/jwks.json", "--scope", "system/*.rs",
    )  # fmt: skip
    _, out, _ = await relais(backend, "clients", "list")
    entry = {c["client_id"]: c for c in json.loads(out)}[made["client_id"]]
    assert entry["jwks_url"] == "https://partner.example/jwks.json"


async def test_bad_registrations_are_refused(tmp_path):
    """Refused before the database is touched: one run is enough."""
    uid = uuid.uuid4().hex[:8]
    backend = SimpleNamespace(url=f"sqlite+aiosqlite:///{tmp_path}/never-created.db")
    keys = tmp_path / "keys"
    cases = [
        ["x", "--organization", "Organization/a", "--scope", "system/*.rs"],  # no credential
        ["x", "--organization", "Organization/a", "--secret", "--generate-key", str(keys),
         "--scope", "system/*.rs"],  # two credentials
        ["x", "--organization", "Patient/a", "--secret", "--scope", "system/*.rs"],
        ["x", "--organization", "Organization/a", "--secret", "--scope", "system/*.fly"],
        ["x", "--organization", "Organization/a", "--secret", "--scope", "patient/*.rs"],
        ["x", "--organization", "Organization/a", "--generate-key", str(keys),
         "--key-type", "HS256", "--scope", "system/*.rs"],
    ]  # fmt: skip
    for args in cases:
        args[0] = f"bad-{uid}"
        code, out, _ = await relais(backend, "clients", "add", *args)
        assert code != 0, args
        assert out == "", args
    assert not keys.exists()  # no key written for a refused registration
    assert not (tmp_path / "never-created.db").exists()
