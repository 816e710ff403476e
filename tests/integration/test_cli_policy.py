"""`bastion policy test|apply|eval|check|show|decisions`, `bastion approve|approvals|attest`,
`bastion approval revoke`: a release from the command line, and the exit codes (policy
eval/check/test: 0 allow or pass, 1 deny or fail, 2 unusable input)."""

from __future__ import annotations

import json
import pickle
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from support import cli_token_for

VALIDATION = "https://bastion.dev/attestations/validation/v1"


def _default_bundle(tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    with resources.as_file(resources.files("bastion.policy").joinpath("default")) as source:
        shutil.copytree(source, target)
    return target


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 3))
    root = tmp_path / "model"
    root.mkdir()
    model = LogisticRegression().fit(x, x[:, 0] > 0)
    (root / "model.pkl").write_bytes(pickle.dumps(model, protocol=5))
    return root


def test_policy_test_and_eval_need_no_home(cli: Any, tmp_path: Path) -> None:
    bundle = _default_bundle(tmp_path)
    ok = cli("policy", "test", str(bundle))
    assert ok.code == 0, ok.out + ok.err
    assert "0 failed, 0 errors" in ok.out
    (bundle / "tests" / "broken_test.rego").write_text(
        "package broken_test\nimport rego.v1\ntest_fails if { false }\n"
    )
    failing = cli("policy", "test", str(bundle), "--json")
    assert failing.code == 1
    assert failing.json()["failed"] == 1
    assert cli("policy", "test", str(tmp_path / "missing")).code == 2
    example = tmp_path / "input.json"
    example.write_text(json.dumps({"version": 1, "gate": "deploy"}))
    denied = cli("policy", "eval", "--gate", "deploy", "--input", str(example), "--default")
    assert denied.code == 1
    assert "DENY" in denied.out
    assert "the input has no version object" in denied.out
    allow_all = tmp_path / "lax"
    allow_all.mkdir()
    (allow_all / "deploy.rego").write_text("package bastion.gates.deploy\nallow := true\n")
    allowed = cli(
        "policy", "eval", "--gate", "deploy", "--input", str(example), "--bundle", str(allow_all)
    )
    assert allowed.code == 0
    assert "ALLOW" in allowed.out
    example.write_text("{not json")
    assert cli("policy", "eval", "--gate", "deploy", "--input", str(example), "--default").code == 2
    example.write_text("{}")
    assert cli("policy", "eval", "--gate", "nope", "--input", str(example), "--default").code == 2


def test_a_release_from_the_command_line(
    cli: Any, admin_token: str, model_dir: Path, tmp_path: Path
) -> None:
    dev = cli_token_for(cli, admin_token, "dev", "model-developer")
    steward = cli_token_for(cli, admin_token, "steward", "data-steward")
    a1 = cli_token_for(cli, admin_token, "a1", "approver")
    a2 = cli_token_for(cli, admin_token, "a2", "approver")
    ops = cli_token_for(cli, admin_token, "ops", "deployer")
    data = tmp_path / "loans.csv"
    data.write_text("age,income\n30,1\n40,2\n")
    made = cli(
        "dataset", "register", "loans", "--classification", "confidential",
        "--purpose", "credit", "--file", str(data), token=steward,
    )  # fmt: skip
    assert made.code == 3  # confidential data needs a retention period: policy.denied
    assert "retention" in made.err
    assert cli(
        "dataset", "register", "loans", "--classification", "confidential",
        "--purpose", "credit", "--file", str(data), "--retention", "90d", token=steward,
    ).code == 0  # fmt: skip
    registered = cli(
        "model", "register", "--name", "scorer", "--file", str(model_dir),
        "--dataset", "loans", "--purpose", "credit", token=dev,
    )  # fmt: skip
    assert registered.code == 0, registered.err
    fields = tmp_path / "fields.json"
    fields.write_text(
        json.dumps({"deployment": {"endpoint": "fraud", "kind": "stable", "weight": 100}})
    )
    check = ("policy", "check", "deploy", "scorer@1", "--fields", str(fields))
    first = cli(*check, token=ops)
    assert first.code == 1
    assert "needs 2 approvals" in first.out
    assert cli("model", "sign", "scorer@1", token=dev).code == 0
    predicate = tmp_path / "validation.json"
    predicate.write_text(json.dumps({"passed": True, "auc": 0.92}))
    attested = cli(
        "attest", "scorer", "1", "--type", VALIDATION, "--file", str(predicate), token=dev
    )
    assert attested.code == 0, attested.err
    assert "verified" in attested.out
    audited = tmp_path / "mia.json"  # confidential lineage: a membership-inference audit too
    audited.write_text(json.dumps({"auc_upper": 0.55}))
    mia = "https://bastion.dev/attestations/membership-inference/v1"
    assert cli("attest", "scorer", "1", "--type", mia, "--file", str(audited), token=dev).code == 0
    assert cli("approve", "scorer", "1", "--comment", "fine", token=dev).code == 3  # no role
    assert cli("approve", "scorer", "1", token=a1).code == 0
    again = cli("approve", "scorer", "1", token=a1)
    assert again.code == 3
    assert "already approved" in again.err
    assert cli("approve", "scorer", "1", "--digest", "sha256:" + "0" * 64, token=a2).code == 5
    assert cli("approve", "scorer", "1", token=a2).code == 0
    listed = cli("approvals", "scorer", "1", "--json", token=ops)
    assert {a["approver_name"] for a in listed.json()} == {"a1", "a2"}
    allowed = cli(*check, token=ops)
    assert allowed.code == 0, allowed.out
    assert "ALLOW" in allowed.out
    approval_id = next(a["id"] for a in listed.json() if a["approver_name"] == "a1")
    assert cli("approval", "revoke", approval_id, "--reason", "retracted", token=a1).code == 0
    assert cli(*check, token=ops).code == 1
    decisions = cli("policy", "decisions", "--gate", "approval_grant", "--json", token=ops)
    assert decisions.code == 0
    assert sum(1 for d in decisions.json() if d["allow"]) == 2


def test_apply_and_show(cli: Any, admin_token: str, tmp_path: Path) -> None:
    dev = cli_token_for(cli, admin_token, "dev", "model-developer")
    bundle = _default_bundle(tmp_path)
    assert cli("policy", "apply", str(bundle), token=dev).code == 3
    (bundle / "gates" / "deploy.rego").write_text("package bastion.gates.deploy\nallow if {\n")
    broken = cli("policy", "apply", str(bundle), token=admin_token)
    assert broken.code == 2
    shown = cli("policy", "show", "--json", token=admin_token)
    assert shown.json()["active"]["version"] == 0
    fresh = _default_bundle(tmp_path / "again")
    applied = cli("policy", "apply", str(fresh), token=admin_token)
    assert applied.code == 0, applied.err
    assert "version 1" in applied.out
    shown = cli("policy", "show", token=admin_token)
    assert "active: version 1" in shown.out
