"""Deployments (endpoints, rollouts, endpoint history) and the prediction log (a second
transparency log, of prediction receipts).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bastion.store.tables import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.String(40)


def _version_fk(name: str, *, nullable: bool = True) -> sa.Column[str]:
    return sa.Column(name, _ID, sa.ForeignKey("model_versions.id"), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "endpoints",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("model_id", _ID, sa.ForeignKey("models.id"), nullable=False, index=True),
        sa.Column("description", sa.String(512), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        _version_fk("stable_version_id"),
        _version_fk("previous_version_id"),
        _version_fk("canary_version_id"),
        sa.Column("canary_weight", sa.Float, nullable=False),
        _version_fk("shadow_version_id"),
        sa.Column("shadow_share", sa.Float, nullable=False),
        sa.Column("sticky", sa.Boolean, nullable=False),
        sa.Column("limits", sa.JSON, nullable=False),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", _ID, nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "rollouts",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("endpoint_id", _ID, sa.ForeignKey("endpoints.id"), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        _version_fk("from_version_id"),
        _version_fk("to_version_id", nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("steps", sa.JSON, nullable=False),
        sa.Column("step_index", sa.Integer, nullable=False),
        sa.Column("interval_seconds", sa.Integer, nullable=False),
        sa.Column("bake_seconds", sa.Integer, nullable=False),
        sa.Column("auto_promote", sa.Boolean, nullable=False),
        sa.Column("next_at", UTCDateTime(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("started_by", _ID, nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("reason", sa.String(2000), nullable=False),
    )
    op.create_table(
        "endpoint_events",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("endpoint_id", _ID, sa.ForeignKey("endpoints.id"), nullable=False, index=True),
        sa.Column("rollout_id", _ID, nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("version_id", _ID, nullable=True),
        sa.Column("weight", sa.Float, nullable=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("decision_id", _ID, nullable=True),
        sa.Column("reason", sa.String(2000), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False, index=True),
    )
    op.create_table(
        "prediction_entries",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("principal_id", _ID, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("leaf_index", sa.BigInteger, nullable=True, unique=True),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=True),
    )
    op.create_index(
        "ix_prediction_entries_queued",
        "prediction_entries",
        ["seq"],
        sqlite_where=sa.text("leaf_index IS NULL"),
        postgresql_where=sa.text("leaf_index IS NULL"),
    )
    op.create_table(
        "prediction_nodes",
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "prediction_checkpoints",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("prediction_checkpoints")
    op.drop_table("prediction_nodes")
    op.drop_index("ix_prediction_entries_queued", table_name="prediction_entries")
    for table in ("prediction_entries", "endpoint_events", "rollouts", "endpoints"):
        op.drop_table(table)
