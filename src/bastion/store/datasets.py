"""Dataset rows as the registry and the privacy services both read them.

`bastion.privacy` sits below `bastion.registry` in the layers, so the lookup and the policy
input shape of a dataset that both need live here, once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bastion.core.errors import NotFound
from bastion.store.tables import DatasetRow

__all__ = ["dataset_doc", "find_dataset"]


def find_dataset(
    session: Session, name: str, version: int | None, *, lock: bool = False
) -> DatasetRow:
    """The dataset version `name@version` (the newest when `version` is None), locked
    `FOR UPDATE` when `lock`. Raises `NotFound` (`registry.dataset_not_found`)."""
    query = sa.select(DatasetRow).where(DatasetRow.name == name)
    if version is None:
        query = query.order_by(DatasetRow.version.desc()).limit(1)
    else:
        query = query.where(DatasetRow.version == version)
    if lock:
        query = query.with_for_update()
    row = session.scalars(query).first()
    if row is None:
        ref = name if version is None else f"{name}@{version}"
        raise NotFound(f"no dataset {ref}", code="registry.dataset_not_found")
    return row


def dataset_doc(row: DatasetRow, now: datetime) -> dict[str, Any]:
    """The policy input's `dataset` object (docs/policy.md): times in RFC 3339 with a numeric
    offset, as every gate input has them."""
    return {
        "id": row.id,
        "name": row.name,
        "version": row.version,
        "digest": row.digest,
        "classification": row.classification,
        "purposes": list(row.purposes),
        "owner": row.owner,
        "retention_days": row.retention_days,
        "expires_at": _rfc3339(row.expires_at),
        "expired": row.expires_at is not None and row.expires_at <= now,
        "legal_hold": bool(row.legal_hold),
        "source": row.source,
        "status": row.status,
    }


def _rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()
