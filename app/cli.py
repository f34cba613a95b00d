"""The `relais` command."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from app.auth.cli import clients_cli
from app.fhir.search.cli import reindex_command
from app.resources.cli import demo_command
from app.settings import Settings

cli = typer.Typer(help="Relais: FHIR R4B case-management server", no_args_is_help=True)
console = Console(stderr=True)


@cli.command()
def migrate() -> None:
    """Upgrade the database schema to head."""
    from app.db.migrate import upgrade

    settings = Settings()
    upgrade(settings.database_url)
    console.print(f"[green]Database at head[/green] ({_safe_url(settings.database_url)})")


@cli.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind"),
    port: int = typer.Option(8000, help="Port to listen on"),
    workers: int = typer.Option(1, help="Worker processes"),
) -> None:
    """Migrate the database to head, then serve the API."""
    import uvicorn

    from app.db.migrate import upgrade

    settings = Settings()
    upgrade(settings.database_url)
    console.print(f"Relais on http://{host}:{port}/fhir ({_safe_url(settings.database_url)})")
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level="warning",
    )


@cli.command()
def openapi(
    output: Path = typer.Option(Path("openapi/openapi.json"), help="Where to write it"),
) -> None:
    """Write the OpenAPI document of the HTTP API."""
    from app.openapi import render_openapi

    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_openapi())
    console.print(f"Wrote {output}")


cli.add_typer(clients_cli, name="clients")
cli.command("reindex")(reindex_command)


cli.command("demo")(demo_command)


def _safe_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def main() -> None:
    cli()


def print_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2))
