"""created_seq on the search index rows

A search's default order is the order in which resources were created. With the
resource's created_seq on its index rows, the first page of a search decided by the
index alone is picked there (`Patient?name=dupont`: 21 rows of resource_current read
instead of every match). On PostgreSQL the string value index also carries res_id and
created_seq, so such a page, and a count, are read from the index alone (not the token
and reference indexes: every write has many such rows, and covering them cost resource
creation about a tenth of its speed).

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "search_token",
    "search_string",
    "search_reference",
    "search_date",
    "search_number",
    "search_quantity",
    "search_uri",
    "search_composite",
)
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
COVER = ["res_id", "created_seq"]
# name, table, columns, PostgreSQL operator classes
COVERED = (
    (
        "ix_search_string_value",
        "search_string",
        ["type", "param", "value_norm"],
        {"value_norm": "varchar_pattern_ops"},
    ),
)


def _index(name: str, table: str, columns: list[str], ops: dict[str, str], cover: bool) -> None:
    op.drop_index(name, table_name=table)
    include = COVER if cover else []
    op.create_index(name, table, columns, postgresql_ops=ops, postgresql_include=include)


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("created_seq", SEQ, nullable=True))
        op.execute(
            f"UPDATE {table} SET created_seq = (SELECT c.created_seq FROM resource_current c "
            f"WHERE c.type = {table}.type AND c.res_id = {table}.res_id)"
        )
        op.execute(f"DELETE FROM {table} WHERE created_seq IS NULL")  # rows of no resource
        with op.batch_alter_table(table) as batch:
            batch.alter_column("created_seq", existing_type=SEQ, nullable=False)
    if op.get_bind().dialect.name == "postgresql":
        for name, table, columns, ops in COVERED:
            _index(name, table, columns, ops, cover=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, table, columns, ops in COVERED:
            _index(name, table, columns, ops, cover=False)
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("created_seq")
