"""search index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 18:41:07.989773
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _index_table(name: str, *columns: sa.Column) -> None:
    """An index table: the resource, the parameter code, then its own columns."""
    op.create_table(
        name,
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("res_id", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        *columns,
    )
    op.create_index(f"ix_{name}_res", name, ["type", "res_id"])


def upgrade() -> None:
    _index_table(
        "search_token",
        sa.Column("system", sa.String(), nullable=True),
        sa.Column("code", sa.String(), nullable=True),
        sa.Column("text", sa.String(length=255), nullable=True),
        sa.Column("type_system", sa.String(), nullable=True),
        sa.Column("type_code", sa.String(), nullable=True),
    )
    op.create_index("ix_search_token_code", "search_token", ["type", "param", "code", "system"])

    _index_table(
        "search_string",
        sa.Column("value_norm", sa.String(length=255), nullable=False),
        sa.Column("value_exact", sa.Text(), nullable=False),
    )
    # varchar_pattern_ops (PostgreSQL only) serves LIKE 'abc%' whatever the collation.
    op.create_index(
        "ix_search_string_value",
        "search_string",
        ["type", "param", "value_norm"],
        postgresql_ops={"value_norm": "varchar_pattern_ops"},
    )

    _index_table(
        "search_reference",
        sa.Column("target_type", sa.String(length=64), nullable=True),
        sa.Column("target_id", sa.String(length=64), nullable=True),
        sa.Column("target_version", sa.String(length=64), nullable=True),
        sa.Column("url", sa.String(), nullable=True),
    )
    op.create_index(
        "ix_search_reference_param",
        "search_reference",
        ["type", "param", "target_type", "target_id"],
    )
    op.create_index("ix_search_reference_url", "search_reference", ["type", "param", "url"])
    op.create_index("ix_search_reference_target", "search_reference", ["target_type", "target_id"])

    _index_table(
        "search_date",
        sa.Column("low", TS, nullable=False),
        sa.Column("high", TS, nullable=False),
    )
    op.create_index("ix_search_date_range", "search_date", ["type", "param", "low", "high"])

    _index_table(
        "search_number",
        sa.Column("value", sa.Numeric(), nullable=False),
        sa.Column("low", sa.Numeric(), nullable=False),
        sa.Column("high", sa.Numeric(), nullable=False),
    )
    op.create_index("ix_search_number_value", "search_number", ["type", "param", "value"])

    _index_table(
        "search_quantity",
        sa.Column("value", sa.Numeric(), nullable=True),
        sa.Column("low", sa.Numeric(), nullable=True),
        sa.Column("high", sa.Numeric(), nullable=True),
        sa.Column("system", sa.String(), nullable=True),
        sa.Column("code", sa.String(), nullable=True),
        sa.Column("unit", sa.String(), nullable=True),
    )
    op.create_index(
        "ix_search_quantity_value", "search_quantity", ["type", "param", "code", "value"]
    )

    _index_table("search_uri", sa.Column("uri", sa.String(), nullable=False))
    op.create_index(
        "ix_search_uri_uri",
        "search_uri",
        ["type", "param", "uri"],
        postgresql_ops={"uri": "varchar_pattern_ops"},
    )

    _index_table(
        "search_composite",
        sa.Column("system", sa.String(), nullable=True),
        sa.Column("code", sa.String(), nullable=True),
        sa.Column("components", JSON, nullable=False),
    )
    op.create_index(
        "ix_search_composite_code", "search_composite", ["type", "param", "code", "system"]
    )

    # Searches page through resource_current in creation order, per type.
    op.create_index("ix_resource_current_type_created", "resource_current", ["type", "created_seq"])


def downgrade() -> None:
    op.drop_index("ix_resource_current_type_created", table_name="resource_current")
    for name in (
        "search_composite",
        "search_uri",
        "search_quantity",
        "search_number",
        "search_date",
        "search_reference",
        "search_string",
        "search_token",
    ):
        op.drop_table(name)  # its indexes go with it
