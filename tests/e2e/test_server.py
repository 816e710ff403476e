"""The real server process: `bastion init`, then `bastion server`, spoken to over HTTP."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from servers import running_server
from support import BIN, server_env

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024


@dataclass(frozen=True)
class Server:
    url: str
    token: str
    log: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("e2e")
    home = root / "home"
    env = server_env(home, BASTION_ACCESS_LOG="1")
    init = subprocess.run(
        [BIN, "init"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert init.returncode == 0, init.stderr
    token = next(line for line in init.stdout.splitlines() if line.startswith("bst_"))

    with running_server(env, root / "server.log") as running:
        yield Server(url=running.url, token=token, log=running.log)
    assert running.process.returncode is not None


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10.0) as c:
        yield c


def test_health_and_readiness(client: httpx.Client) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}
    assert health.headers["x-content-type-options"] == "nosniff"
    assert health.headers["x-request-id"].startswith("req_")
    assert "server" not in health.headers  # no version banner


def test_openapi_documents_whoami_with_bearer_auth(client: httpx.Client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert "/v1/auth/whoami" in spec["paths"]
    schemes = spec["components"]["securitySchemes"]
    bearer = [
        n for n, s in schemes.items() if (s.get("type"), s.get("scheme")) == ("http", "bearer")
    ]
    assert bearer
    assert {bearer[0]: []} in spec["paths"]["/v1/auth/whoami"]["get"]["security"]


def test_whoami_with_the_init_token(client: httpx.Client, server: Server) -> None:
    response = client.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {server.token}"})
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "admin"
    assert body["roles"] == ["admin"]
    assert body["principal_id"].startswith("prn_")
    assert server.token not in response.text


def test_whoami_without_a_token_is_401(client: httpx.Client) -> None:
    response = client.get("/v1/auth/whoami")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["error"]
    assert error["code"] == "auth.token_missing"
    assert error["message"]


def test_whoami_with_a_garbage_token_is_401(client: httpx.Client) -> None:
    response = client.get("/v1/auth/whoami", headers={"Authorization": "Bearer bst_nonsense"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "auth.token_malformed"
    assert "bst_nonsense" not in response.text


def test_body_over_one_mib_is_413(client: httpx.Client, server: Server) -> None:
    response = client.post(
        "/v1/auth/tokens",
        content=b"x" * (MiB + 1),
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "input.too_large"


def test_streamed_body_over_one_mib_is_413(client: httpx.Client, server: Server) -> None:
    # No Content-Length: the limit must be enforced while the chunks arrive.
    def chunks() -> Iterator[bytes]:
        for _ in range(3):
            yield b"x" * (512 * 1024)

    response = client.post(
        "/v1/auth/tokens",
        content=chunks(),
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "input.too_large"


def test_body_within_the_limit_is_served(client: httpx.Client, server: Server) -> None:
    response = client.post(
        "/v1/auth/tokens",
        json={"name": "e2e", "ttl_seconds": 60},
        headers={"Authorization": f"Bearer {server.token}"},
    )
    assert response.status_code == 201, response.text
    issued = response.json()
    who = client.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {issued['token']}"})
    assert who.status_code == 200
    assert who.json()["token_id"] == issued["info"]["id"]


def test_server_log_never_holds_a_token(client: httpx.Client, server: Server) -> None:
    client.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {server.token}"})
    log = server.log.read_text()
    assert "GET /v1/auth/whoami" in log  # the access log is written...
    assert server.token not in log  # ...without the Authorization header
