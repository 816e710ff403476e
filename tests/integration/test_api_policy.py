"""Policy, approvals and attestations over HTTP: a release from upload to an allowed deploy
check, denials as 403 with every reason, dry runs, bundle tests and applies, decisions."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator

import numpy as np
import pytest
from sklearn.tree import DecisionTreeClassifier
from starlette.testclient import TestClient

from bastion.api import create_app
from bastion.identity import Role
from bastion.platform import Platform
from support import Actor, MakeActor

VALIDATION = "https://bastion.dev/attestations/validation/v1"
DEPLOYMENT = {"fields": {"deployment": {"endpoint": "fraud", "kind": "stable", "weight": 100}}}


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    with TestClient(create_app(platform)) as c:
        yield c


@pytest.fixture
def people(make_actor: MakeActor, admin: Actor) -> dict[str, Actor]:
    return {
        "dev": make_actor("dev", Role.MODEL_DEVELOPER),
        "a1": make_actor("a1", Role.APPROVER),
        "a2": make_actor("a2", Role.APPROVER),
        "ops": make_actor("ops", Role.DEPLOYER),
        "admin": admin,
    }


def _version(client: TestClient, dev: Actor) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 4))
    data = pickle.dumps(DecisionTreeClassifier(max_depth=3).fit(x, x[:, 0] > 0), protocol=4)
    upload = client.post("/v1/uploads", headers=dev.headers).json()["id"]
    put = client.put(f"/v1/uploads/{upload}/files/model.pkl", headers=dev.headers, content=data)
    assert put.status_code == 200, put.text
    made = client.post(
        "/v1/models/tree/versions",
        headers=dev.headers,
        json={"upload_id": upload, "create_model": {"name": "tree", "purpose": "testing"}},
    )
    assert made.status_code == 201, made.text


def _check(client: TestClient, actor: Actor) -> dict[str, object]:
    response = client.post(
        "/v1/models/tree/versions/1/checks/deploy", headers=actor.headers, json=DEPLOYMENT
    )
    assert response.status_code == 200, response.text
    decision: dict[str, object] = response.json()["decision"]
    return decision


def test_a_release_over_http(client: TestClient, people: dict[str, Actor]) -> None:
    dev, a1, ops = people["dev"], people["a1"], people["ops"]
    _version(client, dev)
    first = _check(client, ops)
    assert first["allow"] is False
    assert len(first["reasons"]) >= 3  # type: ignore[arg-type]
    unsigned = client.post("/v1/models/tree/versions/1/approvals", headers=a1.headers, json={})
    assert unsigned.status_code == 403
    error = unsigned.json()["error"]
    assert error["code"] == "policy.denied"
    assert error["details"]["gate"] == "approval_grant"
    assert any("signature" in r for r in error["details"]["reasons"])
    signed = client.post("/v1/models/tree/versions/1/signature", headers=dev.headers)
    assert signed.status_code in (200, 201), signed.text
    attested = client.post(
        "/v1/models/tree/versions/1/attestations",
        headers=dev.headers,
        json={"type": VALIDATION, "predicate": {"passed": True, "accuracy": 0.93}},
    )
    assert attested.status_code == 201, attested.text
    assert attested.json()["verified"] is True
    envelope = client.get(f"/v1/attestations/{attested.json()['id']}/envelope", headers=dev.headers)
    assert envelope.status_code == 200
    assert json.loads(envelope.content)["payloadType"] == "application/vnd.in-toto+json"
    own = client.post("/v1/models/tree/versions/1/approvals", headers=dev.headers, json={})
    assert own.status_code == 403  # developers hold no approval.grant
    wrong = client.post(
        "/v1/models/tree/versions/1/approvals",
        headers=a1.headers,
        json={"for": "deploy", "digest": "sha256:" + "0" * 64},
    )
    assert wrong.status_code == 409
    assert wrong.json()["error"]["code"] == "approval.digest_mismatch"
    approved = client.post(
        "/v1/models/tree/versions/1/approvals",
        headers=a1.headers,
        json={"for": "deploy", "comment": "reviewed the card"},
    )
    assert approved.status_code == 201, approved.text
    listed = client.get("/v1/models/tree/versions/1/approvals", headers=ops.headers).json()
    assert [(a["approver_name"], a["state"]) for a in listed] == [("a1", "valid")]
    assert _check(client, ops) == {**_check(client, ops), "allow": True, "reasons": []}
    revoked = client.post(
        f"/v1/approvals/{approved.json()['id']}/revoke", headers=a1.headers, json={"reason": "x"}
    )
    assert revoked.status_code == 200
    assert revoked.json()["state"] == "revoked"
    assert _check(client, ops)["allow"] is False
    decisions = client.get(
        "/v1/policy/decisions", params={"gate": "approval_grant"}, headers=ops.headers
    ).json()
    assert [d["allow"] for d in decisions] == [True, False]  # newest first


def test_dry_run_evaluate_and_bundle_routes(client: TestClient, people: dict[str, Actor]) -> None:
    admin, ops = people["admin"], people["ops"]
    info = client.get("/v1/policy", headers=ops.headers).json()
    assert info["version"] == 0
    assert "gates/deploy.rego" in info["files"]
    evaluated = client.post(
        "/v1/policy/evaluate", headers=ops.headers, json={"gate": "deploy", "input": {}}
    )
    assert evaluated.status_code == 200
    assert evaluated.json()["decision"]["allow"] is False
    unknown = client.post(
        "/v1/policy/evaluate", headers=ops.headers, json={"gate": "launch", "input": {}}
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "policy.unknown_gate"
    files = client.get("/v1/policy/bundles/0/files", headers=ops.headers).json()
    tested = client.post("/v1/policy/test", headers=ops.headers, json={"files": files})
    assert tested.status_code == 200
    assert tested.json()["ok"] is True
    assert tested.json()["passed"] >= 50
    denied = client.post("/v1/policy/bundles", headers=ops.headers, json={"files": files})
    assert denied.status_code == 403
    bad = dict(files, **{"gates/deploy.rego": "package bastion.gates.deploy\nallow if {\n"})
    refused = client.post("/v1/policy/bundles", headers=admin.headers, json={"files": bad})
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] in ("policy.tests_failed", "policy.syntax")
    applied = client.post("/v1/policy/bundles", headers=admin.headers, json={"files": files})
    assert applied.status_code == 201, applied.text
    assert applied.json()["version"] == 1
    assert [b["version"] for b in client.get("/v1/policy/bundles", headers=ops.headers).json()] == [
        1
    ]
    junk = client.post("/v1/policy/bundles", headers=admin.headers, json={"files": {"a.txt": "x"}})
    assert junk.status_code == 422
    assert junk.json()["error"]["code"] == "policy.invalid_bundle"
