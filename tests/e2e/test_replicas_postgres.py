"""Two gateway replicas on one PostgreSQL (the scale-out setup): a deployment made through one
replica reaches the other, both serve and log receipts into the one prediction log, a
rollback through the second reaches the first, and both logs verify afterwards."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa

from bastion.core import Settings
from bastion.platform import Platform
from bastion.serving.receipts import verify_receipt_bundle
from models import logistic
from servers import Running, prepare_home, running_server
from support import server_env

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

PG_URL = os.environ.get("BASTION_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Cluster:
    a: Running
    b: Running
    home: Path
    url: str
    tokens: dict[str, str]

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("select 1")
    except Exception as error:  # noqa: BLE001 - no server: skip, or fail where it is required
        if os.environ.get("BASTION_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL unreachable: {error}")
        pytest.skip(f"PostgreSQL unreachable: {type(error).__name__}")
    schema = f"t_{secrets.token_hex(6)}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    root = tmp_path_factory.mktemp("replicas")
    home = root / "home"
    try:
        tokens = prepare_home(home, root, database_url=url)
        env = server_env(home, BASTION_DATABASE_URL=url, BASTION_DEPLOY_POLL_SECONDS="0.2")
        with (
            running_server(env, root / "a.log") as a,
            running_server(env, root / "b.log") as b,
        ):
            yield Cluster(a=a, b=b, home=home, url=url, tokens=tokens)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        engine.dispose()


def _predict(server: Running, cluster: Cluster, **headers: str) -> httpx.Response:
    trained = logistic()
    return httpx.post(
        f"{server.url}/v1/endpoints/fraud/predict",
        json={"records": trained.records(slice(0, 1))},
        headers={**cluster.headers("fraud-svc"), **headers},
        timeout=30,
    )


def _eventually(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def test_replicas_share_deployments_receipts_and_rollbacks(cluster: Cluster) -> None:
    deployed = httpx.post(
        f"{cluster.a.url}/v1/endpoints/fraud/deployments",
        json={"model": "scorer", "version": "1"},
        headers=cluster.headers("ops"),
        timeout=60,
    )
    assert deployed.status_code == 201, deployed.text
    assert _predict(cluster.a, cluster).status_code == 200  # at once where it was made
    assert _eventually(lambda: _predict(cluster.b, cluster).status_code == 200)  # at the poll

    canary = httpx.post(
        f"{cluster.a.url}/v1/endpoints/fraud/deployments",
        json={"model": "scorer", "version": "2", "plan": {"kind": "canary", "weight": 50}},
        headers=cluster.headers("ops"),
        timeout=60,
    )
    assert canary.status_code == 201, canary.text

    def b_serves_both() -> bool:
        versions = {
            _predict(cluster.b, cluster, **{"X-Bastion-Route-Key": f"k{i}"}).json()["version"]
            for i in range(40)
        }
        return versions == {1, 2}

    assert _eventually(b_serves_both)

    # One prediction log: each replica's receipt is provable through the other.
    waited = {
        name: _predict(server, cluster, **{"X-Bastion-Receipt": "wait"}).json()
        for name, server in (("a", cluster.a), ("b", cluster.b))
    }
    indices = {name: answer["receipt"]["log"]["index"] for name, answer in waited.items()}
    assert indices["a"] != indices["b"]
    vkey = httpx.get(
        f"{cluster.a.url}/v1/receipts/log/checkpoint",
        headers=cluster.headers("fraud-svc"),
        timeout=30,
    ).json()["verifier_key"]
    for name, other in (("a", cluster.b), ("b", cluster.a)):
        proof = httpx.get(
            f"{other.url}/v1/receipts/{waited[name]['request_id']}",
            headers=cluster.headers("fraud-svc"),
            timeout=30,
        )
        assert proof.status_code == 200, proof.text
        assert verify_receipt_bundle(proof.json(), vkey).leaf_index == indices[name]

    rolled = httpx.post(
        f"{cluster.b.url}/v1/endpoints/fraud/rollout/rollback",
        json={"reason": "replica drill"},
        headers=cluster.headers("ops"),
        timeout=60,
    )
    assert rolled.status_code == 200, rolled.text

    def a_serves_only_v1() -> bool:
        return {
            _predict(cluster.a, cluster, **{"X-Bastion-Route-Key": f"r{i}"}).json()["version"]
            for i in range(40)
        } == {1}

    assert _eventually(a_serves_only_v1)
    # Both transparency logs, written by two processes, replay and verify.
    with Platform.from_settings(Settings(home=cluster.home, database_url=cluster.url)) as platform:
        assert platform.ledger.verify().size > 0
        assert platform.receipts.log.verify().size >= 2
