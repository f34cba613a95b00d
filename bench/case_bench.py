"""Relais case operations benchmark: `$case-summary` and `$everything` on the search
benchmark's data set (bench/search_bench.py: beneficiaries with 41 resources each),
next to a read by id, under wrk; plus each operation's SQL statements, their plans and
in-process latency.

    python bench/case_bench.py [--beneficiaries 10000] [--keep-db] [--reuse-db NAME]

Target: `$case-summary` p99 ≤ 50 ms (one connection, so the figure is the operation's
own latency rather than queueing behind other requests).

`--replicate-to N` copies the loaded cases in SQL (new ids, same content) until N
beneficiaries are stored, for when loading them all through the API takes too long. Only
the resource tables are copied, not the search index: the operations measured here read
the resource tables alone, but the search benchmark must not run on such a database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import search_bench
from harness import (
    DEFAULT_PG,
    Auth,
    Driver,
    Req,
    Scenario,
    ScenarioResult,
    Target,
    Wrk,
    console,
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

OPERATIONS = {
    "case-summary": "EpisodeOfCare/{case}/$case-summary",
    "episode-everything": "EpisodeOfCare/{case}/$everything",
    "patient-everything": "Patient/{patient}/$everything",
}
TARGET_MS = 50.0
UUID = "([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
COPY_VERSIONS = f"""
INSERT INTO resource_version
    (type, res_id, version, last_updated, method, deleted, content, beneficiary, domain)
SELECT type, res_id || $1, version, last_updated, method, deleted,
       regexp_replace(content, '{UUID}', '\\1' || $1, 'g'), beneficiary || $1, domain
FROM resource_version
WHERE beneficiary = ANY($2::text[]) AND type <> 'AuditEvent'
ORDER BY seq
"""
COPY_CURRENT = f"""
INSERT INTO resource_current
    (type, res_id, version, last_updated, deleted, content, beneficiary, domain, created_seq, seq)
SELECT c.type, c.res_id || $1, c.version, c.last_updated, c.deleted,
       regexp_replace(c.content, '{UUID}', '\\1' || $1, 'g'), c.beneficiary || $1, c.domain,
       v1.seq, vn.seq
FROM resource_current c
JOIN resource_version v1
  ON v1.type = c.type AND v1.res_id = c.res_id || $1 AND v1.version = 1
JOIN resource_version vn
  ON vn.type = c.type AND vn.res_id = c.res_id || $1 AND vn.version = c.version
WHERE c.beneficiary = ANY($2::text[]) AND c.type <> 'AuditEvent'
"""


async def cases(url: str, seed: int, size: int = 2000) -> list[tuple[str, str]]:
    """(patient, case) pairs drawn from what is stored."""
    async with search_bench.connect(url) as conn:
        rows = await conn.fetch(
            "SELECT beneficiary, res_id FROM resource_current "
            "WHERE type = 'EpisodeOfCare' AND NOT deleted AND beneficiary IS NOT NULL"
        )
    pairs = [(r[0], r[1]) for r in rows]
    return random.Random(seed).sample(pairs, min(size, len(pairs)))


async def replicate(url: str, target: int) -> int:
    """Copy loaded cases (suffix -r<k> on every id) until `target` beneficiaries."""
    async with search_bench.connect(url) as conn:
        patients = [
            r[0]
            for r in await conn.fetch(
                "SELECT res_id FROM resource_current WHERE type = 'Patient' ORDER BY res_id"
            )
        ]
        originals = [p for p in patients if "-r" not in p]
        have, copy = (
            len(patients),
            1 + max((int(p.rsplit("-r", 1)[1]) for p in patients if "-r" in p), default=0),
        )
        while have < target and originals:
            batch = originals[: target - have]
            async with conn.transaction():
                await conn.execute(COPY_VERSIONS, f"-r{copy}", batch)
                await conn.execute(COPY_CURRENT, f"-r{copy}", batch)
            have += len(batch)
            log(f"replicated {len(batch)} cases (copy {copy}): {have:,} beneficiaries")
            copy += 1
        return have


def scenarios(pairs: list[tuple[str, str]], connections: list[int]) -> list[Scenario]:
    found = []
    for n in connections:
        reads = [Req("GET", f"/fhir/Patient/{p}") for p, _c in pairs]
        found.append(Scenario(f"read@{n}", "GET /fhir/Patient/{id}", reads, connections=n))
        for name, template in OPERATIONS.items():
            paths = [Req("GET", "/fhir/" + template.format(patient=p, case=c)) for p, c in pairs]
            found.append(Scenario(f"{name}@{n}", "GET /fhir/" + template, paths, connections=n))
    return found


async def in_process(
    url: str, pairs: list[tuple[str, str]], calls: int, work: Path
) -> dict[str, Any]:
    """Per operation: SQL statements of one call, their plans, and latency over `calls`
    sequential calls through the router (no HTTP, no token)."""
    from sqlalchemy import event

    from app.fhir.context import Context
    from app.fhir.router import dispatch
    from app.main import create_app
    from app.settings import Settings

    settings = Settings(
        database_url=url, log_level="WARNING", signing_key_file=work / "in-process-key.pem"
    )
    app = create_app(settings)
    state = app.state.relais
    found: dict[str, Any] = {}
    try:
        for name, template in OPERATIONS.items():
            captured: list[tuple[str, Any]] = []

            def listen(_conn: Any, _cursor: Any, statement: str, params: Any, *_a: Any) -> None:
                captured.append((statement, params))  # noqa: B023

            timings = []
            for n in range(calls + 1):
                patient, case = pairs[n % len(pairs)]
                path = "/" + template.format(patient=patient, case=case)
                async with state.engine.connect() as conn:
                    ctx = Context(conn=conn, base_url="http://bench/fhir", plugins=state.plugins)
                    if n == 0:
                        event.listen(state.engine.sync_engine, "before_cursor_execute", listen)
                    started = time.perf_counter()
                    try:
                        await dispatch(ctx, "GET", path, None, {})
                    finally:
                        if n == 0:
                            event.remove(state.engine.sync_engine, "before_cursor_execute", listen)
                    if n:
                        timings.append((time.perf_counter() - started) * 1000)
                    if n == 0:
                        plans = []
                        for statement, params in captured:
                            result = await conn.exec_driver_sql(
                                "EXPLAIN (ANALYZE, BUFFERS) " + statement, params
                            )
                            plans.append((statement, "\n".join(r[0] for r in result.all())))
            timings.sort()
            found[name] = {
                "statements": len(captured),
                "plans": plans,
                "p50_ms": round(statistics.median(timings), 2),
                "p99_ms": round(timings[max(0, int(len(timings) * 0.99) - 1)], 2),
            }
    finally:
        await state.engine.dispose()
    return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Relais $case-summary / $everything benchmark")
    p.add_argument("--beneficiaries", type=int, default=10_000)
    p.add_argument("--per-bundle", type=int, default=2, help="cases per transaction Bundle")
    p.add_argument("--load-concurrency", type=int, default=4)
    p.add_argument("--duration", type=float, default=15, help="seconds per scenario")
    p.add_argument("--warmup", type=float, default=3)
    p.add_argument("--connections", type=int, default=8, help="the loaded level (and 1)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--calls", type=int, default=300, help="in-process calls per operation")
    p.add_argument("--pg", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG))
    p.add_argument("--keep-db", action="store_true", help="keep the loaded database")
    p.add_argument("--reuse-db", metavar="NAME", help="measure a kept database, no loading")
    p.add_argument("--replicate-to", type=int, default=0, metavar="N", help="see above")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--quiet-wait", type=float, default=20)
    p.add_argument("--quiet-threshold", type=float, default=25)
    args = p.parse_args(argv)
    args.profile = False
    return args


async def measure(args: argparse.Namespace, db_url: str, payload: dict[str, Any]) -> list[Any]:
    work = Path(tempfile.mkdtemp(prefix="relais-case-bench-"))
    wrk = Wrk(work, threads=args.threads)
    payload["wrk"] = wrk.version()
    driver = Driver(wrk, args, work)
    server = relais_server(db_url, work)
    results: list[ScenarioResult] = []
    try:
        auth = Auth()
        await auth.register(server.env)
        await server.start(timeout=120)
        try:
            await auth.refresh(server.url)
            if not args.reuse_db:
                loaded = await search_bench.load(server, auth, args)
                payload["load"] = {"resources": loaded.resources, "seconds": loaded.seconds}
            if args.replicate_to:
                payload["replicated_to"] = await replicate(db_url, args.replicate_to)
            await search_bench.analyse(db_url)
            async with search_bench.connect(db_url) as conn:
                payload["stored_resources"] = await conn.fetchval(
                    "SELECT count(*) FROM resource_current"
                )
            pairs = await cases(db_url, args.seed)
            db = server.env["RELAIS_DATABASE_URL"]
            payload["in_process"] = await in_process(db, pairs, args.calls, work)
            for scenario in scenarios(pairs, sorted({1, args.connections})):
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
    summary = by_name.get("case-summary@1")
    if summary is not None:
        targets.append(
            Target("$case-summary p99, 1 connection", summary.p99_ms, TARGET_MS, "ms", False)
        )
    inside = payload.get("in_process", {}).get("case-summary")
    if inside:
        targets.append(
            Target("$case-summary p99 in process", inside["p99_ms"], TARGET_MS, "ms", False)
        )
    errors = sum(r.errors for r in results)
    if errors:
        targets.append(Target("errors in all scenarios", errors, 0, "", False))
    return targets


def report(payload: dict[str, Any], results: list[ScenarioResult], targets: list[Target]) -> None:
    m = payload["machine"]
    console.rule("Relais case operations benchmark")
    console.print(
        f"{payload['started'][:19]}Z · {m['cpus']} CPUs · PostgreSQL {payload.get('postgres')} · "
        f"{payload.get('stored_resources', 0):,} resources stored"
    )
    console.print(scenarios_table("Case operations (wrk)", results))
    for name, found in payload.get("in_process", {}).items():
        console.print(
            f"{name}: {found['statements']} SQL statements; in process p50 {found['p50_ms']} ms, "
            f"p99 {found['p99_ms']} ms"
        )
        for statement, plan in found["plans"]:
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
    if args.reuse_db:
        db_url = with_database(args.pg, args.reuse_db)
        payload["postgres"] = await postgres_version(db_url)
        results = await measure(args, db_url, payload)
    else:
        async with scratch_database(args.pg, "relais_case", keep=args.keep_db) as db_url:
            payload["postgres"] = await postgres_version(db_url)
            results = await measure(args, db_url, payload)
    payload["scenarios"] = results
    targets = evaluate(results, payload)
    payload["targets"] = [{**vars(t), "passed": t.passed} for t in targets]
    report(payload, results, targets)
    console.print(f"Results written to {write_results(payload, f'{stamp}-case')}")
    return 0 if all(t.passed for t in targets) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
