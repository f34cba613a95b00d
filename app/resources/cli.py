"""`relais demo`: the demo case, its partner clients and a token request to start with."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console

from app.settings import Settings

console = Console(stderr=True)
FIRST_CLIENT = "demo-cap-parcours"


def demo_command(
    keys_dir: Path = typer.Option(
        Path("demo-keys"), "--keys-dir", help="Where the partners' private keys are written"
    ),
    token: str | None = typer.Option(
        None, "--token", metavar="NAME", help="Only print a fresh token request for client NAME"
    ),
) -> None:
    """Load the demo case (idempotent) and register one partner client per organisation."""
    from app.db.migrate import upgrade

    settings = Settings()
    upgrade(settings.database_url)
    asyncio.run(_demo(settings, keys_dir, token))


async def _demo(settings: Settings, keys_dir: Path, token: str | None) -> None:
    from app.main import create_app
    from app.resources.demo_clients import find_demo_client, register_demo_clients, token_request
    from app.resources.demo_load import load_demo_case

    app = create_app(settings)
    token_url = settings.base_url.rstrip("/") + "/auth/token"
    async with app.router.lifespan_context(app):
        state = app.state.relais
        if token is not None:
            client = await find_demo_client(state, token, keys_dir)
            if client is None or not client.key_file.is_file():
                console.print(f"[red]No demo client {token} with a key in {keys_dir}[/red]")
                raise typer.Exit(1)
            typer.echo(token_request(client, token_url))
            return
        loaded = await load_demo_case(state)
        console.print(
            f"Demo case: {loaded.created} resources created, {loaded.unchanged} unchanged, "
            f"{loaded.kept} changed since loaded and kept"
        )
        clients = await register_demo_clients(state, keys_dir)
    console.print("Demo partner clients (client, organisation, client_id, key file):")
    for client in clients:
        status = "new" if client.created else "kept"
        console.print(
            f"  {client.name}  {client.organization}  {client.client_id}  "
            f"{client.key_file} ({status})",
            soft_wrap=True,
        )
    first = next(c for c in clients if c.name == FIRST_CLIENT)
    console.print(
        f"Token request for {first.name} on stdout (its assertion is valid for 5 minutes). "
        f"Pipe it to sh: TOKEN=$(relais demo --token {first.name} | sh | jq -r .access_token)",
        soft_wrap=True,
    )
    typer.echo(token_request(first, token_url))
    others = ", ".join(c.name for c in clients if c.name != FIRST_CLIENT)
    console.print(
        f"Other partners: --token NAME with NAME one of {others}. Walk-through: docs/demo.md",
        soft_wrap=True,
    )
