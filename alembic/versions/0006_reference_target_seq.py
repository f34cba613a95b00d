"""the target's created_seq on reference index rows

`Patient?_has:CareTeam:subject:participant=Organization/x` finds the CareTeams, then
their subjects, then had to read every one of those patients in resource_current for
its created_seq (the page order) and to know it was not deleted. Reference rows now
carry their target's created_seq, copied as they are written (it never changes), and
a partial index lists the deleted resources, so the matches, their order and their
count come from the index. On PostgreSQL the two reference lookups of a _has are
index-only: (type, res_id, param) carries the target, and the value index carries
res_id. The (type, res_id) index of the table is replaced by the first one.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
VALUE = ["type", "param", "target_type", "target_id"]


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.add_column("search_reference", sa.Column("target_seq", SEQ, nullable=True))
    if postgres:
        op.execute(
            "UPDATE search_reference r SET target_seq = c.created_seq FROM resource_current c "
            "WHERE c.type = r.target_type AND c.res_id = r.target_id"
        )
    else:
        op.execute(
            "UPDATE search_reference SET target_seq = (SELECT c.created_seq "
            "FROM resource_current c WHERE c.type = search_reference.target_type "
            "AND c.res_id = search_reference.target_id)"
        )
    op.drop_index("ix_search_reference_res", table_name="search_reference")
    op.create_index(
        "ix_search_reference_source",
        "search_reference",
        ["type", "res_id", "param"],
        postgresql_include=["target_type", "target_id", "target_seq"],
    )
    if postgres:
        op.drop_index("ix_search_reference_param", table_name="search_reference")
        op.create_index(
            "ix_search_reference_param", "search_reference", VALUE, postgresql_include=["res_id"]
        )
    op.create_index(
        "ix_resource_current_deleted",
        "resource_current",
        ["type", "res_id"],
        postgresql_where=sa.text("deleted"),
        sqlite_where=sa.text("deleted = 1"),  # as SQLAlchemy writes the condition there
    )


def downgrade() -> None:
    op.drop_index("ix_resource_current_deleted", table_name="resource_current")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_search_reference_param", table_name="search_reference")
        op.create_index("ix_search_reference_param", "search_reference", VALUE)
    op.drop_index("ix_search_reference_source", table_name="search_reference")
    op.create_index("ix_search_reference_res", "search_reference", ["type", "res_id"])
    with op.batch_alter_table("search_reference") as batch:
        batch.drop_column("target_seq")
