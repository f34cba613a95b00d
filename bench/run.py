"""Relais core benchmark: load, then read / vread / create / update / transaction under wrk,
next to a minimal FastAPI + asyncpg read of the same table.

    python bench/run.py [--resources 20000] [--duration 15] [--connections 32]

See bench/README.md. Creates a fresh PostgreSQL database and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import (
    DEFAULT_PG,
    Auth,
    Driver,
    LoadResult,
    PgStats,
    Req,
    Scenario,
    ScenarioResult,
    Service,
    Target,
    Wrk,
    asyncpg_dsn,
    console,
    load_bundles,
    log,
    machine_info,
    peak_rss_mb,
    postgres_version,
    relais_command,
    relais_server,
    rss_mb,
    scenarios_table,
    scratch_database,
    targets_table,
    utc_stamp,
    wait_quiet,
    write_results,
)

FAMILIES = [
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
    "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "David", "Bertrand", "Roux",
    "Vincent", "Fournier", "Morel", "Girard", "André", "Lefebvre", "Mercier", "Dupont",
]  # fmt: skip
GIVEN = [
    ("Hélène", "female"), ("Camille", "female"), ("Léa", "female"), ("Chloé", "female"),
    ("Manon", "female"), ("Inès", "female"), ("Zoé", "female"), ("Élodie", "female"),
    ("Lucas", "male"), ("Hugo", "male"), ("Jules", "male"), ("Léo", "male"),
    ("Gabriel", "male"), ("Raphaël", "male"), ("Arthur", "male"), ("Noé", "male"),
]  # fmt: skip
CITIES = [("Paris", "75011"), ("Lyon", "69003"), ("Marseille", "13005"), ("Lille", "59000"),
          ("Nantes", "44000"), ("Bordeaux", "33000"), ("Toulouse", "31000")]  # fmt: skip
# (LOINC code, display, unit, low, high)
VITALS = [
    ("29463-7", "Body weight", "kg", 45.0, 110.0),
    ("8302-2", "Body height", "cm", 150.0, 195.0),
    ("8867-4", "Heart rate", "/min", 50.0, 110.0),
    ("8310-5", "Body temperature", "Cel", 36.0, 39.5),
    ("72514-3", "Pain severity - 0-10 verbal numeric rating", "{score}", 0.0, 10.0),
    ("9279-1", "Respiratory rate", "/min", 10.0, 25.0),
]
IDENT_SYSTEM = "https://relais.dev/bench/patient-id"


def patient(rng: random.Random, key: str, rid: str | None = None) -> dict[str, Any]:
    given, gender = rng.choice(GIVEN)
    city, postal = rng.choice(CITIES)
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": IDENT_SYSTEM, "value": key}],
        "active": True,
        "name": [{"use": "official", "family": rng.choice(FAMILIES), "given": [given]}],
        "telecom": [{"system": "phone", "value": f"+33 6 {rng.randrange(10**7, 10**8)}"}],
        "gender": gender,
        "birthDate": f"{rng.randint(1940, 2015)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "address": [
            {
                "line": [f"{rng.randint(1, 120)} rue de la République"],
                "city": city,
                "postalCode": postal,
                "country": "FR",
            }
        ],
    }
    if rid is not None:
        resource = {"resourceType": "Patient", "id": rid, **resource}
    return resource


def observation(rng: random.Random, subject: str) -> dict[str, Any]:
    code, display, unit, low, high = rng.choice(VITALS)
    day = datetime(2025, 1, 1, tzinfo=UTC).timestamp() + rng.randrange(0, 600 * 86400)
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
        "subject": {"reference": subject},
        "effectiveDateTime": datetime.fromtimestamp(day, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "valueQuantity": {
            "value": round(rng.uniform(low, high), 1),
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def entry(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    return {
        "fullUrl": full_url or f"urn:uuid:{uuid.uuid4()}",
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }


def dataset(total: int, per_patient: int, bundle_size: int, seed: int) -> Iterator[dict[str, Any]]:
    """Transaction Bundles of whole groups (a Patient, then its Observations by urn:uuid)."""
    rng = random.Random(seed)
    group = 1 + per_patient
    groups_per_bundle = max(1, bundle_size // group)
    made = 0
    n = 0
    while made < total:
        entries: list[dict[str, Any]] = []
        for _ in range(groups_per_bundle):
            if made >= total:
                break
            n += 1
            urn = f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
            entries.append(entry(patient(rng, f"load-{n}"), urn))
            made += 1
            for _ in range(min(per_patient, total - made)):
                entries.append(entry(observation(rng, urn)))
                made += 1
        yield {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def minified(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def core_scenarios(patient_ids: list[str], seed: int) -> list[Scenario]:
    """The five interactions of the core benchmark, plus the minimal endpoint's read."""
    rng = random.Random(seed)
    ids = patient_ids[:]
    rng.shuffle(ids)
    reads = [Req("GET", f"/fhir/Patient/{i}") for i in ids]
    create_body = patient(rng, "create-{{n}}")
    updates = []
    for i in ids:
        body = patient(rng, f"load-upd-{i[:8]}", rid=i)
        body["name"][0]["given"] = [body["name"][0]["given"][0], "bench-{{n}}"]
        updates.append(Req("PUT", f"/fhir/Patient/{i}", minified(body)))
    transactions = []
    for k in range(64):
        urn = f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
        entries = [entry(patient(rng, f"tx-{k}-{{{{n}}}}"), urn)]
        entries += [entry(observation(rng, urn)) for _ in range(9)]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        transactions.append(Req("POST", "/fhir", minified(bundle)))
    return [
        Scenario("read", "GET /fhir/Patient/{id}, random loaded ids", reads),
        Scenario(
            "vread",
            "GET /fhir/Patient/{id}/_history/1, random loaded ids",
            [Req("GET", f"{r.path}/_history/1") for r in reads],
        ),
        Scenario(
            "create",
            "POST /fhir/Patient, a Patient with a unique identifier",
            [Req("POST", "/fhir/Patient", minified(create_body))],
            expect=frozenset({201}),
        ),
        Scenario(
            "update",
            "PUT /fhir/Patient/{id}, random loaded ids, a unique body each time",
            updates,
        ),
        Scenario(
            "transaction",
            "POST /fhir, transaction Bundle: 1 Patient + 9 Observations (urn:uuid refs)",
            transactions,
        ),
        Scenario(
            "minimal-read",
            "GET /fhir/Patient/{id} on bench/minimal_app.py (FastAPI + asyncpg, one SELECT)",
            reads,
            target="minimal",
        ),
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Relais core benchmark (see bench/README.md)")
    p.add_argument("--resources", type=int, default=20_000, help="resources to load")
    p.add_argument("--observations-per-patient", type=int, default=4)
    p.add_argument("--bundle-size", type=int, default=100, help="entries per load Bundle")
    p.add_argument("--load-concurrency", type=int, default=4, help="concurrent load clients")
    p.add_argument("--duration", type=float, default=15, help="seconds per scenario")
    p.add_argument("--warmup", type=float, default=3, help="unmeasured seconds before reads")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument(
        "--scenarios",
        default="read,vread,create,update,transaction,minimal-read",
        help="comma-separated subset to run",
    )
    p.add_argument(
        "--pg",
        default=os.environ.get("BENCH_PG_URL", DEFAULT_PG),
        help="PostgreSQL admin URL (a database is created there and dropped)",
    )
    p.add_argument("--keep-db", action="store_true", help="do not drop the database")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=20,
        help="before each scenario, wait up to this many seconds for other processes to "
        "leave the machine idle (0: only measure)",
    )
    p.add_argument(
        "--quiet-threshold",
        type=float,
        default=25,
        help="background CPU (%% of one core) above which the machine counts as busy",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="record py-spy profiles of the server during each Relais scenario",
    )
    return p.parse_args(argv)


async def main(args: argparse.Namespace) -> int:
    stamp = utc_stamp()
    wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    work = Path(tempfile.mkdtemp(prefix="relais-bench-"))
    wrk = Wrk(work, threads=args.threads)
    profile_dir = Path(__file__).resolve().parent / "results" / f"{stamp}-profiles"
    driver = Driver(wrk, args, profile_dir)
    results: list[ScenarioResult] = []
    settings = {k: v for k, v in vars(args).items() if k != "pg"}
    payload: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(),
        "machine": machine_info(),
        "settings": settings,
        "wrk": wrk.version(),
    }
    relais_cmd = relais_command()
    try:
        async with scratch_database(args.pg, "relais_bench", keep=args.keep_db) as db_url:
            payload["postgres"] = await postgres_version(db_url)
            driver.stats = PgStats(db_url)
            server = relais_server(db_url, work, relais_cmd)
            auth = Auth()
            await auth.register(server.env)
            payload["auth"] = "bearer" if auth.enabled else "none"
            await server.start(timeout=120)
            try:
                payload["load_background_cpu_pct"] = round(
                    await wait_quiet(args.quiet_threshold, args.quiet_wait), 1
                )
                await auth.refresh(server.url)
                load, patient_ids = await load_dataset(server.url, auth, args)
                payload["load"] = {
                    "resources": load.resources,
                    "bundles": load.bundles,
                    "bundle_size": load.bundle_size,
                    "concurrency": load.concurrency,
                    "seconds": round(load.seconds, 2),
                    "resources_per_s": round(load.rate, 1),
                    "errors": load.errors,
                }
                scenarios = [s for s in core_scenarios(patient_ids, args.seed) if s.name in wanted]
                for scenario in (s for s in scenarios if s.target == "relais"):
                    # a new token for every scenario (tokens live ≤ 300 s)
                    results.append(await driver.drive(scenario, server, auth=auth))
                payload["server_rss_mb"] = round(rss_mb(server.pid), 1)
                payload["server_peak_rss_mb"] = round(peak_rss_mb(server.pid), 1)
                log(f"server RSS at the end: {payload['server_rss_mb']} MiB")
            finally:
                await server.stop()
                errors = server_errors(server.log_path)
                payload["server_log_errors"] = len(errors)
                payload["server_log_error_lines"] = errors[:10]
                if errors:
                    log(
                        f"[yellow]the server logged {len(errors)} errors;"
                        f" first: {errors[0]}[/yellow]"
                    )
            minimal = [s for s in scenarios if s.target == "minimal"]
            if minimal:
                results.append(await run_minimal(minimal[0], db_url, work, driver))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    payload["finished"] = datetime.now(UTC).isoformat()
    payload["scenarios"] = results
    targets = evaluate(results, payload)
    payload["targets"] = [{**vars(t), "passed": t.passed} for t in targets]
    report(payload, results, targets)
    path = write_results(payload, stamp)
    console.print(f"Results written to {path}")
    if args.profile and profile_dir.exists():
        console.print(
            f"Profiles (py-spy collapsed stacks) in {profile_dir}: "
            f"python bench/profile_summary.py {profile_dir}/read.collapsed"
        )
    return 0


def server_errors(log_path: Path) -> list[str]:
    """Lines the server logged at level error (unhandled exceptions and the like)."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return []
    return [line[:500] for line in text.splitlines() if '"level": "error"' in line]


async def load_dataset(
    base_url: str, auth: Auth, args: argparse.Namespace
) -> tuple[LoadResult, list[str]]:
    patient_ids: list[str] = []

    def collect(response: dict[str, Any]) -> None:
        for e in response.get("entry", []):
            location = e.get("response", {}).get("location", "")
            if "/Patient/" in location:
                patient_ids.append(location.split("/Patient/", 1)[1].split("/", 1)[0])

    log(
        f"loading {args.resources:,} resources in transaction Bundles of {args.bundle_size} "
        f"({args.load_concurrency} concurrent clients)"
    )
    bundles = dataset(args.resources, args.observations_per_patient, args.bundle_size, args.seed)
    load = await load_bundles(
        base_url, bundles, auth=auth, concurrency=args.load_concurrency, on_response=collect
    )
    log(
        f"loaded {load.resources:,} resources in {load.seconds:.1f}s: "
        f"{load.rate:,.0f} resources/s ({len(patient_ids):,} Patients, {load.errors} errors)"
    )
    if not patient_ids:
        raise SystemExit("no Patient was loaded: nothing to read")
    return load, patient_ids


async def run_minimal(
    scenario: Scenario, db_url: str, work: Path, driver: Driver
) -> ScenarioResult:
    app = Path(__file__).resolve().parent / "minimal_app.py"
    env = dict(os.environ)
    env["BENCH_MINIMAL_DSN"] = asyncpg_dsn(db_url)
    minimal = Service(
        "minimal", [sys.executable, str(app), "--host", "127.0.0.1", "--port", "{port}"], env, work
    )
    await minimal.start()
    try:
        result = await driver.drive(scenario, minimal)
        result.extra["rss_mb"] = round(rss_mb(minimal.pid), 1)
        return result
    finally:
        await minimal.stop()


def evaluate(results: list[ScenarioResult], payload: dict[str, Any]) -> list[Target]:
    by_name = {r.name: r for r in results}
    targets: list[Target] = []
    read = by_name.get("read")
    minimal = by_name.get("minimal-read")
    if read and minimal and minimal.rps:
        ratio = read.rps / minimal.rps
        payload["read_over_minimal"] = round(ratio, 3)
        if read.server_cpu_ms_per_req:
            # the same ratio in server CPU per request: less sensitive to others' load
            payload["read_over_minimal_cpu"] = round(
                minimal.server_cpu_ms_per_req / read.server_cpu_ms_per_req, 3
            )
        targets.append(Target("read / minimal read", ratio, 0.5, "x", True))
    if "create" in by_name:
        targets.append(Target("create throughput", by_name["create"].rps, 300, "req/s", True))
    if read:
        targets.append(Target("read p99 latency", read.p99_ms, 50, "ms", False))
    if "server_rss_mb" in payload:
        targets.append(Target("server RSS at the end", payload["server_rss_mb"], 300, "MiB", False))
    errors = sum(r.errors for r in results) + payload.get("load", {}).get("errors", 0)
    if errors:
        targets.append(Target("errors (load and scenarios)", errors, 0, "", False))
    return targets


def report(payload: dict[str, Any], results: list[ScenarioResult], targets: list[Target]) -> None:
    m = payload["machine"]
    console.rule("Relais core benchmark")
    console.print(
        f"{payload['started'][:19]}Z · {m['cpus']} CPUs ({m['cpu_model']}) · {m['memory_gib']} GiB"
        f" · PostgreSQL {payload.get('postgres', '?')} · {payload['wrk']} · commit"
        f" {m['git_commit']} · auth: {payload.get('auth', '?')}"
    )
    load = payload.get("load")
    if load:
        console.print(
            f"Load: {load['resources']:,} resources in {load['bundles']} transaction Bundles of"
            f" ≤{load['bundle_size']} ({load['concurrency']} clients): {load['seconds']} s ="
            f" [bold]{load['resources_per_s']:,} resources/s[/bold], {load['errors']} errors"
        )
    console.print(scenarios_table("Scenarios (wrk)", results))
    if "read_over_minimal" in payload:
        console.print(
            f"read / minimal read = [bold]{payload['read_over_minimal']:.3f}[/bold] in req/s;"
            f" {payload.get('read_over_minimal_cpu', 0):.3f} in server CPU per request"
            " (minimal CPU ms/req ÷ read CPU ms/req)"
        )
    if "server_rss_mb" in payload:
        console.print(
            f"Server RSS at the end: {payload['server_rss_mb']} MiB"
            f" (peak {payload['server_peak_rss_mb']} MiB)"
        )
    console.print(targets_table(targets))


if __name__ == "__main__":
    started = time.monotonic()
    code = asyncio.run(main(parse_args()))
    console.print(f"[dim]total {time.monotonic() - started:.0f} s[/dim]")
    sys.exit(code)
