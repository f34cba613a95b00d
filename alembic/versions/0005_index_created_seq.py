"""created_seq on the search index rows

A search's default order is the order in which resources were created. With the
resource's created_seq on its index rows, the first page of a search decided by the
index alone is picked there (`Patient?name=dupont`: 21 rows of resource_current read
instead of every match).

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


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("created_seq")
