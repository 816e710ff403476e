"""Policy: applied bundles, gate decisions with their inputs, approvals, attestations.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bastion.store.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.String(40)
_DIGEST = sa.String(71)


def upgrade() -> None:
    op.create_table(
        "policy_bundles",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False, unique=True),
        sa.Column("digest", _DIGEST, nullable=False),
        sa.Column("files", sa.JSON, nullable=False),
        sa.Column("tests", sa.JSON, nullable=False),
        sa.Column("applied_at", UTCDateTime(), nullable=False),
        sa.Column("applied_by", _ID, nullable=False),
    )
    op.create_table(
        "policy_decisions",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("gate", sa.String(32), nullable=False, index=True),
        sa.Column("subject", sa.String(128), nullable=False, index=True),
        sa.Column("allow", sa.Boolean, nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("bundle_digest", _DIGEST, nullable=False),
        sa.Column("bundle_version", sa.Integer, nullable=True),
        sa.Column("input_digest", _DIGEST, nullable=False),
        sa.Column("input", sa.JSON, nullable=False),
        sa.Column("actor", _ID, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False, index=True),
    )
    op.create_table(
        "approvals",
        sa.Column("id", _ID, primary_key=True),
        sa.Column(
            "version_id", _ID, sa.ForeignKey("model_versions.id"), nullable=False, index=True
        ),
        sa.Column("artifact_digest", _DIGEST, nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("approver_id", _ID, nullable=False, index=True),
        sa.Column("approver_name", sa.String(128), nullable=False),
        sa.Column("approver_roles", sa.JSON, nullable=False),
        sa.Column("comment", sa.String(2000), nullable=False),
        sa.Column("decision_id", _ID, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_by", _ID, nullable=True),
        sa.Column("revoke_reason", sa.String(2000), nullable=True),
    )
    op.create_table(
        "attestations",
        sa.Column("id", _ID, primary_key=True),
        sa.Column(
            "version_id", _ID, sa.ForeignKey("model_versions.id"), nullable=False, index=True
        ),
        sa.Column("subject_digest", _DIGEST, nullable=False),
        sa.Column("predicate_type", sa.String(256), nullable=False, index=True),
        sa.Column("envelope", sa.LargeBinary, nullable=False),
        sa.Column("signer_key_id", _ID, sa.ForeignKey("signer_keys.id"), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", _ID, nullable=False),
    )


def downgrade() -> None:
    for table in ("attestations", "approvals", "policy_decisions", "policy_bundles"):
        op.drop_table(table)
