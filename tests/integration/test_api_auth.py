"""Tokens and principals through the HTTP API, including every rejection the issue lists."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from bastion.api import create_app
from bastion.core import ManualClock, Settings
from bastion.identity import Role
from bastion.identity.tokens import format_token
from bastion.platform import Platform
from support import Actor, MakeActor


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    with TestClient(create_app(platform)) as c:
        yield c


def _error(response: object, status: int, code: str) -> None:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def test_whoami(client: TestClient, admin: Actor) -> None:
    body = client.get("/v1/auth/whoami", headers=admin.headers).json()
    assert body["name"] == "root-admin"
    assert body["roles"] == ["admin"]
    assert "principal.manage" in body["permissions"]
    assert "approval.grant" not in body["permissions"]  # admin does not approve
    assert body["token_id"] == admin.issued.info.id


def test_health_and_headers(client: TestClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "trace-123"})
    assert response.json()["status"] == "ok"
    assert response.headers["x-request-id"] == "trace-123"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert client.get("/readyz").json() == {"status": "ready"}
    # A hostile request id is replaced, not echoed.
    assert (
        client.get("/healthz", headers={"X-Request-ID": "a\tb"}).headers["x-request-id"] != "a\tb"
    )


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "auth.token_missing"),
        ("Bearer", "auth.token_malformed"),
        ("Basic dXNlcjpwdw==", "auth.token_malformed"),
        ("Bearer bst_short", "auth.token_malformed"),
        ("Bearer ghp_" + "a" * 72, "auth.token_malformed"),
    ],
)
def test_bad_credentials(client: TestClient, header: str | None, code: str) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.get("/v1/auth/whoami", headers=headers)
    _error(response, 401, code)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_checksum_and_secret_mismatch(client: TestClient, admin: Actor) -> None:
    token = admin.token
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    _error(
        client.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {flipped}"}),
        401,
        "auth.token_malformed",
    )
    # Right id, wrong secret, valid checksum: unknown (no hint that the id exists).
    forged = format_token(admin.issued.info.id, "x" * 40)
    _error(
        client.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {forged}"}),
        401,
        "auth.token_unknown",
    )
    unknown = format_token("tok_01M80WJ28HHX8X317N443JEJ86", "y" * 40)  # type: ignore[arg-type]
    _error(
        client.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {unknown}"}),
        401,
        "auth.token_unknown",
    )


def test_token_lifecycle(client: TestClient, admin: Actor, clock: ManualClock) -> None:
    created = client.post(
        "/v1/auth/tokens", headers=admin.headers, json={"name": "ci", "ttl_seconds": 600}
    )
    assert created.status_code == 201
    token, info = created.json()["token"], created.json()["info"]
    assert token.startswith("bst_")
    assert "token" not in info
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/auth/whoami", headers=headers).status_code == 200
    listed = client.get("/v1/auth/tokens", headers=admin.headers).json()
    assert info["id"] in {t["id"] for t in listed}
    assert all("secret" not in t and "token" not in t for t in listed)

    revoked = client.delete(f"/v1/auth/tokens/{info['id']}", headers=admin.headers)
    assert revoked.json()["state"] == "revoked"
    _error(client.get("/v1/auth/whoami", headers=headers), 401, "auth.token_revoked")
    # Revoking twice is harmless.
    assert client.delete(f"/v1/auth/tokens/{info['id']}", headers=admin.headers).status_code == 200


def test_expiry(client: TestClient, admin: Actor, clock: ManualClock) -> None:
    created = client.post("/v1/auth/tokens", headers=admin.headers, json={"ttl_seconds": 60})
    headers = {"Authorization": f"Bearer {created.json()['token']}"}
    assert client.get("/v1/auth/whoami", headers=headers).status_code == 200  # now cached
    clock.advance(timedelta(seconds=61))
    _error(client.get("/v1/auth/whoami", headers=headers), 401, "auth.token_expired")


def test_rotation_with_grace(client: TestClient, admin: Actor, clock: ManualClock) -> None:
    old = client.post("/v1/auth/tokens", headers=admin.headers, json={"ttl_seconds": 3600}).json()
    old_headers = {"Authorization": f"Bearer {old['token']}"}
    rotated = client.post(
        f"/v1/auth/tokens/{old['info']['id']}/rotate",
        headers=admin.headers,
        json={"grace_seconds": 300},
    )
    assert rotated.status_code == 201
    new = rotated.json()
    assert new["info"]["rotated_from"] == old["info"]["id"]
    new_headers = {"Authorization": f"Bearer {new['token']}"}
    assert client.get("/v1/auth/whoami", headers=new_headers).status_code == 200
    assert client.get("/v1/auth/whoami", headers=old_headers).status_code == 200  # in grace
    _error(
        client.post(f"/v1/auth/tokens/{old['info']['id']}/rotate", headers=admin.headers),
        409,
        "auth.token_rotated",
    )
    clock.advance(timedelta(seconds=301))
    _error(client.get("/v1/auth/whoami", headers=old_headers), 401, "auth.token_expired")
    assert client.get("/v1/auth/whoami", headers=new_headers).status_code == 200


def test_token_cannot_escalate(client: TestClient, make_actor: MakeActor) -> None:
    dev = make_actor("dev", Role.MODEL_DEVELOPER)
    _error(
        client.post("/v1/auth/tokens", headers=dev.headers, json={"roles": ["admin"]}),
        422,
        "auth.bad_roles",
    )
    _error(
        client.post("/v1/auth/tokens", headers=dev.headers, json={"roles": ["wizard"]}),
        422,
        "identity.unknown_role",
    )
    _error(
        client.post("/v1/auth/tokens", headers=dev.headers, json={"ttl_seconds": 10**9}),
        422,
        "auth.bad_ttl",
    )
    _error(
        client.post("/v1/auth/tokens", headers=dev.headers, json={"resources": ["not a scope"]}),
        422,
        "auth.bad_scope",
    )
    # A child token never outlives its parent.
    child = client.post(
        "/v1/auth/tokens", headers=dev.headers, json={"ttl_seconds": 80 * 24 * 3600}
    ).json()["info"]
    assert child["expires_at"] == dev.issued.info.expires_at.isoformat().replace("+00:00", "Z")


def test_scoped_token_cannot_widen(client: TestClient, make_actor: MakeActor) -> None:
    svc = make_actor("svc", Role.INFERENCE_CLIENT, kind="service", resources=("endpoint:fraud",))
    _error(
        client.post("/v1/auth/tokens", headers=svc.headers, json={"resources": ["endpoint:*"]}),
        422,
        "auth.bad_scope",
    )
    child = client.post("/v1/auth/tokens", headers=svc.headers, json={}).json()["info"]
    assert child["resources"] == ["endpoint:fraud"]


def test_issuing_for_others_needs_token_manage(
    client: TestClient, admin: Actor, make_actor: MakeActor
) -> None:
    approver = make_actor("appr", Role.APPROVER)
    dev = make_actor("dev2", Role.MODEL_DEVELOPER)
    _error(
        client.post("/v1/auth/tokens", headers=approver.headers, json={"principal": "dev2"}),
        403,
        "auth.denied",
    )
    _error(
        client.get(f"/v1/auth/tokens?principal={dev.principal.id}", headers=approver.headers),
        403,
        "auth.denied",
    )
    _error(
        client.delete(f"/v1/auth/tokens/{dev.issued.info.id}", headers=approver.headers),
        403,
        "auth.denied",
    )
    made = client.post("/v1/auth/tokens", headers=admin.headers, json={"principal": "dev2"})
    assert made.status_code == 201
    assert made.json()["info"]["roles"] == ["model-developer"]


def test_principals_and_disable(client: TestClient, admin: Actor, make_actor: MakeActor) -> None:
    alice = make_actor("alice", Role.APPROVER)
    assert client.get("/v1/auth/whoami", headers=alice.headers).status_code == 200
    names = [p["name"] for p in client.get("/v1/auth/principals", headers=admin.headers).json()]
    assert {"root-admin", "alice"} <= set(names)
    assert client.post("/v1/auth/principals/alice/disable", headers=admin.headers).json()[
        "disabled"
    ]
    _error(client.get("/v1/auth/whoami", headers=alice.headers), 401, "auth.principal_disabled")
    client.post("/v1/auth/principals/alice/enable", headers=admin.headers)
    assert client.get("/v1/auth/whoami", headers=alice.headers).status_code == 200


def test_role_removal_takes_effect_at_once(
    client: TestClient, admin: Actor, make_actor: MakeActor
) -> None:
    aud = make_actor("aud", Role.AUDITOR)
    assert client.get("/v1/audit/events", headers=aud.headers).status_code == 200
    client.put(
        "/v1/auth/principals/aud/roles", headers=admin.headers, json={"roles": ["inference-client"]}
    )
    _error(client.get("/v1/audit/events", headers=aud.headers), 403, "auth.denied")


def test_principal_rejections(client: TestClient, admin: Actor) -> None:
    ok = client.post(
        "/v1/auth/principals", headers=admin.headers, json={"name": "bob", "roles": ["deployer"]}
    )
    assert ok.status_code == 201
    _error(
        client.post("/v1/auth/principals", headers=admin.headers, json={"name": "bob"}),
        409,
        "identity.principal_exists",
    )
    _error(
        client.post("/v1/auth/principals", headers=admin.headers, json={"name": "../etc"}),
        422,
        "identity.bad_name",
    )
    _error(
        client.post(
            "/v1/auth/principals", headers=admin.headers, json={"name": "carol", "roles": ["root"]}
        ),
        422,
        "identity.unknown_role",
    )
    _error(
        client.post(
            "/v1/auth/principals", headers=admin.headers, json={"name": "dave", "is_admin": True}
        ),
        422,
        "input.invalid",
    )
    _error(
        client.get("/v1/auth/principals/nobody", headers=admin.headers),
        404,
        "identity.principal_not_found",
    )
    assert "carol" not in {
        p["name"] for p in client.get("/v1/auth/principals", headers=admin.headers).json()
    }


def test_segregation_and_last_admin(
    client: TestClient, admin: Actor, make_actor: MakeActor
) -> None:
    _error(
        client.post("/v1/auth/principals/root-admin/disable", headers=admin.headers),
        403,
        "auth.sod_violation",
    )
    _error(
        client.put(
            "/v1/auth/principals/root-admin/roles",
            headers=admin.headers,
            json={"roles": ["admin", "approver"]},
        ),
        403,
        "auth.sod_violation",
    )
    second = make_actor("second-admin", Role.ADMIN)
    # The second admin may remove the first, but then nobody may remove the second.
    assert (
        client.put(
            "/v1/auth/principals/root-admin/roles",
            headers=second.headers,
            json={"roles": ["auditor"]},
        ).status_code
        == 200
    )
    make_actor("helper", Role.AUDITOR)
    _error(
        client.put("/v1/auth/principals/helper/roles", headers=admin.headers, json={"roles": []}),
        403,
        "auth.denied",
    )  # root-admin lost admin at once


def test_last_admin_cannot_be_disabled(
    platform: Platform, admin: Actor, make_actor: MakeActor
) -> None:
    second = make_actor("second-admin", Role.ADMIN)
    client = TestClient(create_app(platform))
    assert (
        client.post("/v1/auth/principals/root-admin/disable", headers=second.headers).status_code
        == 200
    )
    # root-admin is disabled; second-admin is now the only enabled admin. A new admin whose
    # roles we then strip cannot disable second-admin either.
    third = make_actor("third-admin", Role.ADMIN)
    client.put(
        "/v1/auth/principals/third-admin/roles", headers=second.headers, json={"roles": ["auditor"]}
    )
    _error(
        client.post("/v1/auth/principals/second-admin/disable", headers=third.headers),
        403,
        "auth.denied",
    )
    assert client.get("/v1/auth/whoami", headers=second.headers).status_code == 200


def test_body_limits(platform: Platform, admin: Actor, tmp_path: object) -> None:
    client = TestClient(create_app(platform))
    before = len(client.get("/v1/auth/principals", headers=admin.headers).json())
    big = b'{"name": "x", "description": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    response = client.post(
        "/v1/auth/principals",
        headers={**admin.headers, "Content-Type": "application/json"},
        content=big,
    )
    _error(response, 413, "input.too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        yield b'{"name": "y", "description": "'
        for _ in range(40):
            yield b"b" * 65536
        yield b'"}'

    streamed = client.post(
        "/v1/auth/principals",
        headers={**admin.headers, "Content-Type": "application/json"},
        content=chunks(),
    )
    _error(streamed, 413, "input.too_large")
    assert len(client.get("/v1/auth/principals", headers=admin.headers).json()) == before


def test_unknown_route_and_method(client: TestClient) -> None:
    _error(client.get("/v1/nothing-here"), 404, "http.not_found")
    _error(client.put("/healthz"), 405, "http.method_not_allowed")


def test_audit_trail_has_no_secrets(client: TestClient, admin: Actor) -> None:
    issued = client.post(
        "/v1/auth/tokens",
        headers={**admin.headers, "X-Request-ID": "req-42"},
        json={"name": "audited"},
    ).json()
    events = client.get("/v1/audit/events", headers=admin.headers).json()
    created = [e for e in events if e["subject"] == f"token:{issued['info']['id']}"]
    assert [e["type"] for e in created] == ["identity.token.created"]
    assert created[0]["request_id"] == "req-42"
    assert created[0]["actor"] == admin.principal.id
    for event in events:
        assert issued["token"] not in event["body"]
        assert admin.token not in event["body"]
        # The id part may appear (as tok_...); the secret part never does.
        assert issued["token"][30:70] not in event["body"]


def test_second_replica_sees_revocation(
    settings: Settings, platform: Platform, admin: Actor, clock: ManualClock
) -> None:
    """Another process on the same database honours a revocation within its cache window."""
    replica_settings = Settings.from_env(
        home=settings.home, database_url=settings.database_url, auth_cache_seconds=0
    )
    with Platform.from_settings(replica_settings, clock=clock) as replica:
        caller = replica.tokens.authenticate(admin.token)
        assert caller.name == "root-admin"
        platform.tokens.revoke(platform.tokens.authenticate(admin.token), admin.issued.info.id)
        with pytest.raises(Exception, match="revoked"):
            replica.tokens.authenticate(admin.token)
