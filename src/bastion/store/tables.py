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
