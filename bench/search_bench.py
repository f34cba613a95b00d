"""Relais search benchmark: beneficiaries with a case each, loaded through transaction
Bundles into PostgreSQL, then the six searches of issue 3 next to read-by-id under wrk.

    python bench/search_bench.py [--beneficiaries 10000] [--duration 20] [--connections 16]

Each beneficiary brings 41 resources: Patient, EpisodeOfCare, CareTeam, 2 CarePlans,
6 Goals, 10 Tasks and 20 Observations. `--keep-db` keeps the loaded database and
`--reuse-db NAME` measures it again without loading. See bench/search.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
from harness import (
    DEFAULT_PG,
    Auth,
    LoadResult,
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
    postgres_version,
    relais_server,
    scenarios_table,
    scratch_database,
    targets_table,
    utc_stamp,
    with_database,
    write_results,
)
from run import Driver, observation, patient

DOMAIN = "https://relais.dev/fhir/CodeSystem/case-domain"
ID_TYPE = "https://relais.dev/fhir/CodeSystem/identifier-type"
CLAIMS = "https://assureur.example/sinistres"
PARTNER_DOMAINS = ["medical", "social", "legal", "financial", "professional", "personal"]
HOSPITALS = 50
RESOURCES_PER_CASE = 41

SEARCHES = {
    "task-by-patient": "Task?patient={patient}&status=requested",
    "goal-include": "Goal?subject=Patient/{patient}&_include=Goal:subject",
    "case-by-claim": "EpisodeOfCare?identifier={claim}",
    "patient-by-name": "Patient?name=dupont",
    "observations-sorted": "Observation?subject=Patient/{patient}&date=ge2026-01-01&_sort=-date",
    "patient-has-careteam": "Patient?_has:CareTeam:subject:participant=Organization/{hospital}",
}


# --- data ------------------------------------------------------------------------------


def urn(rng: random.Random) -> str:
    return f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"


def post(resource: dict[str, Any], full_url: str) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }


def category(code: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": DOMAIN, "code": code}]}]


def case(rng: random.Random, n: int, hub: str, hospital: str) -> list[dict[str, Any]]:
    """The 41 entries of one beneficiary's case, all referring to each other by urn:uuid."""
    p = urn(rng)
    ref = {"reference": p}
    entries = [post(patient(rng, f"search-{n}"), p)]
    entries.append(
        post(
            {
                "resourceType": "EpisodeOfCare",
                "identifier": [
                    {
                        "type": {"coding": [{"system": ID_TYPE, "code": "claim-number"}]},
                        "system": CLAIMS,
                        "value": f"SIN-{n:07d}",
                    }
                ],
                "status": "active",
                "patient": ref,
                "managingOrganization": {"reference": hub},
                "period": {"start": "2025-09-01"},
            },
            urn(rng),
        )
    )
    entries.append(
        post(
            {
                "resourceType": "CareTeam",
                "status": "active",
                "subject": ref,
                "participant": [
                    {"member": {"reference": hub}},
                    {"member": {"reference": hospital}},
                ],
            },
            urn(rng),
        )
    )
    master = urn(rng)
    plan = {"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": ref}
    entries.append(post({**plan, "title": "Projet de vie"}, master))
    entries.append(
        post(
            {**plan, "category": category("medical"), "partOf": [{"reference": master}]},
            urn(rng),
        )
    )
    goals = []
    for g in range(6):
        goals.append(urn(rng))
        entries.append(
            post(
                {
                    "resourceType": "Goal",
                    "lifecycleStatus": "active",
                    "category": category(PARTNER_DOMAINS[g]),
                    "description": {"text": f"Objectif {g + 1}"},
                    "subject": ref,
                },
                goals[-1],
            )
        )
    for t in range(10):
        entries.append(
            post(
                {
                    "resourceType": "Task",
                    "status": "requested" if t % 3 else "draft",
                    "intent": "order",
                    "description": f"Action {t + 1}",
                    "for": ref,
                    "focus": {"reference": goals[t % 6]},
                    "owner": {"reference": hospital if t % 2 else hub},
                    "authoredOn": f"2026-0{1 + t % 6}-1{t % 9}",
                },
                urn(rng),
            )
        )
    for _ in range(20):
        entries.append(post(observation(rng, p), urn(rng)))
    return entries


def bundles(
    count: int, per_bundle: int, seed: int, hub: str, hospitals: list[str]
) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for start in range(0, count, per_bundle):
        entries: list[dict[str, Any]] = []
        for n in range(start, min(count, start + per_bundle)):
            entries += case(rng, n, hub, hospitals[n % len(hospitals)])
        yield {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def organizations() -> dict[str, Any]:
    entries = [
        {
            "resource": {"resourceType": "Organization", "id": f"bench-org-{i}", "name": name},
            "request": {"method": "PUT", "url": f"Organization/bench-org-{i}"},
        }
        for i, name in enumerate(
            ["Relais coordination", *(f"Hôpital {n}" for n in range(1, HOSPITALS + 1))]
        )
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


# --- sample values and scenarios -----------------------------------------------------------


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        yield conn
    finally:
        await conn.close()


async def samples(url: str, seed: int, size: int = 2000) -> dict[str, list[str]]:
    """Values to search for, drawn from what is stored."""
    async with connect(url) as conn:
        patients = [
            r[0]
            for r in await conn.fetch(
                "SELECT res_id FROM resource_current WHERE type = 'Patient' AND NOT deleted"
            )
        ]
        claims = [
            f"{r[0]}|{r[1]}"
            for r in await conn.fetch(
                "SELECT system, code FROM search_token WHERE type = 'EpisodeOfCare' "
                "AND param = 'identifier' AND system = $1",
                CLAIMS,
            )
        ]
    rng = random.Random(seed)
    pick = lambda values: rng.sample(values, min(size, len(values)))  # noqa: E731
    hospitals = [f"bench-org-{i}" for i in range(1, HOSPITALS + 1)]
    return {"patient": pick(patients), "claim": pick(claims), "hospital": hospitals}


def scenarios(values: dict[str, list[str]]) -> list[Scenario]:
    found = [
        Scenario(
            "read",
            "GET /fhir/Patient/{id}",
            [Req("GET", f"/fhir/Patient/{p}") for p in values["patient"]],
        )
    ]
    for name, template in SEARCHES.items():
        paths = []
        for i in range(len(values["patient"])):
            filled = template.format(
                patient=values["patient"][i],
                claim=quote(values["claim"][i % len(values["claim"])], safe=""),
                hospital=values["hospital"][i % len(values["hospital"])],
            )
            paths.append(Req("GET", "/fhir/" + filled))
        found.append(Scenario(name, "GET /fhir/" + template, paths))
    return found


# --- SQL per search: statements and plans ------------------------------------------------


async def statements_and_plans(url: str, values: dict[str, list[str]]) -> dict[str, Any]:
    """Run each search in-process (after a first run with other values): how many SQL
    statements, and their plans."""
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.fhir.context import Context, Plugins
    from app.fhir.search import engine as search_engine

    db = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    found: dict[str, Any] = {}
    try:
        for name, template in SEARCHES.items():
            first, path = _path(template, values, 1), _path(template, values, 0)
            captured: list[tuple[str, Any]] = []

            def listen(_conn: Any, _cursor: Any, statement: str, params: Any, *_a: Any) -> None:
                captured.append((statement, params))  # noqa: B023

            async with db.connect() as conn:
                ctx = Context(conn=conn, base_url="http://bench/fhir", plugins=Plugins())
                # Once unobserved first, as a server that has run this search before.
                await search_engine.search(ctx, *_segments_and_query(ctx, first))
                event.listen(db.sync_engine, "before_cursor_execute", listen)
                try:
                    page = await search_engine.search(ctx, *_segments_and_query(ctx, path))
                finally:
                    event.remove(db.sync_engine, "before_cursor_execute", listen)
                plans = []
                for statement, params in captured:
                    result = await conn.exec_driver_sql(
                        "EXPLAIN (ANALYZE, BUFFERS) " + statement, params
                    )
                    plans.append((statement, "\n".join(r[0] for r in result.all())))
            found[name] = {
                "path": path,
                "statements": len(captured),
                "matches": len(page.matches),
                "included": len(page.includes),
                "total": page.total,
                "plans": plans,
            }
    finally:
        await db.dispose()
    return found


def _path(template: str, values: dict[str, list[str]], n: int) -> str:
    return template.format(
        patient=values["patient"][n],
        claim=quote(values["claim"][n], safe=""),
        hospital=values["hospital"][n],
    )


def _segments_and_query(ctx: Any, path: str) -> tuple[str, list[tuple[str, str]]]:
    from app.fhir.router import split_url

    segments, query = split_url(ctx, path)
    return segments[0], query


def plan_time(plan: str) -> float:
    for line in plan.splitlines():
        if line.startswith("Execution Time:"):
            return float(line.split()[2])
    return 0.0


# --- run -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Relais search benchmark (see bench/search.md)")
    p.add_argument("--beneficiaries", type=int, default=10_000)
    p.add_argument("--per-bundle", type=int, default=2, help="cases per transaction Bundle")
    p.add_argument("--load-concurrency", type=int, default=4)
    p.add_argument("--duration", type=float, default=20, help="seconds per scenario")
    p.add_argument("--warmup", type=float, default=3)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pg", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG))
    p.add_argument("--keep-db", action="store_true", help="keep the loaded database")
    p.add_argument("--reuse-db", metavar="NAME", help="measure a kept database, no loading")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--quiet-wait", type=float, default=20)
    p.add_argument("--quiet-threshold", type=float, default=25)
    p.add_argument("--explain", choices=["slow", "all", "none"], default="slow")
    p.add_argument("--slow-ms", type=float, default=5.0, help="--explain slow: plans over this")
    p.add_argument(
        "--scenarios",
        default=",".join(["read", *SEARCHES]),
        help="comma-separated subset to run (read is the reference)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy each scenario while it is measured (stacks under bench/results/)",
    )
    return p.parse_args(argv)


async def load(server: Service, auth: Auth, args: argparse.Namespace) -> LoadResult:
    hub = "Organization/bench-org-0"
    hospitals = [f"Organization/bench-org-{i}" for i in range(1, HOSPITALS + 1)]
    orgs = await load_bundles(
        server.url, [organizations()], auth=auth, concurrency=1, on_response=lambda _r: None
    )
    if orgs.errors:
        raise SystemExit("the organisations could not be loaded")
    total = args.beneficiaries * RESOURCES_PER_CASE
    log(
        f"loading {args.beneficiaries:,} cases ({total:,} resources) in transaction Bundles of "
        f"{args.per_bundle * RESOURCES_PER_CASE} entries, {args.load_concurrency} clients"
    )
    data = bundles(args.beneficiaries, args.per_bundle, args.seed, hub, hospitals)
    result = await load_bundles(
        server.url, data, auth=auth, concurrency=args.load_concurrency, on_response=lambda _r: None
    )
    log(
        f"loaded {result.resources:,} resources in {result.seconds:.0f} s: "
        f"{result.rate:,.0f} resources/s, {result.errors} errors"
    )
    return result


async def analyse(db_url: str) -> None:
    """What autovacuum does after a bulk load, done before measuring rather than during:
    statistics, and the visibility map that lets index-only scans skip the table."""
    async with connect(db_url) as conn:
        await conn.execute("VACUUM (ANALYZE)")


async def measure(
    args: argparse.Namespace, db_url: str, payload: dict[str, Any]
) -> list[ScenarioResult]:
    work = Path(tempfile.mkdtemp(prefix="relais-search-bench-"))
    wrk = Wrk(work, threads=args.threads)
    payload["wrk"] = wrk.version()
    profiles = Path(__file__).resolve().parent / "results" / f"{utc_stamp()}-search-profiles"
    driver = Driver(wrk, args, profiles)
    server = relais_server(db_url, work)
    results: list[ScenarioResult] = []
    try:
        auth = Auth()
        await auth.register(server.env)
        payload["auth"] = "bearer" if auth.enabled else "none"
        await server.start(timeout=120)
        try:
            await auth.refresh(server.url)
            if not args.reuse_db:
                result = await load(server, auth, args)
                payload["load"] = {
                    "resources": result.resources,
                    "bundles": result.bundles,
                    "bundle_size": result.bundle_size,
                    "concurrency": result.concurrency,
                    "seconds": round(result.seconds, 1),
                    "resources_per_s": round(result.rate, 1),
                    "errors": result.errors,
                }
            await analyse(db_url)
            async with connect(db_url) as conn:
                payload["stored_resources"] = await conn.fetchval(
                    "SELECT count(*) FROM resource_current"
                )
            values = await samples(db_url, args.seed)
            payload["sql"] = await statements_and_plans(db_url, values)
            wanted = set(args.scenarios.split(","))
            for scenario in (s for s in scenarios(values) if s.name in wanted):
                token = await auth.refresh(server.url)
                results.append(await driver.drive(scenario, server, token))
        finally:
            await server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def evaluate(results: list[ScenarioResult], payload: dict[str, Any]) -> list[Target]:
    by_name = {r.name: r for r in results}
    targets = []
    if "load" in payload:
        rate = payload["load"]["resources_per_s"]
        targets.append(Target("load through transaction Bundles", rate, 1000, "resources/s", True))
    read = by_name.get("read")
    for name in SEARCHES:
        found = by_name.get(name)
        if found is None or read is None:
            continue
        targets.append(Target(f"{name} / read", found.rps / read.rps, 0.3, "x", True))
        targets.append(Target(f"{name} p99", found.p99_ms, 100, "ms", False))
    errors = sum(r.errors for r in results)
    if errors:
        targets.append(Target("errors in all scenarios", errors, 0, "", False))
    return targets


def report(
    payload: dict[str, Any],
    results: list[ScenarioResult],
    targets: list[Target],
    args: argparse.Namespace,
) -> None:
    m = payload["machine"]
    console.rule("Relais search benchmark")
    console.print(
        f"{payload['started'][:19]}Z · {m['cpus']} CPUs ({m['cpu_model']}) · "
        f"PostgreSQL {payload.get('postgres', '?')} · commit {m['git_commit']} · "
        f"auth: {payload.get('auth', '?')} · "
        f"{payload.get('stored_resources', 0):,} resources stored"
    )
    load = payload.get("load")
    if load:
        console.print(
            f"Load: {load['resources']:,} resources in {load['bundles']:,} transaction Bundles of "
            f"{load['bundle_size']} ({load['concurrency']} clients): {load['seconds']} s = "
            f"[bold]{load['resources_per_s']:,} resources/s[/bold], {load['errors']} errors"
        )
    console.print(scenarios_table(f"Searches at {args.connections} connections (wrk)", results))
    by_name = {r.name: r for r in results}
    for name, sql in payload.get("sql", {}).items():
        console.print(
            f"{name}: {sql['statements']} SQL statement(s), {sql['matches']} matches, "
            f"{sql['included']} included, total {sql['total']}"
        )
        slow = any(plan_time(plan) > args.slow_ms for _s, plan in sql["plans"])
        failing = name in by_name and by_name[name].p99_ms > 100
        if args.explain == "all" or (args.explain == "slow" and (slow or failing)):
            for statement, plan in sql["plans"]:
                console.print(f"[dim]{statement}[/dim]")
                console.print(plan)
    console.print(targets_table(targets))


async def main(args: argparse.Namespace) -> int:
    stamp = utc_stamp()
    payload: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(),
        "machine": machine_info(),
        "settings": {k: v for k, v in vars(args).items() if k != "pg"},
    }
    started = time.perf_counter()
    if args.reuse_db:
        db_url = with_database(args.pg, args.reuse_db)
        payload["postgres"] = await postgres_version(db_url)
        results = await measure(args, db_url, payload)
    else:
        async with scratch_database(args.pg, "relais_search", keep=args.keep_db) as db_url:
            payload["postgres"] = await postgres_version(db_url)
            results = await measure(args, db_url, payload)
    payload["seconds"] = round(time.perf_counter() - started)
    payload["scenarios"] = results
    targets = evaluate(results, payload)
    payload["targets"] = [{**vars(t), "passed": t.passed} for t in targets]
    report(payload, results, targets, args)
    path = write_results(payload, f"{stamp}-search")
    console.print(f"Results written to {path}")
    return 0 if all(t.passed for t in targets) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
