"""The transparency log through its edges: the HTTP API a client verifies against, and the
`bastion audit` commands (verify, export + offline verify, proof, checkpoint, pubkey)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from bastion.api import create_app
from bastion.identity import Role
from bastion.ledger import merkle
from bastion.ledger.note import NoteVerifier
from bastion.platform import Platform
from support import Actor, MakeActor


def _h(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def test_api_proofs_verify_client_side(
    platform: Platform, admin: Actor, make_actor: MakeActor
) -> None:
    auditor = make_actor("aud", Role.AUDITOR)
    client = TestClient(create_app(platform))
    old = client.get("/v1/audit/checkpoint", headers=auditor.headers).json()
    verifier = NoteVerifier.from_vkey(old["verifier_key"])
    assert verifier.verify(old["note"]).size == old["size"]
    make_actor("later", Role.DEPLOYER)  # the log grows
    new = client.get("/v1/audit/checkpoint", headers=auditor.headers).json()
    assert new["size"] > old["size"]
    # A client holding the old checkpoint checks the new one extends it (no rollback, no fork).
    cons = client.get(
        "/v1/audit/proofs/consistency",
        params={"first": old["size"], "second": new["size"]},
        headers=auditor.headers,
    ).json()
    merkle.verify_consistency(
        old["size"],
        new["size"],
        _h(cons["proof"]),
        bytes.fromhex(old["root"]),
        bytes.fromhex(new["root"]),
    )
    entries = client.get(
        "/v1/audit/entries", params={"start": 0, "end": new["size"]}, headers=auditor.headers
    ).json()
    assert [e["index"] for e in entries] == list(range(new["size"]))
    for entry in entries:
        leaf = merkle.leaf_hash(entry["body"].encode())
        assert leaf.hex() == entry["leaf_hash"]
        proof = client.get(
            "/v1/audit/proofs/inclusion",
            params={"index": entry["index"]},
            headers=auditor.headers,
        ).json()
        merkle.verify_inclusion(
            entry["index"], new["size"], leaf, _h(proof["proof"]), bytes.fromhex(new["root"])
        )


def test_api_rejections(platform: Platform, admin: Actor, make_actor: MakeActor) -> None:
    client = TestClient(create_app(platform))
    size = client.get("/v1/audit/checkpoint", headers=admin.headers).json()["size"]
    bad = [
        ("/v1/audit/proofs/inclusion", {"index": size}, 422, "ledger.malformed_proof"),
        (
            "/v1/audit/proofs/inclusion",
            {"index": 0, "tree_size": size + 5},
            422,
            "ledger.malformed_proof",
        ),
        ("/v1/audit/proofs/consistency", {"first": 3, "second": 2}, 422, "ledger.malformed_proof"),
        ("/v1/audit/entries", {"start": 0, "end": 5000}, 422, "ledger.bad_range"),
        ("/v1/audit/entries", {"start": -1, "end": 2}, 422, "input.invalid"),
    ]
    for path, params, status, code in bad:
        response = client.get(path, params=params, headers=admin.headers)
        assert response.status_code == status, (path, params, response.text)
        assert response.json()["error"]["code"] == code
    approver = make_actor("appr", Role.APPROVER)
    denied = client.get("/v1/audit/checkpoint", headers=approver.headers)
    assert denied.status_code == 403


def test_cli_verify_export_offline(cli: Any, admin_token: str, home: Path, tmp_path: Path) -> None:
    ok = cli("audit", "verify", "--json", token=admin_token)
    assert ok.code == 0, ok.err
    report = ok.json()
    assert report["status"] == "intact"
    assert report["size"] >= 2
    pubkey = cli("audit", "pubkey", token=admin_token)
    key_file = tmp_path / "log.pub"
    key_file.write_text(pubkey.out)
    bundle = tmp_path / "bundle.json"
    assert cli("audit", "export", "--out", str(bundle), token=admin_token).code == 0
    offline = cli("audit", "verify", "--bundle", str(bundle), "--pubkey", str(key_file), "--json")
    assert offline.code == 0, offline.err
    assert offline.json()["root"] == report["root"]
    # An edited bundle fails offline with the index of the first bad entry.
    document = json.loads(bundle.read_text())
    document["entries"][1]["body"] = document["entries"][1]["body"].replace("admin", "admim")
    bundle.write_text(json.dumps(document))
    bad = cli("audit", "verify", "--bundle", str(bundle), "--pubkey", str(key_file))
    assert bad.code == 6
    assert "ledger.tampered" in bad.err
    missing_key = cli("audit", "verify", "--bundle", str(bundle))
    assert missing_key.code == 2


def test_cli_verify_catches_database_edits(
    cli: Any, admin_token: str, home: Path, tmp_path: Path
) -> None:
    saved = cli("audit", "checkpoint", token=admin_token)
    assert saved.code == 0
    trusted = tmp_path / "trusted.note"
    trusted.write_text(saved.out)
    proof = cli("audit", "proof", "--index", "0", token=admin_token)
    assert proof.code == 0
    assert proof.json()["tree_size"] >= 1
    assert cli("audit", "verify", "--trusted-checkpoint", str(trusted), token=admin_token).code == 0
    with sqlite3.connect(home / "bastion.db") as db:
        db.execute(
            "UPDATE ledger_entries SET body = replace(body, 'admin', 'admim') WHERE leaf_index = 1"
        )
    tampered = cli("audit", "verify", token=admin_token)
    assert tampered.code == 6
    assert "entry 1" in tampered.err
    assert "ledger.tampered" in tampered.err
    assert "index: 1" in tampered.err  # the first bad index, then expected and computed
    assert "expected: " in tampered.err
    assert "computed: " in tampered.err


def test_cli_audit_needs_audit_read(cli: Any, admin_token: str) -> None:
    cli("principal", "add", "dev", "--role", "model-developer", token=admin_token)
    issued = cli("token", "create", "--for", "dev", "--json", token=admin_token).json()["token"]
    denied = cli("audit", "verify", token=issued)
    assert denied.code == 3
    assert "auth.denied" in denied.err
