"""Relais access-rule and token benchmark.

    python bench/bench_auth.py [--patients 400] [--duration 10] [--connections 32] [--rounds 3]

One server, one database, one run: the same read and search requests are driven with
the token of a client registered for all beneficiaries (no access filter in the SQL)
and with the token of a hospital that sees, by CareTeam membership and Consent, the
medical and coordination records of half the beneficiaries (the access filter on),
alternating, `--rounds` times. Then POST /auth/token with pre-signed RS384 and ES384
client assertions (a new jti each). Creates a fresh PostgreSQL database and drops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from harness import (
    DEFAULT_PG,
    Req,
    Scenario,
    ScenarioResult,
    Service,
    Wrk,
    console,
    cpu_seconds,
    log,
    machine_info,
    postgres_version,
    relais_command,
    relais_server,
    scenarios_table,
    scratch_database,
    utc_stamp,
    wait_quiet,
    write_results,
)
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

DOMAIN = "https://relais.dev/fhir/CodeSystem/case-domain"
DINTILHAC = "https://relais.dev/fhir/CodeSystem/dintilhac"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ROLE = {
    "coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}
    ]
}
PARTNERS = [f"bench-p{i}" for i in range(10)]


# --- the dataset -------------------------------------------------------------------------


def ref(reference: str) -> dict[str, str]:
    return {"reference": reference}


def consent(cid: str, patient: str, org: str, domains: list[str]) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "id": cid,
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": ref(f"Patient/{patient}"),
        "policyRule": {"text": "opt-in"},
        "provision": {
            "type": "permit",
            "actor": [{"role": ROLE, "reference": ref(f"Organization/{org}")}],
            "securityLabel": [{"system": DOMAIN, "code": d} for d in domains],
        },
    }


def case_bundle(n: int, rng: random.Random, observations: int) -> tuple[dict[str, Any], bool]:
    """One beneficiary's case; the hospital is in the team of every other one."""
    pid, visible = f"bp{n}", n % 2 == 0
    subject = ref(f"Patient/{pid}")
    members = rng.sample(PARTNERS, 3) + (["bench-chu"] if visible else [])
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": pid,
            "gender": rng.choice(["male", "female"]),
            "name": [{"family": f"Bench{n}", "given": ["Alex"]}],
            "birthDate": "1985-06-01",
        },
        {
            "resourceType": "EpisodeOfCare",
            "id": f"be{n}",
            "status": "active",
            "patient": subject,
            "managingOrganization": ref("Organization/bench-cm"),
        },
        {
            "resourceType": "CareTeam",
            "id": f"bt{n}",
            "status": "active",
            "subject": subject,
            "participant": [{"member": ref(f"Organization/{m}")} for m in members],
        },
    ]
    for m in members:
        domains = (
            ["medical"] if m == "bench-chu" else rng.sample(["social", "legal", "financial"], 2)
        )
        resources.append(consent(f"bc{n}-{m}", pid, m, domains))
    for k in range(observations):
        resources.append(
            {
                "resourceType": "Observation",
                "id": f"bo{n}-{k}",
                "status": "final",
                "code": {
                    "coding": [{"system": "http://loinc.org", "code": "8867-4"}],
                    "text": "Heart rate",
                },
                "subject": subject,
                "valueQuantity": {"value": 60 + k, "unit": "/min"},
            }
        )
    for k in range(observations // 2):
        resources.append(
            {
                "resourceType": "ChargeItem",
                "id": f"bi{n}-{k}",
                "status": "billable",
                "code": {"coding": [{"system": DINTILHAC, "code": "DSA"}]},
                "subject": subject,
                "context": ref(f"EpisodeOfCare/be{n}"),
                "priceOverride": {"value": 100 + k, "currency": "EUR"},
            }
        )
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in resources
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}, visible


# --- clients and tokens ------------------------------------------------------------------


def relais_cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [relais_command(), *args], env=env, capture_output=True, text=True, check=True
    ).stdout
    return dict(json.loads(out)) if out.strip().startswith("{") else {}


def signed_assertion(key: Any, kid: str, client_id: str, token_url: str) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "exp": now + 280,
        "iat": now,
        "jti": uuid.uuid4().hex,
    }
    alg = "ES384" if isinstance(key, ECKey) else "RS384"
    return jwt.encode({"alg": alg, "kid": kid}, claims, key, algorithms=[alg])


def token_body(assertion: str, scope: str) -> str:
    return str(
        httpx.QueryParams(
            grant_type="client_credentials",
            scope=scope,
            client_assertion_type=ASSERTION_TYPE,
            client_assertion=assertion,
        )
    )


class KeyClient:
    def __init__(self, made: dict[str, Any], kind: str) -> None:
        self.client_id = made["client_id"]
        self.kid = made["kid"]
        pem = Path(made["key_file"]).read_bytes()
        self.key = RSAKey.import_key(pem) if kind == "RS384" else ECKey.import_key(pem)

    async def token(self, base: str, scope: str) -> str:
        body = token_body(
            signed_assertion(self.key, self.kid, self.client_id, f"{base}/auth/token"), scope
        )
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.post(f"{base}/auth/token", content=body, headers=headers)
        r.raise_for_status()
        return str(r.json()["access_token"])


async def secret_token(base: str, made: dict[str, Any], scope: str) -> str:
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(
            f"{base}/auth/token",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=(made["client_id"], made["client_secret"]),
        )
    r.raise_for_status()
    return str(r.json()["access_token"])


# --- the run -----------------------------------------------------------------------------


async def load(base: str, token: str, args: argparse.Namespace) -> list[int]:
    rng = random.Random(args.seed)
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/fhir+json",
        "Prefer": "return=minimal",
    }
    visible: list[int] = []
    queue: asyncio.Queue[int | None] = asyncio.Queue()
    bundles = {}
    for n in range(args.patients):
        bundles[n], seen = case_bundle(n, rng, args.observations)
        if seen:
            visible.append(n)
        queue.put_nowait(n)

    async def worker(client: httpx.AsyncClient) -> None:
        while (n := await queue.get()) is not None:
            r = await client.post(f"{base}/fhir", json=bundles[n], headers=headers)
            if r.status_code != 200:
                raise RuntimeError(f"load failed: {r.status_code} {r.text[:500]}")

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=120) as client:
        for org in ["bench-chu", *PARTNERS]:
            body = {"resourceType": "Organization", "id": org, "name": org}
            await client.put(f"{base}/fhir/Organization/{org}", json=body, headers=headers)
        for _ in range(4):
            queue.put_nowait(None)
        await asyncio.gather(*(worker(client) for _ in range(4)))
    log(f"loaded {args.patients} cases in {time.perf_counter() - started:.1f} s")
    return visible


def access_scenarios(visible: list[int], observations: int, seed: int) -> list[Scenario]:
    rng = random.Random(seed)
    reads = [
        Req("GET", f"/fhir/Observation/bo{rng.choice(visible)}-{rng.randrange(observations)}")
        for _ in range(2000)
    ]
    by_subject = [
        Req("GET", f"/fhir/Observation?subject=Patient/bp{rng.choice(visible)}&_count=10")
        for _ in range(2000)
    ]
    broad = [Req("GET", "/fhir/Observation?code=http://loinc.org|8867-4&_count=20")]
    return [
        Scenario("read", "GET /fhir/Observation/{id} of beneficiaries the hospital sees", reads),
        Scenario("search", "GET /fhir/Observation?subject=Patient/{id}&_count=10", by_subject),
        Scenario(
            "search-broad", "GET /fhir/Observation?code=…|8867-4&_count=20 (all cases)", broad
        ),
    ]


def token_scenario(name: str, client: KeyClient, base: str, count: int) -> Scenario:
    url = f"{base}/auth/token"
    reqs = [
        Req(
            "POST",
            "/auth/token",
            token_body(
                signed_assertion(client.key, client.kid, client.client_id, url), "system/*.rs"
            ),
        )
        for _ in range(count)
    ]
    return Scenario(name, f"POST /auth/token, private_key_jwt {name[-5:]}, one jti each", reqs)


async def database_cpu(db_url: str) -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL backend serving the bench database."""
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return {r["pid"]: cpu_seconds(r["pid"]) for r in rows}


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """Backends opened during the run count whole; those closed during it are lost."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


async def drive(
    wrk: Wrk,
    scenario: Scenario,
    server: Service,
    token: str,
    args: argparse.Namespace,
    db_url: str,
) -> ScenarioResult:
    """One wrk run; adds the CPU time per request of server + PostgreSQL backends, which
    others' load on a shared machine disturbs much less than the request rate."""
    await wait_quiet(args.quiet_threshold, args.quiet_wait)
    server_before, db_before = cpu_seconds(server.pid), await database_cpu(db_url)
    result = await wrk.run(
        scenario,
        server.url,
        connections=args.connections,
        duration=args.duration,
        token=token,
        server_pid=server.pid,
    )
    server_cpu = cpu_seconds(server.pid) - server_before
    db_cpu = cpu_delta(db_before, await database_cpu(db_url))
    result.extra["total_cpu_ms_per_req"] = round(
        1000 * (server_cpu + max(db_cpu, 0.0)) / max(result.requests, 1), 3
    )
    log(f"{scenario.name}: {result.rps:,.1f} req/s, p50 {result.p50_ms:.2f} ms")
    log(f"statuses {result.statuses}, CPU {result.extra['total_cpu_ms_per_req']} ms/req")
    return result


async def main(args: argparse.Namespace) -> int:
    stamp = utc_stamp()
    work = Path(tempfile.mkdtemp(prefix="relais-bench-auth-"))
    wrk = Wrk(work, threads=args.threads)
    payload: dict[str, Any] = {"machine": machine_info(), "settings": vars(args) | {"pg": None}}
    rows: list[dict[str, Any]] = []
    results: list[ScenarioResult] = []
    try:
        async with scratch_database(args.pg, "relais_bench_auth", keep=args.keep_db) as db_url:
            payload["postgres"] = await postgres_version(db_url)
            server = relais_server(db_url, work)
            env = server.env
            subprocess.run([relais_command(), "migrate"], env=env, check=True, capture_output=True)
            keys = str(work / "keys")
            admin = relais_cli(
                env,
                "clients",
                "add",
                "bench-admin",
                "--organization",
                "Organization/bench-cm",
                "--secret",
                "--scope",
                "system/*.cruds",
                "--all-beneficiaries",
            )
            chu = relais_cli(
                env,
                "clients",
                "add",
                "bench-chu",
                "--organization",
                "Organization/bench-chu",
                "--generate-key",
                keys,
                "--scope",
                "system/*.rs",
            )
            rs = relais_cli(
                env,
                "clients",
                "add",
                "bench-rs",
                "--organization",
                "Organization/bench-chu",
                "--generate-key",
                keys,
                "--key-type",
                "RS384",
                "--scope",
                "system/*.rs",
            )
            es = relais_cli(
                env,
                "clients",
                "add",
                "bench-es",
                "--organization",
                "Organization/bench-chu",
                "--generate-key",
                keys,
                "--key-type",
                "ES384",
                "--scope",
                "system/*.rs",
            )
            await server.start(timeout=120)
            try:
                base = server.url
                visible = await load(base, await secret_token(base, admin, "system/*.cruds"), args)
                # Fresh statistics, as autovacuum would give a database in service.
                conn = await asyncpg.connect(db_url)
                try:
                    await conn.execute("ANALYZE")
                finally:
                    await conn.close()
                hospital = KeyClient(chu, "RS384")
                # The filter is on: the hospital cannot see the cases it is not part of.
                token = await hospital.token(base, "system/*.rs")
                async with httpx.AsyncClient() as c:
                    hidden = f"{base}/fhir/Observation/bo{1 if 0 in visible else 0}-0"
                    status = (
                        await c.get(hidden, headers={"Authorization": f"Bearer {token}"})
                    ).status_code
                    assert status == 404, status
                for scenario in access_scenarios(visible, args.observations, args.seed):
                    runs: dict[str, list[float]] = {"all-beneficiaries": [], "hospital": []}
                    cpu: dict[str, list[float]] = {"all-beneficiaries": [], "hospital": []}
                    for _ in range(args.rounds):
                        for who in runs:
                            if who == "hospital":
                                tok = await hospital.token(base, "system/*.rs")
                            else:
                                tok = await secret_token(base, admin, "system/*.cruds")
                            result = await drive(wrk, scenario, server, tok, args, db_url)
                            result.name = f"{scenario.name} ({who})"
                            results.append(result)
                            runs[who].append(result.rps)
                            cpu[who].append(result.extra["total_cpu_ms_per_req"])
                    off = statistics.median(runs["all-beneficiaries"])
                    on = statistics.median(runs["hospital"])
                    cpu_off = statistics.median(cpu["all-beneficiaries"])
                    cpu_on = statistics.median(cpu["hospital"])
                    rows.append(
                        {
                            "scenario": scenario.name,
                            "without_rule_rps": off,
                            "with_rule_rps": on,
                            "ratio": round(on / off, 3),
                            "without_rule_cpu_ms": cpu_off,
                            "with_rule_cpu_ms": cpu_on,
                            "cpu_ratio": round(cpu_off / cpu_on, 3) if cpu_on else None,
                        }
                    )
                for name, made, kind in (
                    ("token-RS384", rs, "RS384"),
                    ("token-ES384", es, "ES384"),
                ):
                    scenario = token_scenario(name, KeyClient(made, kind), base, args.assertions)
                    result = await drive(wrk, scenario, server, "", args, db_url)
                    results.append(result)
                    ok = result.statuses.get("200", 0) / max(result.seconds, 1e-9)
                    rows.append(
                        {
                            "scenario": name,
                            "tokens_per_s": round(ok, 1),
                            "cpu_ms_per_token": result.extra["total_cpu_ms_per_req"],
                            "server_cpu_pct": result.server_cpu_pct,
                            "statuses": result.statuses,
                        }
                    )
            finally:
                await server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    console.print(scenarios_table("Relais access rule and tokens", results))
    for row in rows:
        console.print(row)
    payload["summary"] = rows
    payload["scenarios"] = results
    path = write_results(payload, f"auth-{stamp}")
    console.print(f"Results written to {path}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Relais access-rule and token benchmark")
    p.add_argument("--patients", type=int, default=400)
    p.add_argument("--observations", type=int, default=10, help="Observations per patient")
    p.add_argument("--duration", type=float, default=10, help="seconds per run")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--rounds", type=int, default=3, help="alternating runs per scenario")
    p.add_argument("--assertions", type=int, default=12_000, help="pre-signed per token run")
    p.add_argument("--pg", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--keep-db", action="store_true", help="do not drop the database")
    p.add_argument("--quiet-wait", type=float, default=20)
    p.add_argument("--quiet-threshold", type=float, default=25)
    return p.parse_args(argv)


if __name__ == "__main__":
    os.environ.setdefault("BENCH_CONTENT_TYPE", "application/x-www-form-urlencoded")
    sys.exit(asyncio.run(main(parse_args())))
