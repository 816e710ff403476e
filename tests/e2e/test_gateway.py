"""The inference gateway in the real server process (uvicorn on loopback): real scikit-learn
models registered, scanned, signed, attested and approved through the CLI, deployed through
the API, and predicted through both protocols; canary split, stickiness, shadow, rollback,
the kill switch, a tampered artifact, rate limits, revoked tokens and receipts verified
offline."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from models import Trained, forest, logistic
from servers import prepare_home, running_server
from support import BIN, server_env

pytestmark = pytest.mark.e2e

VALIDATION = "https://bastion.dev/attestations/validation/v1"


@dataclass
class Gateway:
    url: str
    home: Path
    env: dict[str, str]
    log: Path
    admin: str
    dev: str
    approver: str
    deployer: str
    client: str
    other_client: str
    lr: Trained
    rf: Trained

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


class _Cli:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str, token: str | None = None) -> Any:
        env = dict(self.env)
        if token is not None:
            env["BASTION_TOKEN"] = token
        done = subprocess.run(
            [BIN, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

        class R:
            code = done.returncode
            out = done.stdout
            err = done.stderr

            def json(self) -> Any:
                return json.loads(done.stdout)

        return R()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("gateway")
    home = root / "home"
    env = server_env(home)
    env["BASTION_DEPLOY_POLL_SECONDS"] = "0.2"
    env["BASTION_RECEIPT_FLUSH_MS"] = "20"
    tokens = prepare_home(home, root)
    lr, rf = logistic(), forest()

    with running_server(env, root / "server.log") as server:
        gateway = Gateway(
            url=server.url,
            home=home,
            env=env,
            log=server.log,
            admin=tokens["admin"],
            dev=tokens["dev"],
            approver=tokens["bob"],
            deployer=tokens["ops"],
            client=tokens["fraud-svc"],
            other_client=tokens["other-svc"],
            lr=lr,
            rf=rf,
        )
        deployed = httpx.post(
            f"{server.url}/v1/endpoints/fraud/deployments",
            json={"model": "scorer", "version": "1"},
            headers=gateway.headers(gateway.deployer),
            timeout=60,
        )
        assert deployed.status_code == 201, deployed.text
        yield gateway


@pytest.fixture
def http(gw: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=30.0) as c:
        yield c


def _predict(
    http: httpx.Client, gw: Gateway, rows: slice, *, token: str | None = None, **headers: str
) -> httpx.Response:
    return http.post(
        "/v1/endpoints/fraud/predict",
        json={"records": gw.lr.records(rows)},
        headers={**gw.headers(token or gw.client), **headers},
    )


def _metric(http: httpx.Client, gw: Gateway, name: str, **labels: str) -> float:
    text = http.get("/metrics", headers=gw.headers(gw.deployer)).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_native_predictions_match_the_model_and_carry_a_receipt(
    http: httpx.Client, gw: Gateway
) -> None:
    response = _predict(http, gw, slice(0, 20))
    assert response.status_code == 200, response.text
    body = response.json()
    expected = gw.lr.estimator.predict(gw.lr.x[:20])
    assert body["outputs"]["label"] == expected.tolist()
    probabilities = np.array(body["outputs"]["probabilities"])
    assert np.allclose(probabilities, gw.lr.estimator.predict_proba(gw.lr.x[:20]), atol=1e-4)
    assert (body["endpoint"], body["model"], body["version"]) == ("fraud", "scorer", 1)
    receipt = body["receipt"]
    assert receipt["request_id"] == body["request_id"] == response.headers["x-request-id"]
    assert re.fullmatch(r"hmac-sha256:[0-9a-f]{16}:[0-9a-f]{64}", receipt["input_digest"])
    assert receipt["artifact_digest"].startswith("sha256:")
    assert receipt["rows"] == 20
    assert receipt["log"]["status"] == "queued"
    assert str(gw.lr.x[0, 0]) not in json.dumps(receipt)  # digests, never the data


def test_v2_protocol_infer_metadata_and_health(http: httpx.Client, gw: Gateway) -> None:
    assert http.get("/v2/health/live").status_code == 200
    assert http.get("/v2/health/ready").status_code == 200
    assert http.get("/v2").json()["name"] == "bastion"
    meta = http.get("/v2/models/fraud", headers=gw.headers(gw.client))
    assert meta.status_code == 200, meta.text
    assert meta.json()["versions"] == ["1"]
    ready = http.get("/v2/models/fraud/ready", headers=gw.headers(gw.client))
    assert ready.status_code == 200
    rows = gw.lr.x[:5]
    infer = http.post(
        "/v2/models/fraud/infer",
        json={
            "id": "abc",
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [5, 30],
                    "datatype": "FP64",
                    "data": rows.ravel().tolist(),
                }
            ],
        },
        headers=gw.headers(gw.client),
    )
    assert infer.status_code == 200, infer.text
    out = infer.json()
    assert out["model_name"] == "fraud"
    assert out["model_version"] == "1"
    assert out["id"] == "abc"
    label = next(o for o in out["outputs"] if o["name"] == "label")
    assert label["shape"] == [5]
    assert label["data"] == gw.lr.estimator.predict(rows).tolist()
    assert out["parameters"]["receipt"]["input_digest"].startswith("hmac-sha256:")
    bad = http.post(
        "/v2/models/fraud/infer",
        json={"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2]}]},
        headers=gw.headers(gw.client),
    )
    assert bad.status_code == 422
    assert isinstance(bad.json()["error"], str)  # the protocol's error shape


def test_contract_violations_are_listed_and_unknown_fields_refused(
    http: httpx.Client, gw: Gateway
) -> None:
    records = gw.lr.records(slice(0, 3))
    records[0]["mean_radius"] = "big"  # wrong type
    del records[1]["mean_texture"]  # missing
    records[2]["favourite_colour"] = 1.0  # unknown
    response = http.post(
        "/v1/endpoints/fraud/predict", json={"records": records}, headers=gw.headers(gw.client)
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "contract.violation"
    codes = {v["code"] for v in error["details"]["violations"]}
    assert {"contract.wrong_type", "contract.missing_field", "contract.unknown_field"} <= codes
    nan = http.post(
        "/v1/endpoints/fraud/predict",
        content=b'{"records": [{"mean_radius": NaN}]}',
        headers={**gw.headers(gw.client), "Content-Type": "application/json"},
    )
    assert nan.status_code == 422
    assert nan.json()["error"]["code"] == "input.malformed_json"
    extra = http.post(
        "/v1/endpoints/fraud/predict",
        json={"records": gw.lr.records(slice(0, 1)), "debug": True},
        headers=gw.headers(gw.client),
    )
    assert extra.status_code == 422
    assert extra.json()["error"]["code"] == "input.bad_body"
    huge = http.post(
        "/v1/endpoints/fraud/predict",
        content=b'{"records": [' + b"1," * 600_000 + b"1]}",
        headers={**gw.headers(gw.client), "Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    too_many = http.post(
        "/v1/endpoints/fraud/predict",
        json={"records": [{}] * 1001},
        headers=gw.headers(gw.client),
    )
    assert too_many.status_code == 422
    assert too_many.json()["error"]["details"]["violations"][0]["code"] == (
        "contract.too_many_rows"
    )
    assert _predict(http, gw, slice(0, 1)).status_code == 200  # still serving


def test_authentication_scope_and_unknown_endpoints(http: httpx.Client, gw: Gateway) -> None:
    body = {"records": gw.lr.records(slice(0, 1))}
    none = http.post("/v1/endpoints/fraud/predict", json=body)
    assert none.status_code == 401
    assert none.json()["error"]["code"] == "auth.token_missing"
    forged = http.post(
        "/v1/endpoints/fraud/predict", json=body, headers={"Authorization": "Bearer bst_x"}
    )
    assert forged.status_code == 401
    deployer = http.post("/v1/endpoints/fraud/predict", json=body, headers=gw.headers(gw.deployer))
    assert deployer.status_code == 403  # deployers deploy; they do not predict
    missing = http.post("/v1/endpoints/nope/predict", json=body, headers=gw.headers(gw.client))
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "serving.endpoint_not_found"
    scoped = _Cli(gw.env)(
        "token",
        "create",
        "--for",
        "other-svc",
        "--resource",
        "endpoint:other",
        "--json",
        token=gw.admin,
    )
    assert scoped.code == 0, scoped.err
    out_of_scope = http.post(
        "/v1/endpoints/fraud/predict", json=body, headers=gw.headers(scoped.json()["token"])
    )
    assert out_of_scope.status_code == 403
    assert out_of_scope.json()["error"]["code"] == "auth.scope_denied"
    assert _metric(http, gw, "bastion_gateway_auth_failures_total", endpoint="fraud") >= 3


def test_a_token_revoked_mid_stream_stops_working(http: httpx.Client, gw: Gateway) -> None:
    issued = _Cli(gw.env)("token", "create", "--for", "fraud-svc", "--json", token=gw.admin)
    assert issued.code == 0, issued.err
    token, token_id = issued.json()["token"], issued.json()["info"]["id"]
    assert _predict(http, gw, slice(0, 1), token=token).status_code == 200
    revoked = http.delete(f"/v1/auth/tokens/{token_id}", headers=gw.headers(gw.admin))
    assert revoked.status_code == 200, revoked.text
    after = _predict(http, gw, slice(0, 1), token=token)
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "auth.token_revoked"
    assert _predict(http, gw, slice(0, 1)).status_code == 200


def test_receipts_are_logged_and_verify_offline(
    http: httpx.Client, gw: Gateway, tmp_path: Path
) -> None:
    waited = _predict(http, gw, slice(0, 2), **{"X-Bastion-Receipt": "wait"})
    assert waited.status_code == 200
    log_state = waited.json()["receipt"]["log"]
    assert log_state["status"] == "logged"
    assert isinstance(log_state["index"], int)
    request_id = waited.json()["request_id"]
    proof = http.get(f"/v1/receipts/{request_id}", headers=gw.headers(gw.client))
    assert proof.status_code == 200, proof.text
    assert proof.json()["leaf_index"] == log_state["index"]
    other = http.get(f"/v1/receipts/{request_id}", headers=gw.headers(gw.other_client))
    assert other.status_code == 404  # someone else's receipt looks like no receipt
    bundle = tmp_path / "receipt.json"
    bundle.write_text(proof.text)
    pubkey = tmp_path / "predictions.pub"
    pubkey.write_text(_Cli(gw.env)("receipt", "pubkey", token=gw.admin).out.strip() + "\n")
    verified = _Cli({k: v for k, v in gw.env.items() if k != "BASTION_HOME"})(
        "receipt", "verify", str(bundle), "--pubkey", str(pubkey)
    )
    assert verified.code == 0, verified.out + verified.err
    doc = json.loads(proof.text)
    doc["receipt"]["rows"] = 3
    bundle.write_text(json.dumps(doc))
    tampered = _Cli(gw.env)("receipt", "verify", str(bundle), "--pubkey", str(pubkey))
    assert tampered.code == 1


def _deploy(http: httpx.Client, gw: Gateway, version: str, **plan: Any) -> httpx.Response:
    return http.post(
        "/v1/endpoints/fraud/deployments",
        json={"model": "scorer", "version": version, "plan": plan, "sticky": True},
        headers=gw.headers(gw.deployer),
    )


def test_canary_split_stickiness_promotion_and_rollback(http: httpx.Client, gw: Gateway) -> None:
    started = _deploy(http, gw, "2", kind="canary", weight=30)
    assert started.status_code == 201, started.text
    roles: Counter[str] = Counter()
    n = 400
    for i in range(n):
        r = _predict(http, gw, slice(i % 50, i % 50 + 1), **{"X-Bastion-Route-Key": f"user-{i}"})
        assert r.status_code == 200, r.text
        roles[r.json()["route"]] += 1
    # Binomial(400, 0.3): mean 120, sd 9.2; 4.5 sd either side.
    assert abs(roles["canary"] - 0.3 * n) <= 4.5 * math.sqrt(n * 0.3 * 0.7), roles
    seen = {
        _predict(http, gw, slice(0, 1), **{"X-Bastion-Route-Key": "user-7"}).json()["version"]
        for _ in range(10)
    }
    assert len(seen) == 1  # sticky: one client, one version
    explicit = http.post(
        "/v2/models/fraud/versions/2/infer",
        json={
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, 30],
                    "datatype": "FP64",
                    "data": gw.rf.x[0].tolist(),
                }
            ]
        },
        headers=gw.headers(gw.client),
    )
    assert explicit.status_code == 200, explicit.text
    assert explicit.json()["model_version"] == "2"
    rolled = http.post(
        "/v1/endpoints/fraud/rollout/rollback",
        json={"reason": "e2e"},
        headers=gw.headers(gw.deployer),
    )
    assert rolled.status_code == 200, rolled.text
    versions = {
        _predict(http, gw, slice(0, 1), **{"X-Bastion-Route-Key": f"k{i}"}).json()["version"]
        for i in range(50)
    }
    assert versions == {1}
    assert _metric(http, gw, "bastion_deploy_time_to_rollback_seconds_count", endpoint="fraud") >= 1


def test_shadow_answers_nobody_and_divergence_is_measured(http: httpx.Client, gw: Gateway) -> None:
    shadow = http.put(
        "/v1/endpoints/fraud/shadow",
        json={"version": "3", "share": 100},
        headers=gw.headers(gw.deployer),
    )
    assert shadow.status_code == 200, shadow.text
    for i in range(40):
        r = _predict(http, gw, slice(i, i + 5))
        assert r.status_code == 200
        assert r.json()["version"] == 1
    deadline = time.monotonic() + 10
    total = 0.0
    while time.monotonic() < deadline:
        total = _metric(http, gw, "bastion_gateway_shadow_comparisons_total", version="3")
        if total >= 40:
            break
        time.sleep(0.1)
    assert total >= 40
    cleared = http.put(
        "/v1/endpoints/fraud/shadow", json={"version": None}, headers=gw.headers(gw.deployer)
    )
    assert cleared.status_code == 200


def test_kill_switch_stops_serving_in_one_call(http: httpx.Client, gw: Gateway) -> None:
    killed = http.post(
        "/v1/endpoints/fraud/kill", json={"reason": "e2e"}, headers=gw.headers(gw.deployer)
    )
    assert killed.status_code == 200, killed.text
    response = _predict(http, gw, slice(0, 1))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "serving.endpoint_disabled"
    revived = http.post("/v1/endpoints/fraud/revive", json={}, headers=gw.headers(gw.deployer))
    assert revived.status_code == 200
    assert _predict(http, gw, slice(0, 1)).status_code == 200


def test_rate_limits_answer_429_with_retry_after(http: httpx.Client, gw: Gateway) -> None:
    limited = _Cli(gw.env)(
        "token", "create", "--for", "other-svc", "--json", token=gw.admin
    ).json()["token"]
    # A second endpoint with a tight per-principal limit.
    deployed = http.post(
        "/v1/endpoints/tight/deployments",
        json={
            "model": "scorer",
            "version": "1",
            "limits": {"principal": {"rate": 0.01, "burst": 3}},
        },
        headers=gw.headers(gw.deployer),
    )
    assert deployed.status_code == 201, deployed.text
    body = {"records": gw.lr.records(slice(0, 1))}
    codes = [
        http.post("/v1/endpoints/tight/predict", json=body, headers=gw.headers(limited))
        for _ in range(5)
    ]
    assert [c.status_code for c in codes] == [200, 200, 200, 429, 429]
    assert int(codes[3].headers["retry-after"]) >= 1
    assert codes[3].json()["error"]["code"] == "serving.rate_limited"
    other = http.post("/v1/endpoints/tight/predict", json=body, headers=gw.headers(gw.client))
    assert other.status_code == 200  # per principal: other callers are not limited
    assert _metric(http, gw, "bastion_gateway_rate_limited_total", endpoint="tight") >= 2


def test_a_tampered_artifact_is_never_loaded(http: httpx.Client, gw: Gateway) -> None:
    # Version 4 was never loaded: flip a byte in each of its sealed files on disk.
    blobs = sorted((gw.home / "blobs").rglob("*"))
    ids = _Cli(gw.env)("model", "versions", "scorer", "--json", token=gw.dev)
    assert ids.code == 0, ids.err
    v4 = next(v for v in ids.json() if v["version"] == 4)["id"]
    targets = [p for p in blobs if p.is_file() and v4 in str(p)]
    assert targets
    for path in targets:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    started = _deploy(http, gw, "4", kind="canary", weight=50)
    assert started.status_code == 201, started.text
    for i in range(30):
        r = _predict(http, gw, slice(0, 1), **{"X-Bastion-Route-Key": f"t{i}"})
        assert r.status_code == 200
        assert r.json()["version"] == 1  # the refused canary takes no traffic
    assert _metric(http, gw, "bastion_gateway_model_loads_total", outcome="refused") >= 1
    events = _Cli(gw.env)("audit", "verify", token=gw.admin)
    assert events.code == 0, events.err
    rolled = http.post(
        "/v1/endpoints/fraud/rollout/rollback", json={}, headers=gw.headers(gw.deployer)
    )
    assert rolled.status_code == 200


def test_metrics_count_requests_by_status_and_latency(http: httpx.Client, gw: Gateway) -> None:
    before = _metric(http, gw, "bastion_gateway_requests_total", endpoint="fraud", status="200")
    for _ in range(5):
        assert _predict(http, gw, slice(0, 1)).status_code == 200
    after = _metric(http, gw, "bastion_gateway_requests_total", endpoint="fraud", status="200")
    assert after - before == 5
    assert _metric(http, gw, "bastion_gateway_request_duration_seconds_count", endpoint="fraud") > 0
    assert _metric(http, gw, "bastion_gateway_contract_violations_total", endpoint="fraud") >= 1
    download = _Cli(gw.env)(
        "model", "download", "scorer@1", "--out", str(gw.home.parent / "dl"), token=gw.dev
    )
    assert download.code == 0, download.err
    assert _metric(http, gw, "bastion_model_downloads_total", model="scorer", version="1") >= 1
    assert http.get("/metrics").status_code == 401
    assert http.get("/metrics", headers=gw.headers(gw.client)).status_code == 403


def test_replicas_share_one_rate_limit_through_redis(http: httpx.Client, gw: Gateway) -> None:
    endpoint = f"shared-{os.urandom(3).hex()}"  # fresh Redis keys for every run
    deployed = http.post(
        f"/v1/endpoints/{endpoint}/deployments",
        json={
            "model": "scorer",
            "version": "1",
            "limits": {"principal": {"rate": 0.01, "burst": 4}},
        },
        headers=gw.headers(gw.deployer),
    )
    assert deployed.status_code == 201, deployed.text
    env = {**gw.env, "BASTION_RATELIMIT_URL": "redis://127.0.0.1:6379/0"}
    body = {"records": gw.lr.records(slice(0, 1))}
    with (
        running_server(env, gw.home.parent / "replica-a.log") as a,
        running_server(env, gw.home.parent / "replica-b.log") as b,
    ):
        codes = []
        for url in (a.url, b.url, a.url, b.url, a.url, b.url):
            response = httpx.post(
                f"{url}/v1/endpoints/{endpoint}/predict",
                json=body,
                headers=gw.headers(gw.client),
                timeout=30,
            )
            codes.append(response.status_code)
    # One bucket of 4 for the two replicas together, not 4 each.
    assert codes == [200, 200, 200, 200, 429, 429]
