"""Reusable parts of the Relais benchmarks: a throw-away PostgreSQL database, the server
as a subprocess, the bench client's token, Bundle loading, wrk runs and the report.

A benchmark (``run.py`` for the core interactions; a search benchmark can sit beside it)
builds :class:`Scenario` objects — a list of requests and the statuses they must get —
and hands them to :meth:`Wrk.run` against a running :class:`Server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from rich.console import Console
from rich.table import Table

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LUA_SCRIPT = BENCH_DIR / "wrk" / "requests.lua"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"

# Wide enough for the results table when the output is a file or a pipe.
console = Console(width=None if sys.stdout.isatty() else 160)


def log(message: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}")


# --- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants (Linux /proc)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += _children(current)
    return tree


def _status_kib(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MiB (VmRSS)."""
    return sum(_status_kib(p, "VmRSS") for p in process_tree(pid)) / 1024


def peak_rss_mb(pid: int) -> float:
    """High-water mark of resident memory of the process and its children (VmHWM), MiB."""
    return sum(_status_kib(p, "VmHWM") for p in process_tree(pid)) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = float(sum(values[:8]))
    return total - idle, total


async def background_cpu(seconds: float = 1.0) -> float:
    """Machine CPU busy over `seconds`, in % of one core (2 cores = 200 %)."""
    busy0, total0 = machine_busy()
    await asyncio.sleep(seconds)
    busy1, total1 = machine_busy()
    return 100 * (os.cpu_count() or 1) * (busy1 - busy0) / max(1.0, total1 - total0)


async def wait_quiet(threshold: float, max_wait: float) -> float:
    """Wait (at most `max_wait` s) until other processes leave the machine idle: the
    servers under test are idle between scenarios, so what is busy then is someone else.
    Returns the last measured background CPU (% of one core)."""
    deadline = time.monotonic() + max_wait
    busy = await background_cpu()
    if busy > threshold and max_wait > 0:
        log(f"[yellow]machine busy ({busy:.0f}% of a core): waiting up to {max_wait:g}s[/yellow]")
        while busy > threshold and time.monotonic() < deadline:
            busy = await background_cpu(2.0)
    if busy > threshold:
        log(f"[yellow]running with background load: {busy:.0f}% of a core[/yellow]")
    return busy


class Service:
    """An HTTP server started as a subprocess, stopped by its pid."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path):
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_dir / f"{name}.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, health_path: str = "/healthz", timeout: float = 90.0) -> None:
        argv = [a.replace("{port}", str(self.port)) for a in self.argv]
        log(f"starting {self.name}: {' '.join(argv)}")
        out = self.log_path.open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            *argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_DIR
        )
        out.close()
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    break
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.url + health_path)).status_code == 200:
                        log(f"{self.name} up on {self.url} (pid {self.pid})")
                        return
                await asyncio.sleep(0.3)
        tail = self.log_tail()
        await self.stop()
        raise RuntimeError(f"{self.name} did not become healthy:\n{tail}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        log(f"stopped {self.name}")


def relais_env(database_url: str, work_dir: Path, port: int | None = None) -> dict[str, str]:
    """The environment of the Relais server and CLI: the caller's RELAIS_* settings win,
    except the database, base URL and files, which the benchmark owns."""
    env = dict(os.environ)
    env["RELAIS_DATABASE_URL"] = database_url
    env["RELAIS_SIGNING_KEY_FILE"] = str(work_dir / "relais-signing-key.pem")
    env["RELAIS_EXPORT_DIR"] = str(work_dir / "exports")
    if port is not None:
        env["RELAIS_BASE_URL"] = f"http://127.0.0.1:{port}"
    return env


def relais_server(db_url: str, work_dir: Path, command: str | None = None) -> Service:
    """`relais serve` on a free local port over the database at `db_url` (libpq form),
    with the benchmark's environment (relais_env)."""
    sa_url = re.sub(r"^postgresql://", "postgresql+asyncpg://", db_url)
    argv = [command or relais_command(), "serve", "--host", "127.0.0.1", "--port", "{port}"]
    server = Service("relais", argv, {}, work_dir)
    server.env = relais_env(sa_url, work_dir, server.port)
    return server


def relais_command() -> str:
    found = shutil.which("relais") or str(Path(sys.executable).parent / "relais")
    if not Path(found).exists():
        raise SystemExit("The `relais` command is not installed (activate the virtualenv).")
    return found


# --- database ----------------------------------------------------------------------------


def asyncpg_dsn(url: str) -> str:
    return re.sub(r"^postgresql\+asyncpg://", "postgresql://", url)


def with_database(admin_url: str, name: str) -> str:
    base = asyncpg_dsn(admin_url).rsplit("/", 1)[0]
    return f"{base}/{name}"


@contextlib.asynccontextmanager
async def scratch_database(admin_url: str, prefix: str, keep: bool = False) -> AsyncIterator[str]:
    """Create a fresh database, yield its asyncpg URL, drop it at the end."""
    name = f"{prefix}_{datetime.now():%Y%m%d_%H%M%S}_{os.getpid()}"
    admin = asyncpg_dsn(admin_url)
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    log(f"created database {name}")
    try:
        yield with_database(admin_url, name)
    finally:
        if keep:
            log(f"kept database {name}")
        else:
            conn = await asyncpg.connect(admin)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()
            log(f"dropped database {name}")


PG_COUNTERS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "sessions")


class PgStats:
    """Counters of the benchmark database, read around a scenario: from pg_stat_database
    transactions, rows written and sessions (new connections); from pg_stat_user_tables
    the rows written per table (``table:NAME`` keys: inserts + updates)."""

    def __init__(self, url: str) -> None:
        self.dsn = asyncpg_dsn(url)

    async def snapshot(self) -> dict[str, int]:
        conn = await asyncpg.connect(self.dsn)
        try:
            row = await conn.fetchrow(
                f"SELECT {', '.join(PG_COUNTERS)} FROM pg_stat_database"
                " WHERE datname = current_database()"
            )
            tables = await conn.fetch(
                "SELECT relname, n_tup_ins + n_tup_upd AS written FROM pg_stat_user_tables"
            )
        finally:
            await conn.close()
        out = {k: int(row[k] or 0) for k in PG_COUNTERS} if row else {}
        out.update({f"table:{t['relname']}": int(t["written"] or 0) for t in tables})
        return out

    @staticmethod
    def delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
        out = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        # our own snapshot connection counts as one session
        out["sessions"] = max(0, out.get("sessions", 0) - 1)
        return {k: v for k, v in out.items() if v or not k.startswith("table:")}


async def postgres_version(url: str) -> str:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


# --- authentication ----------------------------------------------------------------------


class Auth:
    """The bench client's bearer token, when the server has SMART Backend Services.

    Detected from ``relais --help``: with a ``clients`` command, a client is registered
    (``relais clients add``) and a token fetched from ``POST /auth/token``
    (client_credentials, HTTP Basic) before each scenario; otherwise no token is sent.
    """

    SCOPE = "system/*.cruds"
    ORGANIZATION = "relais-bench"

    def __init__(self) -> None:
        self.enabled = False
        self.client_id = ""
        self.client_secret = ""
        self.token = ""
        self.fetched_at = 0.0
        self.base_url = ""
        self._lock = asyncio.Lock()

    @staticmethod
    def server_has_clients() -> bool:
        out = subprocess.run(
            [relais_command(), "--help"], capture_output=True, text=True, check=False
        ).stdout
        return re.search(r"^\W*clients\b", out, re.MULTILINE) is not None

    async def register(self, env: Mapping[str, str]) -> None:
        if not self.server_has_clients():
            log("the server has no `relais clients` command: requests carry no token")
            return
        relais = relais_command()
        migrate = await asyncio.create_subprocess_exec(
            relais, "migrate", env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        await migrate.communicate()
        argv = [
            relais,
            "clients",
            "add",
            "relais-bench",
            "--organization",
            f"Organization/{self.ORGANIZATION}",
            "--secret",
            "--scope",
            self.SCOPE,
            "--all-beneficiaries",
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await proc.communicate()
        text = out.decode(errors="replace")
        found = re.search(r"\{.*\}", text, re.DOTALL)
        if proc.returncode != 0 or found is None:
            raise RuntimeError(
                f"`relais clients add` failed ({proc.returncode}):\n{text}\n"
                + err.decode(errors="replace")
            )
        data = json.loads(found.group(0))
        self.client_id = str(data["client_id"])
        self.client_secret = str(data["client_secret"])
        self.enabled = True
        log(f"registered bench client {self.client_id}")

    async def refresh(self, base_url: str) -> str:
        """A fresh token (tokens live ≤ 300 s: refreshed before every scenario)."""
        if not self.enabled:
            return ""
        self.base_url = base_url
        async with httpx.AsyncClient(timeout=30.0) as client:
            resp = await client.post(
                f"{base_url}/auth/token",
                data={"grant_type": "client_credentials", "scope": self.SCOPE},
                auth=(self.client_id, self.client_secret),
            )
        if resp.status_code != 200:
            raise RuntimeError(f"token request failed: {resp.status_code} {resp.text[:500]}")
        self.token = str(resp.json()["access_token"])
        self.fetched_at = time.monotonic()
        return self.token

    async def fresh(self, max_age: float = 120.0) -> str:
        """The current token, renewed first when older than `max_age` seconds."""
        if not self.enabled:
            return ""
        async with self._lock:
            if time.monotonic() - self.fetched_at > max_age:
                await self.refresh(self.base_url)
        return self.token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.enabled else {}


# --- loading -----------------------------------------------------------------------------


@dataclass
class LoadResult:
    resources: int
    bundles: int
    seconds: float
    errors: int
    concurrency: int
    bundle_size: int

    @property
    def rate(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0


async def load_bundles(
    base_url: str,
    bundles: Iterable[dict[str, Any]],
    *,
    auth: Auth,
    concurrency: int,
    on_response: Callable[[dict[str, Any]], None],
) -> LoadResult:
    """POST transaction Bundles to /fhir with `concurrency` clients; time the whole load."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=concurrency * 2)
    counts = {"resources": 0, "bundles": 0, "errors": 0, "size": 0}
    first_error: list[str] = []
    headers = {
        "Content-Type": "application/fhir+json",
        "Accept": "application/fhir+json",
        "Prefer": "return=minimal",
    }

    async def worker(client: httpx.AsyncClient) -> None:
        while (bundle := await queue.get()) is not None:
            body = json.dumps(bundle, separators=(",", ":"))
            await auth.fresh()  # a long load outlives a token
            resp = await client.post(
                f"{base_url}/fhir", content=body, headers={**headers, **auth.headers()}
            )
            if resp.status_code != 200:
                counts["errors"] += 1
                if not first_error:
                    first_error.append(f"{resp.status_code} {resp.text[:800]}")
                continue
            counts["bundles"] += 1
            counts["resources"] += len(bundle["entry"])
            on_response(resp.json())

    start = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=120.0, limits=limits) as client:
        tasks = [asyncio.create_task(worker(client)) for _ in range(concurrency)]
        for bundle in bundles:
            counts["size"] = max(counts["size"], len(bundle["entry"]))
            await queue.put(bundle)
        for _ in tasks:
            await queue.put(None)
        await asyncio.gather(*tasks)
    seconds = time.perf_counter() - start
    if first_error:
        log(f"[red]load errors: {counts['errors']}; first: {first_error[0]}[/red]")
    return LoadResult(
        resources=counts["resources"],
        bundles=counts["bundles"],
        seconds=seconds,
        errors=counts["errors"],
        concurrency=concurrency,
        bundle_size=counts["size"],
    )


# --- wrk ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    """One request of a scenario. A body containing ``{{n}}`` gets a unique value there."""

    method: str
    path: str
    body: str | None = None

    def line(self) -> str:
        if self.body is not None and ("\t" in self.body or "\n" in self.body):
            raise ValueError("request bodies must be minified JSON (no raw tab or newline)")
        return f"{self.method}\t{self.path}" + (f"\t{self.body}" if self.body else "")


@dataclass
class Scenario:
    name: str
    description: str
    requests: Sequence[Req]
    expect: frozenset[int] = frozenset({200})
    connections: int | None = None  # default: the run's --connections
    target: str = "relais"  # which service it drives


@dataclass
class ScenarioResult:
    name: str
    target: str
    connections: int
    seconds: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    statuses: dict[str, int]
    socket_errors: dict[str, int]
    server_cpu_pct: float
    server_cpu_ms_per_req: float
    machine_cpu_pct: float
    background_cpu_pct: float = 0.0
    db: dict[str, int] = field(default_factory=dict)
    description: str = ""

    def per_request(self, counter: str) -> float:
        return self.db.get(counter, 0) / self.requests if self.requests else 0.0

    extra: dict[str, Any] = field(default_factory=dict)


def ensure_wrk() -> str:
    """wrk from PATH; installed with apt-get (Debian package `wrk`) when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if shutil.which("apt-get") and os.geteuid() == 0:
        log("wrk is missing: apt-get install -y wrk")
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, capture_output=True)
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "update"], check=False, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, capture_output=True)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("wrk is required: `apt-get install wrk` (Debian/Ubuntu) or build it.")


class Wrk:
    """Runs one scenario with wrk and the generic Lua driver; parses its BENCH_JSON line."""

    def __init__(self, work_dir: Path, threads: int = 2, timeout_s: int = 10) -> None:
        self.binary = ensure_wrk()
        self.work_dir = work_dir
        self.threads = threads
        self.timeout_s = timeout_s

    def version(self) -> str:
        out = subprocess.run([self.binary, "-v"], capture_output=True, text=True, check=False)
        text = out.stdout or out.stderr
        return text.splitlines()[0].split("Copyright")[0].strip() if text else ""

    async def run(
        self,
        scenario: Scenario,
        base_url: str,
        *,
        connections: int,
        duration: float,
        token: str = "",
        server_pid: int | None = None,
        background_cpu_pct: float = 0.0,
    ) -> ScenarioResult:
        requests_file = self.work_dir / f"{scenario.name}.requests"
        requests_file.write_text("\n".join(r.line() for r in scenario.requests) + "\n")
        threads = max(1, min(self.threads, connections))
        env = dict(os.environ)
        env.update(
            BENCH_REQUESTS=str(requests_file),
            BENCH_AUTH=token,
            BENCH_SALT=f"{random.getrandbits(40):x}",
            BENCH_THREADS=str(threads),
        )
        argv = [
            self.binary,
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{max(1, round(duration))}s",
            "--timeout",
            f"{self.timeout_s}s",
            "-s",
            str(LUA_SCRIPT),
            base_url,
        ]
        cpu0 = cpu_seconds(server_pid) if server_pid else 0.0
        busy0, total0 = machine_busy()
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await proc.communicate()
        busy1, total1 = machine_busy()
        cpu1 = cpu_seconds(server_pid) if server_pid else 0.0
        text = out.decode(errors="replace")
        found = re.search(r"^BENCH_JSON (\{.*\})$", text, re.MULTILINE)
        if proc.returncode != 0 or found is None:
            raise RuntimeError(
                f"wrk failed ({proc.returncode}) on {scenario.name}:\n{text}\n"
                + err.decode(errors="replace")
            )
        data = json.loads(found.group(1))
        seconds = data["duration_us"] / 1e6
        statuses = {str(k): int(v) for k, v in sorted(data["statuses"].items())}
        socket_errors = {k: int(v) for k, v in data["errors"].items() if k != "status"}
        unexpected = sum(v for k, v in statuses.items() if int(k) not in scenario.expect)
        lat = data["latency_us"]
        ncpu = os.cpu_count() or 1
        return ScenarioResult(
            name=scenario.name,
            target=scenario.target,
            connections=connections,
            seconds=round(seconds, 2),
            requests=int(data["requests"]),
            rps=round(data["requests"] / seconds, 1) if seconds else 0.0,
            p50_ms=lat["p50"] / 1000,
            p90_ms=lat["p90"] / 1000,
            p99_ms=lat["p99"] / 1000,
            max_ms=lat["max"] / 1000,
            errors=unexpected + sum(socket_errors.values()),
            statuses=statuses,
            socket_errors=socket_errors,
            server_cpu_pct=round(100 * (cpu1 - cpu0) / seconds, 1) if server_pid else 0.0,
            server_cpu_ms_per_req=(
                round(1000 * (cpu1 - cpu0) / data["requests"], 3)
                if server_pid and data["requests"]
                else 0.0
            ),
            machine_cpu_pct=round(100 * ncpu * (busy1 - busy0) / max(1.0, total1 - total0), 1),
            background_cpu_pct=round(background_cpu_pct, 1),
            description=scenario.description,
        )


# --- driving ---------------------------------------------------------------------------


async def profile_scenario(
    pid: int, duration: float, out_dir: Path, name: str
) -> asyncio.subprocess.Process | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        log("[yellow]py-spy is not installed (pip install py-spy): no profile[/yellow]")
        return None
    out = out_dir / f"{name}.collapsed"
    return await asyncio.create_subprocess_exec(
        spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, int(duration) - 1)),
        "--rate",
        "250",
        "--format",
        "raw",
        "--output",
        str(out),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class Driver:
    """Runs scenarios the same way against whichever service: wait for a quiet machine,
    warm up (reads), optionally profile, then measure."""

    def __init__(
        self, wrk: Wrk, args: Any, profile_dir: Path, stats: PgStats | None = None
    ) -> None:
        """`args`: any object with `connections` and `duration`; optional `warmup` (s),
        `quiet_wait` (s), `quiet_threshold` (% of a core) and `profile` (bool)."""
        self.stats = stats
        self.wrk = wrk
        self.args = args
        self.profile_dir = profile_dir

    async def drive(
        self, scenario: Scenario, service: Service, token: str = "", auth: Auth | None = None
    ) -> ScenarioResult:
        """With `auth`, a token is fetched after the quiet wait (it outlives the scenario);
        otherwise `token` is sent as given."""
        args = self.args
        duration = float(args.duration)
        warmup = float(getattr(args, "warmup", 0) or 0)
        connections = scenario.connections or int(args.connections)
        background = await wait_quiet(
            float(getattr(args, "quiet_threshold", 25)), float(getattr(args, "quiet_wait", 0))
        )
        if auth is not None and auth.enabled:
            token = await auth.refresh(service.url)
        if warmup and scenario.expect == frozenset({200}) and scenario.requests[0].method == "GET":
            await self.wrk.run(
                scenario, service.url, connections=connections, duration=warmup, token=token
            )
        spy = None
        if getattr(args, "profile", False):
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            spy = await profile_scenario(service.pid, duration, self.profile_dir, scenario.name)
        log(f"scenario {scenario.name}: {duration:g}s at {connections} connections")
        before = await self.stats.snapshot() if self.stats else {}
        result = await self.wrk.run(
            scenario,
            service.url,
            connections=connections,
            duration=duration,
            token=token,
            server_pid=service.pid,
            background_cpu_pct=background,
        )
        if spy is not None:
            await spy.wait()
        if self.stats:
            await asyncio.sleep(1.0)  # PostgreSQL flushes its statistics about every second
            result.db = PgStats.delta(before, await self.stats.snapshot())
        log(
            f"  {result.rps:,.1f} req/s  p50 {result.p50_ms:.1f} ms  "
            f"p99 {result.p99_ms:.1f} ms  errors {result.errors}"
        )
        return result


# --- report ------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    value: float
    threshold: float
    unit: str
    higher_is_better: bool

    @property
    def passed(self) -> bool:
        if self.higher_is_better:
            return self.value >= self.threshold
        return self.value <= self.threshold

    def row(self) -> list[str]:
        op = "≥" if self.higher_is_better else "≤"
        verdict = "[green]PASS[/green]" if self.passed else "[red]FAIL[/red]"
        measured = f"{self.value:,.2f} {self.unit}".strip()
        return [self.name, measured, f"{op} {self.threshold:g} {self.unit}".strip(), verdict]


CAPTION = (
    "server CPU: the server process, % of one core; CPU ms/req: its CPU time per request; "
    "bg CPU: machine CPU, % of one core (2 cores = 200%), in the idle second before the "
    "scenario (others' load); "
    "xact/req, rows/req (inserted + updated): PostgreSQL commits and rows written per "
    "request, all sessions of the database; PG conns: connections opened during the scenario"
)


def scenarios_table(title: str, results: Sequence[ScenarioResult]) -> Table:
    table = Table(title=title, caption=CAPTION)
    columns = (
        "scenario", "conns", "req/s", "p50 ms", "p99 ms", "requests", "errors",
        "server CPU", "CPU ms/req", "bg CPU", "xact/req", "rows/req", "PG conns", "statuses",
    )  # fmt: skip
    for col in columns:
        table.add_column(col, justify="left" if col in ("scenario", "statuses") else "right")
    for r in results:
        table.add_row(
            r.name,
            str(r.connections),
            f"{r.rps:,.1f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.requests:,}",
            f"[red]{r.errors}[/red]" if r.errors else "0",
            f"{r.server_cpu_pct:.0f}%",
            f"{r.server_cpu_ms_per_req:.2f}",
            f"{r.background_cpu_pct:.0f}%",
            f"{r.per_request('xact_commit'):.2f}" if r.db else "",
            f"{r.per_request('tup_inserted') + r.per_request('tup_updated'):.1f}" if r.db else "",
            str(r.db.get("sessions", "")),
            " ".join(f"{k}:{v}" for k, v in r.statuses.items()),
        )
    return table


def targets_table(targets: Sequence[Target]) -> Table:
    table = Table(title="Targets")
    for col in ("target", "measured", "required", "verdict"):
        table.add_column(col)
    for t in targets:
        table.add_row(*t.row())
    return table


def machine_info() -> dict[str, Any]:
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1])
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO_DIR), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "hostname": platform.node(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "git_commit": commit + ("+dirty" if dirty else ""),
    }


def write_results(payload: dict[str, Any], stamp: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{stamp}.json"
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
