"""`relais clients add | list | revoke`: the partner client registry, on RELAIS_DATABASE_URL."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer
from rich.console import Console

from app.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from app.auth.registry import NewClient

# The database and key modules are imported by the commands that use them: the
# `relais` command starts quickly for every other subcommand.

clients_cli = typer.Typer(help="Partner clients (SMART Backend Services)", no_args_is_help=True)
console = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]{message}[/red]")
    return typer.Exit(2)


async def _organization_exists(engine: AsyncEngine, reference: str) -> bool:
    from sqlalchemy import select

    from app.db.tables import resource_current as cur

    stmt = select(cur.c.deleted).where(
        cur.c.type == "Organization", cur.c.res_id == reference.split("/", 1)[1]
    )
    async with engine.connect() as conn:
        row = (await conn.execute(stmt)).first()
    return row is not None and not row.deleted


async def _create_organization(settings: Settings, reference: str, name: str) -> None:
    """Through the FHIR engine (validation, index, Provenance), so the app is built."""
    from app.fhir import interactions
    from app.main import create_app

    state = create_app(settings).state.relais
    org_id = reference.split("/", 1)[1]
    try:
        async with state.gate(True), state.engine.begin() as conn:
            ctx = state.context(conn)
            body = {"resourceType": "Organization", "id": org_id, "active": True, "name": name}
            await interactions.update(ctx, "Organization", org_id, body)
    finally:
        await state.engine.dispose()


async def _add(settings: Settings, client: NewClient, organization_name: str) -> tuple[str, bool]:
    """Register the client, creating its Organization first when absent."""
    from app.auth import registry
    from app.db.engine import make_engine

    engine = make_engine(settings)
    try:
        created = not await _organization_exists(engine, client.organization)
        if created:
            await _create_organization(settings, client.organization, organization_name)
        async with engine.begin() as conn:
            return await registry.register_client(conn, client), created
    finally:
        await engine.dispose()


@clients_cli.command("add")
def add(
    name: str = typer.Argument(..., help="The client's name (also names --generate-key files)"),
    organization: str = typer.Option(..., help="Organization/ID the client acts for"),
    organization_name: str | None = typer.Option(
        None, help="Name of the Organization when it is created (default NAME)"
    ),
    jwks_url: str | None = typer.Option(None, help="URL of the client's public JWKS"),
    jwks_file: Path | None = typer.Option(None, help="File holding the client's public JWKS"),
    generate_key: Path | None = typer.Option(
        None, help="Create a key pair in DIR: NAME.key.pem (private) and NAME.jwks.json"
    ),
    key_type: str = typer.Option("RS384", help="RS384 or ES384 (with --generate-key)"),
    secret: bool = typer.Option(False, "--secret", help="Use client_secret_basic"),
    scope: str = typer.Option(..., help='Registered scopes, e.g. "system/*.rs"'),
    all_beneficiaries: bool = typer.Option(
        False, "--all-beneficiaries", help="See every beneficiary (scopes still apply)"
    ),
) -> None:
    """Register a partner client and print one JSON object (client_id, and secret or key)."""
    from app.auth import registry
    from app.auth.keys import KeyType, check_client_jwks, generate_client_key
    from app.auth.secrets import hash_secret, new_secret

    chosen = [jwks_url is not None, jwks_file is not None, generate_key is not None, secret]
    if sum(chosen) != 1:
        raise _fail("Give exactly one of --jwks-url, --jwks-file, --generate-key, --secret")
    if key_type not in ("RS384", "ES384"):
        raise _fail("--key-type must be RS384 or ES384")
    settings = Settings()
    out: dict[str, Any] = {}
    jwks: dict[str, Any] | None = None
    secret_hash = None
    try:
        if jwks_file is not None:
            jwks = check_client_jwks(json.loads(jwks_file.read_text()))
        if secret:
            client_secret = new_secret()
            secret_hash = hash_secret(client_secret)
            out["client_secret"] = client_secret
        new = registry.NewClient(
            name=name,
            organization=organization,
            scope=scope,
            all_beneficiaries=all_beneficiaries,
            # With --generate-key the JWKS exists only once the rest has been checked.
            jwks=jwks if generate_key is None else {"keys": []},
            jwks_url=jwks_url,
            secret_hash=secret_hash,
        )
        registry.check_registration(new)
        if generate_key is not None:
            key_file, jwks = generate_client_key(generate_key, name, cast(KeyType, key_type))
            out["kid"] = jwks["keys"][0]["kid"]
            out["key_file"] = str(key_file.resolve())
            new = dataclasses.replace(new, jwks=jwks)
        elif jwks is not None and len(jwks["keys"]) == 1:
            out["kid"] = jwks["keys"][0]["kid"]
    except (ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    client_id, created = asyncio.run(_add(settings, new, organization_name or name))
    if created:
        console.print(f"Created {organization}")
    typer.echo(json.dumps({"client_id": client_id, **out}))


@clients_cli.command("list")
def list_() -> None:
    """Print the registered clients as a JSON array."""
    from app.auth import registry
    from app.db.engine import make_engine

    async def run() -> list[dict[str, Any]]:
        engine = make_engine(Settings())
        try:
            async with engine.connect() as conn:
                return await registry.list_clients(conn)
        finally:
            await engine.dispose()

    typer.echo(json.dumps(asyncio.run(run()), indent=2))


@clients_cli.command("revoke")
def revoke(client_id: str = typer.Argument(..., help="The client to revoke")) -> None:
    """Revoke a client: no new token, and its live tokens stop working."""
    from app.auth import registry
    from app.db.engine import make_engine

    async def run() -> bool:
        engine = make_engine(Settings())
        try:
            async with engine.begin() as conn:
                return await registry.revoke_client(conn, client_id)
        finally:
            await engine.dispose()

    if not asyncio.run(run()):
        raise _fail(f"No client {client_id}")
    typer.echo(json.dumps({"client_id": client_id, "revoked": True}))
