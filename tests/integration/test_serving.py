"""Verified loading and routing on SQLite and PostgreSQL: only bytes that match the registry
and a trusted signature are deserialized; a refused version never serves; rollback swaps the
routing table at once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bastion.core.errors import IntegrityError, InvalidInput
from bastion.deploy import RolloutPlan
from bastion.platform import Platform
from bastion.serving.verified import VerifiedLoader
from models import logistic
from releases import Release, lr_pickle, make_release
from support import Actor, MakeActor


@pytest.fixture
def rel(platform: Platform, make_actor: MakeActor, admin: Actor, tmp_path: Path) -> Release:
    return make_release(platform, make_actor, admin.token, tmp_path)


def _loader(platform: Platform) -> VerifiedLoader:
    return VerifiedLoader(
        database=platform.database,
        models=platform.models,
        audit=platform.audit,
        allowlist=platform.models.allowlist,
        clock=platform.clock,
        max_bytes=platform.settings.max_serving_bytes,
    )


def _version_id(platform: Platform, rel: Release, number: int) -> str:
    return platform.models.version(rel.dev, "scorer", number).id


def _ledger(platform: Platform, kind: str) -> list[dict[str, object]]:
    with platform.database.read() as session:
        entries = platform.audit.events(session, limit=1000, types=[kind])
    return [json.loads(e.body) for e in entries]


def test_a_signed_onnx_version_loads_and_predicts_like_the_model(
    platform: Platform, rel: Release
) -> None:
    trained = logistic()
    number = rel.ready(files=trained.files(), contract=trained.contract.to_json())
    loaded = _loader(platform).load(_version_id(platform, rel, number))
    assert loaded.predictor.kind == "onnx"
    batch = trained.contract.validate_records(trained.records(slice(0, 10)))
    answer = loaded.predictor.predict(batch)
    assert answer.primary().tolist() == trained.estimator.predict(trained.x[:10]).tolist()
    assert loaded.signers
    loads = _ledger(platform, "serving.version.loaded")
    assert loads[-1]["data"]["artifact_digest"] == loaded.artifact_digest  # type: ignore[index]


def test_a_tampered_blob_is_refused_and_ledgered(platform: Platform, rel: Release) -> None:
    trained = logistic()
    number = rel.ready(files=trained.files(), contract=trained.contract.to_json())
    version_id = _version_id(platform, rel, number)
    for path in (platform.settings.home / "blobs").rglob("*"):
        if path.is_file() and version_id in str(path) and not path.name.endswith("mlbom"):
            data = bytearray(path.read_bytes())
            data[-40] ^= 0x80
            path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        _loader(platform).load(version_id)
    refused = _ledger(platform, "serving.version.refused")
    assert refused
    assert refused[-1]["subject"] == version_id
    platform.ledger.verify()


def test_a_revoked_signer_key_stops_the_version_loading(platform: Platform, rel: Release) -> None:
    trained = logistic()
    number = rel.ready(files=trained.files(), contract=trained.contract.to_json())
    keys = platform.signatures.list_keys(rel.admin)
    platform_key = next(k for k in keys if k.team == "bastion")
    platform.signatures.revoke_key(rel.admin, platform_key.id)
    with pytest.raises(IntegrityError) as refused:
        _loader(platform).load(_version_id(platform, rel, number))
    assert refused.value.code == "serving.signature_invalid"


def test_a_version_without_a_contract_is_not_served(platform: Platform, rel: Release) -> None:
    number = rel.ready(files={"model.pkl": lr_pickle()})
    with pytest.raises(InvalidInput) as refused:
        _loader(platform).load(_version_id(platform, rel, number))
    assert refused.value.code == "serving.no_contract"


def test_a_scanned_pickle_loads_through_the_allow_list(platform: Platform, rel: Release) -> None:
    contract = {
        "contract_version": 1,
        "fields": [{"name": f"x{i}", "type": "number"} for i in range(3)],
    }
    number = rel.ready(files={"model.pkl": lr_pickle()}, contract=contract)
    loaded = _loader(platform).load(_version_id(platform, rel, number))
    assert loaded.predictor.kind == "pickle"
    batch = loaded.contract.validate_records([{"x0": 2.0, "x1": 0.0, "x2": 0.0}])
    assert loaded.predictor.predict(batch).primary().tolist() == [1]


def test_router_follows_deployments_and_measures_rollback(platform: Platform, rel: Release) -> None:
    trained = logistic()
    v1 = rel.ready(files=trained.files(), contract=trained.contract.to_json())
    v2 = rel.ready(files=logistic(c=0.01).files(), contract=trained.contract.to_json())
    runtime = platform.serving_runtime()
    runtime.start()
    try:
        d = platform.deployments
        d.deploy(rel.deployer, "fraud", "scorer", v1)
        route = runtime.router.get("fraud")
        assert route is not None
        assert route.stable is not None
        assert route.stable.number == v1
        d.deploy(rel.deployer, "fraud", "scorer", v2, plan=RolloutPlan(kind="canary", weight=40))
        route = runtime.router.get("fraud")
        assert route is not None
        assert route.canary is not None
        picks = [route.pick(f"user-{i}")[1] for i in range(2000)]
        share = picks.count("canary") / len(picks)
        assert abs(share - 0.4) < 0.05
        assert len({route.pick("same-user")[1] for _ in range(20)}) == 1
        d.rollback(rel.deployer, "fraud")
        route = runtime.router.get("fraud")
        assert route is not None
        assert route.canary is None
        assert {route.pick(f"u{i}")[0].number for i in range(100)} == {v1}  # type: ignore[union-attr]
        body, _ = runtime.metrics.render()
        assert b"bastion_deploy_time_to_rollback_seconds_count" in body
        d.kill(rel.deployer, "fraud")
        killed = runtime.router.get("fraud")
        assert killed is not None
        assert killed.spec.state == "killed"
    finally:
        runtime.stop()


def test_the_receipt_digests_are_the_keyed_input_and_output(
    platform: Platform, rel: Release
) -> None:
    """Whoever holds the receipt key can show which exact input produced which output:
    the digests are HMACs of the request body and of the outputs as documented."""
    import orjson
    from starlette.testclient import TestClient

    from bastion.api import create_app

    trained = logistic()
    v1 = rel.ready(files=trained.files(), contract=trained.contract.to_json())
    rel.platform.deployments.deploy(rel.deployer, "fraud", "scorer", v1)
    token = platform.tokens.create(rel.admin, principal_id=rel.client.principal_id).secret
    body = orjson.dumps({"records": trained.records(slice(0, 3))})
    with TestClient(create_app(platform)) as client:
        native = client.post(
            "/v1/endpoints/fraud/predict",
            content=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        ).json()
        v2 = client.post(
            "/v2/models/fraud/infer",
            json={
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [3, 30],
                        "datatype": "FP64",
                        "data": trained.x[:3].ravel().tolist(),
                    }
                ]
            },
            headers={"Authorization": f"Bearer {token}"},
        ).json()
    receipts = platform.receipts
    assert native["receipt"]["input_digest"] == receipts.keyed_digest(body, purpose="input")
    outputs = {"classes": native["classes"], "outputs": native["outputs"]}
    expected = receipts.keyed_digest(
        orjson.dumps(outputs, option=orjson.OPT_SORT_KEYS), purpose="output"
    )
    assert native["receipt"]["output_digest"] == expected
    # The same prediction through V2 carries the same output digest, and what it is over.
    v2_outputs = {
        t["name"]: np.asarray(t["data"]).reshape(t["shape"]).tolist() for t in v2["outputs"]
    }
    rebuilt = {"classes": v2["parameters"]["classes"], "outputs": v2_outputs}
    assert v2["parameters"]["receipt"]["output_digest"] == receipts.keyed_digest(
        orjson.dumps(rebuilt, option=orjson.OPT_SORT_KEYS), purpose="output"
    )


def test_a_version_over_the_serving_size_limit_is_not_loaded(
    platform: Platform, rel: Release
) -> None:
    trained = logistic()
    number = rel.ready(files=trained.files(), contract=trained.contract.to_json())
    small = VerifiedLoader(
        database=platform.database,
        models=platform.models,
        audit=platform.audit,
        allowlist=platform.models.allowlist,
        clock=platform.clock,
        max_bytes=1024,
    )
    with pytest.raises(InvalidInput) as refused:
        small.load(_version_id(platform, rel, number))
    assert refused.value.code == "serving.artifact_too_large"


def test_endpoint_row_limit_and_full_shadow_queue(platform: Platform, rel: Release) -> None:
    from starlette.testclient import TestClient

    from bastion.api import create_app

    trained = logistic()
    contract = trained.contract.to_json()
    v1 = rel.ready(files=trained.files(), contract=contract)
    v2 = rel.ready(files=logistic(c=0.01).files(), contract=contract)
    generous = {"rate": 1e6, "burst": 10**7}
    platform.deployments.deploy(
        rel.deployer,
        "fraud",
        "scorer",
        v1,
        limits={"max_rows": 5, "principal": generous, "endpoint": generous},
    )
    platform.deployments.set_shadow(rel.deployer, "fraud", v2)
    token = platform.tokens.create(rel.admin, principal_id=rel.client.principal_id).secret
    headers = {"Authorization": f"Bearer {token}"}
    app = create_app(platform)
    with TestClient(app) as client:
        runtime = app.state.serving
        over = client.post(
            "/v1/endpoints/fraud/predict",
            json={"records": trained.records(slice(0, 6))},
            headers=headers,
        )
        assert over.status_code == 422
        assert over.json()["error"]["code"] == "contract.too_many_rows"
        runtime.gateway.shadows.close()  # no worker: the shadow queue fills and drops
        for _ in range(platform.settings.shadow_queue_size + 3):
            ok = client.post(
                "/v1/endpoints/fraud/predict",
                json={"records": trained.records(slice(0, 1))},
                headers=headers,
            )
            assert ok.status_code == 200
        body, _ = runtime.metrics.render()
    dropped = [
        line
        for line in body.decode().splitlines()
        if line.startswith("bastion_gateway_shadow_comparisons_total")
        and 'outcome="dropped"' in line
    ]
    assert dropped
    assert float(dropped[0].rsplit(" ", 1)[1]) >= 3
