"""KEK rotation through the service, the API and the CLI: authorised, audited, lossless."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from bastion.api import create_app
from bastion.core.errors import PermissionDenied
from bastion.identity import Role
from bastion.platform import Platform
from support import Actor, MakeActor


def test_rotation_keeps_blobs_and_tokens_working(platform: Platform, admin: Actor) -> None:
    caller = platform.tokens.authenticate(admin.token)
    sealed = platform.blobs.put("datasets/iris.csv", b"sepal_length,species\n5.1,setosa\n")
    before = platform.keys.status(caller)
    report = platform.keys.rotate(caller)
    assert report.retired_kek_ids == (before.active_kek_id,)
    assert report.rewrapped_data_keys == before.data_keys >= 1
    assert report.rewrapped_named_keys >= 1  # the token pepper
    assert platform.keys.status(caller).active_kek_id == report.new_kek_id
    assert platform.blobs.get("datasets/iris.csv").startswith(b"sepal_length")
    assert sealed.key_id in platform.keystore.list_data_keys()
    # The token pepper survived: tokens still verify (reopen to bypass every cache).
    with Platform.from_settings(platform.settings, clock=platform.clock) as reopened:
        assert reopened.tokens.authenticate(admin.token).name == "root-admin"
    with platform.database.read() as session:
        events = platform.audit.events(session, types=["crypto.kek.rotated"])
    assert [e.subject for e in events] == [f"kek:{report.new_kek_id}"]
    assert json.loads(events[0].body)["data"]["retired"] == [before.active_kek_id]


def test_only_key_managers_rotate(platform: Platform, make_actor: MakeActor) -> None:
    auditor = make_actor("aud", Role.AUDITOR)
    kek = platform.keystore.active_kek_id()
    with pytest.raises(PermissionDenied):
        platform.keys.rotate(platform.tokens.authenticate(auditor.token))
    assert platform.keystore.active_kek_id() == kek
    response = TestClient(create_app(platform)).post("/v1/keys/rotate", headers=auditor.headers)
    assert response.status_code == 403
    assert platform.keystore.active_kek_id() == kek


def test_rotate_over_http(platform: Platform, admin: Actor) -> None:
    client = TestClient(create_app(platform))
    status = client.get("/v1/keys", headers=admin.headers).json()
    rotated = client.post("/v1/keys/rotate", headers=admin.headers)
    assert rotated.status_code == 200
    assert rotated.json()["retired_kek_ids"] == [status["active_kek_id"]]
    assert client.get("/v1/auth/whoami", headers=admin.headers).status_code == 200
