"""`bastion retention …` end to end in-process: list, hold, enforce (held, dry run, deleted),
release, evidence, verify (and its failure exit code), permissions, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bastion.core import Settings
from bastion.store.db import Database
from bastion.store.tables import DatasetRow, DeletionRow
from support import cli_token_for


def _backdate(name: str) -> None:
    """The CLI runs on the system clock: move the dataset's expiry into the past instead."""
    database = Database(Settings.from_env().resolved_database_url)
    try:
        with database.transaction() as session:
            session.execute(
                sa.update(DatasetRow)
                .where(DatasetRow.name == name)
                .values(expires_at=datetime.now(UTC) - timedelta(hours=1))
            )
    finally:
        database.dispose()


def _tamper_state(deletion_id: str) -> None:
    database = Database(Settings.from_env().resolved_database_url)
    try:
        with database.transaction() as session:
            row = session.get(DeletionRow, deletion_id)
            assert row is not None
            row.evidence = {**row.evidence, "state": "pending"}
    finally:
        database.dispose()


def test_retention_commands(cli: Any, admin_token: str, tmp_path: Path) -> None:
    steward = cli_token_for(cli, admin_token, "sam", "data-steward")
    auditor = cli_token_for(cli, admin_token, "audrey", "auditor")
    data = tmp_path / "loans.csv"
    data.write_text("name,income\nAda,100\nBo,200\n")
    registered = cli(
        "dataset", "register", "loans", "--classification", "confidential",
        "--purpose", "credit-scoring", "--file", str(data), "--retention", "1d",
        "--json", token=steward,
    )  # fmt: skip
    assert registered.code == 0, registered.err
    _backdate("loans")

    listed = cli("retention", "list", "--json", token=auditor)
    assert listed.code == 0, listed.err
    (entry,) = listed.json()["datasets"]
    assert (entry["name"], entry["expired"], entry["legal_hold"]) == ("loans", True, False)
    assert listed.json()["predictions"]["retention_days"] is None

    held = cli("retention", "hold", "loans@1", "--reason", "litigation #7", token=steward)
    assert held.code == 0, held.err
    assert "loans@1 under legal hold" in held.out
    text = cli("retention", "list", token=steward)
    assert "litigation #7" in text.out
    assert "expired" in text.out

    blocked = cli("retention", "enforce", "--json", token=steward)
    assert blocked.code == 0, blocked.err
    assert [d["outcome"] for d in blocked.json()["datasets"]] == ["held"]
    again = cli("retention", "hold", "loans", "--reason", "twice", token=steward)
    assert again.code == 5
    assert "retention.already_held" in again.err

    assert cli("retention", "release", "loans", "--reason", "settled", token=steward).code == 0
    dry = cli("retention", "enforce", "--dry-run", token=steward)
    assert dry.code == 0
    assert "Dry run: would delete 1 dataset version(s)" in dry.out

    done = cli("retention", "enforce", "--json", token=steward)
    assert done.code == 0, done.err
    (outcome,) = done.json()["datasets"]
    assert outcome["outcome"] == "deleted"
    deletion_id = outcome["deletion_id"]

    records = cli("retention", "evidence", "--json", token=auditor)
    assert [r["id"] for r in records.json()] == [deletion_id]
    shown = cli("retention", "evidence", deletion_id, token=auditor)
    assert "ciphertext_read: store.blob_not_found [ok]" in shown.out
    assert "data_key: crypto.key_shredded [ok]" in shown.out
    assert "Ada" not in shown.out

    verified = cli("retention", "verify", deletion_id, "--json", token=auditor)
    assert verified.code == 0, verified.err
    assert verified.json()["ok"] is True
    _tamper_state(deletion_id)
    failed = cli("retention", "verify", deletion_id, token=auditor)
    assert failed.code == 6
    assert "DOES NOT HOLD" in failed.out
    assert "retention.evidence_failed" in failed.err

    gone = cli("retention", "list", "--all", "--json", token=auditor)
    assert gone.json()["datasets"][0]["status"] == "deleted"
    assert cli("retention", "list", "--json", token=auditor).json()["datasets"] == []


def test_retention_refusals(cli: Any, admin_token: str) -> None:
    dev = cli_token_for(cli, admin_token, "dana", "model-developer")
    steward = cli_token_for(cli, admin_token, "sam", "data-steward")
    client = cli_token_for(cli, admin_token, "svc", "inference-client")
    assert cli("retention", "enforce", token=dev).code == 3
    assert cli("retention", "hold", "loans", "--reason", "x", token=dev).code == 3
    assert cli("retention", "list", token=client).code == 3
    bad = cli("retention", "hold", "loans@x", "--reason", "x", token=steward)
    assert bad.code == 2
    assert "retention.bad_ref" in bad.err
    missing = cli("retention", "hold", "loans", "--reason", "x", token=steward)
    assert missing.code == 4
    assert "registry.dataset_not_found" in missing.err
    empty = cli("retention", "hold", "loans", "--reason", " ", token=steward)
    assert empty.code == 2
    assert "retention.bad_reason" in empty.err
    unknown = cli("retention", "verify", "del_nope", token=steward)
    assert unknown.code == 4
    assert "retention.deletion_not_found" in unknown.err
    kind = cli("retention", "evidence", "--kind", "models", token=steward)
    assert kind.code == 2
    assert "retention.bad_kind" in kind.err
