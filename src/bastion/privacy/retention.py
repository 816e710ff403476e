"""Retention: delete what outlived its retention window by crypto-shredding, leave evidence
that it can no longer be decrypted, honour legal holds, and age out the prediction log.

Datasets
--------
A dataset version expires when `expires_at <= now` (registration sets it to created +
`retention_days`). `enforce` deletes every expired, active version not under legal hold, each
on its own (one failure does not stop the others), in this order:

1. **Intent** (one transaction): lock the row (`SELECT … FOR UPDATE`; SQLite serialises its
   writers), re-check that it is active, expired and not held, pass the `retention` gate
   (action `delete`; the decision is recorded), read the data key id from the sealed blob's
   header, set status `deleting` and insert the `deletions` row in state `pending` (key id,
   rule, decision). From here the dataset is unusable: only `active` datasets are used.
2. **Shred** (no transaction): destroy the data key, then the ciphertext
   (`SealedBlobStore.shred`). If the ciphertext is already gone (a resumed run), the recorded
   key id is shredded instead; the key store makes that idempotent (it returns the original
   `ShredRecord`).
3. **Evidence**: reading the blob must fail with `store.blob_not_found` (ciphertext deleted)
   or `crypto.key_shredded` (a copy put back, e.g. from a backup), and the key store must
   answer `crypto.key_shredded` for the key. Anything else is `IntegrityError`
   (`retention.shred_unverified`) and the row stays `deleting`.
4. **Complete** (one transaction): lock the row; unless it is still `deleting` (another
   enforcer finished it) set status `deleted`, `deleted_at`, clear `blob_key`, complete the
   deletion row's evidence and append the ledger entry `privacy.dataset.deleted` (what, when,
   under which rule, which key was shredded — never the data).

A crash after step 1 leaves `deleting` and a pending deletion row, and every run resumes such
rows from step 2, so a dataset is never half-deleted: it is active and intact, or `deleting`
(unusable until the next run completes it), or deleted with its evidence and ledger entry.
Several enforcers (server replicas) may run at once: the row lock of step 1 lets one start a
deletion, the status check of step 4 lets one complete it, shredding is idempotent, so each
dataset gets exactly one deletion row and one ledger entry.

A version registered by digest only (bytes kept outside Bastion) has nothing to shred: it is
retired the same way with method `record-only`, and its evidence says so.

Shredding destroys the data key file. A key-store backup taken before still holds the key,
wrapped by the KEK of that time, until `bastion keys rotate` destroys that KEK; the evidence
says whether the wrapping KEK still exists (`wrapping_kek.destroyed`).

Legal holds
-----------
`hold`/`release` set or clear `legal_hold` on one version or every active version of a name,
through the `retention` gate (action `set_legal_hold`), with a ledger entry carrying the reason
(`privacy.dataset.hold_set` / `hold_released`). A held version is reported as `held` and never
deleted (the gate refuses it too). A version that is `deleting` cannot be held.

Prediction log
--------------
With `prediction_retention_days` set, receipts older than the window lose their body (and the
principal id beside it): the row keeps its request id, endpoint, time, leaf index and leaf
hash, and the Merkle nodes and signed checkpoints stay, so the log still verifies
(`TransparencyLog.verify` takes the stored leaf hash of an emptied entry, and counts it in
`expired`), while those receipts can no longer be shown or proven (`serving.receipt_expired`).
Entries are emptied from the oldest leaf forwards, stopping at the first one inside the window,
so emptied leaves are always a prefix of the log (the verifier insists on it: an emptied leaf
after a full one is a deletion). Each batch of at most 10,000 entries is one transaction under
a lock (PostgreSQL advisory lock; SQLite serialises writers) with its own `deletions` row and
ledger entry `privacy.predictions.expired` (leaf range, count, cutoff, the checkpoint that
covers it).

Imports `bastion.policy`, `bastion.identity`, `bastion.ledger`, `bastion.store`,
`bastion.crypto` and `bastion.core`; never `bastion.registry`, `bastion.supplychain` or
anything above.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, BinaryIO, Final, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bastion.core.clock import Clock
from bastion.core.errors import (
    BastionError,
    Conflict,
    IntegrityError,
    InvalidInput,
    NotFound,
)
from bastion.core.ids import KeyId, new_id
from bastion.crypto.keystore import KeyStore, ShredRecord
from bastion.identity import Authorizer, Caller, Permission, Role
from bastion.ledger import AuditLog
from bastion.policy import PolicyDenied, PolicyService, rfc3339
from bastion.store.datasets import dataset_doc
from bastion.store.db import Database
from bastion.store.sealed import SealedBlobStore
from bastion.store.tables import (
    DatasetRow,
    DeletionRow,
    LedgerEntryRow,
    PredictionCheckpointRow,
    PredictionEntryRow,
)

log = logging.getLogger("bastion.privacy.retention")

ACTIVE: Final = "active"
DELETING: Final = "deleting"
DELETED: Final = "deleted"

PREDICTION_BATCH: Final = 10_000
"""Prediction-log entries emptied per transaction."""
MAX_PREDICTION_BATCHES: Final = 50
"""Batches one run empties; a larger backlog is left for the next run (`more`)."""
MAX_DATASETS_PER_RUN: Final = 1000
"""Dataset versions one `enforce` handles; the rest wait for the next run (`truncated`)."""
MAX_REASON: Final = 500
MAX_LIST: Final = 1000

ENFORCER: Final = "retention-enforcer"
"""Name of the system caller the server's scheduler acts as."""

HOLD_SET: Final = "privacy.dataset.hold_set"
HOLD_RELEASED: Final = "privacy.dataset.hold_released"
DATASET_DELETED: Final = "privacy.dataset.deleted"
PREDICTIONS_EXPIRED: Final = "privacy.predictions.expired"

_PG_PREDICTIONS_LOCK: Final = 0x4253_544E_5245_5450  # "BSTNRETP"
_CIPHERTEXT_GONE: Final = ("store.blob_not_found", "crypto.key_shredded")
_KEY_GONE: Final = ("crypto.key_shredded",)


# -- what the service returns -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    """One check that a deletion holds: what was tried, what must come out, what did."""

    name: str
    expected: tuple[str, ...]
    outcome: str
    ok: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "expected": list(self.expected),
            "outcome": self.outcome,
            "ok": self.ok,
        }


@dataclass(frozen=True, slots=True)
class Deletion:
    """A `deletions` row: what was deleted (never the data), when, under which rule, by whom,
    with which key shredded, and the evidence. `state` is `pending` until complete."""

    id: str
    subject_kind: str  # dataset | predictions
    subject_id: str
    subject_name: str
    rule: str
    key_id: str | None
    evidence: Mapping[str, Any]
    actor: str
    at: datetime

    @property
    def state(self) -> str:
        return str(self.evidence.get("state", "complete"))


@dataclass(frozen=True, slots=True)
class DatasetOutcome:
    """What enforcement did (or, in a dry run, would do) with one expired dataset version.

    `outcome`: `deleted`, `would_delete`, `held`, `denied` (the gate refused; `reasons`),
    `failed` (`reasons` holds the error code and message; retried next run), `skipped`
    (another enforcer got there first). `resumed`: it completes a deletion that a crashed or
    failed run had started.
    """

    dataset_id: str
    name: str
    version: int
    expires_at: datetime | None
    outcome: str
    resumed: bool = False
    deletion_id: str | None = None
    reasons: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True, slots=True)
class PredictionOutcome:
    """The prediction log's part of a run: `count` entries emptied (or that would be), from
    leaf `begin` to `end` (one range, unless another replica emptied batches in between);
    one deletion record per batch. `more`: the run stopped at its batch limit with expired
    entries left. `retention_days` None: no retention is configured, nothing was looked at.
    """

    retention_days: int | None
    cutoff: datetime | None
    count: int = 0
    begin: int = 0
    end: int = 0
    deletion_ids: tuple[str, ...] = ()
    more: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True)
class EnforcementReport:
    at: datetime
    dry_run: bool
    datasets: tuple[DatasetOutcome, ...]
    predictions: PredictionOutcome
    truncated: bool = False

    def count(self, outcome: str) -> int:
        return sum(1 for d in self.datasets if d.outcome == outcome)

    @property
    def failed(self) -> bool:
        return self.count("failed") > 0 or self.predictions.error is not None


@dataclass(frozen=True, slots=True)
class Hold:
    """Who set a legal hold, when and why (from its ledger entry)."""

    reason: str
    by: str
    at: datetime | None


@dataclass(frozen=True, slots=True)
class HoldChange:
    dataset_id: str
    name: str
    version: int
    legal_hold: bool
    decision_id: str


@dataclass(frozen=True, slots=True)
class RetentionEntry:
    """One dataset version's place in the retention schedule."""

    dataset_id: str
    name: str
    version: int
    classification: str
    status: str
    retention_days: int | None
    expires_at: datetime | None
    expired: bool
    legal_hold: bool
    hold: Hold | None
    deleted_at: datetime | None
    deletion_id: str | None


@dataclass(frozen=True, slots=True)
class PredictionRetention:
    """The prediction log's retention: the window, and the leaves emptied so far ([0, n))."""

    retention_days: int | None
    expired_leaves: int
    log_size: int


@dataclass(frozen=True, slots=True)
class RetentionSchedule:
    at: datetime
    datasets: tuple[RetentionEntry, ...]
    predictions: PredictionRetention


@dataclass(frozen=True, slots=True)
class DeletionCheck:
    """The checks of a deletion re-run now: `ok` when every one holds."""

    deletion_id: str
    subject_kind: str
    subject_name: str
    ok: bool
    checks: tuple[Check, ...]
    at: datetime
    notes: tuple[str, ...] = field(default=())


# -- the service --------------------------------------------------------------------------------


class RetentionService:
    """Retention enforcement, legal holds and deletion evidence (see the module docstring)."""

    def __init__(
        self,
        *,
        database: Database,
        audit: AuditLog,
        authorizer: Authorizer,
        policy: PolicyService,
        blobs: SealedBlobStore,
        keystore: KeyStore,
        clock: Clock,
        prediction_retention_days: int | None = None,
        prediction_batch: int = PREDICTION_BATCH,
        max_prediction_batches: int = MAX_PREDICTION_BATCHES,
        max_datasets: int = MAX_DATASETS_PER_RUN,
    ) -> None:
        if prediction_retention_days is not None and prediction_retention_days < 1:
            raise InvalidInput(
                "prediction retention must be at least 1 day", code="retention.bad_window"
            )
        if prediction_batch < 1 or max_prediction_batches < 1 or max_datasets < 1:
            raise InvalidInput("batch sizes must be positive", code="retention.bad_batch")
        self._db = database
        self._audit = audit
        self._authz = authorizer
        self._policy = policy
        self._blobs = blobs
        self._keystore = keystore
        self._clock = clock
        self._prediction_days = prediction_retention_days
        self._batch = prediction_batch
        self._max_batches = max_prediction_batches
        self._max_datasets = max_datasets

    # -- enforcement ------------------------------------------------------------------------------

    def enforce(
        self, caller: Caller, *, dry_run: bool = False, now: datetime | None = None
    ) -> EnforcementReport:
        """Delete every expired dataset version not under legal hold, finish deletions that an
        earlier run left `deleting`, and empty prediction-log entries past their window.

        Needs `privacy.manage`. A dry run changes and records nothing: it says what would be
        deleted, what is held and what the gate would refuse. A failure on one dataset is
        reported (`failed`, with its code) and does not stop the others.
        """
        self._authz.authorize(caller, Permission.PRIVACY_MANAGE)
        moment = now or self._clock.now()
        with self._db.read() as session:
            rows = session.scalars(
                sa.select(DatasetRow)
                .where(
                    sa.or_(
                        sa.and_(
                            DatasetRow.status == ACTIVE,
                            DatasetRow.expires_at.is_not(None),
                            DatasetRow.expires_at <= moment,
                        ),
                        DatasetRow.status == DELETING,
                    )
                )
                .order_by(DatasetRow.expires_at, DatasetRow.id)
                .limit(self._max_datasets + 1)
            ).all()
        truncated = len(rows) > self._max_datasets
        outcomes = [
            self._preview(caller, row, moment)
            if dry_run
            else self._enforce_one(caller, row, moment)
            for row in rows[: self._max_datasets]
        ]
        try:
            predictions = self._expire_predictions(caller, moment, dry_run=dry_run)
        except Exception as error:  # reported, retried next run; the datasets' work stands
            log.exception("prediction-log retention failed")
            predictions = PredictionOutcome(
                self._prediction_days,
                None,
                error=_describe(error),
            )
        return EnforcementReport(
            at=moment,
            dry_run=dry_run,
            datasets=tuple(outcomes),
            predictions=predictions,
            truncated=truncated,
        )

    def enforce_due(self, now: datetime | None = None) -> list[Deletion]:
        """The server's scheduler: enforce as `system:retention-enforcer` (a data steward) and
        return the deletions this run completed. Never raises (failures are logged and retried
        on the next call); safe to call from several replicas at once."""
        caller = Caller.system(ENFORCER, [Role.DATA_STEWARD])
        try:
            report = self.enforce(caller, now=now)
        except Exception:
            log.exception("retention enforcement failed")
            return []
        for outcome in report.datasets:
            if outcome.outcome in ("failed", "denied"):
                log.warning(
                    "retention: dataset %s was not deleted: %s",
                    outcome.dataset_id,
                    "; ".join(outcome.reasons)[:500],
                )
        ids = [d.deletion_id for d in report.datasets if d.outcome == "deleted" and d.deletion_id]
        ids.extend(report.predictions.deletion_ids)
        if not ids:
            return []
        with self._db.read() as session:
            rows = session.scalars(sa.select(DeletionRow).where(DeletionRow.id.in_(ids))).all()
        by_id = {r.id: _deletion(r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def _preview(self, caller: Caller, row: DatasetRow, moment: datetime) -> DatasetOutcome:
        base = _outcome(row)
        if row.status == DELETING:
            return base.with_outcome("would_delete", resumed=True)
        if row.legal_hold:
            return base.with_outcome("held")
        decision = self._policy.evaluate("retention", self._delete_document(caller, row, moment))
        if not decision.allow:
            return base.with_outcome("denied", reasons=tuple(decision.reasons))
        return base.with_outcome("would_delete")

    def _enforce_one(self, caller: Caller, row: DatasetRow, moment: datetime) -> DatasetOutcome:
        base = _outcome(row)
        if row.status == ACTIVE and row.legal_hold:
            return base.with_outcome("held")
        resumed = row.status == DELETING
        try:
            if not resumed:
                started = self._begin(caller, row.id, moment)
                if started is None:
                    return base.with_outcome("skipped")
            deletion_id, completed = self._complete(caller, row.id)
        except PolicyDenied as denied:
            return base.with_outcome("denied", reasons=tuple(denied.decision.reasons))
        except Exception as error:  # noqa: BLE001 - reported, and retried on the next run
            log.warning(
                "retention: deleting dataset %s failed (%s)",
                row.id,
                getattr(error, "code", type(error).__name__),
            )
            return base.with_outcome("failed", resumed=resumed, reasons=(_describe(error),))
        return base.with_outcome(
            "deleted" if completed else "skipped", resumed=resumed, deletion_id=deletion_id
        )

    def _delete_document(self, caller: Caller, row: DatasetRow, moment: datetime) -> dict[str, Any]:
        return self._policy.envelope(
            "retention",
            caller,
            dataset=dataset_doc(row, moment),
            change={"action": "delete", "retention_days": row.retention_days, "legal_hold": None},
        )

    def _begin(self, caller: Caller, dataset_id: str, moment: datetime) -> str | None:
        """Step 1: the intent. The pending deletion's id, or None when the row is no longer
        eligible (another enforcer started it, a hold was set, it was already deleted)."""
        with self._policy.enforcing(caller), self._db.transaction() as session:
            row = _locked(session, dataset_id)
            if (
                row is None
                or row.status != ACTIVE
                or row.legal_hold
                or row.expires_at is None
                or row.expires_at > moment
            ):
                return None
            _, decision_id = self._policy.decide(
                session, caller, "retention", row.id, self._delete_document(caller, row, moment)
            )
            key_id = None if row.blob_key is None else str(self._blobs.key_id(row.blob_key))
            deletion = DeletionRow(
                id=new_id("del"),
                subject_kind="dataset",
                subject_id=row.id,
                subject_name=f"{row.name}@{row.version}"[:256],
                rule=_rule(row),
                key_id=key_id,
                evidence={
                    "state": "pending",
                    "method": "crypto-shred" if row.blob_key is not None else "record-only",
                    "dataset": {
                        "id": row.id,
                        "name": row.name,
                        "version": row.version,
                        "digest": row.digest,
                        "classification": row.classification,
                        "size": row.size,
                        "source": row.source,
                    },
                    "blob_key": row.blob_key,
                    "retention_days": row.retention_days,
                    "expires_at": _iso(row.expires_at),
                    "decision_id": decision_id,
                    "started_at": _iso(self._clock.now()),
                },
                actor=caller.principal_id,
                at=self._clock.now(),
            )
            session.add(deletion)
            row.status = DELETING
            return deletion.id

    def _complete(self, caller: Caller, dataset_id: str) -> tuple[str | None, bool]:
        """Steps 2-4 for a `deleting` row: shred, check, record. `(deletion id, completed)`;
        completed is False when another enforcer completed it first."""
        with self._db.read() as session:
            row = session.get(DatasetRow, dataset_id)
            pending = _dataset_deletion(session, dataset_id)
        if row is None or pending is None:
            raise IntegrityError(
                f"dataset {dataset_id} is being deleted but has no deletion record",
                code="retention.no_deletion_record",
            )
        if row.status != DELETING:
            return pending.id, False
        blob_key = cast(str | None, pending.evidence.get("blob_key"))
        key_id = pending.key_id
        shred: ShredRecord | None = None
        checks: list[Check] = []
        if blob_key is not None:
            shred = self._shred(blob_key, key_id)
            key_id = key_id or str(shred.key_id)
            checks = self._checks(blob_key, key_id)
            if not all(c.ok for c in checks):
                raise IntegrityError(
                    f"dataset {dataset_id}: the shredded blob still answers as readable",
                    code="retention.shred_unverified",
                    details={"checks": [c.to_json() for c in checks]},
                )
        with self._db.transaction() as session:
            locked = _locked(session, dataset_id)
            if locked is None or locked.status != DELETING:
                return pending.id, False
            deletion = session.get(DeletionRow, pending.id)
            assert deletion is not None  # read above; deletions are never removed
            now = self._clock.now()
            evidence = dict(deletion.evidence)
            evidence.update(
                state="complete",
                checks=[c.to_json() for c in checks],
                verified=all(c.ok for c in checks),
                completed_at=_iso(now),
                completed_by=caller.principal_id,
            )
            if shred is not None:
                evidence["shred"] = {
                    "key_id": str(shred.key_id),
                    "kek_id": str(shred.kek_id),
                    "shredded_at": _iso(shred.shredded_at),
                }
                evidence["wrapping_kek"] = self._kek_status(str(shred.kek_id))
            deletion.evidence = evidence
            deletion.key_id = key_id
            locked.status = DELETED
            locked.deleted_at = now
            locked.blob_key = None
            self._audit.append(
                session,
                caller.event(
                    DATASET_DELETED,
                    locked.id,
                    {
                        "deletion_id": deletion.id,
                        "name": locked.name,
                        "version": locked.version,
                        "digest": locked.digest,
                        "classification": locked.classification,
                        "rule": deletion.rule,
                        "method": evidence.get("method"),
                        "key_id": key_id,
                        "shredded_at": _iso(shred.shredded_at) if shred else None,
                        "checks": {c.name: c.outcome for c in checks},
                        "decision_id": evidence.get("decision_id"),
                    },
                ),
            )
            return deletion.id, True

    def _shred(self, blob_key: str, key_id: str | None) -> ShredRecord:
        """Destroy the data key, then the ciphertext; idempotent (see the module docstring)."""
        record: ShredRecord | None = None
        try:
            record = self._blobs.shred(blob_key)
        except NotFound:
            record = None  # the ciphertext is gone already: an interrupted run got that far
        if key_id is not None:
            # Also when the blob was there: the key recorded at the intent is the one that
            # must be gone (idempotent, and the original record when already shredded).
            recorded = self._keystore.shred_data_key(KeyId(key_id))
            record = record or recorded
        if record is None:
            raise IntegrityError(
                f"blob {blob_key} is missing and no data key was recorded for it",
                code="retention.shred_unverified",
            )
        return record

    def _checks(self, blob_key: str, key_id: str) -> list[Check]:
        """Evidence that `blob_key` can no longer be decrypted: codes, never stack traces."""
        try:
            self._blobs.open_verified(blob_key, cast(BinaryIO, _Discard()))
            read = "readable"
        except BastionError as error:
            read = error.code
        try:
            self._keystore.data_key(KeyId(key_id))
            key = "present"
        except BastionError as error:
            key = error.code
        return [
            Check("ciphertext_read", _CIPHERTEXT_GONE, read, read in _CIPHERTEXT_GONE),
            Check("data_key", _KEY_GONE, key, key in _KEY_GONE),
        ]

    def _kek_status(self, kek_id: str) -> dict[str, Any]:
        try:
            destroyed = str(self._keystore.active_kek_id()) != kek_id
        except BastionError:
            destroyed = False
        return {
            "kek_id": kek_id,
            "destroyed": destroyed,
            "note": "key-store backups no longer hold the data key"
            if destroyed
            else "a key-store backup taken before the shred still holds the data key until "
            "`bastion keys rotate` destroys this KEK",
        }

    # -- legal holds ------------------------------------------------------------------------------

    def hold(
        self, caller: Caller, name: str, version: int | None = None, *, reason: str
    ) -> list[HoldChange]:
        """Put version `version` of dataset `name` (every active version when None) under
        legal hold: it will not be deleted until released. Needs `privacy.manage`; passes the
        `retention` gate (`set_legal_hold`); ledgered with the reason.

        Raises `NotFound` (`registry.dataset_not_found`), `Conflict`
        (`retention.already_held`, `retention.not_active` for a deleted or deleting version),
        `InvalidInput` (`retention.bad_reason`), `PolicyDenied`.
        """
        return self._set_hold(caller, name, version, reason, on=True)

    def release(
        self, caller: Caller, name: str, version: int | None = None, *, reason: str
    ) -> list[HoldChange]:
        """Lift the legal hold (as `hold`; `Conflict` `retention.not_held` when there is none).
        A released version that is past its retention is deleted by the next enforcement."""
        return self._set_hold(caller, name, version, reason, on=False)

    def _set_hold(
        self, caller: Caller, name: str, version: int | None, reason: str, *, on: bool
    ) -> list[HoldChange]:
        self._authz.authorize(caller, Permission.PRIVACY_MANAGE)
        text = check_reason(reason)
        if version is not None and (type(version) is not int or version < 1):
            raise InvalidInput("a dataset version is a positive integer", code="retention.bad_ref")
        now = self._clock.now()
        changes: list[HoldChange] = []
        with self._policy.enforcing(caller), self._db.transaction() as session:
            query = sa.select(DatasetRow).where(DatasetRow.name == name)
            if version is not None:
                query = query.where(DatasetRow.version == version)
            rows = session.scalars(query.order_by(DatasetRow.version).with_for_update()).all()
            if not rows:
                ref = name if version is None else f"{name}@{version}"
                raise NotFound(f"no dataset {ref}", code="registry.dataset_not_found")
            active = [r for r in rows if r.status == ACTIVE]
            if not active:
                raise Conflict(
                    f"{_refs(rows)} {'is' if len(rows) == 1 else 'are'} {rows[-1].status}; "
                    "only an active dataset can be held or released",
                    code="retention.not_active",
                )
            targets = [r for r in active if bool(r.legal_hold) != on]
            if not targets:
                raise Conflict(
                    f"{_refs(active)} {'already under' if on else 'not under'} legal hold",
                    code="retention.already_held" if on else "retention.not_held",
                )
            for row in targets:
                document = self._policy.envelope(
                    "retention",
                    caller,
                    dataset=dataset_doc(row, now),
                    change={
                        "action": "set_legal_hold",
                        "retention_days": row.retention_days,
                        "legal_hold": on,
                    },
                )
                _, decision_id = self._policy.decide(session, caller, "retention", row.id, document)
                row.legal_hold = on
                self._audit.append(
                    session,
                    caller.event(
                        HOLD_SET if on else HOLD_RELEASED,
                        row.id,
                        {
                            "name": row.name,
                            "version": row.version,
                            "digest": row.digest,
                            "reason": text,
                            "expires_at": _iso(row.expires_at),
                            "decision_id": decision_id,
                        },
                    ),
                )
                changes.append(HoldChange(row.id, row.name, row.version, on, decision_id))
        return changes

    # -- reading ----------------------------------------------------------------------------------

    def schedule(
        self,
        caller: Caller,
        *,
        name: str | None = None,
        include_deleted: bool = False,
        now: datetime | None = None,
    ) -> RetentionSchedule:
        """What expires when, what is held (by whom, why), and the prediction log's window.
        Needs `dataset.read` or `audit.read`. At most 1000 versions, soonest expiry first."""
        self._require_read(caller)
        moment = now or self._clock.now()
        with self._db.read() as session:
            query = sa.select(DatasetRow)
            if name is not None:
                query = query.where(DatasetRow.name == name)
            if not include_deleted:
                query = query.where(DatasetRow.status != DELETED)
            rows = session.scalars(
                query.order_by(
                    DatasetRow.expires_at.is_(None),
                    DatasetRow.expires_at,
                    DatasetRow.name,
                    DatasetRow.version,
                ).limit(MAX_LIST)
            ).all()
            deleted_ids = [r.id for r in rows if r.status != ACTIVE]
            deletions = _deletion_ids(session, deleted_ids)
            entries = [
                RetentionEntry(
                    dataset_id=r.id,
                    name=r.name,
                    version=r.version,
                    classification=r.classification,
                    status=r.status,
                    retention_days=r.retention_days,
                    expires_at=r.expires_at,
                    expired=r.expires_at is not None and r.expires_at <= moment,
                    legal_hold=bool(r.legal_hold),
                    hold=_hold_of(session, r.id) if r.legal_hold else None,
                    deleted_at=r.deleted_at,
                    deletion_id=deletions.get(r.id),
                )
                for r in rows
            ]
            size = _log_size(session)
            expired = _watermark(session, size)
        return RetentionSchedule(
            at=moment,
            datasets=tuple(entries),
            predictions=PredictionRetention(self._prediction_days, expired, size),
        )

    def deletions(
        self, caller: Caller, *, kind: str | None = None, limit: int = 100
    ) -> list[Deletion]:
        """Deletion records, newest first (`dataset.read` or `audit.read`)."""
        self._require_read(caller)
        if kind is not None and kind not in ("dataset", "predictions"):
            raise InvalidInput("kind is dataset or predictions", code="retention.bad_kind")
        query = sa.select(DeletionRow).order_by(DeletionRow.at.desc(), DeletionRow.id.desc())
        if kind is not None:
            query = query.where(DeletionRow.subject_kind == kind)
        with self._db.read() as session:
            rows = session.scalars(query.limit(max(1, min(limit, MAX_LIST)))).all()
            return [_deletion(r) for r in rows]

    def deletion(self, caller: Caller, deletion_id: str) -> Deletion:
        """One deletion record. `NotFound` (`retention.deletion_not_found`)."""
        self._require_read(caller)
        with self._db.read() as session:
            return _deletion(_find_deletion(session, deletion_id))

    def verify(self, caller: Caller, deletion_id: str) -> DeletionCheck:
        """Re-run a deletion's checks now (`dataset.read` or `audit.read`).

        Dataset: the deletion is complete, the blob does not read (`store.blob_not_found`, or
        `crypto.key_shredded` for a copy put back) and the key store says the data key is
        shredded. Predictions: every entry of the range still has no body but has its leaf
        hash, and the checkpoint recorded then is still stored with the same root.
        Returns the result (`ok`); raises only `NotFound` (`retention.deletion_not_found`).
        """
        self._require_read(caller)
        with self._db.read() as session:
            deletion = _deletion(_find_deletion(session, deletion_id))
            found = (
                _prediction_checks(session, deletion.evidence)
                if deletion.subject_kind == "predictions"
                else None
            )
        checks, notes = (found, ()) if found is not None else self._dataset_checks(deletion)
        return DeletionCheck(
            deletion_id=deletion.id,
            subject_kind=deletion.subject_kind,
            subject_name=deletion.subject_name,
            ok=bool(checks) and all(c.ok for c in checks),
            checks=tuple(checks),
            at=self._clock.now(),
            notes=notes,
        )

    def _dataset_checks(self, deletion: Deletion) -> tuple[list[Check], tuple[str, ...]]:
        state = deletion.state
        checks = [Check("state", ("complete",), state, state == "complete")]
        notes: list[str] = []
        blob_key = deletion.evidence.get("blob_key")
        if deletion.evidence.get("method") == "record-only" or blob_key is None:
            notes.append(
                "record-only: Bastion held only the digest; the bytes at the recorded source "
                "are outside Bastion"
            )
            return checks, tuple(notes)
        if deletion.key_id is None:
            checks.append(Check("data_key", _KEY_GONE, "no key recorded", False))
            return checks, tuple(notes)
        checks.extend(self._checks(str(blob_key), deletion.key_id))
        shred = deletion.evidence.get("shred")
        if isinstance(shred, Mapping) and isinstance(shred.get("kek_id"), str):
            notes.append(self._kek_status(str(shred["kek_id"]))["note"])
        return checks, tuple(notes)

    def _require_read(self, caller: Caller) -> None:
        held = caller.permissions
        if Permission.DATASET_READ in held:
            self._authz.authorize(caller, Permission.DATASET_READ)
        elif Permission.AUDIT_READ in held:
            self._authz.authorize(caller, Permission.AUDIT_READ)
        else:
            self._authz.authorize(caller, Permission.DATASET_READ)  # raises, and is counted

    # -- the prediction log -----------------------------------------------------------------------

    def expire_predictions(
        self, caller: Caller, *, now: datetime | None = None, dry_run: bool = False
    ) -> PredictionOutcome:
        """Empty the prediction-log entries older than `prediction_retention_days` (see the
        module docstring). Needs `privacy.manage`. Nothing happens when no window is set."""
        self._authz.authorize(caller, Permission.PRIVACY_MANAGE)
        return self._expire_predictions(caller, now or self._clock.now(), dry_run=dry_run)

    def _expire_predictions(
        self, caller: Caller, moment: datetime, *, dry_run: bool
    ) -> PredictionOutcome:
        days = self._prediction_days
        if days is None:
            return PredictionOutcome(None, None)
        cutoff = moment - timedelta(days=days)
        if dry_run:
            with self._db.read() as session:
                begin = _watermark(session, _log_size(session))
                end, more = begin, True
                for _ in range(self._max_batches):
                    stop = _expirable_end(session, end, cutoff, self._batch)
                    full, end = stop - end == self._batch, stop
                    if not full:
                        more = False
                        break
                more = more and _expirable_end(session, end, cutoff, 1) > end
            return PredictionOutcome(days, cutoff, end - begin, begin, end, more=more)
        ids: list[str] = []
        first: int | None = None
        last = total = 0
        more = True
        for _ in range(self._max_batches):
            done = self._expire_batch(caller, cutoff, days)
            if done is None:
                more = False
                break
            deletion_id, begin, end = done
            ids.append(deletion_id)
            first = begin if first is None else first
            last = end
            total += end - begin
            if end - begin < self._batch:
                more = False
                break
        if first is None:
            with self._db.read() as session:
                first = last = _watermark(session, _log_size(session))
        elif more:
            with self._db.read() as session:
                now_at = _watermark(session, _log_size(session))
                more = _expirable_end(session, now_at, cutoff, 1) > now_at
        return PredictionOutcome(days, cutoff, total, first, last, tuple(ids), more=more)

    def _expire_batch(
        self, caller: Caller, cutoff: datetime, days: int
    ) -> tuple[str, int, int] | None:
        entries = PredictionEntryRow
        with self._db.transaction() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_PREDICTIONS_LOCK)))
            begin = _watermark(session, _log_size(session))
            end = _expirable_end(session, begin, cutoff, self._batch)
            if end == begin:
                return None
            session.execute(
                sa.update(entries)
                .where(entries.leaf_index >= begin, entries.leaf_index < end)
                .values(body=b"", principal_id="")
                .execution_options(synchronize_session=False)
            )
            checkpoint = session.execute(
                sa.select(PredictionCheckpointRow.size, PredictionCheckpointRow.root)
                .order_by(PredictionCheckpointRow.size.desc())
                .limit(1)
            ).first()
            covering = (
                None
                if checkpoint is None
                else {"size": int(checkpoint[0]), "root": bytes(checkpoint[1]).hex()}
            )
            now = self._clock.now()
            rule = f"prediction_retention_days={days}, created before {_iso(cutoff)}"
            deletion = DeletionRow(
                id=new_id("del"),
                subject_kind="predictions",
                subject_id=f"leaves:{begin}-{end}",
                subject_name="prediction-log",
                rule=rule,
                key_id=None,
                evidence={
                    "state": "complete",
                    "method": "body-removal",
                    "begin": begin,
                    "end": end,
                    "count": end - begin,
                    "cutoff": _iso(cutoff),
                    "retention_days": days,
                    "checkpoint": covering,
                    "kept": "request id, endpoint, time, leaf hash; tree nodes and checkpoints",
                },
                actor=caller.principal_id,
                at=now,
            )
            session.add(deletion)
            self._audit.append(
                session,
                caller.event(
                    PREDICTIONS_EXPIRED,
                    "prediction-log",
                    {
                        "deletion_id": deletion.id,
                        "begin": begin,
                        "end": end,
                        "count": end - begin,
                        "rule": rule,
                        "cutoff": _iso(cutoff),
                        "checkpoint": covering,
                    },
                ),
            )
            return deletion.id, begin, end


# -- helpers ------------------------------------------------------------------------------------


def check_reason(reason: str) -> str:
    """A hold's reason: 1-500 printable characters. `InvalidInput` (`retention.bad_reason`)."""
    text = reason.strip() if isinstance(reason, str) else ""
    if not text or len(text) > MAX_REASON or not text.isprintable():
        raise InvalidInput(
            f"a reason of 1-{MAX_REASON} printable characters is required",
            code="retention.bad_reason",
        )
    return text


def parse_ref(ref: str) -> tuple[str, int | None]:
    """`name` or `name@version` → (name, version). `InvalidInput` (`retention.bad_ref`)."""
    name, sep, version = ref.rpartition("@")
    if not sep:
        name, version = ref, ""
    if not name or (sep and not (version.isascii() and version.isdigit() and int(version) > 0)):
        raise InvalidInput(
            f"bad dataset reference {ref[:100]!r}: use NAME or NAME@VERSION",
            code="retention.bad_ref",
        )
    return name, int(version) if sep else None


def _rule(row: DatasetRow) -> str:
    expired = row.expires_at.date().isoformat() if row.expires_at is not None else "never"
    return f"retention_days={row.retention_days}, expired {expired}"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else rfc3339(moment)


def _describe(error: BaseException) -> str:
    if isinstance(error, BastionError):
        return f"{error.code}: {error.message}"[:500]
    return f"internal: {type(error).__name__}"


def _refs(rows: Sequence[DatasetRow]) -> str:
    return ", ".join(f"{r.name}@{r.version}" for r in rows[:10]) + (
        f" and {len(rows) - 10} more" if len(rows) > 10 else ""
    )


def _outcome(row: DatasetRow) -> _Base:
    return _Base(row.id, row.name, row.version, row.expires_at)


@dataclass(frozen=True, slots=True)
class _Base:
    dataset_id: str
    name: str
    version: int
    expires_at: datetime | None

    def with_outcome(
        self,
        outcome: str,
        *,
        resumed: bool = False,
        deletion_id: str | None = None,
        reasons: tuple[str, ...] = (),
    ) -> DatasetOutcome:
        return DatasetOutcome(
            self.dataset_id,
            self.name,
            self.version,
            self.expires_at,
            outcome,
            resumed,
            deletion_id,
            reasons,
        )


class _Discard(io.RawIOBase):
    """Where a verified read that should have failed writes: nowhere."""

    def writable(self) -> bool:
        return True

    def write(self, b: Any, /) -> int:
        return len(b)


def _locked(session: Session, dataset_id: str) -> DatasetRow | None:
    return session.scalars(
        sa.select(DatasetRow).where(DatasetRow.id == dataset_id).with_for_update()
    ).first()


def _dataset_deletion(session: Session, dataset_id: str) -> DeletionRow | None:
    return session.scalars(
        sa.select(DeletionRow)
        .where(DeletionRow.subject_kind == "dataset", DeletionRow.subject_id == dataset_id)
        .order_by(DeletionRow.at.desc(), DeletionRow.id.desc())
        .limit(1)
    ).first()


def _deletion_ids(session: Session, dataset_ids: Sequence[str]) -> dict[str, str]:
    if not dataset_ids:
        return {}
    rows = session.execute(
        sa.select(DeletionRow.subject_id, DeletionRow.id).where(
            DeletionRow.subject_kind == "dataset", DeletionRow.subject_id.in_(list(dataset_ids))
        )
    ).all()
    return {str(subject): str(deletion) for subject, deletion in rows}


def _find_deletion(session: Session, deletion_id: str) -> DeletionRow:
    row = session.get(DeletionRow, deletion_id) if len(deletion_id) <= 40 else None
    if row is None:
        raise NotFound(f"no deletion {deletion_id[:60]}", code="retention.deletion_not_found")
    return row


def _deletion(row: DeletionRow) -> Deletion:
    return Deletion(
        id=row.id,
        subject_kind=row.subject_kind,
        subject_id=row.subject_id,
        subject_name=row.subject_name,
        rule=row.rule,
        key_id=row.key_id,
        evidence=dict(row.evidence),
        actor=row.actor,
        at=row.at,
    )


def _hold_of(session: Session, dataset_id: str) -> Hold | None:
    body = session.scalar(
        sa.select(LedgerEntryRow.body)
        .where(LedgerEntryRow.subject == dataset_id, LedgerEntryRow.event_type == HOLD_SET)
        .order_by(LedgerEntryRow.seq.desc())
        .limit(1)
    )
    if body is None:
        return None  # set outside this service: no reason on record
    try:
        event = json.loads(bytes(body))
        when = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))
        return Hold(reason=str(event["data"]["reason"]), by=str(event["actor"]), at=when)
    except (ValueError, KeyError, TypeError):
        return None


# Prediction-log positions. Emptied entries are a prefix of the log (see the module docstring),
# so the first entry that still has a body is found by binary search over the leaf index.


def _log_size(session: Session) -> int:
    top = session.scalar(sa.select(sa.func.max(PredictionEntryRow.leaf_index)))
    return 0 if top is None else int(top) + 1


def _watermark(session: Session, size: int) -> int:
    """The number of leading leaves already emptied."""
    entries = PredictionEntryRow
    low, high = 0, size
    while low < high:
        mid = (low + high) // 2
        length = session.scalar(
            sa.select(sa.func.length(entries.body)).where(entries.leaf_index == mid)
        )
        if length is not None and int(length) == 0:
            low = mid + 1
        else:
            high = mid
    return low


def _expirable_end(session: Session, begin: int, cutoff: datetime, batch: int) -> int:
    """The end of the run of consecutive leaves from `begin` (at most `batch`) created
    before `cutoff`."""
    entries = PredictionEntryRow
    rows = session.execute(
        sa.select(entries.leaf_index, entries.created_at)
        .where(entries.leaf_index >= begin, entries.leaf_index < begin + batch)
        .order_by(entries.leaf_index)
    ).all()
    end = begin
    for index, created in rows:
        if index != end or created >= cutoff:
            break
        end += 1
    return end


def _prediction_checks(session: Session, evidence: Mapping[str, Any]) -> list[Check]:
    entries = PredictionEntryRow
    begin, end = int(evidence.get("begin", 0)), int(evidence.get("end", 0))
    in_range = sa.and_(entries.leaf_index >= begin, entries.leaf_index < end)
    with_body = session.scalar(
        sa.select(sa.func.count()).where(in_range, sa.func.length(entries.body) > 0)
    )
    hashed = session.scalar(
        sa.select(sa.func.count()).where(in_range, entries.leaf_hash.is_not(None))
    )
    checks = [
        Check("bodies_removed", ("0",), str(int(with_body or 0)), not with_body),
        Check("leaves_kept", (str(end - begin),), str(int(hashed or 0)), hashed == end - begin),
    ]
    recorded = evidence.get("checkpoint")
    if isinstance(recorded, Mapping):
        root = session.scalar(
            sa.select(PredictionCheckpointRow.root).where(
                PredictionCheckpointRow.size == int(recorded.get("size", -1))
            )
        )
        found = "missing" if root is None else bytes(root).hex()
        checks.append(
            Check("checkpoint", (str(recorded.get("root")),), found, found == recorded.get("root"))
        )
    return checks
