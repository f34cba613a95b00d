"""`relais reindex [TYPE…]`: rebuild the search index from the stored resources."""

from __future__ import annotations

import asyncio
import time

import typer
from rich.console import Console

from app.settings import Settings

console = Console(stderr=True)


def reindex_command(
    types: list[str] | None = typer.Argument(None, help="Resource types (default: every type)"),
) -> None:
    """Rebuild the search index of every stored resource, or of the given types."""
    from app.fhir.types import SUPPORTED, SUPPORTED_TYPES

    wanted = list(types or SUPPORTED_TYPES)
    unknown = [t for t in wanted if t not in SUPPORTED]
    if unknown:
        console.print(f"[red]Unknown resource type: {', '.join(unknown)}[/red]")
        raise typer.Exit(2)
    asyncio.run(_reindex(Settings(), wanted))


async def _reindex(settings: Settings, types: list[str]) -> None:
    from app.db.engine import make_engine
    from app.fhir.search.indexing import reindex

    engine = make_engine(settings)
    try:
        for resource_type in types:
            started = time.perf_counter()
            async with engine.begin() as conn:  # one transaction per type
                done = await reindex(conn, settings.fhir_base, [resource_type])
            if done[resource_type]:
                seconds = time.perf_counter() - started
                console.print(f"{resource_type}: {done[resource_type]} indexed in {seconds:.1f} s")
    finally:
        await engine.dispose()
    console.print("[green]Search index rebuilt[/green]")
