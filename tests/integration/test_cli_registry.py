"""`bastion dataset|model|lineage|signer` end to end, and signature interop with the
reference `model_signing` tool on what `bastion model download` writes."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sklearn.ensemble import RandomForestClassifier

from support import cli_token_for

REFERENCE = Path(sys.executable).parent / "model_signing"


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("id",))


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 4))
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, x[:, 1] > 0)
    root = tmp_path / "forest"
    root.mkdir()
    (root / "model.pkl").write_bytes(pickle.dumps(forest, protocol=5))
    (root / "config.json").write_text('{"threshold": 0.5}')
    return root


def _keypair(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = tmp_path / f"{name}.pem"
    public = tmp_path / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def _reference(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REFERENCE), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_lifecycle_and_reference_interop(
    cli: Any, admin_token: str, model_dir: Path, tmp_path: Path
) -> None:
    steward = cli_token_for(cli, admin_token, "sam", "data-steward")
    dev = cli_token_for(cli, admin_token, "dana", "model-developer")
    data = tmp_path / "loans.csv"
    data.write_text("age,income\n30,100\n40,200\n")
    registered = cli(
        "dataset", "register", "loans", "--classification", "confidential",
        "--purpose", "credit-scoring", "--file", str(data), "--retention", "365d",
        "--json", token=steward,
    )  # fmt: skip
    assert registered.code == 0, registered.err
    assert registered.json()["retention_days"] == 365

    made = cli(
        "model", "register", "--name", "forest", "--file", str(model_dir),
        "--dataset", "loans@1", "--metric", "auc=0.93", "--framework", "scikit-learn",
        "--purpose", "credit-scoring",
        "--json", token=dev,
    )  # fmt: skip
    assert made.code == 0, made.err
    version = made.json()
    assert version["format"] == "pickle"
    assert version["lineage"][0]["dataset"] == "loans"

    assert cli("model", "sign", "forest@1", token=dev).code == 0
    verified = cli("model", "verify", "forest@1", "--json", token=dev)
    assert verified.code == 0
    assert verified.json()["valid"] is True

    used = cli("lineage", "--dataset", "loans@1", "--json", token=dev)
    assert [u["model"] for u in used.json()] == ["forest"]

    # What Bastion signed, the reference tool verifies (on the downloaded directory).
    out = tmp_path / "download"
    assert cli("model", "download", "forest@1", "--out", str(out), token=dev).code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "bastion.mlbom.cdx.json", "config.json", "model.pkl",
    ]  # fmt: skip
    pubkey = tmp_path / "bastion.pub"
    keys = cli("signer", "list", "--json", token=dev).json()
    pubkey.write_text(keys[0]["public_key_pem"])
    ok = _reference(
        "verify", "key", str(out), "--signature", str(out) + ".sig", "--public_key", str(pubkey)
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr

    # What a team signs with the reference tool, Bastion accepts once the key is trusted.
    private, public = _keypair(tmp_path, "team")
    team_sig = tmp_path / "team.sig"
    signed = _reference(
        "sign", "key", str(out), "--signature", str(team_sig), "--private_key", str(private)
    )
    assert signed.returncode == 0, signed.stdout + signed.stderr
    refused = cli("model", "attach-signature", "forest@1", "--signature", str(team_sig), token=dev)
    assert refused.code == 6
    assert "signature" in refused.err
    added = cli("signer", "add", "--team", "risk", "--pubkey", str(public), token=admin_token)
    assert added.code == 0, added.err
    attached = cli("model", "attach-signature", "forest@1", "--signature", str(team_sig), token=dev)
    assert attached.code == 0, attached.err
    assert "risk" in attached.out

    # A tampered download no longer verifies with the reference tool.
    (out / "config.json").write_text('{"threshold": 0.0}')
    bad = _reference(
        "verify", "key", str(out), "--signature", str(out) + ".sig", "--public_key", str(pubkey)
    )
    assert bad.returncode != 0

    lineage_file = tmp_path / "ol.jsonl"
    exported = cli("lineage", "export", "--out", str(lineage_file), token=dev)
    assert exported.code == 0, exported.err
    assert len(lineage_file.read_text().splitlines()) == 2
    bom = cli("model", "mlbom", "forest@1", token=dev)
    assert json.loads(bom.out)["bomFormat"] == "CycloneDX"


def test_hostile_model_is_refused_with_findings(cli: Any, admin_token: str, tmp_path: Path) -> None:
    dev = cli_token_for(cli, admin_token, "dana", "model-developer")
    evil = tmp_path / "evil.bin"
    evil.write_bytes(pickle.dumps(_Evil()))
    refused = cli("model", "register", "--name", "evil", "--file", str(evil), token=dev)
    assert refused.code == 2
    assert "registry.scan_rejected" in refused.err
    assert "evil.bin" in refused.err
    assert cli("model", "list", "--json", token=dev).json() == []


def test_registry_commands_need_the_permission(cli: Any, admin_token: str, model_dir: Path) -> None:
    approver = cli_token_for(cli, admin_token, "ann", "approver")
    denied = cli("model", "register", "--name", "m", "--file", str(model_dir), token=approver)
    assert denied.code == 3
    missing = cli("model", "show", "nope@1", token=approver)
    assert missing.code == 4
