"""Prediction receipts on a private SQLite prediction log: the receipt and its keyed digests,
the bounded queue and its batching writer, reads and their authorization, proof bundles and
every way offline verification fails. (Both databases: tests/integration/test_receipts.py.)"""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.core import ManualClock
from bastion.core.canonical import canonical_json
from bastion.core.errors import (
    BastionError,
    ConfigError,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from bastion.core.ids import PrincipalId
from bastion.identity import AccessCounters, Authorizer, Caller, Role, permissions_of
from bastion.identity.access import PrincipalKind
from bastion.ledger import AUDIT_TABLES, PREDICTION_TABLES, TransparencyLog, merkle
from bastion.ledger.note import signer_from_seed
from bastion.serving.receipts import (
    Receipt,
    ReceiptBundleError,
    ReceiptLog,
    ReceiptMismatchError,
    ReceiptSignatureError,
    verify_receipt_bundle,
)
from bastion.store.db import Database
from bastion.store.tables import (
    Base,
    LedgerEntryRow,
    PredictionCheckpointRow,
    PredictionEntryRow,
    PredictionNodeRow,
)

KEY = bytes(range(32))
ORIGIN = "bastion.local/predictions/test"
TABLES = [
    Base.metadata.tables[t.__tablename__]
    for t in (PredictionEntryRow, PredictionNodeRow, PredictionCheckpointRow)
]


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'receipts.db'}")
    Base.metadata.create_all(db.engine, tables=TABLES)
    yield db
    db.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def tlog(database: Database, clock: ManualClock) -> TransparencyLog:
    return TransparencyLog(
        database=database,
        signer=signer_from_seed(b"\x07" * 32, ORIGIN),
        origin=ORIGIN,
        clock=clock,
        tables=PREDICTION_TABLES,
    )


MakeLog = Callable[..., ReceiptLog]


@pytest.fixture
def make_log(database: Database, tlog: TransparencyLog, clock: ManualClock) -> Iterator[MakeLog]:
    made: list[ReceiptLog] = []

    def make(**overrides: Any) -> ReceiptLog:
        options: dict[str, Any] = {
            "database": database,
            "log": tlog,
            "authorizer": Authorizer(counters=AccessCounters()),
            "hmac_key": KEY,
            "clock": clock,
            "queue_size": 1000,
            "flush_interval": 0.05,
            "flush_max": 100,
            "on_full": "reject",
            "retry_initial": 0.01,
            "retry_max": 0.05,
        }
        options.update(overrides)
        receipts = ReceiptLog(**options)
        made.append(receipts)
        return receipts

    yield make
    for receipts in made:
        receipts.close(timeout=2)


@pytest.fixture
def receipts(make_log: MakeLog) -> ReceiptLog:
    return make_log()


def caller(principal: str = "prn_alice", *roles: Role, resources: tuple[str, ...] = ()) -> Caller:
    role_set = frozenset(roles or (Role.INFERENCE_CLIENT,))
    return Caller(
        principal_id=PrincipalId(principal),
        name=principal,
        kind=PrincipalKind.SERVICE,
        roles=role_set,
        permissions=permissions_of(role_set),
        resources=resources,
    )


def receipt(
    log: ReceiptLog, n: int = 0, *, endpoint: str = "fraud", principal: str = "prn_alice"
) -> Receipt:
    return Receipt(
        request_id=f"req_{n:06d}",
        time=datetime(2026, 6, 1, 12, 0, n % 60, 1000, tzinfo=UTC),
        endpoint=endpoint,
        model="fraud-model",
        version=3,
        version_id="mv_01",
        artifact_digest="sha256:" + "ab" * 32,
        route="stable",
        principal=principal,
        input_digest=log.keyed_digest(b'{"records":[[%d]]}' % n, purpose="input"),
        output_digest=log.keyed_digest(b'{"outputs":[1]}', purpose="output"),
        rows=1,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


# -- the receipt --------------------------------------------------------------------------------


def test_receipt_body_is_canonical_json_with_version_and_type(receipts: ReceiptLog) -> None:
    r = receipt(receipts, 1)
    body = r.body()
    assert body.startswith(b'{"artifact_digest":')  # RFC 8785: sorted keys, no spaces
    doc = r.to_dict()
    assert doc["v"] == 1
    assert doc["type"] == "bastion.prediction.receipt"
    assert doc["time"] == "2026-06-01T12:00:01.001000Z"
    assert doc["client_request_id"] is None
    assert Receipt.from_dict(doc) == r


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(min_size=1, max_size=40),
    ascii_text=st.text(st.characters(max_codepoint=127), min_size=1, max_size=40),
    n=st.integers(0, 2**53 - 1),
)
def test_body_fast_path_is_exactly_rfc8785(text: str, ascii_text: str, n: int) -> None:
    """The writer's orjson fast path and the verifier's canonical_json agree byte for byte,
    control characters, quotes and backslashes included; non-ASCII takes the long way."""
    for value in (text, ascii_text):
        try:
            canonical_json(value)
        except InvalidInput:  # lone surrogates: not JSON at all
            continue
        r = Receipt(
            request_id=value[:64],
            time=datetime(2026, 6, 1, tzinfo=UTC),
            endpoint=value[:64],
            model=value,
            version=n,
            version_id="mv_1",
            artifact_digest=value,
            route="canary",
            principal=value[:40],
            input_digest="hmac-sha256:" + "0" * 16 + ":" + "1" * 64,
            output_digest="hmac-sha256:" + "0" * 16 + ":" + "2" * 64,
            rows=n,
            client_request_id=value,
        )
        assert r.body() == canonical_json(r.to_dict())
        assert Receipt.from_dict(json.loads(r.body())) == r


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("request_id", ""),
        ("request_id", "x" * 65),
        ("endpoint", "e" * 65),
        ("principal", "p" * 41),
        ("route", "shadow"),
        ("version", -1),
        ("rows", 2**53),
        ("rows", True),
        ("input_digest", "sha256:" + "00" * 32),
        ("output_digest", "hmac-sha256:zz:" + "00" * 32),
        ("time", datetime(2026, 1, 1)),  # naive
        ("client_request_id", "c" * 129),
    ],
)
def test_receipt_rejects_fields_out_of_shape(
    receipts: ReceiptLog, field: str, value: object
) -> None:
    good = receipt(receipts)
    fields = {name: getattr(good, name) for name in Receipt.__dataclass_fields__}
    fields[field] = value
    with pytest.raises(InvalidInput) as caught:
        Receipt(**fields)
    assert caught.value.code == "serving.bad_receipt"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("rows"),
        lambda d: d.update(extra=1),
        lambda d: d.update(v=2),
        lambda d: d.update(type="bastion.other"),
        lambda d: d.update(time="2026-06-01T12:00:01.001+00:00"),
        lambda d: d.update(time="2026-06-01T12:00:01.0010Z"),  # not the canonical spelling
        lambda d: d.update(rows="1"),
    ],
)
def test_receipt_from_dict_is_strict(
    receipts: ReceiptLog, mutate: Callable[[dict[str, Any]], None]
) -> None:
    doc = receipt(receipts).to_dict()
    mutate(doc)
    with pytest.raises(InvalidInput):
        Receipt.from_dict(doc)


# -- keyed digests ------------------------------------------------------------------------------


def test_digests_are_keyed_domain_separated_and_name_their_key(make_log: MakeLog) -> None:
    a, same, other = make_log(), make_log(), make_log(hmac_key=b"\x01" * 32)
    assert a.key_id == same.key_id
    assert len(a.key_id) == 16
    assert a.key_id != other.key_id
    assert KEY.hex()[:16] not in a.key_id
    data = b'{"records": [[1, 2]]}'
    digest = a.keyed_digest(data, purpose="input")
    assert digest.startswith(f"hmac-sha256:{a.key_id}:")
    assert len(digest.split(":")[2]) == 64
    assert digest == same.keyed_digest(data, purpose="input")  # stable for one key
    assert digest != other.keyed_digest(data, purpose="input")  # keyed
    assert digest != a.keyed_digest(data, purpose="output")  # input and output differ
    assert digest != a.keyed_digest(data + b" ", purpose="input")
    with pytest.raises(InvalidInput):
        a.keyed_digest(data, purpose="other")


def test_constructor_rejects_bad_configuration(make_log: MakeLog) -> None:
    for bad in (
        {"on_full": "block"},
        {"queue_size": 0},
        {"flush_max": 0},
        {"flush_interval": 0},
        {"hmac_key": b"short"},
    ):
        with pytest.raises(ConfigError):
            make_log(**bad)


# -- the queue and the writer -------------------------------------------------------------------


def test_full_queue_rejects_with_503_code(make_log: MakeLog, tlog: TransparencyLog) -> None:
    receipts = make_log(queue_size=1, on_full="reject")
    assert receipts.submit(receipt(receipts, 1)) is True
    with pytest.raises(Unavailable) as caught:
        receipts.submit(receipt(receipts, 2))
    assert caught.value.code == "serving.receipt_queue_full"
    assert receipts.dropped == 0
    receipts.close()  # the queued one is still written
    assert tlog.size() == 1


def test_full_queue_drops_counted_in_drop_mode(make_log: MakeLog, tlog: TransparencyLog) -> None:
    dropped: list[str] = []
    receipts = make_log(queue_size=1, on_full="drop", on_drop=dropped.append)
    assert receipts.submit(receipt(receipts, 1)) is True
    assert receipts.submit(receipt(receipts, 2, endpoint="churn")) is False
    assert dropped == ["churn"]
    assert receipts.dropped == 1
    receipts.flush()
    assert tlog.size() == 1
    assert receipts.submit(receipt(receipts, 3)) is True  # room again once written


def test_batches_by_count(make_log: MakeLog, tlog: TransparencyLog) -> None:
    receipts = make_log(flush_max=10, flush_interval=60)
    receipts.start()
    for n in range(25):
        receipts.submit(receipt(receipts, n))
    wait_until(lambda: tlog.size() == 20)
    time.sleep(0.1)
    assert tlog.size() == 20  # the last 5 wait for the interval (60 s) ...
    assert receipts.depth == 5
    receipts.flush()  # ... or a flush
    assert tlog.size() == 25
    assert [c.size for c in tlog.checkpoints()] == [10, 20, 25]


def test_batches_by_interval(make_log: MakeLog, tlog: TransparencyLog) -> None:
    receipts = make_log(flush_max=1000, flush_interval=0.1)
    receipts.start()
    started = time.monotonic()
    for n in range(30):
        receipts.submit(receipt(receipts, n))
    wait_until(lambda: tlog.size() == 30)
    assert time.monotonic() - started >= 0.09
    assert [c.size for c in tlog.checkpoints()] == [30]  # one batch, one checkpoint


def test_on_logged_gets_leaf_indices_and_depth_is_reported(make_log: MakeLog) -> None:
    depths: list[int] = []
    receipts = make_log(on_depth=depths.append)
    logged: dict[int, int] = {}
    done = threading.Event()

    def on_logged(n: int) -> Callable[[int], None]:
        def call(index: int) -> None:
            logged[n] = index
            if len(logged) == 5:
                done.set()

        return call

    for n in range(5):
        receipts.submit(receipt(receipts, n), on_logged(n))
    receipts.start()
    assert done.wait(5)
    assert logged == {n: n for n in range(5)}
    assert depths[0] == 5
    assert depths[-1] == 0


def test_failing_callbacks_do_not_stop_the_writer(make_log: MakeLog, tlog: TransparencyLog) -> None:
    def boom(_: object) -> None:
        raise RuntimeError("callback bug")

    receipts = make_log(on_depth=boom)
    receipts.submit(receipt(receipts, 1), boom)
    receipts.flush()
    receipts.submit(receipt(receipts, 2))
    receipts.flush()
    assert tlog.size() == 2


def test_writer_survives_a_database_error_without_losing_receipts(
    make_log: MakeLog, database: Database, tlog: TransparencyLog
) -> None:
    receipts = make_log()
    with database.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE prediction_entries RENAME TO pe_hidden")
    receipts.start()
    for n in range(20):
        receipts.submit(receipt(receipts, n))
    time.sleep(0.2)  # several failed attempts
    assert receipts.depth == 20
    with database.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE pe_hidden RENAME TO prediction_entries")
    receipts.flush(timeout=10)
    assert tlog.size() == 20
    assert receipts.dropped == 0
    tlog.verify()


def test_close_gives_up_on_a_dead_database_and_counts_the_drops(
    make_log: MakeLog, database: Database
) -> None:
    dropped: list[str] = []
    receipts = make_log(on_drop=dropped.append, flush_max=5)
    with database.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE prediction_entries")
    for n in range(12):
        receipts.submit(receipt(receipts, n))
    started = time.monotonic()
    receipts.close(timeout=0.3)
    assert time.monotonic() - started < 3
    assert len(dropped) == 12
    assert receipts.dropped == 12
    assert receipts.depth == 0


def test_rows_inserted_but_not_sequenced_are_sequenced_at_start(
    make_log: MakeLog, database: Database, tlog: TransparencyLog
) -> None:
    receipts = make_log()
    leftover = receipt(receipts, 9)
    with database.transaction() as session:  # a process died between insert and sequence
        session.add(
            PredictionEntryRow(
                request_id=leftover.request_id,
                endpoint="fraud",
                principal_id="prn_alice",
                created_at=leftover.time,
                body=leftover.body(),
            )
        )
    with pytest.raises(Conflict) as caught:
        receipts.proof(caller(), leftover.request_id)
    assert caught.value.code == "serving.receipt_pending"
    receipts.start()
    wait_until(lambda: tlog.size() == 1)
    assert receipts.get(caller(), leftover.request_id).leaf_index == 0


def test_duplicate_request_ids(make_log: MakeLog, tlog: TransparencyLog) -> None:
    dropped: list[str] = []
    receipts = make_log(on_drop=dropped.append)
    first = receipt(receipts, 1)
    receipts.submit(first)
    receipts.flush()
    # The same receipt again (our own insert whose acknowledgement was lost): already written.
    indices: list[int] = []
    receipts.submit(first, indices.append)
    receipts.flush()
    assert indices == [0]
    assert dropped == []
    # Another receipt under the same request id: dropped and counted, never overwriting.
    clash = Receipt(**{**{k: getattr(first, k) for k in Receipt.__dataclass_fields__}, "rows": 7})
    receipts.submit(clash)
    receipts.submit(clash)  # twice in one batch as well
    receipts.flush()
    assert dropped == ["fraud", "fraud"]
    assert tlog.size() == 1
    assert receipts.get(caller(), first.request_id).receipt["rows"] == 1


def test_close_then_start_again(make_log: MakeLog, tlog: TransparencyLog) -> None:
    receipts = make_log()
    receipts.start()
    receipts.submit(receipt(receipts, 1))
    receipts.close()
    assert tlog.size() == 1
    receipts.start()
    receipts.submit(receipt(receipts, 2))
    receipts.flush()
    assert tlog.size() == 2


def test_submit_never_touches_the_database(receipts: ReceiptLog, database: Database) -> None:
    """With the table gone, submit() still accepts at once; the writer catches up later."""
    with database.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE prediction_entries RENAME TO pe_hidden")
    batch = [receipt(receipts, n) for n in range(1000)]
    started = time.perf_counter()
    assert all(receipts.submit(r) for r in batch)
    assert time.perf_counter() - started < 0.2
    with database.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE pe_hidden RENAME TO prediction_entries")
    receipts.flush()
    assert receipts.log.size() == 1000


# -- reads and their authorization --------------------------------------------------------------


def test_get_and_proof_for_the_owner(receipts: ReceiptLog) -> None:
    mine = receipt(receipts, 1)
    receipts.submit(mine)
    stored = receipts.get(caller(), mine.request_id)
    assert stored.pending
    assert stored.receipt == mine.to_dict()
    with pytest.raises(Conflict) as caught:
        receipts.proof(caller(), mine.request_id)
    assert caught.value.code == "serving.receipt_pending"
    receipts.flush()
    assert receipts.get(caller(), mine.request_id).leaf_index == 0
    bundle = receipts.proof(caller(), mine.request_id)
    assert set(bundle) == {
        "receipt",
        "leaf_index",
        "tree_size",
        "leaf_hash",
        "inclusion",
        "checkpoint",
        "origin",
        "verifier_key",
    }
    verified = verify_receipt_bundle(bundle, receipts.verifier_key())
    assert verified.receipt == mine
    assert verified.origin == ORIGIN


def test_someone_elses_receipt_is_indistinguishable_from_none(receipts: ReceiptLog) -> None:
    receipts.submit(receipt(receipts, 1, principal="prn_bob"))
    for flushed in (False, True):  # queued in memory, then in the database
        if flushed:
            receipts.flush()
        errors = []
        for request_id in ("req_000001", "req_999999", "x" * 500):
            with pytest.raises(NotFound) as caught:
                receipts.get(caller("prn_alice"), request_id)
            errors.append((caught.value.code, caught.value.message))
        assert len(set(errors)) == 1
        assert errors[0][0] == "serving.receipt_not_found"
    # An auditor reads everyone's.
    assert receipts.get(caller("prn_audit", Role.AUDITOR), "req_000001").leaf_index == 0


def test_scoped_tokens_and_missing_permission(receipts: ReceiptLog) -> None:
    receipts.submit(receipt(receipts, 1, endpoint="fraud"))
    receipts.submit(receipt(receipts, 2, endpoint="churn"))
    receipts.flush()
    scoped = caller("prn_alice", resources=("endpoint:fraud",))
    assert receipts.get(scoped, "req_000001").leaf_index == 0
    with pytest.raises(PermissionDenied) as caught:
        receipts.get(scoped, "req_000002")
    assert caught.value.code == "auth.scope_denied"
    deployer = caller("prn_alice", Role.DEPLOYER)  # no receipt.read
    with pytest.raises(PermissionDenied) as caught:
        receipts.get(deployer, "req_000001")
    assert caught.value.code == "auth.denied"
    with pytest.raises(PermissionDenied):
        receipts.latest_checkpoint(deployer)
    assert receipts.latest_checkpoint(scoped).size == 2  # names no receipt: scope is fine


# -- offline verification -----------------------------------------------------------------------


@pytest.fixture
def bundle(receipts: ReceiptLog) -> dict[str, Any]:
    for n in range(7):
        receipts.submit(receipt(receipts, n))
        if n % 3 == 0:
            receipts.flush()  # several checkpoints
    receipts.flush()
    return receipts.proof(caller(), "req_000004")


def _expect(bundle: dict[str, Any], vkey: str, error: type[Exception], code: str) -> None:
    with pytest.raises(error) as caught:
        verify_receipt_bundle(bundle, vkey)
    assert getattr(caught.value, "code", None) == code, caught.value


def _swap_hash(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def test_a_good_bundle_verifies(bundle: dict[str, Any], receipts: ReceiptLog) -> None:
    verified = verify_receipt_bundle(bundle, receipts.verifier_key())
    assert (verified.leaf_index, verified.tree_size) == (4, 7)
    assert verified.receipt.request_id == "req_000004"


def test_tampering_each_fails_with_its_own_code(
    bundle: dict[str, Any], receipts: ReceiptLog
) -> None:
    vkey = receipts.verifier_key()

    def tampered(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        copied = copy.deepcopy(bundle)
        change(copied)
        return copied

    # The body: any field edited.
    _expect(
        tampered(lambda b: b["receipt"].update(rows=2)),
        vkey,
        ReceiptMismatchError,
        "receipt.leaf_mismatch",
    )

    # The body and the claimed leaf hash together: the proof no longer reaches the root.
    def forge(b: dict[str, Any]) -> None:
        b["receipt"]["rows"] = 2
        b["leaf_hash"] = base64.b64encode(
            merkle.leaf_hash(Receipt.from_dict(b["receipt"]).body())
        ).decode()

    _expect(tampered(forge), vkey, ReceiptMismatchError, "receipt.root_mismatch")
    # The proof.
    _expect(
        tampered(lambda b: b["inclusion"].__setitem__(0, _swap_hash(b["inclusion"][0]))),
        vkey,
        ReceiptMismatchError,
        "receipt.root_mismatch",
    )
    _expect(tampered(lambda b: b["inclusion"].pop()), vkey, ReceiptBundleError, "receipt.bad_proof")
    _expect(
        tampered(lambda b: b["inclusion"].__setitem__(0, "not base64!")),
        vkey,
        ReceiptBundleError,
        "receipt.bad_proof",
    )
    _expect(
        tampered(lambda b: b.update(leaf_index=9)), vkey, ReceiptBundleError, "receipt.bad_proof"
    )
    _expect(
        tampered(lambda b: b.update(leaf_index=5)),
        vkey,
        ReceiptMismatchError,
        "receipt.root_mismatch",
    )
    # The checkpoint: its text edited, or a size that is not the proof's.
    _expect(
        tampered(lambda b: b.update(checkpoint=b["checkpoint"].replace("\n7\n", "\n8\n"))),
        vkey,
        ReceiptSignatureError,
        "receipt.bad_signature",
    )
    _expect(
        tampered(lambda b: b.update(checkpoint="garbage")),
        vkey,
        ReceiptBundleError,
        "receipt.bad_checkpoint",
    )
    _expect(
        tampered(lambda b: b.update(tree_size=8)),
        vkey,
        ReceiptMismatchError,
        "receipt.size_mismatch",
    )
    # The shape.
    _expect(
        tampered(lambda b: b["receipt"].pop("model")),
        vkey,
        ReceiptBundleError,
        "receipt.bad_receipt",
    )
    _expect(tampered(lambda b: b.pop("checkpoint")), vkey, ReceiptBundleError, "receipt.bad_bundle")
    _expect(
        tampered(lambda b: b.update(leaf_index=True)),
        vkey,
        ReceiptBundleError,
        "receipt.bad_bundle",
    )
    _expect([1, 2], vkey, ReceiptBundleError, "receipt.bad_bundle")  # type: ignore[arg-type]
    _expect(bundle, "not a key", ReceiptBundleError, "receipt.bad_verifier_key")


def test_the_verifier_key_comes_from_the_verifier_not_the_bundle(
    bundle: dict[str, Any], database: Database, clock: ManualClock
) -> None:
    # A forger signs with their own key under the same origin and ships their key inside.
    forger = signer_from_seed(b"\x66" * 32, ORIGIN)
    forged = copy.deepcopy(bundle)
    text = bundle["checkpoint"].split("\n\n")[0] + "\n"
    forged["checkpoint"] = forger.sign_text(text)
    forged["verifier_key"] = forger.verifier_key()
    assert verify_receipt_bundle(forged, forger.verifier_key())  # their key, their checkpoint
    _expect(
        forged, bundle["verifier_key"], ReceiptSignatureError, "receipt.bad_signature"
    )  # ours refuses it
    # Another log's key (the governance ledger's): wrong key; its checkpoint: wrong origin.
    ledger_origin = "bastion.local/ledger/test"
    ledger_signer = signer_from_seed(b"\x01" * 32, ledger_origin)
    _expect(bundle, ledger_signer.verifier_key(), ReceiptSignatureError, "receipt.bad_signature")
    other = copy.deepcopy(bundle)
    other["checkpoint"] = ledger_signer.sign_text(text.replace(ORIGIN, ledger_origin))
    _expect(other, ledger_signer.verifier_key(), ReceiptSignatureError, "receipt.wrong_origin")


# -- the generalised log ------------------------------------------------------------------------


def test_prediction_log_is_separate_from_the_audit_log(tlog: TransparencyLog) -> None:
    assert tlog.tables is PREDICTION_TABLES
    assert PREDICTION_TABLES.pg_lock != AUDIT_TABLES.pg_lock
    assert "prediction_entries" in str(PREDICTION_TABLES.max_index_sql)
    assert "prediction_nodes" in PREDICTION_TABLES.nodes_sql_head
    assert "ledger_entries" in str(AUDIT_TABLES.queued_sql)
    assert AUDIT_TABLES.entries is LedgerEntryRow
    with pytest.raises(BastionError) as caught:  # it takes no audit events
        tlog.append(None, None)  # type: ignore[arg-type]
    assert getattr(caught.value, "code", None) == "ledger.append_unsupported"


def test_receipts_use_the_clock_for_checkpoints(
    receipts: ReceiptLog, tlog: TransparencyLog, clock: ManualClock, database: Database
) -> None:
    clock.advance(timedelta(days=1))
    receipts.submit(receipt(receipts, 1))
    receipts.flush()
    assert tlog.latest_checkpoint().created_at == clock.now()
    with database.read() as session:
        row = session.scalars(sa.select(PredictionEntryRow)).one()
    assert (row.endpoint, row.principal_id, row.leaf_index) == ("fraud", "prn_alice", 0)
    assert row.created_at == datetime(2026, 6, 1, 12, 0, 1, 1000, tzinfo=UTC)
