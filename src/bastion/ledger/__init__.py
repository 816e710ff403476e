"""Evidence: the transparency log under every change.

Services `append` audit events inside their own transaction; the sequencer gives them leaf
indices in commit order in an RFC 9162 Merkle tree and signs C2SP checkpoints; proofs and a
replaying verifier let someone who does not trust the operator check the record. The same
code runs a second log, of prediction receipts (`PREDICTION_TABLES`).
May import `bastion.store`, `bastion.crypto` and `bastion.core` only.
"""

from bastion.ledger.errors import LedgerError, RootMismatchError, TamperError
from bastion.ledger.events import AuditLog, Event, QueuedEntry
from bastion.ledger.log import (
    AUDIT_TABLES,
    PREDICTION_TABLES,
    ConsistencyProof,
    InclusionProof,
    LogEntry,
    LogTables,
    SignedCheckpoint,
    TransparencyLog,
)
from bastion.ledger.verify import VerifyReport, verify_bundle

__all__ = [
    "AUDIT_TABLES",
    "PREDICTION_TABLES",
    "AuditLog",
    "ConsistencyProof",
    "Event",
    "InclusionProof",
    "LedgerError",
    "LogEntry",
    "LogTables",
    "QueuedEntry",
    "RootMismatchError",
    "SignedCheckpoint",
    "TamperError",
    "TransparencyLog",
    "VerifyReport",
    "verify_bundle",
]
