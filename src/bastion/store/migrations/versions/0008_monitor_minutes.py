"""Monitoring: each gateway replica's per-minute request, error and slow counts per endpoint,
so the dashboards' trends add up every replica and outlive a restart.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bastion.store.tables import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_minutes",
        sa.Column("endpoint", sa.String(64), primary_key=True),
        sa.Column("replica", sa.String(64), primary_key=True),
        sa.Column("minute", sa.BigInteger, primary_key=True),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("slow", sa.Integer, nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("monitor_minutes")
