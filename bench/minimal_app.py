"""The yardstick for Relais' read: the least a FastAPI + asyncpg read of a stored resource does.

One route, ``GET /fhir/{type}/{id}``, reads the ``content`` column of ``resource_current``
by (type, res_id) and returns it as bytes. It is served by uvicorn with the settings
``relais serve`` uses (one process, no access log, log level warning), so the ratio of
Relais' read to this one measures what the server adds on top of HTTP + one query.

Run by ``bench/run.py``; standalone, with ``BENCH_MINIMAL_DSN=postgresql://…/DB`` set:
``python bench/minimal_app.py --port 8100``
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response

QUERY = "SELECT content FROM resource_current WHERE type = $1 AND res_id = $2"
FHIR_JSON = "application/fhir+json"


def create_app() -> FastAPI:
    dsn = os.environ["BENCH_MINIMAL_DSN"]
    # Relais' engine holds pool_size + max_overflow connections: the same here.
    pool_size = int(os.environ.get("BENCH_MINIMAL_POOL", "50"))
    pools: list[asyncpg.Pool] = []

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        pools.append(await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size))
        yield
        await pools[0].close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/fhir/{resource_type}/{res_id}")
    async def read(resource_type: str, res_id: str) -> Response:
        content = await pools[0].fetchval(QUERY, resource_type, res_id)
        if content is None:
            return Response(status_code=404)
        return Response(content=content.encode(), media_type=FHIR_JSON)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    # The same uvicorn settings as `relais serve` (app/cli.py).
    uvicorn.run(
        "minimal_app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=1,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
