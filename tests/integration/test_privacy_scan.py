"""Dataset scans, re-identification risk and the data_release gate end to end, on SQLite and
PostgreSQL: reports stored in the inventory with their ledger entries (never a value),
permissions, datasets that cannot be read (digest only, shredded, tampered, not CSV), and
release checks recorded whether allowed or denied; plus the CLI commands."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bastion.core.errors import (
    IntegrityError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    TooLarge,
)
from bastion.identity import Caller, Role
from bastion.platform import Platform
from bastion.policy import PolicyDenied
from bastion.privacy.risk import ReidentificationService
from bastion.privacy.scan import ColumnDetector, DatasetScanService
from bastion.store.tables import DatasetRow, PolicyDecisionRow
from support import MakeActor, cli_token_for

EXAMPLES = resources.files("bastion.policy").joinpath("examples")
EMAILS = [f"person{i}.{i * 7919 % 1000}@example.org" for i in range(40)]
CARD = "4111111111111111"


class FakeDetector(ColumnDetector):
    """`@` is an email, 16 digits a card (the real detector is tested in tests/unit)."""

    def scan_values(
        self, values: Iterable[str | None], *, sample: int | None = None
    ) -> dict[str, int]:
        found: dict[str, int] = {}
        for value in values:
            if value and "@" in value:
                found["EMAIL_ADDRESS"] = found.get("EMAIL_ADDRESS", 0) + 1
            if value and value.isdigit() and len(value) == 16:
                found["CREDIT_CARD"] = found.get("CREDIT_CARD", 0) + 1
        return found


def _csv(rows: int = 40) -> str:
    lines = ["email,card,age_band,zip,sex,diagnosis"]
    for i in range(rows):
        lines.append(
            f"{EMAILS[i % len(EMAILS)]},{CARD if i == 3 else ''},"
            f"{['20-29', '30-39'][i % 2]},{['0150', '5003'][(i // 2) % 2]},"
            f"{'F' if i % 4 < 2 else 'M'},{['flu', 'asthma', 'none'][i % 3]}"
        )
    return "\n".join(lines) + "\n"


@pytest.fixture
def steward(platform: Platform, make_actor: MakeActor) -> Caller:
    return platform.tokens.authenticate(make_actor("steward", Role.DATA_STEWARD).token)


@pytest.fixture
def approver(platform: Platform, make_actor: MakeActor) -> Caller:
    return platform.tokens.authenticate(make_actor("ann", Role.APPROVER).token)


@pytest.fixture
def scanner(platform: Platform) -> DatasetScanService:
    return DatasetScanService(
        database=platform.database,
        audit=platform.audit,
        authorizer=platform.authorizer,
        blobs=platform.blobs,
        clock=platform.clock,
        detector=FakeDetector,
    )


def _register(
    platform: Platform,
    steward: Caller,
    tmp_path: Path,
    text: str | bytes,
    *,
    name: str = "visits",
    classification: str = "confidential",
) -> DatasetRow:
    path = tmp_path / f"{name}-{random.random()}.csv"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    platform.datasets.register(
        steward,
        name,
        classification_=classification,
        purposes=["analytics"],
        retention_days=365,
        file=path,
    )
    return _row(platform, name)


def _row(platform: Platform, name: str) -> DatasetRow:
    with platform.database.read() as session:
        row = session.scalars(
            sa.select(DatasetRow).where(DatasetRow.name == name).order_by(DatasetRow.version.desc())
        ).first()
        assert row is not None
        return row


def _events(platform: Platform, kind: str) -> list[dict[str, Any]]:
    platform.ledger.sequence_all()
    bodies = [json.loads(e.body) for e in platform.ledger.entries(0, platform.ledger.size())]
    return [b for b in bodies if b["type"] == kind]


def _same_shape(example: object, real: object, path: str = "input") -> None:
    """The documented example input has exactly the shape Bastion builds."""
    if example is None or real is None:
        return
    if isinstance(example, dict):
        assert isinstance(real, dict), path
        assert set(example) == set(real), (path, sorted(set(example) ^ set(real)))
        for key in example:
            _same_shape(example[key], real[key], f"{path}.{key}")
    elif isinstance(example, list):
        assert isinstance(real, list), path
        for item in example[:1]:
            for other in real[:1]:
                _same_shape(item, other, f"{path}[]")
    else:
        kinds = (bool, int | float, str)
        assert [isinstance(example, k) for k in kinds] == [isinstance(real, k) for k in kinds], (
            path,
            example,
            real,
        )


def _ledger_text(platform: Platform) -> str:
    platform.ledger.sequence_all()
    return "\n".join(e.body.decode() for e in platform.ledger.entries(0, platform.ledger.size()))


# -- scan --------------------------------------------------------------------------------------


def test_scan_stores_the_report_and_a_ledger_entry_without_values(
    platform: Platform, steward: Caller, scanner: DatasetScanService, tmp_path: Path
) -> None:
    row = _register(platform, steward, tmp_path, _csv())
    result = scanner.scan(steward, "visits", sample=25)
    assert (result.name, result.version, result.dataset_id) == ("visits", 1, row.id)
    report = result.report
    assert report["scanned_rows"] == 25
    assert report["total_rows"] == 40
    assert report["sensitive_columns"] == ["email", "card"]
    assert report["columns"]["email"]["entities"] == {"EMAIL_ADDRESS": 1.0}
    assert report["proposed_classification"] == "restricted"
    assert report["declared_classification"] == "confidential"
    assert report["under_classified"] is True
    assert report["columns"]["diagnosis"]["name_hint"] == "special_category"
    assert report["detector"]["kind"] == "FakeDetector"

    stored = _row(platform, "visits")
    assert stored.pii_report == report
    assert stored.classification == "confidential"  # never changed by a scan
    (event,) = _events(platform, "privacy.dataset.scanned")
    assert event["subject"] == row.id
    assert event["actor"] == steward.principal_id
    assert event["data"]["sensitive_columns"] == ["email", "card"]
    assert event["data"]["proposed_classification"] == "restricted"
    assert event["data"]["digest"] == row.digest
    ledger = _ledger_text(platform)
    for value in (*EMAILS, CARD):
        assert value not in ledger
        assert value not in json.dumps(stored.pii_report)

    again = scanner.scan(steward, "visits", 1, sample=25)
    assert again.report["columns"] == report["columns"]  # the same sample of the same bytes
    assert scanner.report(steward, "visits", 1) is not None


def test_scan_permissions(
    platform: Platform,
    steward: Caller,
    approver: Caller,
    scanner: DatasetScanService,
    tmp_path: Path,
) -> None:
    _register(platform, steward, tmp_path, _csv())
    assert scanner.report(approver, "visits") is None  # DATASET_READ may read
    with pytest.raises(PermissionDenied):
        scanner.scan(approver, "visits")
    scanner.scan(steward, "visits")
    found = scanner.report(approver, "visits")
    assert found is not None
    assert found.report["sensitive_columns"] == ["email", "card"]
    assert _events(platform, "privacy.dataset.scanned")[0]["actor"] == steward.principal_id


def test_unknown_dataset_and_bad_sample(
    platform: Platform, steward: Caller, scanner: DatasetScanService, tmp_path: Path
) -> None:
    with pytest.raises(NotFound) as missing:
        scanner.scan(steward, "nope")
    assert missing.value.code == "registry.dataset_not_found"
    _register(platform, steward, tmp_path, _csv())
    with pytest.raises(NotFound):
        scanner.scan(steward, "visits", 2)
    with pytest.raises(InvalidInput) as bad:
        scanner.scan(steward, "visits", sample=0)
    assert bad.value.code == "privacy.bad_sample"
    assert _events(platform, "privacy.dataset.scanned") == []


def test_a_dataset_without_a_stored_copy_is_not_scannable(
    platform: Platform, steward: Caller, scanner: DatasetScanService
) -> None:
    platform.datasets.register(
        steward,
        "remote",
        classification_="internal",
        purposes=["analytics"],
        digest="sha256:" + "1" * 64,
    )
    with pytest.raises(InvalidInput) as caught:
        scanner.scan(steward, "remote")
    assert caught.value.code == "privacy.not_scannable"
    assert "no stored copy" in caught.value.message
    with pytest.raises(InvalidInput) as risk:
        platform.privacy_risk.measure(steward, "remote", quasi_identifiers=["a"])
    assert risk.value.code == "privacy.not_scannable"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "not UTF-8"),
        (b"a,b\n1,2\n3\n", "line 3 has 1 fields"),
        (b"", "empty"),
    ],
)
def test_data_that_is_not_csv_is_not_scannable_and_nothing_is_stored(
    platform: Platform,
    steward: Caller,
    scanner: DatasetScanService,
    tmp_path: Path,
    content: bytes,
    needle: str,
) -> None:
    _register(platform, steward, tmp_path, content, classification="internal")
    with pytest.raises(InvalidInput) as caught:
        scanner.scan(steward, "visits")
    assert caught.value.code == "privacy.not_scannable"
    assert needle in caught.value.message
    assert _row(platform, "visits").pii_report is None
    assert _events(platform, "privacy.dataset.scanned") == []


def test_a_shredded_dataset_is_not_scannable(
    platform: Platform, steward: Caller, scanner: DatasetScanService, tmp_path: Path
) -> None:
    row = _register(platform, steward, tmp_path, _csv())
    assert row.blob_key is not None
    platform.blobs.shred(row.blob_key)
    # The ciphertext is gone too; a copy left behind (a backup) must not decrypt either.
    with pytest.raises(NotFound):
        scanner.scan(steward, "visits")
    with platform.database.transaction() as session:
        session.execute(
            sa.update(DatasetRow)
            .where(DatasetRow.id == row.id)
            .values(status="deleted", deleted_at=platform.clock.now())
        )
    for attempt in (
        lambda: scanner.scan(steward, "visits"),
        lambda: platform.privacy_risk.measure(steward, "visits", quasi_identifiers=["zip"]),
    ):
        with pytest.raises(InvalidInput) as caught:
            attempt()
        assert caught.value.code == "privacy.not_scannable"
        assert "deleted" in caught.value.message


def test_a_dataset_being_deleted_is_not_scannable(
    platform: Platform, steward: Caller, scanner: DatasetScanService, tmp_path: Path
) -> None:
    row = _register(platform, steward, tmp_path, _csv())
    with platform.database.transaction() as session:
        session.execute(
            sa.update(DatasetRow).where(DatasetRow.id == row.id).values(status="deleting")
        )
    with pytest.raises(InvalidInput) as caught:
        scanner.scan(steward, "visits")
    assert caught.value.code == "privacy.not_scannable"
    with pytest.raises(PolicyDenied) as release:
        platform.privacy_risk.release_check(steward, "visits", "restricted", "why")
    assert "is not active" in release.value.message


def test_a_shredded_key_under_a_surviving_copy_is_not_scannable(
    platform: Platform, steward: Caller, scanner: DatasetScanService, tmp_path: Path
) -> None:
    row = _register(platform, steward, tmp_path, _csv())
    assert row.blob_key is not None
    blob = platform.settings.home / "blobs" / row.blob_key
    copy = blob.read_bytes()
    platform.blobs.shred(row.blob_key)
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(copy)  # a backup restored over the shredded blob
    with pytest.raises(InvalidInput) as caught:
        scanner.scan(steward, "visits")
    assert caught.value.code == "privacy.not_scannable"
    assert "crypto-shredded" in caught.value.message


def _big_csv(rows: int) -> str:
    rng = random.Random(3)
    lines = ["email,zip,age"]
    lines += [
        f"u{i}@example.org,{rng.randrange(100):04d},{rng.randrange(18, 90)}" for i in range(rows)
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("damage", ["flip_last_chunk", "truncate"])
def test_a_tampered_multi_chunk_blob_fails_and_stores_nothing(
    platform: Platform,
    steward: Caller,
    scanner: DatasetScanService,
    tmp_path: Path,
    damage: str,
) -> None:
    text = _big_csv(120_000)  # ~3 MiB: several 1 MiB chunks, the damage in the last one
    assert len(text) > 2 * 1024 * 1024
    row = _register(platform, steward, tmp_path, text)
    assert row.blob_key is not None
    blob = platform.settings.home / "blobs" / row.blob_key
    data = bytearray(blob.read_bytes())
    if damage == "flip_last_chunk":
        data[-40] ^= 1
    else:
        del data[-100:]
    blob.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        scanner.scan(steward, "visits", sample=100)
    with pytest.raises(IntegrityError):
        platform.privacy_risk.measure(steward, "visits", quasi_identifiers=["zip", "age"])
    stored = _row(platform, "visits")
    assert stored.pii_report is None
    assert stored.privacy_report is None
    assert _events(platform, "privacy.dataset.scanned") == []
    assert _events(platform, "privacy.dataset.risk_measured") == []


def test_an_early_error_stops_the_decrypting_thread(
    platform: Platform, steward: Caller, scanner: DatasetScanService, tmp_path: Path
) -> None:
    text = "a,b\n1\n" + "1,2\n" * 800_000  # ~3 MiB, ragged on line 2
    _register(platform, steward, tmp_path, text)
    with pytest.raises(InvalidInput) as caught:
        scanner.scan(steward, "visits")
    assert "line 2" in caught.value.message
    assert not [t for t in threading.enumerate() if t.name == "bastion-sealed-reader"]


def test_the_real_detector_through_the_platform(
    platform: Platform, steward: Caller, tmp_path: Path
) -> None:
    pytest.importorskip("bastion.privacy.pii")
    _register(platform, steward, tmp_path, _csv())
    result = platform.privacy_scan.scan(steward, "visits")
    assert "email" in result.report["sensitive_columns"]
    assert "card" in result.report["sensitive_columns"]
    assert result.report["proposed_classification"] == "restricted"
    assert result.report["detector"]["min_score"] == platform.settings.pii_min_score


# -- risk --------------------------------------------------------------------------------------


def test_risk_is_measured_stored_and_logged(
    platform: Platform, steward: Caller, approver: Caller, tmp_path: Path
) -> None:
    row = _register(platform, steward, tmp_path, _csv())
    assert platform.privacy_risk.report(approver, "visits") is None
    result = platform.privacy_risk.measure(
        steward, "visits", quasi_identifiers=["age_band", "zip", "sex"], sensitive=["diagnosis"]
    )
    report = result.report
    # age_band is i mod 2, zip and sex both (i div 2) mod 2: four classes (i mod 4) of ten
    # rows each; diagnosis (i mod 3) takes all three values in each.
    assert report["rows"] == 40
    assert report["k"] == 10
    assert report["classes"] == 4
    assert report["unique_share"] == 0.0
    assert report["l"] == 3
    assert report["quasi_identifiers"] == ["age_band", "zip", "sex"]
    assert report["measured_at"] == platform.clock.now().isoformat()
    assert _row(platform, "visits").privacy_report == report
    seen = platform.privacy_risk.report(approver, "visits")
    assert seen is not None
    assert seen.report == report
    (event,) = _events(platform, "privacy.dataset.risk_measured")
    assert event["subject"] == row.id
    assert (event["data"]["k"], event["data"]["l"]) == (10, 3)
    assert event["data"]["sensitive"] == ["diagnosis"]
    with pytest.raises(PermissionDenied):
        platform.privacy_risk.measure(approver, "visits", quasi_identifiers=["zip"])


def test_risk_with_unknown_columns_stores_nothing(
    platform: Platform, steward: Caller, tmp_path: Path
) -> None:
    _register(platform, steward, tmp_path, _csv())
    with pytest.raises(InvalidInput) as caught:
        platform.privacy_risk.measure(
            steward, "visits", quasi_identifiers=["zip", "postcode"], sensitive=["illness"]
        )
    assert caught.value.code == "privacy.unknown_column"
    assert caught.value.details["unknown"] == ["postcode", "illness"]
    assert _row(platform, "visits").privacy_report is None
    assert _events(platform, "privacy.dataset.risk_measured") == []


def test_the_row_limit_holds(platform: Platform, steward: Caller, tmp_path: Path) -> None:
    small = ReidentificationService(
        database=platform.database,
        audit=platform.audit,
        authorizer=platform.authorizer,
        blobs=platform.blobs,
        policy=platform.policy,
        clock=platform.clock,
        max_rows=39,
    )
    _register(platform, steward, tmp_path, _csv(40))
    with pytest.raises(TooLarge) as caught:
        small.measure(steward, "visits", quasi_identifiers=["zip"])
    assert caught.value.code == "privacy.too_many_rows"
    assert _row(platform, "visits").privacy_report is None


# -- release -----------------------------------------------------------------------------------


def _decisions(platform: Platform) -> list[PolicyDecisionRow]:
    with platform.database.read() as session:
        return list(
            session.scalars(
                sa.select(PolicyDecisionRow)
                .where(PolicyDecisionRow.gate == "data_release")
                .order_by(PolicyDecisionRow.at, PolicyDecisionRow.id)
            )
        )


def test_release_needs_a_measurement_then_k_at_least_k_min(
    platform: Platform, steward: Caller, tmp_path: Path
) -> None:
    row = _register(platform, steward, tmp_path, _csv())
    with pytest.raises(PolicyDenied) as unmeasured:
        platform.privacy_risk.release_check(steward, "visits", "internal", "analytics extract")
    assert "measure it first: bastion privacy risk visits@1" in unmeasured.value.message

    # Too fine: (age_band, zip, sex, diagnosis-free) with email makes every row unique.
    platform.privacy_risk.measure(steward, "visits", quasi_identifiers=["email", "zip"])
    with pytest.raises(PolicyDenied) as too_fine:
        platform.privacy_risk.release_check(steward, "visits", "internal", "analytics extract")
    assert "visits@1 is 1-anonymous" in too_fine.value.message
    assert "needs k >= 5" in too_fine.value.message

    platform.privacy_risk.measure(steward, "visits", quasi_identifiers=["age_band", "zip", "sex"])
    check = platform.privacy_risk.release_check(
        steward, "visits", "public", "open data release (ticket 12)"
    )
    assert check.allow
    assert check.k == 10
    assert (check.from_classification, check.to_classification) == ("confidential", "public")

    decisions = _decisions(platform)
    assert [d.allow for d in decisions] == [False, False, True]
    assert decisions[-1].id == check.decision_id
    assert decisions[-1].input["dataset"]["privacy_report"]["k"] == 10
    example = json.loads(EXAMPLES.joinpath("data_release.json").read_text())
    _same_shape(example, decisions[-1].input)
    events = _events(platform, "privacy.dataset.release_checked")
    assert [e["data"]["allow"] for e in events] == [False, False, True]
    assert all(e["subject"] == row.id for e in events)
    assert events[0]["data"]["k"] is None
    assert events[1]["data"]["k"] == 1
    assert "measure it first" in events[0]["data"]["reasons"][0]
    assert events[2]["data"]["decision_id"] == check.decision_id
    assert events[2]["data"]["reason"] == "open data release (ticket 12)"


def test_release_at_the_same_or_a_higher_level_needs_no_measurement(
    platform: Platform, steward: Caller, tmp_path: Path
) -> None:
    _register(platform, steward, tmp_path, _csv())
    for level in ("confidential", "restricted"):
        check = platform.privacy_risk.release_check(steward, "visits", level, "move to vault")
        assert check.allow
        assert check.k is None


def test_release_bad_input_and_permissions(
    platform: Platform, steward: Caller, approver: Caller, tmp_path: Path
) -> None:
    _register(platform, steward, tmp_path, _csv())
    with pytest.raises(InvalidInput) as level:
        platform.privacy_risk.release_check(steward, "visits", "secret", "why")
    assert level.value.code == "privacy.bad_classification"
    for reason in ("", "   ", "x" * 1001):
        with pytest.raises(InvalidInput) as bad:
            platform.privacy_risk.release_check(steward, "visits", "internal", reason)
        assert bad.value.code == "privacy.bad_reason"
    with pytest.raises(PermissionDenied):
        platform.privacy_risk.release_check(approver, "visits", "internal", "why")
    with pytest.raises(NotFound):
        platform.privacy_risk.release_check(steward, "nope", "internal", "why")
    assert _decisions(platform) == []
    assert _events(platform, "privacy.dataset.release_checked") == []


def test_release_of_a_deleted_dataset_is_denied(
    platform: Platform, steward: Caller, tmp_path: Path
) -> None:
    row = _register(platform, steward, tmp_path, _csv())
    platform.privacy_risk.measure(steward, "visits", quasi_identifiers=["age_band", "zip", "sex"])
    with platform.database.transaction() as session:
        session.execute(
            sa.update(DatasetRow)
            .where(DatasetRow.id == row.id)
            .values(deleted_at=platform.clock.now())
        )
    with pytest.raises(PolicyDenied) as caught:
        platform.privacy_risk.release_check(steward, "visits", "internal", "why")
    assert "is not active" in caught.value.message


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_scan_risk_release_inventory(cli: Any, admin_token: str, tmp_path: Path) -> None:
    steward = cli_token_for(cli, admin_token, "sam", "data-steward")
    data = tmp_path / "visits.csv"
    data.write_text(_csv())
    registered = cli(
        "dataset", "register", "visits", "--classification", "confidential",
        "--purpose", "analytics", "--file", str(data), "--retention", "365d", token=steward,
    )  # fmt: skip
    assert registered.code == 0, registered.err

    never = cli("privacy", "inventory", "visits", token=steward)
    assert never.code == 0, never.err
    assert "never scanned" in never.out
    assert "never measured" in never.out

    denied = cli("privacy", "release", "visits", "--to", "internal", "--reason", "x", token=steward)
    assert denied.code == 3
    assert "measure it first" in denied.err

    measured = cli(
        "privacy", "risk", "visits@1", "--quasi", "age_band, zip,sex", "--sensitive", "diagnosis",
        "--json", token=steward,
    )  # fmt: skip
    assert measured.code == 0, measured.err
    assert (measured.json()["k"], measured.json()["l"]) == (10, 3)
    text = cli("privacy", "risk", "visits", "--quasi", "email", token=steward)
    assert text.code == 0
    assert "k = 1 over email" in text.out

    unknown = cli("privacy", "risk", "visits", "--quasi", "zip,postcode", token=steward)
    assert unknown.code == 2
    assert "privacy.unknown_column" in unknown.err
    assert "postcode" in unknown.err

    cli("privacy", "risk", "visits", "--quasi", "age_band,zip,sex", token=steward)
    allowed = cli(
        "privacy", "release", "visits@1", "--to", "internal", "--reason", "extract", "--json",
        token=steward,
    )  # fmt: skip
    assert allowed.code == 0, allowed.err
    assert allowed.json()["allow"] is True
    assert allowed.json()["k"] == 10

    bad_ref = cli("privacy", "risk", "visits@x", "--quasi", "zip", token=steward)
    assert bad_ref.code == 2
    assert "cli.bad_dataset_ref" in bad_ref.err
    no_cols = cli("privacy", "risk", "visits", "--quasi", " , ", token=steward)
    assert no_cols.code == 2

    inventory = cli("privacy", "inventory", "visits", "--json", token=steward)
    assert inventory.code == 0
    assert inventory.json()["privacy_report"]["k"] == 10
    assert inventory.json()["pii_report"] is None
    for value in (*EMAILS, CARD):
        assert value not in inventory.out


def test_cli_scan(cli: Any, admin_token: str, tmp_path: Path) -> None:
    pytest.importorskip("bastion.privacy.pii")
    steward = cli_token_for(cli, admin_token, "sam", "data-steward")
    data = tmp_path / "visits.csv"
    data.write_text(_csv())
    assert cli(
        "dataset", "register", "visits", "--classification", "internal",
        "--purpose", "analytics", "--file", str(data), token=steward,
    ).code == 0  # fmt: skip
    scanned = cli("privacy", "scan", "visits", "--sample", "100", "--json", token=steward)
    assert scanned.code == 0, scanned.err
    report = scanned.json()
    assert report["dataset"] == "visits@1"
    assert {"email", "card"} <= set(report["sensitive_columns"])
    assert report["under_classified"] is True
    shown = cli("privacy", "scan", "visits", token=steward)
    assert shown.code == 0
    assert "under-classified" in shown.out
    assert "40 of 40 rows scanned" in shown.out
    for value in (*EMAILS, CARD):
        assert value not in scanned.out
        assert value not in shown.out
    bad = cli("privacy", "scan", "visits", "--sample", "0", token=steward)
    assert bad.code == 2
    assert "privacy.bad_sample" in bad.err
