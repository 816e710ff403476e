"""Key administration: who may rotate the key-encryption key, and the audit record of it.

The key store lives in files and the audit log in the database, so the two cannot commit
atomically. Rotation therefore runs *inside* the audit transaction: if rotating fails nothing
is recorded, and the only window left is a commit failing after a completed rotation (the
re-wrapped keys are still valid; the next rotation's record names the KEK it replaces).
"""

from __future__ import annotations

from dataclasses import dataclass

from bastion.core.ids import KeyId
from bastion.crypto.keystore import LocalKeyStore, RotationReport
from bastion.identity.access import Authorizer, Caller
from bastion.identity.roles import Permission
from bastion.ledger import AuditLog, Event
from bastion.store.db import Database


@dataclass(frozen=True)
class KeyStatus:
    active_kek_id: KeyId
    data_keys: int


class KeyAdmin:
    def __init__(
        self,
        *,
        keystore: LocalKeyStore,
        database: Database,
        audit: AuditLog,
        authorizer: Authorizer,
    ) -> None:
        self._keystore = keystore
        self._db = database
        self._audit = audit
        self._authz = authorizer

    def status(self, caller: Caller) -> KeyStatus:
        self._authz.authorize(caller, Permission.KEY_MANAGE)
        return KeyStatus(
            active_kek_id=self._keystore.active_kek_id(),
            data_keys=len(self._keystore.list_data_keys()),
        )

    def rotate(self, caller: Caller) -> RotationReport:
        """Rotate the KEK (re-wrap every data key and named secret, destroy the old KEK)."""
        self._authz.authorize(caller, Permission.KEY_MANAGE)
        with self._db.transaction() as session:
            report = self._keystore.rotate_kek()
            self._audit.append(
                session,
                Event(
                    type="crypto.kek.rotated",
                    actor=caller.principal_id,
                    subject=f"kek:{report.new_kek_id}",
                    request_id=caller.request_id,
                    data={
                        "retired": list(report.retired_kek_ids),
                        "rewrapped_data_keys": report.rewrapped_data_keys,
                        "rewrapped_named_keys": report.rewrapped_named_keys,
                    },
                ),
            )
        return report
