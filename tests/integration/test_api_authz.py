"""Authorization matrix: every route x every role → allowed or denied as the permission table says.

The expected outcome is computed from `PERMISSIONS`, the single source of truth, and from the
permission each route declares; the app refuses to build a route that declares none. Then
every route is called by a token of every role and must be denied (403 `auth.denied`) exactly
when the role lacks the permission, and must get past authorization otherwise.
"""

from __future__ import annotations

import re

import pytest
from fastapi import APIRouter, FastAPI
from starlette.testclient import TestClient

from bastion.api import create_app
from bastion.api.app import PUBLIC_PATHS
from bastion.api.deps import PERMISSION_KEY, CurrentCaller
from bastion.identity import PERMISSIONS, Permission, Role
from bastion.platform import Platform
from support import Actor, MakeActor

# Sample bodies so an allowed call reaches the service (its outcome there is not the point).
BODIES: dict[tuple[str, str], dict[str, object]] = {
    ("POST", "/v1/auth/tokens"): {"ttl_seconds": 60},
    ("POST", "/v1/auth/principals"): {"name": "matrix-new", "roles": []},
    ("PUT", "/v1/auth/principals/{ref}/roles"): {"roles": ["auditor"]},
    ("POST", "/v1/auth/tokens/{token_id}/rotate"): {},
}


_ROGUE = APIRouter()


@_ROGUE.get("/v1/rogue")
def _rogue(caller: CurrentCaller) -> dict[str, str]:
    return {"who": caller.name}


def _routes(app: FastAPI) -> list[tuple[str, str, Permission]]:
    found = []
    for path, operations in app.openapi()["paths"].items():
        if path in PUBLIC_PATHS:
            continue
        for method, operation in operations.items():
            found.append((method.upper(), path, Permission(operation[PERMISSION_KEY])))
    return sorted(found)


def test_every_route_declares_a_permission(platform: Platform) -> None:
    routes = _routes(create_app(platform))
    assert len(routes) >= 12
    paths = {p for _, p, _ in routes}
    assert {"/v1/auth/whoami", "/v1/auth/tokens", "/v1/auth/principals"} <= paths
    assert "/v1/audit/events" in paths


def test_app_refuses_a_route_without_permission(platform: Platform) -> None:
    from fastapi import APIRouter

    from bastion.api.app import _check_routes

    rogue = APIRouter()

    @rogue.get("/v1/rogue")
    def _rogue() -> dict[str, str]:
        return {}

    app = create_app(platform)
    app.include_router(rogue)
    app.openapi_schema = None
    with pytest.raises(RuntimeError, match="GET /v1/rogue declares no permission"):
        _check_routes(app)


def test_undeclared_route_is_denied_at_runtime(platform: Platform, admin: Actor) -> None:
    """Even if the build-time check were bypassed, the dependency refuses the call."""
    app = create_app(platform)
    app.include_router(_ROGUE)
    response = TestClient(app).get("/v1/rogue", headers=admin.headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "auth.denied"


@pytest.mark.parametrize("role", list(Role))
def test_authorization_matrix(
    role: Role, platform: Platform, admin: Actor, make_actor: MakeActor
) -> None:
    app = create_app(platform)
    actor = make_actor(f"matrix-{role.value}", role)
    # A target that is never the caller, so self-service exemptions do not blur the matrix.
    other = make_actor("matrix-target", Role.AUDITOR)
    # Token routes act on a second token of the caller, so revoking it cannot end the run.
    spare = platform.tokens.create(platform.tokens.authenticate(actor.token), name="spare")
    held = PERMISSIONS[role]
    checked = 0
    with TestClient(app) as client:
        for method, path, perm in _routes(app):
            url = path.replace("{ref}", other.principal.name).replace("{token_id}", spare.info.id)
            body = BODIES.get((method, path))
            response = client.request(method, url, headers=actor.headers, json=body)
            if perm in held:
                assert response.status_code not in (401, 403), (
                    f"{role} should pass {method} {path} ({perm}): {response.text}"
                )
            else:
                assert response.status_code == 403, f"{role} must be denied {method} {path}"
                body = response.json()
                # The Open Inference Protocol's error is a string, its code beside it.
                code = body["code"] if path.startswith("/v2/") else body["error"]["code"]
                assert code == "auth.denied"
            checked += 1
    assert checked >= 12


def test_denials_and_failures_are_counted(platform: Platform, make_actor: MakeActor) -> None:
    client = TestClient(create_app(platform))
    client_actor = make_actor("counted", Role.INFERENCE_CLIENT)
    before = platform.access_counters.snapshot()
    assert client.get("/v1/auth/principals", headers=client_actor.headers).status_code == 403
    assert client.get("/v1/auth/whoami").status_code == 401
    bad = {"Authorization": "Bearer nope"}
    assert client.get("/v1/auth/whoami", headers=bad).status_code == 401
    after = platform.access_counters.snapshot()
    assert after.get(("denied", "auth.denied"), 0) == before.get(("denied", "auth.denied"), 0) + 1
    assert after[("unauthenticated", "auth.token_missing")] >= 1
    assert after[("unauthenticated", "auth.token_malformed")] >= 1


def test_scoped_token_limits_resources(platform: Platform, make_actor: MakeActor) -> None:
    """An endpoint-scoped token may whoami but not call unscoped lifecycle routes."""
    scoped = make_actor("scoped-auditor", Role.AUDITOR, resources=("endpoint:fraud",))
    with TestClient(create_app(platform)) as client:
        assert client.get("/v1/auth/whoami", headers=scoped.headers).status_code == 200
        denied = client.get("/v1/auth/principals", headers=scoped.headers)
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "auth.scope_denied"


def test_openapi_documents_bearer_auth(platform: Platform) -> None:
    spec = TestClient(create_app(platform)).get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["BastionToken"]["scheme"] == "bearer"
    whoami = spec["paths"]["/v1/auth/whoami"]["get"]
    assert whoami["security"] == [{"BastionToken": []}]
    assert whoami[PERMISSION_KEY] == "self.read"
    assert "security" not in spec["paths"]["/healthz"]["get"]
    assert re.match(r"^\d+\.\d+", spec["info"]["version"])
