"""The registry over HTTP: staged, streamed uploads with their own body limit, registration,
scan rejection as 422 with findings, verified downloads with a digest header, signatures."""

from __future__ import annotations

import base64
import hashlib
import os
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


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("id",))


def _tree() -> bytes:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 4))
    return pickle.dumps(DecisionTreeClassifier(max_depth=3).fit(x, x[:, 0] > 0), protocol=4)


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    with TestClient(create_app(platform)) as c:
        yield c


@pytest.fixture
def dev(make_actor: MakeActor) -> Actor:
    return make_actor("dev", Role.MODEL_DEVELOPER)


def _upload(client: TestClient, actor: Actor, files: dict[str, bytes]) -> str:
    response = client.post("/v1/uploads", headers=actor.headers)
    assert response.status_code == 201, response.text
    upload_id: str = response.json()["id"]
    for path, data in files.items():
        put = client.put(
            f"/v1/uploads/{upload_id}/files/{path}", headers=actor.headers, content=data
        )
        assert put.status_code == 200, put.text
        assert put.json()["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    return upload_id


def _register(client: TestClient, actor: Actor, upload_id: str, **extra: object) -> object:
    body = {
        "upload_id": upload_id,
        "create_model": {"name": "tree", "purpose": "testing"},
        **extra,
    }
    return client.post("/v1/models/tree/versions", headers=actor.headers, json=body)


def test_upload_register_download_sign_verify(client: TestClient, dev: Actor) -> None:
    model = _tree()
    upload_id = _upload(client, dev, {"model.pkl": model, "docs/card.md": b"# tree\n"})
    response = _register(client, dev, upload_id, metrics={"accuracy": 0.9})
    assert response.status_code == 201, response.text
    version = response.json()
    assert version["version"] == 1
    assert version["format"] == "pickle"
    assert version["scan"]["allowlist_version"]

    got = client.get(
        "/v1/models/tree/versions/1/artifact", params={"path": "model.pkl"}, headers=dev.headers
    )
    assert got.status_code == 200
    assert got.content == model
    raw = hashlib.sha256(model).digest()
    assert got.headers["repr-digest"] == f"sha-256=:{base64.b64encode(raw).decode()}:"

    whole = client.get("/v1/models/tree/versions/1/artifact", headers=dev.headers)
    assert whole.status_code == 422
    assert whole.json()["error"]["code"] == "registry.path_required"

    bom = client.get("/v1/models/tree/versions/1/mlbom", headers=dev.headers)
    assert bom.status_code == 200
    assert bom.json()["specVersion"] == "1.6"

    signed = client.post("/v1/models/tree/versions/1/signature", headers=dev.headers)
    assert signed.status_code == 201, signed.text
    verified = client.post("/v1/models/tree/versions/1/verify", headers=dev.headers)
    assert verified.status_code == 200
    assert verified.json()["valid"] is True
    bundle = client.get("/v1/models/tree/versions/1/signature", headers=dev.headers).json()
    assert bundle["bundle"]["dsseEnvelope"]["payloadType"] == "application/vnd.in-toto+json"


def test_hostile_upload_is_422_with_findings_and_stores_nothing(
    client: TestClient, dev: Actor
) -> None:
    upload_id = _upload(client, dev, {"model.pkl": pickle.dumps(_Evil())})
    response = _register(client, dev, upload_id)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "registry.scan_rejected"
    assert error["details"]["findings"][0]["path"] == "model.pkl"
    assert client.get("/v1/models/tree", headers=dev.headers).status_code == 404
    again = _register(client, dev, upload_id)
    assert again.status_code == 409  # the rejected upload is gone, not reusable


def test_uploads_may_exceed_the_request_limit_but_not_the_artifact_limit(
    tmp_path: object, platform: Platform, dev: Actor
) -> None:
    limit = platform.settings.max_request_bytes
    client = TestClient(create_app(platform))
    big = b"\0" * (limit + 10)
    upload_id = _upload(client, dev, {"weights.bin": big})
    assert client.get(f"/v1/uploads/{upload_id}", headers=dev.headers).json()["total_bytes"] == len(
        big
    )
    # Other routes keep the small limit.
    too_big = client.post("/v1/models", headers=dev.headers, content=b"{" + b" " * limit + b"}")
    assert too_big.status_code == 413


def test_artifact_limit_is_enforced_on_the_stream(
    platform: Platform, make_actor: MakeActor
) -> None:
    platform.staging.max_bytes = 1000
    actor = make_actor("dev3", Role.MODEL_DEVELOPER)
    client = TestClient(create_app(platform))
    upload_id = client.post("/v1/uploads", headers=actor.headers).json()["id"]
    response = client.put(
        f"/v1/uploads/{upload_id}/files/big.bin", headers=actor.headers, content=b"x" * 5000
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "registry.upload_too_large"
    assert client.get(f"/v1/uploads/{upload_id}", headers=actor.headers).json()["files"] == []


def test_bad_upload_path_is_422(client: TestClient, dev: Actor) -> None:
    upload_id = client.post("/v1/uploads", headers=dev.headers).json()["id"]
    response = client.put(
        f"/v1/uploads/{upload_id}/files/a/%2E%2E/b", headers=dev.headers, content=b"x"
    )
    assert response.status_code in (404, 422)
    if response.status_code == 422:
        assert response.json()["error"]["code"] == "registry.bad_path"


def test_dataset_from_upload_and_lineage_both_ways(
    client: TestClient, make_actor: MakeActor, dev: Actor
) -> None:
    steward = make_actor("steward", Role.DATA_STEWARD)
    data = b"a,b\n1,2\n3,4\n"
    upload_id = _upload(client, steward, {"train.csv": data})
    created = client.post(
        "/v1/datasets",
        headers=steward.headers,
        json={
            "name": "pairs",
            "classification": "restricted",
            "purposes": ["testing"],
            "upload_id": upload_id,
            "retention_days": 7,
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert [c["name"] for c in created.json()["schema"]] == ["a", "b"]
    model_upload = _upload(client, dev, {"model.pkl": _tree()})
    registered = _register(client, dev, model_upload, datasets=["pairs@1:training"])
    assert registered.status_code == 201, registered.text
    users = client.get("/v1/datasets/pairs/versions/1/consumers", headers=dev.headers).json()
    assert [(u["model"], u["model_version"]) for u in users] == [("tree", 1)]
    by_model = client.get("/v1/lineage", params={"model": "tree"}, headers=dev.headers).json()
    assert by_model[0]["dataset"] == "pairs"
    assert by_model[0]["classification"] == "restricted"
    events = client.get("/v1/lineage/openlineage", headers=dev.headers)
    assert events.status_code == 200
    assert len(events.text.splitlines()) == 2
