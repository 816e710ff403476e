"""Automatic rollback in the real server process: a canary that fails (server errors) or slows
down (added latency), injected with BASTION_FAULT_INJECTION, is rolled back by the monitor
without anyone asking — ledgered with its evidence, alerted, snapshotted as a signed incident
that verifies offline — while a healthy canary under the same traffic is left alone."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from models import Trained, logistic
from servers import prepare_home, running_server
from support import BIN, server_env

pytestmark = pytest.mark.e2e

FAULTS = [
    {"endpoint": "errors", "version": 2, "error_rate": 1.0},
    {"endpoint": "slow", "version": 3, "latency_ms": 400},
]


@dataclass
class Server:
    url: str
    env: dict[str, str]
    tokens: dict[str, str]
    lr: Trained
    root: Path

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("monitoring")
    home = root / "home"
    env = server_env(
        home,
        BASTION_DEPLOY_POLL_SECONDS="0.2",
        BASTION_RECEIPT_FLUSH_MS="20",
        BASTION_FAULT_INJECTION=json.dumps(FAULTS),
        BASTION_CANARY_MIN_REQUESTS="10",
    )
    tokens = prepare_home(home, root)
    with running_server(env, root / "server.log") as running:
        yield Server(running.url, env, tokens, logistic(), root)


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as c:
        yield c


def _deploy(http: httpx.Client, server: Server, endpoint: str, version: str, **plan: Any) -> None:
    r = http.post(
        f"/v1/endpoints/{endpoint}/deployments",
        json={"model": "scorer", "version": version, "plan": plan or {"kind": "all-at-once"}},
        headers=server.headers("ops"),
    )
    assert r.status_code == 201, r.text


def _drive(
    http: httpx.Client, server: Server, endpoint: str, *, until_rolled_back: bool, n: int = 400
) -> tuple[int, dict[int, int]]:
    """Send up to `n` one-row requests from many route keys; stop once the canary is gone
    (when `until_rolled_back`). Returns (requests sent, statuses)."""
    statuses: dict[int, int] = {}
    for i in range(n):
        r = http.post(
            f"/v1/endpoints/{endpoint}/predict",
            json={"records": server.lr.records(slice(i % 100, i % 100 + 1))},
            headers={**server.headers("fraud-svc"), "X-Bastion-Route-Key": f"user-{i}"},
        )
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        if until_rolled_back and i % 10 == 9:
            state = http.get(f"/v1/endpoints/{endpoint}", headers=server.headers("ops")).json()
            if state["canary"] is None:
                return i + 1, statuses
    return n, statuses


def _metric(http: httpx.Client, server: Server, name: str, **labels: str) -> float:
    text = http.get("/metrics", headers=server.headers("ops")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _rollback_event(http: httpx.Client, server: Server, endpoint: str) -> dict[str, Any]:
    history = http.get(f"/v1/endpoints/{endpoint}/history", headers=server.headers("ops"))
    assert history.status_code == 200, history.text
    rollbacks = [e for e in history.json() if e["action"] == "rollback"]
    assert len(rollbacks) == 1, history.json()
    return rollbacks[0]


def _wait_for_incident(http: httpx.Client, server: Server, endpoint: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = http.get(
            "/v1/incidents", params={"endpoint": endpoint}, headers=server.headers("ops")
        ).json()
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no incident for {endpoint}")


def test_an_erroring_canary_is_rolled_back_with_evidence(
    http: httpx.Client, server: Server
) -> None:
    _deploy(http, server, "errors", "1")
    _deploy(http, server, "errors", "2", kind="canary", weight=50)
    sent, statuses = _drive(http, server, "errors", until_rolled_back=True)
    assert sent < 400, f"the canary was never rolled back: {statuses}"
    assert statuses.get(500, 0) >= 10  # the canary answered, and failed, before the guard acted
    event = _rollback_event(http, server, "errors")
    assert event["actor"] == "system:rollout-controller"
    assert event["reason"].startswith("automatic rollback: error_rate")
    # Stable only from now on.
    _after, statuses = _drive(http, server, "errors", until_rolled_back=False, n=40)
    assert statuses == {200: 40}
    assert _metric(
        http, server, "bastion_deploy_automatic_rollbacks_total", endpoint="errors",
        signal="error_rate",
    ) == 1  # fmt: skip
    alerts = http.get("/v1/alerts", headers=server.headers("ops")).json()
    assert any(a["name"] == "CanaryRolledBack" and a["endpoint"] == "errors" for a in alerts)

    # The ledger entry carries the evidence.
    endpoint_id = http.get("/v1/endpoints/errors", headers=server.headers("ops")).json()["id"]
    entries = http.get(
        "/v1/audit/events", params={"subject": endpoint_id, "limit": 1000},
        headers=server.headers("admin"),
    )  # fmt: skip
    assert entries.status_code == 200, entries.text
    bodies = [json.loads(e["body"]) for e in entries.json()]
    data = next(b["data"] for b in bodies if b["type"] == "deploy.endpoint.rollback")
    assert data["automatic"] is True
    breach = data["evidence"]["breaches"][0]
    assert breach["signal"] == "error_rate"
    assert breach["events"] >= 10
    assert breach["p_value"] < 0.001

    # A signed incident snapshot, readable as Markdown and verifiable offline.
    listed = _wait_for_incident(http, server, "errors")
    assert listed["trigger"] == "rollback"
    report = http.get(f"/v1/incidents/{listed['id']}/report", headers=server.headers("ops"))
    assert report.status_code == 200
    assert "error_rate" in report.text
    assert "| rolled-back | v2 |" in report.text
    incident = http.get(f"/v1/incidents/{listed['id']}", headers=server.headers("ops")).json()
    key = http.get("/v1/incidents/key", headers=server.headers("ops")).json()["verifier_key"]
    bundle_file, key_file = server.root / "incident.json", server.root / "incident.pub"
    bundle_file.write_text(json.dumps(incident))
    key_file.write_text(key + "\n")
    verified = subprocess.run(
        [BIN, "incident", "verify", str(bundle_file), "--pubkey", str(key_file)],
        env=server.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    incident["bundle"]["windows"][0]["overview"]["requests"] += 1
    bundle_file.write_text(json.dumps(incident))
    tampered = subprocess.run(
        [BIN, "incident", "verify", str(bundle_file), "--pubkey", str(key_file)],
        env=server.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert tampered.returncode == 1
    assert "incident.tampered" in tampered.stderr


def test_a_slow_canary_is_rolled_back_on_latency(http: httpx.Client, server: Server) -> None:
    _deploy(http, server, "slow", "1")
    _deploy(http, server, "slow", "3", kind="canary", weight=50)
    sent, statuses = _drive(http, server, "slow", until_rolled_back=True, n=300)
    assert sent < 300, f"the slow canary was never rolled back: {statuses}"
    assert set(statuses) == {200}  # slow, not failing
    event = _rollback_event(http, server, "slow")
    assert "latency_p95" in event["reason"]


def test_a_healthy_canary_under_the_same_traffic_stays(http: httpx.Client, server: Server) -> None:
    _deploy(http, server, "healthy", "1")
    _deploy(http, server, "healthy", "4", kind="canary", weight=50)
    _, statuses = _drive(http, server, "healthy", until_rolled_back=False, n=300)
    assert statuses == {200: 300}
    time.sleep(0.5)  # a few monitor passes over the full window
    state = http.get("/v1/endpoints/healthy", headers=server.headers("ops")).json()
    assert state["canary"] is not None
    assert state["canary"]["number"] == 4
    monitoring = http.get("/v1/endpoints/healthy/monitoring", headers=server.headers("ops"))
    assert monitoring.status_code == 200, monitoring.text
    doc = monitoring.json()
    by_version = {v["version"]: v for v in doc["versions"]}
    assert by_version["1"]["requests"] + by_version["4"]["requests"] == 300
    assert by_version["4"]["errors"] == 0
    assert doc["slo"]["budget"]["availability"]["remaining"] == 1.0
