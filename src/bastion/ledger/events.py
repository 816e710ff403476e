"""Audit events and the append-only log they go into.

An `Event` says who (`actor`) did what (`type`) to which `subject`, when, in which request, with
which non-secret `data`. `AuditLog.append(session, event)` writes it inside the caller's open
transaction, so the state change and its record commit together or not at all.

Secrets never enter an event: callers pass ids, names and digests, never token secrets or keys.
`append` refuses data whose keys look like secret fields, as a last line of defence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bastion.core.canonical import canonical_json
from bastion.core.clock import Clock
from bastion.core.errors import InvalidInput
from bastion.core.ids import new_id
from bastion.store.tables import LedgerEntryRow

EVENT_SCHEMA_VERSION = 1
QUEUED_MARK = "bastion.ledger.queued"
_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
# `token` and `*_token` are refused; `token_id` and other ids are fine.
_SECRETISH = re.compile(
    r"(secret|password|passphrase|private_key|api_key|credential|(^|_)token$)", re.I
)


@dataclass(frozen=True)
class Event:
    """What happened. `type` is dotted (`identity.token.created`); `data` must be JSON."""

    type: str
    actor: str
    subject: str
    data: Mapping[str, Any] = field(default_factory=dict)
    request_id: str | None = None


@dataclass(frozen=True)
class QueuedEntry:
    """An appended event: `seq` is its queue position; the sequencer later gives it a
    `leaf_index` in commit order (None until then)."""

    seq: int
    event_id: str
    type: str
    actor: str
    subject: str
    request_id: str | None
    time: datetime
    body: bytes
    leaf_index: int | None = None


class AuditLog:
    """Append-only store of audit events (the ledger's queue of leaves)."""

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock

    def append(self, session: Session, event: Event) -> QueuedEntry:
        """Queue `event` in `session`'s transaction and return it with its canonical bytes.

        Raises `InvalidInput` for a malformed type, secret-looking data keys, or data that is
        not canonical JSON. Nothing is written unless the caller's transaction commits.
        """
        if not _TYPE.match(event.type):
            raise InvalidInput(f"bad event type {event.type!r}", code="ledger.bad_event")
        _reject_secret_keys(event.data)
        time = self._clock.now()
        event_id = new_id("evt")
        body = canonical_json(
            {
                "v": EVENT_SCHEMA_VERSION,
                "id": event_id,
                "type": event.type,
                "actor": event.actor,
                "subject": event.subject,
                "time": time.isoformat().replace("+00:00", "Z"),
                "request_id": event.request_id,
                "data": dict(event.data),
            }
        )
        row = LedgerEntryRow(
            event_id=event_id,
            event_type=event.type,
            actor=event.actor,
            subject=event.subject,
            request_id=event.request_id,
            created_at=time,
            body=body,
        )
        session.add(row)
        session.flush()
        session.info[QUEUED_MARK] = True  # tells the post-commit hook to sequence
        return QueuedEntry(
            seq=row.seq,
            event_id=event_id,
            type=event.type,
            actor=event.actor,
            subject=event.subject,
            request_id=event.request_id,
            time=time,
            body=body,
        )

    def events(
        self,
        session: Session,
        *,
        start: int = 0,
        limit: int = 100,
        subject: str | None = None,
        types: Sequence[str] = (),
    ) -> list[QueuedEntry]:
        """Events in commit order from sequence number `start` (inclusive), at most `limit`."""
        query = sa.select(LedgerEntryRow).where(LedgerEntryRow.seq >= start)
        if subject is not None:
            query = query.where(LedgerEntryRow.subject == subject)
        if types:
            query = query.where(LedgerEntryRow.event_type.in_(list(types)))
        rows = session.scalars(query.order_by(LedgerEntryRow.seq).limit(limit))
        return [
            QueuedEntry(
                seq=r.seq,
                event_id=r.event_id,
                type=r.event_type,
                actor=r.actor,
                subject=r.subject,
                request_id=r.request_id,
                time=r.created_at,
                body=r.body,
                leaf_index=r.leaf_index,
            )
            for r in rows
        ]


def _reject_secret_keys(data: Any, path: str = "data") -> None:
    if isinstance(data, Mapping):
        for key, value in data.items():
            if _SECRETISH.search(str(key)):
                raise InvalidInput(
                    f"audit event field {path}.{key} looks like a secret; "
                    "secrets never enter the log",
                    code="ledger.secret_in_event",
                )
            _reject_secret_keys(value, f"{path}.{key}")
    elif isinstance(data, list | tuple):
        for i, item in enumerate(data):
            _reject_secret_keys(item, f"{path}[{i}]")
