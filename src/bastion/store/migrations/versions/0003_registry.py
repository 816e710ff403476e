"""Registry: datasets, models, versions, artifact files, lineage, aliases, tags, signer keys,
signatures, staged uploads and the download log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bastion.store.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.String(40)
_DIGEST = sa.String(71)


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("description", sa.String(2000), nullable=False),
        sa.Column("purposes", sa.JSON, nullable=False),
        sa.Column("classification", sa.String(16), nullable=False),
        sa.Column("retention_days", sa.Integer, nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("legal_hold", sa.Boolean, nullable=False),
        sa.Column("schema", sa.JSON, nullable=False),
        sa.Column("digest", _DIGEST, nullable=False, index=True),
        sa.Column("size", sa.BigInteger, nullable=True),
        sa.Column("source", sa.String(1024), nullable=True),
        sa.Column("blob_key", sa.String(256), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", _ID, nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_datasets_name_version"),
    )
    op.create_table(
        "models",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("custodian", sa.String(128), nullable=True),
        sa.Column("description", sa.String(2000), nullable=False),
        sa.Column("intended_use", sa.String(2000), nullable=False),
        sa.Column("purpose", sa.String(128), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", _ID, nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("model_id", _ID, sa.ForeignKey("models.id"), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("artifact_digest", _DIGEST, nullable=False, index=True),
        sa.Column("artifact_size", sa.BigInteger, nullable=False),
        sa.Column("file_count", sa.Integer, nullable=False),
        sa.Column("description", sa.String(2000), nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("code_ref", sa.String(512), nullable=True),
        sa.Column("environment", sa.JSON, nullable=False),
        sa.Column("input_contract", sa.JSON, nullable=True),
        sa.Column("output_contract", sa.JSON, nullable=True),
        sa.Column("model_card", sa.JSON, nullable=False),
        sa.Column("scan", sa.JSON, nullable=False),
        sa.Column("mlbom_digest", _DIGEST, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", _ID, nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),
    )
    op.create_table(
        "artifact_files",
        sa.Column("version_id", _ID, sa.ForeignKey("model_versions.id"), primary_key=True),
        sa.Column("path", sa.String(1024), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("digest", _DIGEST, nullable=False),
        sa.Column("blob_key", sa.String(256), nullable=False),
    )
    op.create_table(
        "lineage",
        sa.Column("version_id", _ID, sa.ForeignKey("model_versions.id"), primary_key=True),
        sa.Column("dataset_id", _ID, sa.ForeignKey("datasets.id"), primary_key=True, index=True),
        sa.Column("role", sa.String(16), primary_key=True),
        sa.Column("dataset_digest", _DIGEST, nullable=False, index=True),
    )
    op.create_table(
        "model_aliases",
        sa.Column("model_id", _ID, sa.ForeignKey("models.id"), primary_key=True),
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("version_id", _ID, sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", _ID, nullable=False),
    )
    op.create_table(
        "registry_tags",
        sa.Column("subject_id", _ID, primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
    )
    op.create_table(
        "signer_keys",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("team", sa.String(128), nullable=False, index=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("fingerprint", _DIGEST, nullable=False, unique=True),
        sa.Column("public_key_pem", sa.Text, nullable=False),
        sa.Column("added_at", UTCDateTime(), nullable=False),
        sa.Column("added_by", _ID, nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_by", _ID, nullable=True),
    )
    op.create_table(
        "model_signatures",
        sa.Column("id", _ID, primary_key=True),
        sa.Column(
            "version_id", _ID, sa.ForeignKey("model_versions.id"), nullable=False, index=True
        ),
        sa.Column("bundle", sa.LargeBinary, nullable=False),
        sa.Column("key_fingerprint", _DIGEST, nullable=False),
        sa.Column("signer_key_id", _ID, sa.ForeignKey("signer_keys.id"), nullable=False),
        sa.Column("signed_at", UTCDateTime(), nullable=False),
        sa.Column("signed_by", _ID, nullable=False),
    )
    op.create_table(
        "artifact_uploads",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("created_by", _ID, nullable=False, index=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("total_bytes", sa.BigInteger, nullable=False),
        sa.Column("files", sa.JSON, nullable=False),
    )
    op.create_table(
        "artifact_downloads",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("version_id", _ID, nullable=False, index=True),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("principal_id", _ID, nullable=False, index=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "artifact_downloads",
        "artifact_uploads",
        "model_signatures",
        "signer_keys",
        "registry_tags",
        "model_aliases",
        "lineage",
        "artifact_files",
        "model_versions",
        "models",
        "datasets",
    ):
        op.drop_table(table)
