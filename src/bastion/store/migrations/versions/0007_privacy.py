"""Privacy: PII scans and quasi-identifiers in the dataset inventory, deletion evidence,
tokenization keys, privacy budgets and their spends.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bastion.store.tables import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.String(40)


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("pii_report", sa.JSON, nullable=True))
        batch.add_column(sa.Column("privacy_report", sa.JSON, nullable=True))
        batch.add_column(sa.Column("deleted_at", UTCDateTime(), nullable=True))
    op.create_table(
        "deletions",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("subject_kind", sa.String(32), nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=False, index=True),
        sa.Column("subject_name", sa.String(256), nullable=False),
        sa.Column("rule", sa.String(256), nullable=False),
        sa.Column("key_id", sa.String(128), nullable=True),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False, index=True),
    )
    op.create_table(
        "token_keys",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("key_id", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("retired_at", UTCDateTime(), nullable=True),
        sa.Column("destroyed_at", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "privacy_budgets",
        sa.Column("dataset", sa.String(128), primary_key=True),
        sa.Column("epsilon_total", sa.Float, nullable=False),
        sa.Column("delta_total", sa.Float, nullable=False),
        sa.Column("epsilon_spent", sa.Float, nullable=False),
        sa.Column("delta_spent", sa.Float, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "privacy_spends",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("dataset", sa.String(128), nullable=False, index=True),
        sa.Column("epsilon", sa.Float, nullable=False),
        sa.Column("delta", sa.Float, nullable=False),
        sa.Column("mechanism", sa.String(128), nullable=False),
        sa.Column("purpose", sa.String(512), nullable=False),
        sa.Column("subject", sa.String(256), nullable=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in ("privacy_spends", "privacy_budgets", "token_keys", "deletions"):
        op.drop_table(table)
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("deleted_at")
        batch.drop_column("privacy_report")
        batch.drop_column("pii_report")
