"""partner clients, assertion ids, failure counters, access grants

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "auth_client",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("organization", sa.String(128), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("jwks", sa.Text()),
        sa.Column("jwks_url", sa.Text()),
        sa.Column("secret_hash", sa.String(255)),
        sa.Column("all_beneficiaries", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
        sa.CheckConstraint(
            "(CASE WHEN jwks IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN jwks_url IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN secret_hash IS NULL THEN 0 ELSE 1 END) = 1",
            name=op.f("ck_auth_client_one_credential"),
        ),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_auth_client")),
    )
    op.create_table(
        "auth_jti",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("jti", sa.String(255), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["auth_client.client_id"],
            name=op.f("fk_auth_jti_client_id_auth_client"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("client_id", "jti", name=op.f("pk_auth_jti")),
    )
    op.create_index(op.f("ix_auth_jti_expires_at"), "auth_jti", ["expires_at"])
    op.create_table(
        "auth_failure",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("window_start", TS, nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("locked_until", TS),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["auth_client.client_id"],
            name=op.f("fk_auth_failure_client_id_auth_client"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_auth_failure")),
    )
    op.create_table(
        "access_grant",
        sa.Column("id", SEQ, autoincrement=True, nullable=False),
        sa.Column("beneficiary", sa.String(64), nullable=False),
        sa.Column("organization", sa.String(128), nullable=False),
        sa.Column("domain", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("valid_from", TS),
        sa.Column("valid_to", TS),
        sa.Column("source", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_grant")),
    )
    op.create_index(
        "ix_access_grant_org", "access_grant", ["organization", "beneficiary", "domain"]
    )
    op.create_index("ix_access_grant_beneficiary", "access_grant", ["beneficiary"])


def downgrade() -> None:
    op.drop_index("ix_access_grant_beneficiary", table_name="access_grant")
    op.drop_index("ix_access_grant_org", table_name="access_grant")
    op.drop_table("access_grant")
    op.drop_table("auth_failure")
    op.drop_index(op.f("ix_auth_jti_expires_at"), table_name="auth_jti")
    op.drop_table("auth_jti")
    op.drop_table("auth_client")
