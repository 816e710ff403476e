"""Evidence: the audit log every mutating operation appends to, in the caller's transaction.

This foundation stores each event as RFC 8785 canonical JSON in commit order; the transparency
log issue sequences these entries into an RFC 9162 Merkle tree with signed checkpoints.
May import `bastion.store`, `bastion.crypto` and `bastion.core` only.
"""

from bastion.ledger.events import AuditLog, Event, RecordedEvent

__all__ = ["AuditLog", "Event", "RecordedEvent"]
