"""Retention end to end on SQLite and PostgreSQL: expiry by the clock, crypto-shredding with
evidence that still verifies later, a raw ciphertext copy that no longer decrypts, legal holds,
the gate's refusal, a dry run, a crash mid-deletion that the next run completes, concurrent
enforcers, permissions, and the prediction log's retention (bodies go, the log verifies)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bastion.core import ManualClock, Settings
from bastion.core.errors import (
    Conflict,
    CryptoError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    StoreError,
)
from bastion.identity import Caller, Role
from bastion.ledger import TamperError
from bastion.platform import Platform
from bastion.policy.engine import Decision
from bastion.privacy.retention import (
    DATASET_DELETED,
    DELETED,
    DELETING,
    HOLD_RELEASED,
    HOLD_SET,
    PREDICTIONS_EXPIRED,
    RetentionService,
)
from bastion.registry import DatasetRef, ModelSpec, VersionSpec
from bastion.serving.receipts import Receipt, verify_receipt_bundle
from bastion.store.tables import (
    DatasetRow,
    DeletionRow,
    LedgerEntryRow,
    PolicyDecisionRow,
    PredictionEntryRow,
)
from support import MakeActor

CSV = b"name,email,income\nAda,ada@example.org,52000\nBo,bo@example.org,61000\n"
_AAD = b"bastion/sealed-blob/v1\x00"


@pytest.fixture
def steward(platform: Platform, make_actor: MakeActor) -> Caller:
    return platform.tokens.authenticate(make_actor("steward", Role.DATA_STEWARD).token)


@pytest.fixture
def auditor(platform: Platform, make_actor: MakeActor) -> Caller:
    return platform.tokens.authenticate(make_actor("audrey", Role.AUDITOR).token)


def _register(
    platform: Platform,
    steward: Caller,
    tmp_path: Path,
    name: str,
    *,
    days: int | None = 30,
    data: bytes = CSV,
    digest_only: bool = False,
) -> DatasetRow:
    if digest_only:
        dataset = platform.datasets.register(
            steward,
            name,
            classification_="internal",
            purposes=["analytics"],
            retention_days=days,
            digest="sha256:" + "ab" * 32,
            source="s3://lake/elsewhere",
        )
    else:
        path = tmp_path / f"{name}.csv"
        path.write_bytes(data)
        dataset = platform.datasets.register(
            steward,
            name,
            classification_="confidential",
            purposes=["credit-scoring"],
            retention_days=days,
            file=path,
        )
    return _row(platform, dataset.id)


def _row(platform: Platform, dataset_id: str) -> DatasetRow:
    with platform.database.read() as session:
        row = session.get(DatasetRow, dataset_id)
        assert row is not None
        return row


def _raw_path(platform: Platform, blob_key: str) -> Path:
    return platform.settings.home / "blobs" / blob_key


def _events(platform: Platform, kind: str) -> list[dict[str, Any]]:
    with platform.database.read() as session:
        bodies = session.scalars(
            sa.select(LedgerEntryRow.body)
            .where(LedgerEntryRow.event_type == kind)
            .order_by(LedgerEntryRow.seq)
        ).all()
    return [json.loads(b) for b in bodies]


def _deletion_rows(platform: Platform, subject_id: str | None = None) -> list[DeletionRow]:
    query = sa.select(DeletionRow).order_by(DeletionRow.at, DeletionRow.id)
    if subject_id is not None:
        query = query.where(DeletionRow.subject_id == subject_id)
    with platform.database.read() as session:
        return list(session.scalars(query).all())


# -- deletion by crypto-shredding --------------------------------------------------------------


def test_expired_dataset_is_shredded_and_the_evidence_verifies_later(
    platform: Platform, steward: Caller, auditor: Caller, clock: ManualClock, tmp_path: Path
) -> None:
    short = _register(platform, steward, tmp_path, "loans", days=30)
    long = _register(platform, steward, tmp_path, "keep", days=365, data=CSV + b"Cy,c@x.io,1\n")
    assert short.blob_key is not None
    assert long.blob_key is not None
    copy = _raw_path(platform, short.blob_key).read_bytes()  # a backup, taken before
    key_id = platform.blobs.key_id(short.blob_key)

    early = platform.retention.enforce(steward)
    assert early.datasets == ()
    assert _deletion_rows(platform) == []

    clock.advance(timedelta(days=30, seconds=1))
    report = platform.retention.enforce(steward)
    assert [(d.ref, d.outcome) for d in report.datasets] == [("loans@1", "deleted")]
    deletion_id = report.datasets[0].deletion_id
    assert deletion_id is not None

    row = _row(platform, short.id)
    assert row.status == DELETED
    assert row.deleted_at == clock.now()
    assert row.blob_key is None
    assert _row(platform, long.id).status == "active"
    assert platform.blobs.get(long.blob_key).startswith(b"name,email")

    # The ciphertext is gone, the key store refuses the key, and the copy kept from before
    # cannot be decrypted by the cipher: the data is unrecoverable.
    with pytest.raises(NotFound) as gone:
        platform.blobs.get(short.blob_key)
    assert gone.value.code == "store.blob_not_found"
    with pytest.raises(CryptoError) as shredded:
        platform.keystore.data_key(key_id)
    assert shredded.value.code == "crypto.key_shredded"
    with pytest.raises(CryptoError) as copied:
        platform.cipher.decrypt(copy, aad=_AAD + short.blob_key.encode())
    assert copied.value.code == "crypto.key_shredded"

    deletion = platform.retention.deletion(auditor, deletion_id)
    assert deletion.subject_kind == "dataset"
    assert deletion.subject_name == "loans@1"
    assert deletion.key_id == key_id
    assert deletion.state == "complete"
    assert deletion.rule == f"retention_days=30, expired {row.expires_at.date().isoformat()}"
    assert {c["check"]: c["outcome"] for c in deletion.evidence["checks"]} == {
        "ciphertext_read": "store.blob_not_found",
        "data_key": "crypto.key_shredded",
    }
    assert deletion.evidence["shred"]["key_id"] == key_id
    assert deletion.evidence["wrapping_kek"]["destroyed"] is False

    (event,) = _events(platform, DATASET_DELETED)
    assert event["subject"] == short.id
    assert event["actor"] == steward.principal_id
    data = event["data"]
    assert data["deletion_id"] == deletion_id
    assert data["key_id"] == key_id
    assert (data["name"], data["version"], data["digest"]) == ("loans", 1, short.digest)
    assert data["rule"] == deletion.rule
    assert data["decision_id"]
    raw_ledger = json.dumps(event)
    assert "ada@example.org" not in raw_ledger
    assert "52000" not in raw_ledger

    # Later: the checks still hold; even with the backup copy put back in the blob store it
    # only answers "shredded"; a KEK rotation then covers key-store backups too.
    clock.advance(timedelta(days=3))
    later = platform.retention.verify(auditor, deletion_id)
    assert later.ok
    assert {c.name for c in later.checks} == {"state", "ciphertext_read", "data_key"}
    _raw_path(platform, short.blob_key).write_bytes(copy)
    restored = platform.retention.verify(auditor, deletion_id)
    assert restored.ok
    assert {c.name: c.outcome for c in restored.checks}["ciphertext_read"] == "crypto.key_shredded"
    with pytest.raises(CryptoError):
        platform.blobs.get(short.blob_key)
    platform.keystore.rotate_kek()
    assert any("no longer hold" in n for n in platform.retention.verify(auditor, deletion_id).notes)

    again = platform.retention.enforce(steward)
    assert again.datasets == ()
    assert len(_deletion_rows(platform)) == 1
    platform.ledger.verify()


def test_a_digest_only_dataset_is_retired_on_record(
    platform: Platform, steward: Caller, clock: ManualClock, tmp_path: Path
) -> None:
    row = _register(platform, steward, tmp_path, "external", days=7, digest_only=True)
    clock.advance(timedelta(days=8))
    (outcome,) = platform.retention.enforce(steward).datasets
    assert outcome.outcome == "deleted"
    assert _row(platform, row.id).status == DELETED
    (deletion,) = _deletion_rows(platform, row.id)
    assert deletion.key_id is None
    assert deletion.evidence["method"] == "record-only"
    check = platform.retention.verify(steward, deletion.id)
    assert check.ok
    assert "outside Bastion" in check.notes[0]


def test_a_version_without_retention_never_expires(
    platform: Platform, steward: Caller, clock: ManualClock, tmp_path: Path
) -> None:
    path = tmp_path / "forever.csv"
    path.write_bytes(CSV)
    platform.datasets.register(
        steward, "forever", classification_="public", purposes=["analytics"], file=path
    )
    clock.advance(timedelta(days=36500))
    assert platform.retention.enforce(steward).datasets == ()


def test_deleted_data_keeps_its_lineage_and_cannot_be_used_again(
    platform: Platform,
    steward: Caller,
    make_actor: MakeActor,
    clock: ManualClock,
    tmp_path: Path,
) -> None:
    import pickle

    from sklearn.linear_model import LogisticRegression

    dev = platform.tokens.authenticate(make_actor("dev", Role.MODEL_DEVELOPER).token)
    row = _register(platform, steward, tmp_path, "loans", days=30)
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.pkl").write_bytes(
        pickle.dumps(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), protocol=5)
    )

    def register() -> Any:
        upload = platform.staging.create(dev)
        platform.staging.add_tree(dev, upload.id, model)
        return platform.models.register_version(
            dev,
            "scorer",
            upload.id,
            VersionSpec(datasets=(DatasetRef.parse("loans@1"),)),
            create=ModelSpec(purpose="credit-scoring"),
        )

    version = register()
    clock.advance(timedelta(days=31))
    assert platform.retention.enforce(steward).count("deleted") == 1
    (user,) = platform.models.consumers(dev, digest=row.digest)
    assert user.version_id == version.id
    with pytest.raises(Conflict) as refused:
        register()
    assert refused.value.code == "registry.dataset_unavailable"


# -- legal holds ----------------------------------------------------------------------------------


def test_a_legal_hold_blocks_deletion_until_released(
    platform: Platform, steward: Caller, auditor: Caller, clock: ManualClock, tmp_path: Path
) -> None:
    row = _register(platform, steward, tmp_path, "loans", days=30)
    (change,) = platform.retention.hold(steward, "loans", 1, reason="litigation hold #42")
    assert change.legal_hold
    assert change.decision_id
    clock.advance(timedelta(days=31))

    report = platform.retention.enforce(steward)
    assert [(d.ref, d.outcome) for d in report.datasets] == [("loans@1", "held")]
    assert _row(platform, row.id).status == "active"
    assert row.blob_key is not None
    assert platform.blobs.get(row.blob_key) == CSV

    (entry,) = platform.retention.schedule(auditor).datasets
    assert entry.legal_hold
    assert entry.expired
    assert entry.hold is not None
    assert entry.hold.reason == "litigation hold #42"
    assert entry.hold.by == steward.principal_id

    platform.retention.release(steward, "loans", reason="case closed")
    report = platform.retention.enforce(steward)
    assert [(d.ref, d.outcome) for d in report.datasets] == [("loans@1", "deleted")]
    (held,) = _events(platform, HOLD_SET)
    (released,) = _events(platform, HOLD_RELEASED)
    assert held["data"]["reason"] == "litigation hold #42"
    assert released["data"]["reason"] == "case closed"
    assert released["subject"] == row.id
    assert len(_events(platform, DATASET_DELETED)) == 1


def test_hold_covers_every_active_version_and_refuses_what_makes_no_sense(
    platform: Platform, steward: Caller, clock: ManualClock, tmp_path: Path
) -> None:
    _register(platform, steward, tmp_path, "loans", days=10)
    _register(platform, steward, tmp_path, "loans", days=400, data=CSV + b"Cy,c@x.io,1\n")
    retention = platform.retention
    with pytest.raises(NotFound) as unknown:
        retention.hold(steward, "nope", reason="x")
    assert unknown.value.code == "registry.dataset_not_found"
    for bad in ("", "   ", "x" * 501, "line\nbreak"):
        with pytest.raises(InvalidInput) as refused:
            retention.hold(steward, "loans", reason=bad)
        assert refused.value.code == "retention.bad_reason"
    with pytest.raises(Conflict) as not_held:
        retention.release(steward, "loans", reason="nothing to release")
    assert not_held.value.code == "retention.not_held"

    clock.advance(timedelta(days=11))
    assert retention.enforce(steward).count("deleted") == 1  # loans@1
    with pytest.raises(Conflict) as deleted:
        retention.hold(steward, "loans", 1, reason="too late")
    assert deleted.value.code == "retention.not_active"

    changes = retention.hold(steward, "loans", reason="audit")  # every active version: @2
    assert [(c.version, c.legal_hold) for c in changes] == [(2, True)]
    with pytest.raises(Conflict) as twice:
        retention.hold(steward, "loans", 2, reason="again")
    assert twice.value.code == "retention.already_held"


def test_the_gate_can_refuse_a_deletion_and_the_refusal_is_recorded(
    platform: Platform, steward: Caller, clock: ManualClock, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    row = _register(platform, steward, tmp_path, "loans", days=30)
    clock.advance(timedelta(days=31))

    def deny(gate: str, document: Any) -> Decision:
        return Decision(gate, False, ("deletion frozen by the DPO",), "sha256:x", "sha256:y")

    monkeypatch.setattr(platform.policy, "evaluate", deny)
    (outcome,) = platform.retention.enforce(steward).datasets
    assert outcome.outcome == "denied"
    assert outcome.reasons == ("deletion frozen by the DPO",)
    assert _row(platform, row.id).status == "active"
    assert _deletion_rows(platform) == []
    with platform.database.read() as session:
        recorded = session.scalars(
            sa.select(PolicyDecisionRow).where(
                PolicyDecisionRow.subject == row.id, PolicyDecisionRow.gate == "retention"
            )
        ).all()
    assert [(d.gate, d.allow) for d in recorded] == [("retention", False)]
    (preview,) = platform.retention.enforce(steward, dry_run=True).datasets
    assert preview.outcome == "denied"


# -- dry run, crashes, concurrency ---------------------------------------------------------------


def test_a_dry_run_changes_nothing(
    platform: Platform, steward: Caller, clock: ManualClock, tmp_path: Path
) -> None:
    row = _register(platform, steward, tmp_path, "loans", days=30)
    _register(platform, steward, tmp_path, "held", days=30, data=CSV + b"x,y,1\n")
    platform.retention.hold(steward, "held", reason="subpoena")
    clock.advance(timedelta(days=31))
    platform.ledger.sequence_all()
    size = platform.ledger.size()

    report = platform.retention.enforce(steward, dry_run=True)
    assert report.dry_run
    assert sorted((d.ref, d.outcome) for d in report.datasets) == [
        ("held@1", "held"),
        ("loans@1", "would_delete"),
    ]
    assert _row(platform, row.id).status == "active"
    assert _deletion_rows(platform) == []
    platform.ledger.sequence_all()
    assert platform.ledger.size() == size
    assert row.blob_key is not None
    assert platform.blobs.get(row.blob_key) == CSV


class _Crash(BaseException):
    """The process dies here: nothing after it runs, no handler sees it."""


def test_a_crash_after_shredding_is_completed_by_the_next_run(
    platform: Platform, steward: Caller, auditor: Caller, clock: ManualClock, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    row = _register(platform, steward, tmp_path, "loans", days=30)
    assert row.blob_key is not None
    key_id = platform.blobs.key_id(row.blob_key)
    clock.advance(timedelta(days=31))
    real = platform.blobs.shred

    def shred_then_die(key: str) -> Any:
        real(key)
        raise _Crash

    monkeypatch.setattr(platform.blobs, "shred", shred_then_die)
    with pytest.raises(_Crash):
        platform.retention.enforce(steward)

    # Between the two commits: unusable, unreadable, recorded as pending, not yet ledgered.
    assert _row(platform, row.id).status == DELETING
    (pending,) = _deletion_rows(platform, row.id)
    assert pending.evidence["state"] == "pending"
    assert pending.key_id == key_id
    assert _events(platform, DATASET_DELETED) == []
    with pytest.raises(NotFound):
        platform.blobs.get(row.blob_key)
    assert not platform.retention.verify(auditor, pending.id).ok
    (preview,) = platform.retention.enforce(steward, dry_run=True).datasets
    assert (preview.outcome, preview.resumed) == ("would_delete", True)

    monkeypatch.setattr(platform.blobs, "shred", real)
    (outcome,) = platform.retention.enforce(steward).datasets
    assert (outcome.outcome, outcome.resumed, outcome.deletion_id) == ("deleted", True, pending.id)
    assert _row(platform, row.id).status == DELETED
    (done,) = _deletion_rows(platform, row.id)
    assert done.evidence["state"] == "complete"
    assert done.evidence["shred"]["key_id"] == key_id
    assert len(_events(platform, DATASET_DELETED)) == 1
    assert platform.retention.verify(auditor, done.id).ok


def test_a_failed_shred_is_reported_and_retried(
    platform: Platform, steward: Caller, clock: ManualClock, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    first = _register(platform, steward, tmp_path, "a", days=30)
    _register(platform, steward, tmp_path, "b", days=30, data=CSV + b"x,y,1\n")
    clock.advance(timedelta(days=31))
    real = platform.blobs.shred

    def flaky(key: str) -> Any:
        if key == first.blob_key:
            raise StoreError("disk unavailable", code="store.unavailable")
        return real(key)

    monkeypatch.setattr(platform.blobs, "shred", flaky)
    report = platform.retention.enforce(steward)
    outcomes = {d.ref: d for d in report.datasets}
    assert outcomes["a@1"].outcome == "failed"
    assert report.failed
    assert outcomes["a@1"].reasons[0].startswith("store.unavailable")
    assert outcomes["b@1"].outcome == "deleted"  # one failure does not stop the others
    assert _row(platform, first.id).status == DELETING  # unusable meanwhile
    assert first.blob_key is not None
    assert platform.blobs.get(first.blob_key) == CSV

    monkeypatch.setattr(platform.blobs, "shred", real)
    retry = platform.retention.enforce(steward)
    assert [(d.ref, d.outcome, d.resumed) for d in retry.datasets] == [("a@1", "deleted", True)]
    assert len(_deletion_rows(platform, first.id)) == 1
    assert len(_events(platform, DATASET_DELETED)) == 2


def test_concurrent_enforcers_delete_each_dataset_exactly_once(
    platform: Platform, settings: Settings, steward: Caller, clock: ManualClock, tmp_path: Path
) -> None:
    rows = [
        _register(platform, steward, tmp_path, f"d{i}", days=5, data=CSV + b"%d,x,1\n" % i)
        for i in range(6)
    ]
    clock.advance(timedelta(days=6))
    replicas = [platform, Platform.from_settings(settings, clock=clock)]
    barrier = threading.Barrier(len(replicas) * 2)
    reports: list[Any] = []
    errors: list[BaseException] = []

    def run(replica: Platform) -> None:
        try:
            barrier.wait()
            reports.append(replica.retention.enforce_due())
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(r,)) for r in replicas for _ in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        replicas[1].close()
    assert not errors
    deleted = [d.subject_id for report in reports for d in report]
    assert sorted(deleted) == sorted(r.id for r in rows)  # each once, by some replica
    for row in rows:
        assert _row(platform, row.id).status == DELETED
        assert len(_deletion_rows(platform, row.id)) == 1
    assert sorted(e["subject"] for e in _events(platform, DATASET_DELETED)) == sorted(
        r.id for r in rows
    )
    assert all(
        e["actor"] == "system:retention-enforcer" for e in _events(platform, DATASET_DELETED)
    )


# -- permissions ----------------------------------------------------------------------------------


def test_permissions(
    platform: Platform, steward: Caller, auditor: Caller, make_actor: MakeActor, tmp_path: Path
) -> None:
    _register(platform, steward, tmp_path, "loans", days=30)
    dev = platform.tokens.authenticate(make_actor("dev", Role.MODEL_DEVELOPER).token)
    client = platform.tokens.authenticate(
        make_actor("svc", Role.INFERENCE_CLIENT, kind="service").token
    )
    retention = platform.retention
    for caller in (dev, auditor, client):
        with pytest.raises(PermissionDenied):
            retention.enforce(caller)
        with pytest.raises(PermissionDenied):
            retention.hold(caller, "loans", reason="x")
        with pytest.raises(PermissionDenied):
            retention.release(caller, "loans", reason="x")
        with pytest.raises(PermissionDenied):
            retention.expire_predictions(caller)
    with pytest.raises(PermissionDenied):
        retention.schedule(client)
    with pytest.raises(PermissionDenied):
        retention.deletions(client)
    with pytest.raises(PermissionDenied):
        retention.verify(client, "del_x")
    for reader in (auditor, dev, steward):  # audit.read or dataset.read
        assert [e.name for e in retention.schedule(reader).datasets] == ["loans"]
        assert retention.deletions(reader) == []
        with pytest.raises(NotFound) as missing:
            retention.verify(reader, "del_01JNOTTHERE000000000000000")
        assert missing.value.code == "retention.deletion_not_found"


# -- the prediction log --------------------------------------------------------------------------


@pytest.fixture
def retained(tmp_path: Path, db_url: str, clock: ManualClock) -> Iterator[Platform]:
    settings = Settings.from_env(
        home=tmp_path / "home", database_url=db_url, prediction_retention_days=30
    )
    with Platform.initialise(settings, clock=clock) as p:
        yield p


def _receipt(platform: Platform, principal: str, n: int) -> Receipt:
    receipts = platform.receipts
    return Receipt(
        request_id=f"req_{n:05d}",
        time=platform.clock.now(),
        endpoint="fraud",
        model="scorer",
        version=1,
        version_id="mv_test",
        artifact_digest="sha256:" + "cd" * 32,
        route="stable",
        principal=principal,
        input_digest=receipts.keyed_digest(b"[[%d]]" % n, purpose="input"),
        output_digest=receipts.keyed_digest(b"[1]", purpose="output"),
        rows=1,
    )


def _caller(platform: Platform, name: str, *roles: Role, kind: str = "user") -> Caller:
    admin = platform.tokens.authenticate(platform.bootstrap_admin("boot")[1].secret)
    principal = platform.principals.add(admin, name=name, kind=kind, roles=roles)
    return platform.tokens.authenticate(
        platform.tokens.create(admin, principal_id=principal.id).secret
    )


def test_prediction_bodies_expire_and_the_log_still_verifies(
    retained: Platform, clock: ManualClock
) -> None:
    platform = retained
    steward = _caller(platform, "steward", Role.DATA_STEWARD)
    auditor = _caller(platform, "audrey", Role.AUDITOR)
    client = _caller(platform, "svc", Role.INFERENCE_CLIENT, kind="service")
    receipts = platform.receipts
    for n in range(5):
        assert receipts.submit(_receipt(platform, client.principal_id, n))
    receipts.flush()
    clock.advance(timedelta(days=20))
    for n in range(5, 8):
        assert receipts.submit(_receipt(platform, client.principal_id, n))
    receipts.flush()
    old_proof = receipts.proof(auditor, "req_00001")
    clock.advance(timedelta(days=11))  # the first five are 31 days old, the rest 11

    preview = platform.retention.enforce(steward, dry_run=True).predictions
    assert (preview.count, preview.begin, preview.end, preview.deletion_ids) == (5, 0, 5, ())
    with platform.database.read() as session:
        assert (
            session.scalar(
                sa.select(sa.func.count()).where(sa.func.length(PredictionEntryRow.body) == 0)
            )
            == 0
        )

    outcome = platform.retention.enforce(steward).predictions
    assert (outcome.retention_days, outcome.count, outcome.begin, outcome.end) == (30, 5, 0, 5)
    (deletion_id,) = outcome.deletion_ids
    report = receipts.log.verify()
    assert (report.size, report.expired) == (8, 5)

    for caller, code in (
        (auditor, "serving.receipt_expired"),
        (client, "serving.receipt_not_found"),
    ):
        with pytest.raises(NotFound) as expired:
            receipts.proof(caller, "req_00001")
        assert expired.value.code == code
    fresh = receipts.proof(client, "req_00006")
    assert verify_receipt_bundle(fresh, receipts.verifier_key()).leaf_index == 6
    # A proof fetched before the expiry still verifies offline: the tree did not change.
    assert verify_receipt_bundle(old_proof, receipts.verifier_key()).leaf_index == 1

    with platform.database.read() as session:
        rows = session.execute(
            sa.select(PredictionEntryRow.leaf_index, PredictionEntryRow.body,
                      PredictionEntryRow.principal_id, PredictionEntryRow.leaf_hash)
            .order_by(PredictionEntryRow.leaf_index)
        ).all()  # fmt: skip
    assert [(bytes(b) == b"", p == "") for _, b, p, _ in rows] == [(True, True)] * 5 + [
        (False, False)
    ] * 3
    assert all(h is not None for *_, h in rows)

    deletion = platform.retention.deletion(auditor, deletion_id)
    assert deletion.subject_kind == "predictions"
    assert deletion.subject_id == "leaves:0-5"
    assert deletion.rule.startswith("prediction_retention_days=30, created before ")
    (event,) = _events(platform, PREDICTIONS_EXPIRED)
    assert (event["data"]["begin"], event["data"]["end"], event["data"]["count"]) == (0, 5, 5)
    assert event["data"]["checkpoint"]["size"] == 8
    assert platform.retention.verify(auditor, deletion_id).ok
    assert platform.retention.schedule(auditor).predictions.expired_leaves == 5

    again = platform.retention.enforce(steward).predictions
    assert (again.count, again.begin, again.end, again.deletion_ids) == (0, 5, 5, ())
    clock.advance(timedelta(days=20))
    last = platform.retention.enforce(steward).predictions
    assert (last.count, last.begin, last.end) == (3, 5, 8)
    assert receipts.log.verify().expired == 8
    platform.ledger.verify()


def test_expiry_goes_in_bounded_batches_and_emptied_leaves_must_be_a_prefix(
    retained: Platform, clock: ManualClock
) -> None:
    platform = retained
    steward = _caller(platform, "steward", Role.DATA_STEWARD)
    auditor = _caller(platform, "audrey", Role.AUDITOR)
    for n in range(5):
        platform.receipts.submit(_receipt(platform, steward.principal_id, n))
    platform.receipts.flush()
    for n in range(5, 7):
        clock.advance(timedelta(days=1))
        platform.receipts.submit(_receipt(platform, steward.principal_id, n))
        platform.receipts.flush()
    clock.advance(timedelta(days=28, hours=12))  # the first five are 30.5 days old
    small = RetentionService(
        database=platform.database,
        audit=platform.audit,
        authorizer=platform.authorizer,
        policy=platform.policy,
        blobs=platform.blobs,
        keystore=platform.keystore,
        clock=clock,
        prediction_retention_days=30,
        prediction_batch=2,
        max_prediction_batches=2,
    )
    preview = small.expire_predictions(steward, dry_run=True)
    assert (preview.count, preview.end, preview.more) == (4, 4, True)
    outcome = small.expire_predictions(steward)
    assert (outcome.count, outcome.begin, outcome.end, outcome.more) == (4, 0, 4, True)
    assert len(outcome.deletion_ids) == 2
    rest = small.expire_predictions(steward)
    assert (rest.count, rest.begin, rest.end, rest.more) == (1, 4, 5, False)
    assert small.expire_predictions(steward).deletion_ids == ()
    ranges = [(d.evidence["begin"], d.evidence["end"]) for d in small.deletions(auditor)]
    assert sorted(ranges) == [(0, 2), (2, 4), (4, 5)]
    assert platform.receipts.log.verify().expired == 5

    # Emptying a body behind the retention's back (not the oldest) is a deletion: caught.
    with platform.database.transaction() as session:
        session.execute(
            sa.update(PredictionEntryRow).where(PredictionEntryRow.leaf_index == 6).values(body=b"")
        )
    with pytest.raises(TamperError, match="entry 6 has no body"):
        platform.receipts.log.verify()
    # ... and the governance ledger never accepts an emptied entry.
    platform.ledger.sequence_all()
    with platform.database.transaction() as session:
        session.execute(
            sa.update(LedgerEntryRow).where(LedgerEntryRow.leaf_index == 0).values(body=b"")
        )
    with pytest.raises(TamperError):
        platform.ledger.verify()


def test_no_prediction_window_means_nothing_is_expired(
    platform: Platform, steward: Caller, clock: ManualClock
) -> None:
    platform.receipts.submit(_receipt(platform, steward.principal_id, 1))
    platform.receipts.flush()
    clock.advance(timedelta(days=3650))
    outcome = platform.retention.enforce(steward).predictions
    assert (outcome.retention_days, outcome.count, outcome.deletion_ids) == (None, 0, ())
    assert platform.receipts.log.verify().expired == 0
