"""Engine creation; SQLite gets WAL and a single writer."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.settings import Settings


def make_engine(settings: Settings) -> AsyncEngine:
    url = settings.database_url
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=10,
        pool_pre_ping=False,
        # Plan each statement with its values: a generic plan cannot tell a status
        # shared by thousands of rows from a patient id shared by ten (search joins).
        connect_args={"server_settings": {"plan_cache_mode": "force_custom_plan"}},
    )


def make_planned_once_engine(settings: Settings) -> AsyncEngine | None:
    """PostgreSQL: a small autocommit pool whose statements are planned once, whatever
    their values (a generic plan per prepared statement), for reads whose plan cannot
    depend on them (`search.statements.plans_alike`). Planning costs such a read about
    as much as running it. SQLite: None."""
    if settings.is_sqlite:
        return None
    # Half the main pool and no overflow: a connection is held for one statement, so a
    # busy moment waits a little rather than opening connections per request, and the
    # two pools stay within PostgreSQL's default 100 connections (40 + 10 + 20).
    engine = create_async_engine(
        settings.database_url,
        pool_size=max(1, settings.db_pool_size // 2),
        max_overflow=0,
        pool_pre_ping=False,
        connect_args={"server_settings": {"plan_cache_mode": "force_generic_plan"}},
    )
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class WriteGate:
    """SQLite allows one writer; serialising writers in-process avoids busy errors.

    PostgreSQL needs no gate: row locks do the work.
    """

    def __init__(self, enabled: bool) -> None:
        self._lock = asyncio.Lock() if enabled else None

    async def __aenter__(self) -> None:
        if self._lock is not None:
            await self._lock.acquire()

    async def __aexit__(self, *_exc: object) -> None:
        if self._lock is not None:
            self._lock.release()
