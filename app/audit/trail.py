"""The AuditEvent buffer: requests append in memory, a background task writes batches.

Recording never touches the database, so it can neither slow down nor fail the request
it records. A batch is written in one transaction, a few statements for the whole
batch, and AuditEvents are ordinary versioned, indexed and searchable resources. Pending events
are flushed every `interval` seconds, as soon as a batch is full, on shutdown, and
whenever `flush()` is awaited (tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from sqlalchemy import bindparam, select

from app.audit.events import AuditRecord, build_audit_event
from app.audit.index import audit_index
from app.db.tables import resource_current as cur
from app.fhir import repository as repo
from app.fhir.context import Context
from app.fhir.search.tables import write_many

if TYPE_CHECKING:
    from app.state import AppState

log = structlog.get_logger("relais.audit")

Labels = tuple[str | None, str | None]
AUDIT = "AuditEvent"


class AuditTrail:
    def __init__(
        self,
        state: AppState,
        *,
        batch_size: int = 200,
        interval: float = 0.5,
        max_pending: int = 100_000,
    ) -> None:
        self.state = state
        self.batch_size = batch_size
        self.interval = interval
        self.max_pending = max_pending
        self.dropped = 0
        self._pending: deque[AuditRecord] = deque()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def record(self, record: AuditRecord) -> None:
        """Queue one event; never raises."""
        try:
            if len(self._pending) >= self.max_pending:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append(record)
            self._ensure_task()
            if len(self._pending) >= self.batch_size:
                self._wake.set()
        except Exception as exc:  # the request it records must not fail
            log.error("audit_record_failed", error=repr(exc))

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _ensure_task(self) -> None:
        if self._task is None and not self._closed:
            with contextlib.suppress(RuntimeError):  # no running loop: flushed on demand
                self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception as exc:
                log.error("audit_flush_failed", error=repr(exc))
            if self._closed:
                return

    async def close(self) -> None:
        """Stop the background task and write what is left. The task is asked to stop,
        not cancelled: cancelling it mid-transaction could leave a SQLite write lock."""
        self._closed = True
        if self._task is not None:
            self._wake.set()
            await self._task
            self._task = None
        await self.flush()

    async def flush(self) -> int:
        """Write every pending event; returns how many were written."""
        written = 0
        async with self._lock:
            while self._pending:
                batch = [
                    self._pending.popleft() for _ in range(min(self.batch_size, len(self._pending)))
                ]
                try:
                    await self._write(batch)
                except Exception as exc:
                    # Audit must not take the server down: log and keep going.
                    self.dropped += len(batch)
                    log.error("audit_write_failed", events=len(batch), error=repr(exc))
                    continue
                written += len(batch)
        return written

    async def _write(self, batch: list[AuditRecord]) -> None:
        state = self.state
        async with state.gate(True), state.engine.begin() as conn:
            ctx = state.context(conn)
            labels = await _target_labels(ctx, batch)
            rows = []
            for record in batch:
                beneficiary, domain = record.labels or _first_label(record, labels)
                rows.append((build_audit_event(record, domain), beneficiary, domain))
            await _store(ctx, rows)


def _first_label(record: AuditRecord, labels: dict[tuple[str, str], Labels]) -> Labels:
    if not record.entities:
        return None, None
    rtype, rid, _ = record.entities[0]
    return labels.get((rtype, rid), (None, None))


async def _target_labels(ctx: Context, batch: list[AuditRecord]) -> dict[tuple[str, str], Labels]:
    """Compartment and label of the resources that events without labels address: one
    cached statement per type (an expanding IN), not one compiled per batch."""
    wanted: dict[str, set[str]] = {}
    for record in batch:
        if record.labels is None and record.entities:
            rtype, rid, _ = record.entities[0]
            wanted.setdefault(rtype, set()).add(rid)
    found: dict[tuple[str, str], Labels] = {}
    for rtype, ids in wanted.items():
        rows = await ctx.conn.execute(_LABELS, {"type": rtype, "ids": sorted(ids)})
        found.update({(rtype, r.res_id): (r.beneficiary, r.domain) for r in rows})
    return found


_LABELS = select(cur.c.res_id, cur.c.beneficiary, cur.c.domain).where(
    cur.c.type == bindparam("type"), cur.c.res_id.in_(bindparam("ids", expanding=True))
)


async def _store(ctx: Context, rows: list[tuple[dict[str, Any], str | None, str | None]]) -> None:
    """Insert a batch of AuditEvents as version 1 of new resources, with their search
    index: a couple of statements for the whole batch instead of the per-write path.
    AuditEvents need none of the after-write hooks (no Provenance, no grants)."""
    timestamp = repo.now_utc()
    stamp = repo.instant(timestamp)
    versions = []
    index = []
    for resource, beneficiary, domain in rows:
        res_id = str(uuid.uuid4())
        resource["id"] = res_id
        resource.setdefault("meta", {}).update(versionId="1", lastUpdated=stamp)
        content = orjson.dumps(resource).decode()
        versions.append(repo.NewVersion(AUDIT, res_id, content, timestamp, beneficiary, domain))
        index.append((res_id, audit_index(resource, ctx.base_url)))
    await repo.insert_new(ctx.conn, versions)
    await write_many(ctx.conn, AUDIT, index)
