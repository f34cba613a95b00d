"""Search index tables, one per kind of value, and their maintenance on write.

Every row carries the resource it belongs to (type, res_id) and the parameter
code. Lookups go through (type, param, value…) indexes; (type, res_id) serves
the delete on update.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Index,
    Numeric,
    String,
    Table,
    Text,
    bindparam,
    delete,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Delete, Insert, Select
from sqlalchemy.sql.schema import SchemaItem

from app.db.base import metadata
from app.db.tables import UTCDateTime
from app.fhir.search.extract import MAX_INDEXED, CompositeRow, IndexRows, index_kinds


def _table(name: str, *items: SchemaItem) -> Table:
    """An index table: the resource, the parameter code, then its own columns and indexes."""
    return Table(
        name,
        metadata,
        Column("type", String(64), nullable=False),
        Column("res_id", String(64), nullable=False),
        Column("param", String(64), nullable=False),
        *items,
        Index(f"ix_{name}_res", "type", "res_id"),
    )


search_token = _table(
    "search_token",
    Column("system", String),
    Column("code", String),
    Column("text", String(MAX_INDEXED)),  # normalised display / CodeableConcept.text
    Column("type_system", String),  # Identifier.type, for :of-type
    Column("type_code", String),
    Index("ix_search_token_code", "type", "param", "code", "system"),
)

search_string = _table(
    "search_string",
    Column("value_norm", String(MAX_INDEXED), nullable=False),
    Column("value_exact", Text, nullable=False),
    # varchar_pattern_ops lets PostgreSQL use the index for LIKE 'abc%' in any collation.
    Index(
        "ix_search_string_value",
        "type",
        "param",
        "value_norm",
        postgresql_ops={"value_norm": "varchar_pattern_ops"},
    ),
)

search_reference = _table(
    "search_reference",
    Column("target_type", String(64)),
    Column("target_id", String(64)),
    Column("target_version", String(64)),
    Column("url", String),  # absolute / external URL, or canonical without |version
    Index("ix_search_reference_param", "type", "param", "target_type", "target_id"),
    Index("ix_search_reference_url", "type", "param", "url"),
    # _revinclude, _has and "who points at this resource".
    Index("ix_search_reference_target", "target_type", "target_id"),
)

search_date = _table(
    "search_date",
    Column("low", UTCDateTime(), nullable=False),
    Column("high", UTCDateTime(), nullable=False),
    Index("ix_search_date_range", "type", "param", "low", "high"),
)

search_number = _table(
    "search_number",
    Column("value", Numeric, nullable=False),
    Column("low", Numeric, nullable=False),
    Column("high", Numeric, nullable=False),
    Index("ix_search_number_value", "type", "param", "value"),
)

search_quantity = _table(
    "search_quantity",
    Column("value", Numeric),  # NULL for a Range: only low / high
    Column("low", Numeric),
    Column("high", Numeric),
    Column("system", String),
    Column("code", String),
    Column("unit", String),
    Index("ix_search_quantity_value", "type", "param", "code", "value"),
)

search_uri = _table(
    "search_uri",
    Column("uri", String, nullable=False),
    Index(
        "ix_search_uri_uri", "type", "param", "uri", postgresql_ops={"uri": "varchar_pattern_ops"}
    ),
)

search_composite = _table(
    "search_composite",
    # The first component is a token in every composite of the supported types.
    Column("system", String),
    Column("code", String),
    Column("components", JSON().with_variant(JSONB(), "postgresql"), nullable=False),
    Index("ix_search_composite_code", "type", "param", "code", "system"),
)

TABLES: dict[str, Table] = {
    "token": search_token,
    "string": search_string,
    "reference": search_reference,
    "date": search_date,
    "number": search_number,
    "quantity": search_quantity,
    "uri": search_uri,
    "composite": search_composite,
}


def _delete(table: Table) -> Delete:
    return delete(table).where(
        table.c.type == bindparam("d_type"), table.c.res_id == bindparam("d_res_id")
    )


_DELETES: dict[str, Delete] = {kind: _delete(table) for kind, table in TABLES.items()}
_INSERTS: dict[str, Insert] = {kind: table.insert() for kind, table in TABLES.items()}


@cache
def _delete_all(kinds: frozenset[str]) -> Select[Any]:
    """PostgreSQL: the deletes in one statement (data-modifying CTEs), one round trip."""
    statement: Select[Any] = select(literal_column("1"))
    for kind in sorted(kinds):
        statement = statement.add_cte(_DELETES[kind].cte(f"d_{kind}"))
    return statement


def _dicts(kind: str, resource_type: str, res_id: str, rows: list[Any]) -> list[dict[str, Any]]:
    if kind == "composite":
        return [_composite_dict(resource_type, res_id, row) for row in rows]
    names = ("type", "res_id", *rows[0]._fields)
    return [dict(zip(names, (resource_type, res_id, *row), strict=True)) for row in rows]


def _composite_dict(resource_type: str, res_id: str, row: CompositeRow) -> dict[str, Any]:
    first = row.components[0] if row.components else {}
    return {
        "type": resource_type,
        "res_id": res_id,
        "param": row.param,
        "system": first.get("system"),
        "code": first.get("code"),
        "components": list(row.components),
    }


async def write_index(
    conn: AsyncConnection,
    resource_type: str,
    res_id: str,
    rows: IndexRows | None,
    *,
    replace: bool = True,
) -> None:
    """Replace the index rows of one resource; `rows` None only deletes them.

    `replace=False` skips the delete, for a resource created in this transaction.
    """
    kinds = index_kinds(resource_type)  # tables this type never uses are skipped
    if replace and kinds:
        keys = {"d_type": resource_type, "d_res_id": res_id}
        if conn.dialect.name == "postgresql":
            await conn.execute(_delete_all(kinds), keys)
        else:
            for kind in kinds:
                await conn.execute(_DELETES[kind], keys)
    if rows is None:
        return
    for kind in TABLES:
        found = getattr(rows, kind)
        if found:
            await conn.execute(_INSERTS[kind], _dicts(kind, resource_type, res_id, found))
