"""Errors of the transparency log. Every one is a `LedgerError` (a kind of `IntegrityError`,
except malformed input, which is `invalid`), with a stable code and, for mismatches, the
expected and computed values in `details` (hex) so an operator can see what differs.

    LedgerError                    ledger.error            (integrity)
    ├── MalformedProofError        ledger.malformed_proof  (invalid: bad index/size/length)
    ├── RootMismatchError          ledger.root_mismatch    (expected, computed)
    ├── InclusionProofError        ledger.inclusion_failed
    ├── ConsistencyProofError      ledger.consistency_failed
    ├── SignatureError             ledger.bad_signature    (a checkpoint note does not verify)
    ├── MalformedNoteError         ledger.malformed_note   (invalid)
    └── TamperError                ledger.tampered         (stored entries/nodes/checkpoints
                                                            disagree; details name the index)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bastion.core.errors import ErrorKind, IntegrityError


class LedgerError(IntegrityError):
    default_code = "ledger.error"


class MalformedProofError(LedgerError):
    default_code = "ledger.malformed_proof"
    default_kind = ErrorKind.INVALID


class RootMismatchError(LedgerError):
    """The root computed from a proof is not the root that was expected."""

    default_code = "ledger.root_mismatch"

    def __init__(
        self,
        expected: bytes,
        computed: bytes,
        *,
        message: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            message or f"root mismatch: expected {expected.hex()}, computed {computed.hex()}",
            details={"expected": expected.hex(), "computed": computed.hex(), **(details or {})},
        )
        self.expected = expected
        self.computed = computed


class InclusionProofError(LedgerError):
    default_code = "ledger.inclusion_failed"


class ConsistencyProofError(LedgerError):
    default_code = "ledger.consistency_failed"


class SignatureError(LedgerError):
    default_code = "ledger.bad_signature"


class MalformedNoteError(LedgerError):
    default_code = "ledger.malformed_note"
    default_kind = ErrorKind.INVALID


class TamperError(LedgerError):
    default_code = "ledger.tampered"
