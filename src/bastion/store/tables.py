"""Table definitions (SQLAlchemy 2 declarative) for every service. Migrations mirror these.

Only `bastion.store` and the services' own modules import this; the edges never do.
Timestamps are timezone-aware UTC; ids are the typed strings of `bastion.core.ids`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite drops tzinfo)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class PrincipalRow(Base):
    __tablename__ = "principals"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    description: Mapped[str] = mapped_column(sa.String(512), default="")
    disabled: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(sa.String(64))
    updated_at: Mapped[datetime]


class PrincipalRoleRow(Base):
    __tablename__ = "principal_roles"

    principal_id: Mapped[str] = mapped_column(
        sa.String(40), sa.ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(sa.String(32), primary_key=True)


class TokenRow(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    principal_id: Mapped[str] = mapped_column(
        sa.String(40), sa.ForeignKey("principals.id"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(128), default="")
    # HMAC-SHA256 of the token's secret under a key-store pepper; never the token itself.
    secret_hash: Mapped[bytes] = mapped_column(sa.LargeBinary(32))
    roles: Mapped[list[str]] = mapped_column(sa.JSON)
    resources: Mapped[list[str]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(sa.String(40))
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(sa.String(40))
    rotated_from: Mapped[str | None] = mapped_column(sa.String(40))
    replaced_by: Mapped[str | None] = mapped_column(sa.String(40))


class LedgerEntryRow(Base):
    """One audit event, queued in the same transaction as the change it records."""

    __tablename__ = "ledger_entries"

    seq: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str] = mapped_column(sa.String(40), unique=True)
    event_type: Mapped[str] = mapped_column(sa.String(64), index=True)
    actor: Mapped[str] = mapped_column(sa.String(64), index=True)
    subject: Mapped[str] = mapped_column(sa.String(256), index=True)
    request_id: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime]
    # The RFC 8785 canonical JSON of the whole event: the bytes hashed into the log.
    body: Mapped[bytes] = mapped_column(sa.LargeBinary)
    # Set by the sequencer, in commit order; NULL while the entry is queued.
    leaf_index: Mapped[int | None] = mapped_column(sa.BigInteger, unique=True)
    leaf_hash: Mapped[bytes | None] = mapped_column(sa.LargeBinary(32))

    __table_args__ = (
        sa.Index(
            "ix_ledger_entries_queued",
            "seq",
            sqlite_where=sa.text("leaf_index IS NULL"),
            postgresql_where=sa.text("leaf_index IS NULL"),
        ),
    )


class LedgerNodeRow(Base):
    """A perfect subtree of the Merkle tree: (level, index) covers leaves
    [index * 2**level, (index + 1) * 2**level). Written once, when it becomes complete."""

    __tablename__ = "ledger_nodes"

    level: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(sa.LargeBinary(32))


class LedgerCheckpointRow(Base):
    """A signed checkpoint (C2SP signed note) issued after a sequencing batch."""

    __tablename__ = "ledger_checkpoints"

    size: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(sa.LargeBinary(32))
    note: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime]


# -- registry ------------------------------------------------------------------------------------


class DatasetRow(Base):
    """One registered dataset version: the inventory entry (owner, purposes, classification,
    retention) plus what identifies its bytes (digest) and, when uploaded, its sealed copy."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), index=True)
    version: Mapped[int] = mapped_column(sa.Integer)
    owner: Mapped[str] = mapped_column(sa.String(128))
    description: Mapped[str] = mapped_column(sa.String(2000), default="")
    purposes: Mapped[list[str]] = mapped_column(sa.JSON)
    classification: Mapped[str] = mapped_column(sa.String(16))
    retention_days: Mapped[int | None] = mapped_column(sa.Integer)
    expires_at: Mapped[datetime | None]
    legal_hold: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    schema: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    digest: Mapped[str] = mapped_column(sa.String(71), index=True)
    size: Mapped[int | None] = mapped_column(sa.BigInteger)
    source: Mapped[str | None] = mapped_column(sa.String(1024))
    blob_key: Mapped[str | None] = mapped_column(sa.String(256))
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(sa.String(40))
    # Column-level PII scan (`bastion.privacy`): per column the entities found and their
    # share, the sensitive columns and the proposed classification.
    pii_report: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, default=None)
    # Re-identification risk: declared quasi-identifiers and sensitive attributes, k, l and
    # the share of unique records, as last measured.
    privacy_report: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, default=None)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    __table_args__ = (sa.UniqueConstraint("name", "version", name="uq_datasets_name_version"),)


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    owner: Mapped[str] = mapped_column(sa.String(128))
    custodian: Mapped[str | None] = mapped_column(sa.String(128))
    description: Mapped[str] = mapped_column(sa.String(2000), default="")
    intended_use: Mapped[str] = mapped_column(sa.String(2000), default="")
    purpose: Mapped[str | None] = mapped_column(sa.String(128))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(sa.String(40))
    updated_at: Mapped[datetime]


class ModelVersionRow(Base):
    """An immutable model version: its files, how it was made, and what it accepts."""

    __tablename__ = "model_versions"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    model_id: Mapped[str] = mapped_column(sa.String(40), sa.ForeignKey("models.id"), index=True)
    version: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(16))
    format: Mapped[str] = mapped_column(sa.String(32))
    artifact_digest: Mapped[str] = mapped_column(sa.String(71), index=True)
    artifact_size: Mapped[int] = mapped_column(sa.BigInteger)
    file_count: Mapped[int] = mapped_column(sa.Integer)
    description: Mapped[str] = mapped_column(sa.String(2000), default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    parameters: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    code_ref: Mapped[str | None] = mapped_column(sa.String(512))
    environment: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    input_contract: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    output_contract: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    model_card: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    scan: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    # Per-feature bins and counts of the training data, and its label distribution
    # (`bastion.registry.profile`), for drift monitoring; None when no training CSV was known.
    reference_profile: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, default=None)
    mlbom_digest: Mapped[str] = mapped_column(sa.String(71))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(sa.String(40))
    updated_at: Mapped[datetime]

    __table_args__ = (
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),
    )


class ArtifactFileRow(Base):
    """One file of a version, sealed in the blob store. `digest` is of the plaintext and is
    re-checked on every read; `role` is `model` for uploaded files, `mlbom` for the BOM."""

    __tablename__ = "artifact_files"

    version_id: Mapped[str] = mapped_column(
        sa.String(40), sa.ForeignKey("model_versions.id"), primary_key=True
    )
    path: Mapped[str] = mapped_column(sa.String(1024), primary_key=True)
    role: Mapped[str] = mapped_column(sa.String(16))
    format: Mapped[str] = mapped_column(sa.String(32))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    digest: Mapped[str] = mapped_column(sa.String(71))
    blob_key: Mapped[str] = mapped_column(sa.String(256))


class LineageRow(Base):
    """`version_id` was trained / evaluated / validated on `dataset_id` (whose digest it
    names, so a later change of the dataset's bytes is detectable)."""

    __tablename__ = "lineage"

    version_id: Mapped[str] = mapped_column(
        sa.String(40), sa.ForeignKey("model_versions.id"), primary_key=True
    )
    dataset_id: Mapped[str] = mapped_column(
        sa.String(40), sa.ForeignKey("datasets.id"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    dataset_digest: Mapped[str] = mapped_column(sa.String(71), index=True)


class ModelAliasRow(Base):
    __tablename__ = "model_aliases"

    model_id: Mapped[str] = mapped_column(
        sa.String(40), sa.ForeignKey("models.id"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    version_id: Mapped[str] = mapped_column(sa.String(40), sa.ForeignKey("model_versions.id"))
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(sa.String(40))


class RegistryTagRow(Base):
    """A key/value tag on a dataset, model or model version (the subject's id says which)."""

    __tablename__ = "registry_tags"

    subject_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(256))


class SignerKeyRow(Base):
    """A public key trusted to sign model versions for a team (organisation unit)."""

    __tablename__ = "signer_keys"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    team: Mapped[str] = mapped_column(sa.String(128), index=True)
    name: Mapped[str] = mapped_column(sa.String(128))
    fingerprint: Mapped[str] = mapped_column(sa.String(71), unique=True)
    public_key_pem: Mapped[str] = mapped_column(sa.Text)
    added_at: Mapped[datetime]
    added_by: Mapped[str] = mapped_column(sa.String(40))
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(sa.String(40))


class ModelSignatureRow(Base):
    """An OpenSSF model-signing bundle over a version's files (the ML-BOM included)."""

    __tablename__ = "model_signatures"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    version_id: Mapped[str] = mapped_column(
        sa.String(40), sa.ForeignKey("model_versions.id"), index=True
    )
    bundle: Mapped[bytes] = mapped_column(sa.LargeBinary)
    key_fingerprint: Mapped[str] = mapped_column(sa.String(71))
    signer_key_id: Mapped[str] = mapped_column(sa.String(40), sa.ForeignKey("signer_keys.id"))
    signed_at: Mapped[datetime]
    signed_by: Mapped[str] = mapped_column(sa.String(40))


class ArtifactUploadRow(Base):
    """A staged upload: files arrive one by one into a private staging directory; only a
    commit turns them into a version. Expired or aborted uploads are swept."""

    __tablename__ = "artifact_uploads"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    created_by: Mapped[str] = mapped_column(sa.String(40), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(sa.String(16))
    total_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    files: Mapped[dict[str, Any]] = mapped_column(sa.JSON)


class ArtifactDownloadRow(Base):
    """One artifact download: who fetched which file of which version (model-theft signal)."""

    __tablename__ = "artifact_downloads"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    version_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    path: Mapped[str] = mapped_column(sa.String(1024))
    principal_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    size: Mapped[int] = mapped_column(sa.BigInteger)
    at: Mapped[datetime]


class PolicyBundleRow(Base):
    """An applied policy bundle. The active one is the highest version; none means the
    packaged default. Rows are never changed: going back means applying the old content."""

    __tablename__ = "policy_bundles"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, unique=True)
    digest: Mapped[str] = mapped_column(sa.String(71))
    files: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    tests: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    applied_at: Mapped[datetime]
    applied_by: Mapped[str] = mapped_column(sa.String(40))


class PolicyDecisionRow(Base):
    """One gate decision with the exact input it was made on (its digest is in the ledger)."""

    __tablename__ = "policy_decisions"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    gate: Mapped[str] = mapped_column(sa.String(32), index=True)
    subject: Mapped[str] = mapped_column(sa.String(128), index=True)
    allow: Mapped[bool]
    reasons: Mapped[list[str]] = mapped_column(sa.JSON)
    bundle_digest: Mapped[str] = mapped_column(sa.String(71))
    bundle_version: Mapped[int | None]
    input_digest: Mapped[str] = mapped_column(sa.String(71))
    input: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    actor: Mapped[str] = mapped_column(sa.String(40))
    at: Mapped[datetime] = mapped_column(index=True)


class ApprovalRow(Base):
    """One approver's approval of one version's exact artifact digest, for one purpose."""

    __tablename__ = "approvals"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    version_id: Mapped[str] = mapped_column(
        sa.String(40), sa.ForeignKey("model_versions.id"), index=True
    )
    artifact_digest: Mapped[str] = mapped_column(sa.String(71))
    purpose: Mapped[str] = mapped_column(sa.String(32))
    approver_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    approver_name: Mapped[str] = mapped_column(sa.String(128))
    approver_roles: Mapped[list[str]] = mapped_column(sa.JSON)
    comment: Mapped[str] = mapped_column(sa.String(2000))
    decision_id: Mapped[str] = mapped_column(sa.String(40))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(sa.String(40))
    revoke_reason: Mapped[str | None] = mapped_column(sa.String(2000))


class AttestationRow(Base):
    """A signed in-toto statement about a version (validation results, audits, ...)."""

    __tablename__ = "attestations"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    version_id: Mapped[str] = mapped_column(
        sa.String(40), sa.ForeignKey("model_versions.id"), index=True
    )
    subject_digest: Mapped[str] = mapped_column(sa.String(71))
    predicate_type: Mapped[str] = mapped_column(sa.String(256), index=True)
    envelope: Mapped[bytes] = mapped_column(sa.LargeBinary)
    signer_key_id: Mapped[str] = mapped_column(sa.String(40), sa.ForeignKey("signer_keys.id"))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(sa.String(40))


# -- deployments -------------------------------------------------------------------------------


class EndpointRow(Base):
    """A named endpoint and what serves it now: a stable version, optionally a canary with a
    traffic weight and a shadow that receives copies. `generation` grows on every change so
    gateway replicas can tell their routing table is stale with one cheap read."""

    __tablename__ = "endpoints"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    model_id: Mapped[str] = mapped_column(sa.String(40), sa.ForeignKey("models.id"), index=True)
    description: Mapped[str] = mapped_column(sa.String(512), default="")
    state: Mapped[str] = mapped_column(sa.String(16))  # serving | killed
    stable_version_id: Mapped[str | None] = mapped_column(
        sa.String(40), sa.ForeignKey("model_versions.id")
    )
    previous_version_id: Mapped[str | None] = mapped_column(
        sa.String(40), sa.ForeignKey("model_versions.id")
    )
    canary_version_id: Mapped[str | None] = mapped_column(
        sa.String(40), sa.ForeignKey("model_versions.id")
    )
    canary_weight: Mapped[float] = mapped_column(sa.Float, default=0.0)
    shadow_version_id: Mapped[str | None] = mapped_column(
        sa.String(40), sa.ForeignKey("model_versions.id")
    )
    shadow_share: Mapped[float] = mapped_column(sa.Float, default=0.0)
    sticky: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    limits: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    generation: Mapped[int] = mapped_column(sa.BigInteger, default=1)
    changed_at: Mapped[datetime]
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(sa.String(40))
    updated_at: Mapped[datetime]


class RolloutRow(Base):
    """A rollout plan moving an endpoint from one version to another: all at once, canary
    (one weight, then promote) or linear (weights stepped at an interval), then a baking
    period. At most one rollout per endpoint is open (active, paused or baking)."""

    __tablename__ = "rollouts"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(
        sa.String(40), sa.ForeignKey("endpoints.id"), index=True
    )
    kind: Mapped[str] = mapped_column(sa.String(16))  # all-at-once | canary | linear
    from_version_id: Mapped[str | None] = mapped_column(
        sa.String(40), sa.ForeignKey("model_versions.id")
    )
    to_version_id: Mapped[str] = mapped_column(sa.String(40), sa.ForeignKey("model_versions.id"))
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    steps: Mapped[list[float]] = mapped_column(sa.JSON)
    step_index: Mapped[int] = mapped_column(sa.Integer, default=0)
    interval_seconds: Mapped[int] = mapped_column(sa.Integer, default=0)
    bake_seconds: Mapped[int] = mapped_column(sa.Integer, default=0)
    auto_promote: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    next_at: Mapped[datetime | None]
    started_at: Mapped[datetime]
    started_by: Mapped[str] = mapped_column(sa.String(40))
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    reason: Mapped[str] = mapped_column(sa.String(2000), default="")


class EndpointEventRow(Base):
    """The history of an endpoint (deploys, steps, promotions, rollbacks, kills), each with
    the policy decision that allowed it; the same facts are ledger entries."""

    __tablename__ = "endpoint_events"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(
        sa.String(40), sa.ForeignKey("endpoints.id"), index=True
    )
    rollout_id: Mapped[str | None] = mapped_column(sa.String(40))
    action: Mapped[str] = mapped_column(sa.String(32))
    version_id: Mapped[str | None] = mapped_column(sa.String(40))
    weight: Mapped[float | None] = mapped_column(sa.Float)
    actor: Mapped[str] = mapped_column(sa.String(64))
    decision_id: Mapped[str | None] = mapped_column(sa.String(40))
    reason: Mapped[str] = mapped_column(sa.String(2000), default="")
    at: Mapped[datetime] = mapped_column(index=True)


# -- the prediction log: a second transparency log, of prediction receipts -----------------------


class PredictionEntryRow(Base):
    """One prediction receipt (keyed digests of input and output, never the data), written
    in batches off the response path, then sequenced like a ledger entry."""

    __tablename__ = "prediction_entries"

    seq: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    # Only the lookups the log needs are indexed (request id, leaf index, the queue): every
    # index is paid on every prediction. Time ranges map to leaf ranges (indices grow with
    # time), so retention needs no index on `created_at`.
    request_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    endpoint: Mapped[str] = mapped_column(sa.String(64))
    principal_id: Mapped[str] = mapped_column(sa.String(40))
    created_at: Mapped[datetime]
    body: Mapped[bytes] = mapped_column(sa.LargeBinary)
    leaf_index: Mapped[int | None] = mapped_column(sa.BigInteger, unique=True)
    leaf_hash: Mapped[bytes | None] = mapped_column(sa.LargeBinary(32))

    __table_args__ = (
        sa.Index(
            "ix_prediction_entries_queued",
            "seq",
            sqlite_where=sa.text("leaf_index IS NULL"),
            postgresql_where=sa.text("leaf_index IS NULL"),
        ),
    )


class PredictionNodeRow(Base):
    __tablename__ = "prediction_nodes"

    level: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(sa.LargeBinary(32))


class PredictionCheckpointRow(Base):
    __tablename__ = "prediction_checkpoints"

    size: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(sa.LargeBinary(32))
    note: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime]


class MonitorWindowRow(Base):
    """The latest rolling-window summary one gateway replica holds for an endpoint version
    (binned counts only, never inputs), published every few seconds so that the CLI and other
    replicas can read the evidence a gateway sees."""

    __tablename__ = "monitor_windows"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    endpoint: Mapped[str] = mapped_column(sa.String(64))
    version_id: Mapped[str] = mapped_column(sa.String(40))
    replica: Mapped[str] = mapped_column(sa.String(64))
    since: Mapped[datetime]
    until: Mapped[datetime]
    summary: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    updated_at: Mapped[datetime]

    __table_args__ = (
        sa.UniqueConstraint(
            "endpoint", "version_id", "replica", name="uq_monitor_windows_endpoint_version_replica"
        ),
    )


class MonitorMinuteRow(Base):
    """One minute of one endpoint's traffic as one gateway replica counted it (requests, 5xx
    among them, slow ones), published with the windows: the dashboards' trends add up every
    replica's minutes and outlive a restart."""

    __tablename__ = "monitor_minutes"

    endpoint: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    replica: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    minute: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)  # unix time // 60
    requests: Mapped[int] = mapped_column(sa.Integer)
    errors: Mapped[int] = mapped_column(sa.Integer)
    slow: Mapped[int] = mapped_column(sa.Integer)
    updated_at: Mapped[datetime] = mapped_column(index=True)


class IncidentRow(Base):
    """A signed evidence bundle about an endpoint, taken on rollback or on demand."""

    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    endpoint: Mapped[str] = mapped_column(sa.String(64), index=True)
    trigger: Mapped[str] = mapped_column(sa.String(32))
    digest: Mapped[str] = mapped_column(sa.String(71))
    bundle: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    signature: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    created_by: Mapped[str] = mapped_column(sa.String(64))


class DeletionRow(Base):
    """Evidence that something was deleted under a retention rule: what (never the data),
    when, under which rule, which data key was shredded and the proof it no longer decrypts."""

    __tablename__ = "deletions"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    subject_kind: Mapped[str] = mapped_column(sa.String(32))  # dataset | predictions
    subject_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    subject_name: Mapped[str] = mapped_column(sa.String(256))
    rule: Mapped[str] = mapped_column(sa.String(256))
    key_id: Mapped[str | None] = mapped_column(sa.String(128))
    evidence: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    actor: Mapped[str] = mapped_column(sa.String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class TokenKeyRow(Base):
    """A tokenization key version: a data key in the key store (shredded when destroyed)."""

    __tablename__ = "token_keys"

    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    key_id: Mapped[str] = mapped_column(sa.String(128))
    state: Mapped[str] = mapped_column(sa.String(16))  # active | retired | destroyed
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(sa.String(64))
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class PrivacyBudgetRow(Base):
    """A dataset's (all versions of a name) differential-privacy budget and what is spent."""

    __tablename__ = "privacy_budgets"

    dataset: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    epsilon_total: Mapped[float] = mapped_column(sa.Float)
    delta_total: Mapped[float] = mapped_column(sa.Float)
    epsilon_spent: Mapped[float] = mapped_column(sa.Float)
    delta_spent: Mapped[float] = mapped_column(sa.Float)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(sa.String(64))
    updated_at: Mapped[datetime]


class PrivacySpendRow(Base):
    """One spend from a dataset's privacy budget (a DP training run or statistic)."""

    __tablename__ = "privacy_spends"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    dataset: Mapped[str] = mapped_column(sa.String(128), index=True)
    epsilon: Mapped[float] = mapped_column(sa.Float)
    delta: Mapped[float] = mapped_column(sa.Float)
    mechanism: Mapped[str] = mapped_column(sa.String(128))
    purpose: Mapped[str] = mapped_column(sa.String(512))
    subject: Mapped[str | None] = mapped_column(sa.String(256))
    actor: Mapped[str] = mapped_column(sa.String(64))
    at: Mapped[datetime]
