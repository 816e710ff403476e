"""Monitoring: reference profiles of model versions, the gateways' published windows,
incident snapshots.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bastion.store.tables import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.String(40)
_DIGEST = sa.String(71)


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("reference_profile", sa.JSON, nullable=True))
    op.create_table(
        "monitor_windows",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("version_id", _ID, nullable=False),
        sa.Column("replica", sa.String(64), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.Column("until", UTCDateTime(), nullable=False),
        sa.Column("summary", sa.JSON, nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint(
            "endpoint", "version_id", "replica", name="uq_monitor_windows_endpoint_version_replica"
        ),
    )
    op.create_table(
        "incidents",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("endpoint", sa.String(64), nullable=False, index=True),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("digest", _DIGEST, nullable=False),
        sa.Column("bundle", sa.JSON, nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False, index=True),
        sa.Column("created_by", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("incidents")
    op.drop_table("monitor_windows")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("reference_profile")
