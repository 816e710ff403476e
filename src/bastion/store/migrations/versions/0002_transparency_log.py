"""Transparency log: leaf indices on entries, stored Merkle nodes, signed checkpoints.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bastion.store.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(sa.Column("leaf_index", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("leaf_hash", sa.LargeBinary(32), nullable=True))
        batch.create_unique_constraint("uq_ledger_entries_leaf_index", ["leaf_index"])
    op.create_index(
        "ix_ledger_entries_queued",
        "ledger_entries",
        ["seq"],
        sqlite_where=sa.text("leaf_index IS NULL"),
        postgresql_where=sa.text("leaf_index IS NULL"),
    )
    op.create_table(
        "ledger_nodes",
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "ledger_checkpoints",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ledger_checkpoints")
    op.drop_table("ledger_nodes")
    op.drop_index("ix_ledger_entries_queued", table_name="ledger_entries")
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_constraint("uq_ledger_entries_leaf_index", type_="unique")
        batch.drop_column("leaf_hash")
        batch.drop_column("leaf_index")
