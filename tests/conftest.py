"""The real app over HTTP (ASGI), on a real database: SQLite and PostgreSQL, same tests.

PostgreSQL runs when RELAIS_TEST_POSTGRES_URL is set (CI sets it and fails when the
server is unreachable); each run gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.migrate import upgrade
from app.main import create_app
from app.settings import Settings
from tests.auth_support import register_admin

BASE = "http://relais.test"
PG_URL = os.environ.get("RELAIS_TEST_POSTGRES_URL")


@dataclass
class Backend:
    name: str
    url: str
    settings: Settings
    app: Any
    client: httpx.AsyncClient

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.app.state.relais.engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()


def _pg_admin_url(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/postgres"


async def _create_pg_database(url: str) -> str:
    name = f"relais_test_{uuid.uuid4().hex[:10]}"
    engine = create_async_engine(_pg_admin_url(url), isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


async def _drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    engine = create_async_engine(_pg_admin_url(url), isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await engine.dispose()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", ["sqlite", "postgres"], indirect=True, scope="session")


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("relais")


@pytest.fixture(scope="session")
async def backend(request: pytest.FixtureRequest, tmp_root: Path) -> AsyncIterator[Backend]:
    kind = request.param
    if kind == "postgres":
        if not PG_URL:
            if os.environ.get("CI"):
                pytest.fail("CI must run the PostgreSQL half: set RELAIS_TEST_POSTGRES_URL")
            pytest.skip("PostgreSQL half skipped: RELAIS_TEST_POSTGRES_URL is not set")
        url = await _create_pg_database(PG_URL)
    else:
        url = f"sqlite+aiosqlite:///{tmp_root / 'relais-test.db'}"
    await asyncio.to_thread(upgrade, url)
    settings = Settings(
        database_url=url,
        base_url=BASE,
        signing_key_file=tmp_root / f"signing-{kind}.pem",
        export_dir=tmp_root / f"exports-{kind}",
        json_logs=True,
        log_level="WARNING",
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE) as client,
    ):
        client.auth = await register_admin(app)  # bearer token of an all-access client
        yield Backend(kind, url, settings, app, client)
    if kind == "postgres":
        await _drop_pg_database(url)


@pytest.fixture
def client(backend: Backend) -> httpx.AsyncClient:
    return backend.client


@pytest.fixture
def uid() -> Iterator[str]:
    yield uuid.uuid4().hex[:12]
