"""The CLI of registration-time contracts and conversion, deployments and receipts: the real
entry point against a real home (SQLite), with real exit codes."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import skops.io as sio

from models import logistic
from support import cli_token_for

VALIDATION = "https://bastion.dev/attestations/validation/v1"


@pytest.fixture
def tokens(cli: Any, admin_token: str) -> dict[str, str]:
    return {
        "admin": admin_token,
        "dev": cli_token_for(cli, admin_token, "dev", "model-developer"),
        "bob": cli_token_for(cli, admin_token, "bob", "approver"),
        "ops": cli_token_for(cli, admin_token, "ops", "deployer"),
        "steward": cli_token_for(cli, admin_token, "sam", "data-steward"),
    }


@pytest.fixture
def training(tmp_path: Path) -> tuple[Path, Path]:
    """The training CSV (30 features and `label`) and the fitted model as a skops file."""
    trained = logistic()
    path = tmp_path / "train.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*trained.names, "label"])
        for row, label in zip(trained.x, trained.y, strict=True):
            writer.writerow([*(repr(float(v)) for v in row), int(label)])
    model = tmp_path / "model.skops"
    model.write_bytes(sio.dumps(trained.estimator))
    return path, model


def _release(cli: Any, tokens: dict[str, str], tmp_path: Path, number: int) -> None:
    assert cli("model", "sign", f"scorer@{number}", token=tokens["dev"]).code == 0
    predicate = tmp_path / "validation.json"
    predicate.write_text(json.dumps({"passed": True}))
    attest = cli(
        "attest", "scorer", str(number), "--type", VALIDATION, "--file", str(predicate),
        token=tokens["dev"],
    )  # fmt: skip
    assert attest.code == 0, attest.err
    assert cli("approve", "scorer", str(number), token=tokens["bob"]).code == 0


def test_register_converts_to_onnx_with_the_derived_contract(
    cli: Any, tokens: dict[str, str], training: tuple[Path, Path]
) -> None:
    csv_path, model = training
    done = cli(
        "model", "register", "--name", "scorer", "--file", str(model), "--onnx",
        "--training-csv", str(csv_path), "--target", "label", "--json", token=tokens["dev"],
    )  # fmt: skip
    assert done.code == 0, done.err
    assert "converted model.skops to ONNX: 256 rows checked, 0 label mismatches" in done.err
    version = done.json()
    assert {f["path"] for f in version["files"]} >= {"model.skops", "model.onnx"}
    names = [f["name"] for f in version["input_contract"]["fields"]]
    assert len(names) == 30
    assert "label" not in names
    assert model.parent.joinpath("model.onnx").exists() is False  # the user's files untouched


def test_onnx_needs_a_contract_and_training_csv_needs_a_target(
    cli: Any, tokens: dict[str, str], training: tuple[Path, Path]
) -> None:
    csv_path, model = training
    no_contract = cli(
        "model", "register", "--name", "scorer", "--file", str(model), "--onnx",
        token=tokens["dev"],
    )  # fmt: skip
    assert no_contract.code == 2
    assert "cli.bad_option" in no_contract.err
    no_target = cli(
        "model", "register", "--name", "scorer", "--file", str(model),
        "--training-csv", str(csv_path), token=tokens["dev"],
    )  # fmt: skip
    assert no_target.code == 2
    bad_target = cli(
        "model", "register", "--name", "scorer", "--file", str(model),
        "--training-csv", str(csv_path), "--target", "nope", token=tokens["dev"],
    )  # fmt: skip
    assert bad_target.code == 2
    assert "contract.bad_data" in bad_target.err


def test_an_invalid_contract_is_refused_at_registration(
    cli: Any, tokens: dict[str, str], training: tuple[Path, Path], tmp_path: Path
) -> None:
    _, model = training
    contract = tmp_path / "contract.json"
    contract.write_text(json.dumps({"contract_version": 1, "fields": [{"name": "a b"}]}))
    done = cli(
        "model", "register", "--name", "scorer", "--file", str(model),
        "--input-contract", str(contract), token=tokens["dev"],
    )  # fmt: skip
    assert done.code == 2
    assert "contract.invalid" in done.err
    assert cli("model", "versions", "scorer", token=tokens["dev"]).code == 4


def test_the_server_derives_the_contract_from_the_training_dataset(
    cli: Any, tokens: dict[str, str], training: tuple[Path, Path]
) -> None:
    csv_path, model = training
    registered = cli(
        "dataset", "register", "cancer", "--classification", "internal", "--purpose",
        "scoring", "--file", str(csv_path), token=tokens["steward"],
    )  # fmt: skip
    assert registered.code == 0, registered.err
    done = cli(
        "model", "register", "--name", "scorer", "--file", str(model), "--purpose", "scoring",
        "--dataset", "cancer:training", "--target", "label", "--json", token=tokens["dev"],
    )  # fmt: skip
    assert done.code == 0, done.err
    fields = {f["name"]: f for f in done.json()["input_contract"]["fields"]}
    assert len(fields) == 30
    assert fields["mean_radius"]["type"] == "number"
    assert fields["mean_radius"]["min"] == pytest.approx(6.981)
    without = cli(
        "model", "register", "--name", "scorer", "--file", str(model), "--target", "label",
        token=tokens["dev"],
    )  # fmt: skip
    assert without.code == 2
    assert "registry.no_training_data" in without.err


def test_deploy_rollout_and_kill_through_the_cli(
    cli: Any, tokens: dict[str, str], training: tuple[Path, Path], tmp_path: Path
) -> None:
    csv_path, model = training
    for _ in range(2):
        done = cli(
            "model", "register", "--name", "scorer", "--file", str(model), "--onnx",
            "--training-csv", str(csv_path), "--target", "label", token=tokens["dev"],
        )  # fmt: skip
        assert done.code == 0, done.err
    _release(cli, tokens, tmp_path, 1)
    denied = cli("deploy", "fraud", "scorer@2", token=tokens["ops"])
    assert denied.code == 3
    assert "policy.denied" in denied.err
    assert cli("deploy", "fraud", "scorer", token=tokens["ops"]).code == 2  # no version given
    assert cli("deploy", "fraud", "scorer@1", token=tokens["dev"]).code == 3  # not a deployer
    first = cli("deploy", "fraud", "scorer@1", "--json", token=tokens["ops"])
    assert first.code == 0, first.err
    assert first.json()["stable"]["number"] == 1
    _release(cli, tokens, tmp_path, 2)
    both = cli(
        "deploy", "fraud", "scorer@2", "--canary", "5", "--linear", "10", token=tokens["ops"]
    )
    assert both.code == 2
    canary = cli("deploy", "fraud", "scorer@2", "--canary", "25", token=tokens["ops"])
    assert canary.code == 0, canary.err
    assert "canary v2 at 25%" in canary.out
    assert cli("rollout", "pause", "fraud", token=tokens["ops"]).code == 0
    assert cli("rollout", "resume", "fraud", token=tokens["ops"]).code == 0
    promoted = cli("rollout", "promote", "fraud", "--json", token=tokens["ops"])
    assert promoted.json()["stable"]["number"] == 2
    back = cli("rollout", "rollback", "fraud", "--reason", "slow", "--json", token=tokens["ops"])
    assert back.json()["stable"]["number"] == 1
    shadow = cli("endpoint", "shadow", "fraud", "2", "--share", "50", token=tokens["ops"])
    assert shadow.code == 0, shadow.err
    assert "shadow v2 (50% mirrored)" in shadow.out
    assert cli("endpoint", "shadow", "fraud", "--off", token=tokens["ops"]).code == 0
    assert cli("endpoint", "shadow", "fraud", token=tokens["ops"]).code == 2
    assert cli("endpoint", "kill", "fraud", "--reason", "drill", token=tokens["ops"]).code == 0
    assert cli("endpoint", "kill", "fraud", token=tokens["ops"]).code == 5  # already killed
    assert cli("endpoint", "revive", "fraud", token=tokens["ops"]).code == 0
    history = cli("endpoint", "history", "fraud", "--json", token=tokens["ops"]).json()
    assert [e["action"] for e in history][:4] == ["revive", "kill", "shadow_clear", "shadow_set"]
    listed = cli("endpoint", "list", "--json", token=tokens["ops"]).json()
    assert [e["name"] for e in listed] == ["fraud"]
    assert cli("endpoint", "show", "nope", token=tokens["ops"]).code == 4
    assert cli("audit", "verify", token=tokens["admin"]).code == 0
