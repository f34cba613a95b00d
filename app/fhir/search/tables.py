"""Search index tables, one per kind of value, and their maintenance on write.

Every row carries the resource it belongs to (type, res_id), the parameter code
and the resource's created_seq (its place in the default page order, so a page can be
picked from the index alone). Lookups go through (type, param, value…) indexes;
(type, res_id) serves the delete on update. A reference row also carries its target's
created_seq, so _has finds its matches and their order without reading the targets.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    Column,
    Index,
    Numeric,
    String,
    Table,
    Text,
    TextClause,
    bindparam,
    delete,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Delete, Insert
from sqlalchemy.sql.schema import SchemaItem

from app.db.base import metadata
from app.db.tables import SeqType, UTCDateTime, resource_current
from app.fhir.search.extract import MAX_INDEXED, CompositeRow, IndexRows, index_kinds


def _table(name: str, *items: SchemaItem, by_resource: bool = True) -> Table:
    """An index table: the resource, the parameter code, then its own columns and indexes;
    (type, res_id) indexed unless the table's own indexes start with it."""
    extra = [Index(f"ix_{name}_res", "type", "res_id")] if by_resource else []
    return Table(
        name,
        metadata,
        Column("type", String(64), nullable=False),
        Column("res_id", String(64), nullable=False),
        Column("param", String(64), nullable=False),
        # Copied from resource_current when the row is written (see _insert_cte).
        Column("created_seq", SeqType, nullable=False),
        *items,
        *extra,
    )


# PostgreSQL: the string lookup also gives what a search reads of the rows it finds, so
# the index alone answers (index-only scans). Not on tokens and references: every write
# has many of those rows, and the wider index cost creates about a tenth of their speed.
COVER = ["res_id", "created_seq"]

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
        postgresql_include=COVER,
    ),
)

search_reference = _table(
    "search_reference",
    Column("target_type", String(64)),
    Column("target_id", String(64)),
    Column("target_version", String(64)),
    Column("url", String),  # absolute / external URL, or canonical without |version
    # The target's created_seq, copied as the row is written (see _insert_cte); NULL when
    # the target did not exist then. It never changes: an update keeps created_seq.
    Column("target_seq", SeqType),
    # PostgreSQL: a chain or _has reads the source ids of the rows it finds from here.
    Index(
        "ix_search_reference_param",
        "type",
        "param",
        "target_type",
        "target_id",
        postgresql_include=["res_id"],
    ),
    Index("ix_search_reference_url", "type", "param", "url"),
    # _revinclude and "who points at this resource".
    Index("ix_search_reference_target", "target_type", "target_id"),
    # _has: from a source to its targets through one parameter, the index alone.
    Index(
        "ix_search_reference_source",
        "type",
        "res_id",
        "param",
        postgresql_include=["target_type", "target_id", "target_seq"],
    ),
    by_resource=False,
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

# Searches page through resource_current in creation order, per type.
Index("ix_resource_current_type_created", resource_current.c.type, resource_current.c.created_seq)
# The deleted resources only (few): _has checks its targets against them.
Index(
    "ix_resource_current_deleted",
    resource_current.c.type,
    resource_current.c.res_id,
    postgresql_where=resource_current.c.deleted,
    sqlite_where=text("deleted = 1"),  # as SQLAlchemy writes the condition on SQLite
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


def _created(type_key: str, id_key: str) -> Any:
    """The created_seq of a resource, looked up as a row goes in."""
    return (
        select(resource_current.c.created_seq)
        .where(
            resource_current.c.type == bindparam(type_key),
            resource_current.c.res_id == bindparam(id_key),
        )
        .scalar_subquery()
    )


_CREATED = _created("k_type", "k_res_id")
_INSERTS: dict[str, Insert] = {
    kind: table.insert().values(created_seq=_CREATED) for kind, table in TABLES.items()
}
_INSERTS["reference"] = search_reference.insert().values(
    created_seq=_CREATED, target_seq=_created("k_target_type", "k_target_id")
)
# Columns filled by a lookup as the row goes in, not sent with it.
_LOOKED_UP = ("created_seq", "target_seq")


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


# --- writes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexWrite:
    """The new index rows of one resource, and which of its old rows go."""

    type: str
    res_id: str
    rows: IndexRows | None  # None: the resource is gone
    replace: bool = True  # False for a first version: there is nothing to remove
    kinds: frozenset[str] | None = None  # only these tables changed

    def tables(self) -> frozenset[str]:
        wanted = index_kinds(self.type)  # tables this type never uses are skipped
        return wanted if self.kinds is None else wanted & self.kinds

    def inserts(self) -> dict[str, list[Any]]:
        if self.rows is None:
            return {}
        found = {kind: getattr(self.rows, kind) for kind in self.tables()}
        return {kind: rows for kind, rows in found.items() if rows}


async def write_index(
    conn: AsyncConnection,
    resource_type: str,
    res_id: str,
    rows: IndexRows | None,
    *,
    replace: bool = True,
    kinds: Collection[str] | None = None,
) -> None:
    """Replace the index rows of one resource; `rows` None only deletes them."""
    only = frozenset(kinds) if kinds is not None else None
    await write_indexes(conn, [IndexWrite(resource_type, res_id, rows, replace, only)])


async def write_many(
    conn: AsyncConnection, resource_type: str, batch: list[tuple[str, IndexRows]]
) -> None:
    """Insert the index rows of many new resources of one type."""
    writes = [IndexWrite(resource_type, res_id, rows, replace=False) for res_id, rows in batch]
    await write_indexes(conn, writes)


async def write_indexes(conn: AsyncConnection, writes: list[IndexWrite]) -> None:
    """Apply index writes of resources each named once: one statement on PostgreSQL,
    one executemany per table on SQLite."""
    deletes: dict[str, list[tuple[str, str]]] = defaultdict(list)
    inserts: dict[str, list[tuple[str, str, Any]]] = defaultdict(list)
    for write in writes:
        if write.replace:
            for kind in write.tables():
                deletes[kind].append((write.type, write.res_id))
        for kind, rows in write.inserts().items():
            inserts[kind] += [(write.type, write.res_id, row) for row in rows]
    if not deletes and not inserts:
        return
    if conn.dialect.name == "postgresql":
        params = {f"d_{kind}": _json(keys) for kind, keys in deletes.items()}
        for kind, found in inserts.items():
            params[f"i_{kind}"] = _json(_pg_rows(kind, found))
        await conn.execute(_pg_write(frozenset(deletes), frozenset(inserts)), params)
        return
    for kind, keys in sorted(deletes.items()):
        await conn.execute(_DELETES[kind], [{"d_type": t, "d_res_id": i} for t, i in keys])
    for kind, found in inserts.items():
        await conn.execute(_INSERTS[kind], [_row_dict(kind, t, i, row) for t, i, row in found])


def _row_dict(kind: str, resource_type: str, res_id: str, row: Any) -> dict[str, Any]:
    key = {"k_type": resource_type, "k_res_id": res_id}
    if kind == "composite":
        return {**_composite_dict(resource_type, res_id, row), **key}
    if kind == "reference":
        key["k_target_type"], key["k_target_id"] = row.target_type, row.target_id
    return {"type": resource_type, "res_id": res_id, **row._asdict(), **key}


def changed_kinds(old: IndexRows, new: IndexRows) -> frozenset[str]:
    """The tables whose rows differ between two extractions of the same resource."""
    return frozenset(kind for kind in TABLES if getattr(old, kind) != getattr(new, kind))


# --- PostgreSQL: rows sent as one JSON array per table, into data-modifying CTEs -------
# One text parameter per table costs the server a single orjson call; binding typed
# arrays made asyncpg inspect every element (four times the CPU per row).


def _json(rows: list[Any]) -> str:
    return orjson.dumps(rows, default=str).decode()  # Decimal as text, cast back below


def _cast(kind: str, name: str, position: int) -> str:
    column = TABLES[kind].c[name]
    if name == "components":
        return f"CAST(r->{position} AS JSONB)"
    if isinstance(column.type, UTCDateTime):
        return f"CAST(r->>{position} AS TIMESTAMPTZ)"
    if isinstance(column.type, Numeric):
        return f"CAST(r->>{position} AS NUMERIC)"
    return f"r->>{position}"


def _insert_cte(kind: str) -> str:
    """INSERT … SELECT FROM the elements of a JSON array of rows: any number, one text.
    created_seq comes from the resource's current row, written earlier in the transaction;
    a reference's target_seq from its target's."""
    table = TABLES[kind]
    names = [c.name for c in table.columns if c.name not in _LOOKED_UP]
    values = [_cast(kind, name, n) for n, name in enumerate(names)]
    quoted = [f'"{name}"' for name in names]
    # A subquery per row, not a join: the planner would hash-join a small table whole.
    quoted.append("created_seq")
    values.append(_seq_of("r->>0", "r->>1"))
    if kind == "reference":
        quoted.append("target_seq")
        target = [_cast(kind, name, names.index(name)) for name in ("target_type", "target_id")]
        values.append(_seq_of(*target))
    return (
        f"i_{kind} AS (INSERT INTO {table.name} ({', '.join(quoted)}) "
        f"SELECT {', '.join(values)} FROM json_array_elements(CAST(:i_{kind} AS JSON)) AS r)"
    )


def _seq_of(resource_type: str, res_id: str) -> str:
    return (
        f"(SELECT c.created_seq FROM resource_current c "
        f"WHERE c.type = {resource_type} AND c.res_id = {res_id})"
    )


def _delete_cte(kind: str) -> str:
    return (
        f"d_{kind} AS (DELETE FROM {TABLES[kind].name} WHERE (type, res_id) IN "
        f"(SELECT r->>0, r->>1 FROM json_array_elements(CAST(:d_{kind} AS JSON)) AS r))"
    )


@cache
def _pg_write(deletes: frozenset[str], inserts: frozenset[str]) -> TextClause:
    """All the CTEs share one snapshot: the deletes only see the rows that were there
    before the statement, never the ones it inserts."""
    ctes = [_delete_cte(kind) for kind in sorted(deletes)]
    ctes += [_insert_cte(kind) for kind in sorted(inserts)]
    return text("WITH " + ", ".join(ctes) + " SELECT 1")


def _pg_rows(kind: str, found: list[tuple[str, str, Any]]) -> list[tuple[Any, ...]]:
    """Rows in the table's column order, as _insert_cte reads them."""
    if kind == "composite":
        return [
            (t, i, r.param, r.components[0].get("system"), r.components[0].get("code"),
             list(r.components))
            for t, i, r in found
        ]  # fmt: skip
    return [(t, i, *r) for t, i, r in found]
