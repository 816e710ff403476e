"""The prediction log on SQLite and PostgreSQL: batched receipts, proof bundles over the API
and the CLI that verify offline, who may read which receipt, a writer that outlives a
database failure, and a governance ledger that is left alone."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from bastion.api import create_app
from bastion.core import ManualClock
from bastion.identity import Role
from bastion.ledger.errors import SignatureError
from bastion.ledger.note import NoteVerifier
from bastion.platform import Platform
from bastion.serving.receipts import Receipt, ReceiptLog, verify_receipt_bundle
from bastion.store.tables import PredictionEntryRow
from support import Actor, MakeActor


@pytest.fixture
def clock() -> ManualClock:
    # Real time, so tokens issued here also work for the CLI (which uses the system clock).
    return ManualClock(datetime.now(UTC))


@pytest.fixture
def client_actor(make_actor: MakeActor) -> Actor:
    return make_actor("scorer-client", Role.INFERENCE_CLIENT, kind="service")


@pytest.fixture
def api(platform: Platform) -> TestClient:
    # No gateway runtime and no lifespan: the tests drive the receipt writer themselves.
    return TestClient(create_app(platform, serving=False))


def make(platform: Platform, actor: Actor | str, n: int, *, endpoint: str = "fraud") -> Receipt:
    principal = actor if isinstance(actor, str) else actor.principal.id
    receipts = platform.receipts
    return Receipt(
        request_id=f"req_{endpoint}_{n:05d}",
        time=platform.clock.now(),
        endpoint=endpoint,
        model="scorer",
        version=1,
        version_id="mv_test",
        artifact_digest="sha256:" + "cd" * 32,
        route="canary" if n % 10 == 0 else "stable",
        principal=principal,
        input_digest=receipts.keyed_digest(b"[[%d]]" % n, purpose="input"),
        output_digest=receipts.keyed_digest(b"[%d]" % (n % 2), purpose="output"),
        rows=1,
        client_request_id=f"client-{n}",
    )


def test_receipts_are_batched_and_every_proof_verifies(
    platform: Platform, client_actor: Actor
) -> None:
    receipts = platform.receipts
    audit_size = platform.ledger.size()
    for n in range(40):
        assert receipts.submit(make(platform, client_actor, n))
    receipts.flush()
    assert receipts.log.size() == 40
    assert len(receipts.log.checkpoints()) == 1  # one batch, one signed checkpoint
    caller = platform.tokens.authenticate(client_actor.token)
    for n in (0, 17, 39):
        bundle = receipts.proof(caller, f"req_fraud_{n:05d}")
        verified = verify_receipt_bundle(json.loads(json.dumps(bundle)), receipts.verifier_key())
        assert verified.receipt == make(platform, client_actor, n)
        assert (verified.leaf_index, verified.tree_size) == (n, 40)
    receipts.log.verify()
    # The governance ledger is untouched and still verifies; the logs have different keys.
    assert platform.ledger.size() == audit_size
    platform.ledger.verify()
    assert receipts.origin.startswith("bastion.local/predictions/")
    assert receipts.verifier_key() != platform.ledger.verifier_key()
    ledger_verifier = NoteVerifier.from_vkey(platform.ledger.verifier_key())
    with pytest.raises(SignatureError):
        ledger_verifier.verify(receipts.log.latest_checkpoint().note)


def test_concurrent_submitters_are_written_in_few_batches(
    platform: Platform, client_actor: Actor
) -> None:
    receipts = platform.receipts
    receipts.start()
    indices: list[int] = []
    lock = threading.Lock()

    def logged(index: int) -> None:
        with lock:
            indices.append(index)

    def submit(worker: int) -> None:
        for n in range(250):
            receipts.submit(make(platform, client_actor, worker * 1000 + n), logged)

    threads = [threading.Thread(target=submit, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    receipts.flush(timeout=30)
    assert receipts.log.size() == 1000
    assert sorted(indices) == list(range(1000))
    assert len(receipts.log.checkpoints()) < 100  # batched, not one checkpoint per receipt
    receipts.log.verify()
    platform.ledger.verify()


def test_writer_survives_a_database_error(platform: Platform, client_actor: Actor) -> None:
    receipts = ReceiptLog(
        database=platform.database,
        log=platform.receipts.log,
        authorizer=platform.authorizer,
        hmac_key=b"k" * 32,
        clock=platform.clock,
        queue_size=100,
        flush_interval=0.01,
        flush_max=10,
        on_full="reject",
        retry_initial=0.01,
        retry_max=0.05,
    )
    try:
        with platform.database.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE prediction_entries RENAME TO pe_hidden")
        receipts.start()
        for n in range(25):
            receipts.submit(make(platform, client_actor, n))
        with pytest.raises(Exception) as caught:  # noqa: PT011 - only the code matters
            receipts.flush(timeout=0.3)
        assert getattr(caught.value, "code", None) == "serving.receipt_flush_timeout"
        assert receipts.depth == 25
        with platform.database.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE pe_hidden RENAME TO prediction_entries")
        receipts.flush(timeout=20)
        assert receipts.log.size() == 25
        assert receipts.dropped == 0
        receipts.log.verify()
    finally:
        receipts.close()


# -- the API ------------------------------------------------------------------------------------


def test_api_proof_pending_then_logged(
    platform: Platform, api: TestClient, client_actor: Actor
) -> None:
    empty = api.get("/v1/receipts/log/checkpoint", headers=client_actor.headers)
    assert empty.status_code == 404
    assert empty.json()["error"]["code"] == "ledger.empty"
    platform.receipts.submit(make(platform, client_actor, 1))
    pending = api.get("/v1/receipts/req_fraud_00001", headers=client_actor.headers)
    assert pending.status_code == 409
    assert pending.json()["error"]["code"] == "serving.receipt_pending"
    platform.receipts.flush()
    response = api.get("/v1/receipts/req_fraud_00001", headers=client_actor.headers)
    assert response.status_code == 200, response.text
    bundle = response.json()
    checkpoint = api.get("/v1/receipts/log/checkpoint", headers=client_actor.headers).json()
    assert checkpoint["size"] == 1
    assert checkpoint["origin"] == platform.receipts.origin
    NoteVerifier.from_vkey(checkpoint["verifier_key"]).verify(checkpoint["note"])
    verified = verify_receipt_bundle(bundle, checkpoint["verifier_key"])
    assert verified.receipt.request_id == "req_fraud_00001"
    assert verified.receipt.client_request_id == "client-1"


def test_api_who_may_read_which_receipt(
    platform: Platform, api: TestClient, client_actor: Actor, make_actor: MakeActor
) -> None:
    other = make_actor("other-client", Role.INFERENCE_CLIENT, kind="service")
    scoped = make_actor(
        "scoped-client", Role.INFERENCE_CLIENT, kind="service", resources=("endpoint:fraud",)
    )
    auditor = make_actor("an-auditor", Role.AUDITOR)
    deployer = make_actor("a-deployer", Role.DEPLOYER)
    receipts = platform.receipts
    receipts.submit(make(platform, client_actor, 1))
    receipts.submit(make(platform, scoped, 2))
    receipts.submit(make(platform, scoped, 3, endpoint="churn"))
    receipts.flush()

    def get(actor: Actor | None, request_id: str) -> Any:
        headers = actor.headers if actor is not None else {}
        return api.get(f"/v1/receipts/{request_id}", headers=headers)

    # Another principal's receipt and an unknown id answer alike: ids cannot be probed.
    foreign, unknown = get(other, "req_fraud_00001"), get(other, "req_fraud_99999")
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["error"] == unknown.json()["error"]
    assert foreign.json()["error"]["code"] == "serving.receipt_not_found"
    # The owner, and an auditor, may.
    assert get(client_actor, "req_fraud_00001").status_code == 200
    assert get(auditor, "req_fraud_00001").status_code == 200
    # An endpoint-scoped token reads its endpoint's receipts, not another endpoint's.
    assert get(scoped, "req_fraud_00002").status_code == 200
    denied = get(scoped, "req_churn_00003")
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "auth.scope_denied"
    # Without receipt.read, or without a token.
    assert get(deployer, "req_fraud_00001").status_code == 403
    assert get(None, "req_fraud_00001").status_code == 401
    assert api.get("/v1/receipts/" + "x" * 65, headers=client_actor.headers).status_code == 422


# -- the CLI ------------------------------------------------------------------------------------


def test_cli_get_pubkey_and_offline_verify(
    platform: Platform,
    client_actor: Actor,
    cli: Any,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BASTION_DATABASE_URL", db_url)  # the CLI opens the same home
    platform.receipts.submit(make(platform, client_actor, 5))
    platform.receipts.submit(make(platform, client_actor, 6))
    platform.receipts.submit(make(platform, "prn_someone_else", 7))
    platform.receipts.flush()

    bundle_file, key_file = tmp_path / "receipt.json", tmp_path / "predictions.vkey"
    got = cli(
        "receipt", "get", "req_fraud_00005", "--out", str(bundle_file), token=client_actor.token
    )
    assert got.code == 0, got.err
    key = cli("receipt", "pubkey", token=client_actor.token)
    assert key.code == 0, key.err
    assert key.out.strip() == platform.receipts.verifier_key()
    key_file.write_text(key.out)

    ok = cli("receipt", "verify", str(bundle_file), "--pubkey", str(key_file))
    assert ok.code == 0, ok.err
    assert "req_fraud_00005 verified: leaf 0 of 3" in ok.out
    as_json = cli("receipt", "verify", str(bundle_file), "--pubkey", str(key_file), "--json")
    assert as_json.json()["status"] == "valid"

    # Tampered: exit 1 with the reason.
    document = json.loads(bundle_file.read_text())
    document["receipt"]["output_digest"] = document["receipt"]["input_digest"]
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(document))
    bad = cli("receipt", "verify", str(forged), "--pubkey", str(key_file))
    assert bad.code == 1
    assert "receipt.leaf_mismatch" in bad.err
    ledger_key = tmp_path / "ledger.vkey"
    ledger_key.write_text(platform.ledger.verifier_key())
    wrong = cli("receipt", "verify", str(bundle_file), "--pubkey", str(ledger_key))
    assert wrong.code == 1
    assert "receipt.bad_signature" in wrong.err

    # Unusable input: exit 2.
    (tmp_path / "not.json").write_text("{")
    (tmp_path / "bad.vkey").write_text("nonsense")
    for args in (
        (str(tmp_path / "missing.json"), str(key_file)),
        (str(tmp_path / "not.json"), str(key_file)),
        (str(bundle_file), str(tmp_path / "bad.vkey")),
    ):
        unusable = cli("receipt", "verify", args[0], "--pubkey", args[1])
        assert unusable.code == 2, unusable.err

    # Through the CLI, as through the API: unknown → 4; someone else's receipt is unknown too.
    assert cli("receipt", "get", "req_nope", token=client_actor.token).code == 4
    assert cli("receipt", "get", "req_fraud_00007", token=client_actor.token).code == 4
    printed = cli("receipt", "get", "req_fraud_00006", token=client_actor.token)
    assert printed.code == 0, printed.err
    assert printed.json()["leaf_index"] == 1
    # Pending (inserted by a process that stopped before sequencing) → 5.
    with platform.database.transaction() as session:
        late = make(platform, client_actor, 8)
        session.add(
            PredictionEntryRow(
                request_id=late.request_id,
                endpoint=late.endpoint,
                principal_id=late.principal,
                created_at=late.time,
                body=late.body(),
            )
        )
    assert cli("receipt", "get", "req_fraud_00008", token=client_actor.token).code == 5


def test_keys_are_stable_across_restarts(platform: Platform, client_actor: Actor) -> None:
    receipts = platform.receipts
    digest = receipts.keyed_digest(b"input", purpose="input")
    receipts.submit(make(platform, client_actor, 1))
    receipts.flush()
    with Platform.from_settings(platform.settings, clock=platform.clock) as again:
        assert again.receipts.key_id == receipts.key_id
        assert again.receipts.keyed_digest(b"input", purpose="input") == digest
        assert again.receipts.verifier_key() == receipts.verifier_key()
        assert again.receipts.origin == receipts.origin
        again.receipts.log.verify()
    # A different home has different keys: digests are keyed.
    assert platform.keystore.named_key("receipt-hmac-key") != b"k" * 32


def test_one_pass_appends_refuse_bad_batches_and_clashes_write_nothing(
    platform: Platform, client_actor: Actor
) -> None:
    from bastion.core.errors import Conflict, InvalidInput

    tlog = platform.receipts.log
    columns = ("request_id", "endpoint", "principal_id", "created_at", "body")
    with pytest.raises(InvalidInput) as empty:
        tlog.append_sequenced([], columns)
    assert empty.value.code == "ledger.empty_batch"
    with pytest.raises(InvalidInput) as bad:
        tlog.append_sequenced([{"request_id": "x"}], ("request_id",))
    assert bad.value.code == "ledger.bad_columns"
    rows = [
        {
            "request_id": r.request_id,
            "endpoint": r.endpoint,
            "principal_id": r.principal,
            "created_at": r.time,
            "body": r.body(),
        }
        for r in (make(platform, client_actor, n) for n in range(5))
    ]
    first, checkpoint = tlog.append_sequenced(rows, columns)
    assert (first, checkpoint.size) == (0, 5)
    with pytest.raises(Conflict):
        tlog.append_sequenced([*rows[:1], {**rows[1], "request_id": "req_new"}], columns)
    assert tlog.size() == 5
    report = tlog.verify()
    assert report.size == 5
