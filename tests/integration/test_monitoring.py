"""Monitoring in-process, on SQLite and PostgreSQL: reference profiles made at registration
from the training dataset, drift of live traffic against them (alert, metrics, API), a drifting
canary rolled back by the guard, windows published for other processes, incident snapshots."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from bastion.api import create_app
from bastion.core.clock import ManualClock
from bastion.core.settings import Settings
from bastion.deploy import RolloutPlan
from bastion.identity import Caller, Role
from bastion.monitoring.incidents import render_markdown, verify_bundle
from bastion.monitoring.monitor import published_windows
from bastion.platform import Platform
from bastion.registry import DatasetRef, LineageRole, ModelSpec, VersionSpec
from bastion.registry.profile import ReferenceProfile
from bastion.serving.runtime import ServingRuntime
from models import logistic
from releases import Release, make_release
from support import Actor, MakeActor


@pytest.fixture
def rel(platform: Platform, make_actor: MakeActor, admin: Actor, tmp_path: Path) -> Release:
    return make_release(platform, make_actor, admin.token, tmp_path)


@pytest.fixture
def steward(platform: Platform, make_actor: MakeActor) -> Caller:
    return platform.tokens.authenticate(make_actor("steward", Role.DATA_STEWARD).token)


def _register_with_data(rel: Release, steward: Caller, tmp: Path) -> int:
    trained = logistic()
    data = tmp / "training.csv"
    if not data.exists():
        data.write_bytes(trained.csv())
        rel.platform.datasets.register(
            steward,
            "cancer",
            classification_="internal",
            purposes=["scoring"],
            retention_days=30,
            file=data,
        )
    root = tmp / f"model-{len(list(tmp.iterdir()))}"
    root.mkdir()
    for path, blob in trained.files().items():
        (root / path).write_bytes(blob)
    upload = rel.platform.staging.create(rel.dev)
    rel.platform.staging.add_tree(rel.dev, upload.id, root)
    version = rel.platform.models.register_version(
        rel.dev,
        "scorer",
        upload.id,
        VersionSpec(datasets=(DatasetRef("cancer", None, LineageRole.TRAINING),), target="target"),
        create=ModelSpec(purpose="scoring"),
    )
    rel.approve(version.version)
    return version.version


@pytest.fixture
def served(platform: Platform) -> Iterator[tuple[TestClient, ServingRuntime]]:
    app = create_app(platform)
    with TestClient(app) as client:
        runtime = app.state.serving
        runtime._stop.set()  # no background passes: the test drives `watch`
        yield client, runtime


def _send(client: TestClient, rel: Release, rows: np.ndarray, token: str) -> None:
    names = logistic().names
    for start in range(0, len(rows), 5):
        records = [dict(zip(names, map(float, r), strict=True)) for r in rows[start : start + 5]]
        r = client.post(
            "/v1/endpoints/fraud/predict",
            json={"records": records},
            headers={"Authorization": f"Bearer {token}", "X-Bastion-Route-Key": str(start)},
        )
        assert r.status_code == 200, r.text


def test_registration_profiles_the_training_data(
    platform: Platform, rel: Release, steward: Caller, tmp_path: Path
) -> None:
    number = _register_with_data(rel, steward, tmp_path)
    version = platform.models.version(rel.dev, "scorer", number)
    assert version.reference_profile is not None
    profile = ReferenceProfile.from_json(version.reference_profile)
    assert list(profile.features) == list(logistic().names)
    assert profile.rows == len(logistic().y)
    assert profile.prediction is not None
    labels = profile.prediction.counts
    assert sum(labels[:-1]) == len(logistic().y)  # every label counted, none missing
    assert len(json.dumps(version.reference_profile)) < 16 * 1024
    platform.ledger.sequence_all()
    bodies = [json.loads(e.body) for e in platform.ledger.entries(0, platform.ledger.size())]
    registered = [b for b in bodies if b["type"] == "registry.version.registered"][-1]
    assert registered["data"]["reference_profile"] == profile.digest()


def test_a_version_without_training_data_has_no_profile(platform: Platform, rel: Release) -> None:
    number = rel.ready(files=logistic().files(), contract=logistic().contract.to_json())
    assert platform.models.version(rel.dev, "scorer", number).reference_profile is None


def test_live_drift_is_measured_alerted_and_exposed(
    platform: Platform,
    rel: Release,
    steward: Caller,
    tmp_path: Path,
    served: tuple[TestClient, ServingRuntime],
    make_actor: MakeActor,
) -> None:
    client, runtime = served
    number = _register_with_data(rel, steward, tmp_path)
    platform.deployments.deploy(rel.deployer, "fraud", "scorer", str(number))
    token = make_actor("app2", Role.INFERENCE_CLIENT).token
    x = logistic().x
    _send(client, rel, x[:300], token)  # the training distribution itself
    runtime.watch()
    monitor = runtime.monitor
    assert monitor is not None
    vid = platform.models.version(rel.dev, "scorer", number).id
    same = monitor.drift("fraud", vid)
    assert same is not None
    assert not same.any_drift, same.drifted
    assert not [a for a in monitor.alerts.active() if a.name == "DriftDetected"]

    shifted = x[:400] * 1.8  # every feature scaled far outside its training distribution
    _send(client, rel, shifted, token)
    runtime.watch()
    report = monitor.drift("fraud", vid)
    assert report is not None
    assert report.any_drift
    assert len(report.drifted) >= 20
    assert [a for a in monitor.alerts.active() if a.name == "DriftDetected"]

    admin_headers = {"Authorization": f"Bearer {rel_token(platform, make_actor)}"}
    metrics = client.get("/metrics", headers=admin_headers).text
    assert 'bastion_monitor_drift_score{endpoint="fraud",version="' in metrics
    view = client.get("/v1/endpoints/fraud/monitoring", headers=admin_headers).json()
    assert view["versions"][0]["drift"]["drifted"]
    assert view["versions"][0]["requests"] == 140  # 700 rows in 5-row requests

    # The published windows let a process without them (the CLI) see the same evidence.
    monitor.publish()
    stored = published_windows(platform.database, "fraud")
    assert stored[vid].requests == 140


def rel_token(platform: Platform, make_actor: MakeActor) -> str:
    return make_actor("oncall", Role.DEPLOYER).token


def test_a_drifting_canary_is_rolled_back(
    platform: Platform,
    rel: Release,
    steward: Caller,
    tmp_path: Path,
    served: tuple[TestClient, ServingRuntime],
    make_actor: MakeActor,
) -> None:
    client, runtime = served
    stable = rel.ready(files=logistic().files(), contract=logistic().contract.to_json())
    canary = _register_with_data(rel, steward, tmp_path)
    platform.deployments.deploy(rel.deployer, "fraud", "scorer", str(stable))
    platform.deployments.deploy(
        rel.deployer, "fraud", "scorer", str(canary), plan=RolloutPlan(kind="canary", weight=50)
    )
    token = make_actor("app3", Role.INFERENCE_CLIENT).token
    _send(client, rel, logistic().x[:500] * 1.8, token)
    rolled = runtime.watch()
    assert rolled == ["fraud"]
    endpoint = platform.deployments.get(rel.deployer, "fraud")
    assert endpoint.canary is None
    history = platform.deployments.history(rel.deployer, "fraud")
    assert history[0].action == "rollback"
    assert history[0].reason.startswith("automatic rollback: drift")  # anomalies hit both

    incidents = platform.incidents.list(rel.deployer, "fraud")
    assert len(incidents) == 1
    assert incidents[0].trigger == "rollback"
    incident = incidents[0]
    assert verify_bundle(incident.bundle, incident.signature, platform.incidents.verifier_key())
    text = render_markdown(incident)
    assert "drift" in text
    assert "rolled-back" in text


def test_a_manual_snapshot_reads_published_windows(
    platform: Platform, rel: Release, served: tuple[TestClient, ServingRuntime],
    make_actor: MakeActor,
) -> None:  # fmt: skip
    client, runtime = served
    number = rel.ready(files=logistic().files(), contract=logistic().contract.to_json())
    platform.deployments.deploy(rel.deployer, "fraud", "scorer", str(number))
    _send(client, rel, logistic().x[:50], make_actor("app4", Role.INFERENCE_CLIENT).token)
    runtime.watch()
    assert runtime.monitor is not None
    runtime.monitor.publish()
    incident = platform.incidents.snapshot(
        rel.deployer, "fraud", live=published_windows(platform.database, "fraud"), note="drill"
    )
    assert incident.trigger == "manual"
    assert incident.bundle["windows"][0]["overview"]["requests"] == 10
    assert incident.bundle["ledger_checkpoint"]
    with pytest.raises(Exception, match="trigger"):
        platform.incidents.snapshot(rel.deployer, "fraud", trigger="whim")
    denied = platform.tokens.authenticate(make_actor("viewer", Role.AUDITOR).token)
    with pytest.raises(Exception, match=r"denied|permission"):
        platform.incidents.snapshot(denied, "fraud")


def test_bad_fault_injection_settings_are_refused() -> None:
    from bastion.core.errors import ConfigError
    from bastion.serving.faults import parse_faults

    assert parse_faults(None) == {}
    good = parse_faults('[{"endpoint": "fraud", "version": 2, "error_rate": 0.5}]')
    assert good[("fraud", 2)].error_rate == 0.5
    for bad in (
        "{",
        "{}",
        '[{"endpoint": "fraud"}]',
        '[{"endpoint": "fraud", "version": 0}]',
        '[{"endpoint": "fraud", "version": 1, "error_rate": 2}]',
        '[{"endpoint": "fraud", "version": 1, "latency_ms": -1}]',
        '[{"endpoint": "fraud", "version": 1, "surprise": 1}]',
        '[{"endpoint": "NOT A NAME", "version": 1}]',
    ):
        with pytest.raises((ConfigError, Exception)) as info:
            parse_faults(bad)
        assert getattr(info.value, "code", "").startswith(("config.", "deploy.")), bad


def test_auto_promotion_waits_for_enough_canary_evidence(
    platform: Platform,
    rel: Release,
    served: tuple[TestClient, ServingRuntime],
    make_actor: MakeActor,
    clock: ManualClock,
) -> None:
    client, runtime = served
    contract = logistic().contract.to_json()
    stable = rel.ready(files=logistic().files(), contract=contract)
    canary = rel.ready(files=logistic(c=0.1).files(), contract=contract)
    platform.deployments.deploy(rel.deployer, "fraud", "scorer", str(stable))
    platform.deployments.deploy(
        rel.deployer,
        "fraud",
        "scorer",
        str(canary),
        plan=RolloutPlan(kind="canary", weight=50, bake=60, auto_promote=True),
    )
    clock.advance(timedelta(seconds=61))
    runtime.tick()  # due, but the canary has answered nothing: held
    endpoint = platform.deployments.get(rel.deployer, "fraud")
    assert endpoint.canary is not None
    assert endpoint.canary.number == canary
    _send(
        client,
        rel,
        np.repeat(logistic().x[:1], 400, axis=0),
        make_actor("a5", Role.INFERENCE_CLIENT).token,
    )
    runtime.tick()  # ~40 healthy canary requests: judged clean, promoted
    endpoint = platform.deployments.get(rel.deployer, "fraud")
    assert endpoint.canary is None
    assert endpoint.stable is not None
    assert endpoint.stable.number == canary


def test_due_chores_run_in_the_serving_loop_and_a_failing_one_is_contained(
    served: tuple[TestClient, ServingRuntime],
) -> None:
    from bastion.serving.runtime import Chore

    _, runtime = served
    ran: list[str] = []

    def boom() -> None:
        ran.append("boom")
        raise RuntimeError("chore failed")

    runtime.chores[:] = [
        Chore("failing", 0.001, boom),
        Chore("counted", 0.001, lambda: ran.append("ok")),
        Chore("never", 0, lambda: ran.append("never")),
        Chore("hourly", 3600, lambda: ran.append("hourly")),
    ]
    runtime.tick()
    runtime.tick()  # the hourly chore is not due again
    assert ran.count("boom") >= 1
    assert ran.count("ok") >= 1
    assert ran.count("hourly") == 1
    assert "never" not in ran


def test_the_server_enforces_retention_as_a_chore_at_the_configured_interval(
    tmp_path: Path, db_url: str
) -> None:
    """`BASTION_RETENTION_CHECK_SECONDS` becomes the serving loop's retention chore, which
    runs `RetentionService.enforce_due`; 0 keeps the chore but never runs it."""
    for every in (600.0, 0.0):
        settings = Settings.from_env(
            home=tmp_path / f"home-{every:g}", database_url=db_url, retention_check_seconds=every
        )
        with Platform.initialise(settings) as platform:
            runtime = platform.serving_runtime()
            (chore,) = [c for c in runtime.chores if c.name == "retention"]
            assert chore.every == every
            assert chore.run == platform.retention.enforce_due


def test_trends_add_up_replicas_and_outlive_a_restart(platform: Platform) -> None:
    """Each replica publishes its minutes; `minutes` adds this process's live counts to what
    the others (and an earlier run of this server) published, and old minutes are dropped."""
    from bastion.monitoring.alerts import AlertRouter, LogSink
    from bastion.monitoring.monitor import TREND_MINUTES, Monitor
    from bastion.monitoring.slo import SloTracker
    from bastion.monitoring.windows import WindowConfig, Windows

    now = [1_800_000_000.0]  # on a minute boundary
    clock = lambda: now[0]  # noqa: E731

    def replica() -> Monitor:
        return Monitor(
            windows=Windows(WindowConfig(), clock=clock),
            slo=SloTracker(clock=clock),
            alerts=AlertRouter([LogSink()], clock=clock),
            database=platform.database,
            clock=clock,
        )

    a, b = replica(), replica()
    for _ in range(10):
        a.request("fraud", 200, 0.01)
    a.request("fraud", 503, 0.01)
    for _ in range(4):
        b.request("fraud", 200, 0.01)
    a.publish()
    now[0] += 60  # the next minute: b's live count, a's published one
    a.request("fraud", 200, 0.01)
    b.request("fraud", 200, 0.01)
    a.publish()
    seen_by_b = b.minutes("fraud", 3)
    assert [(m.requests, m.errors) for m in seen_by_b] == [(0, 0), (15, 1), (2, 0)]
    # b has not published: a sees only its own minutes
    assert [m.requests for m in a.minutes("fraud", 3)] == [0, 11, 1]
    b.publish()
    assert [m.requests for m in a.minutes("fraud", 3)] == [0, 15, 2]

    # A restart: a new monitor (a new replica id) starts from what was published.
    restarted = replica()
    assert [m.requests for m in restarted.minutes("fraud", 3)] == [0, 15, 2]
    assert [m.requests for m in restarted.minutes("other", 3)] == [0, 0, 0]

    # Publishing again rewrites a minute rather than adding it twice.
    a.publish()
    assert [m.requests for m in restarted.minutes("fraud", 3)] == [0, 15, 2]

    # Minutes older than the trends' span are deleted on the next publish.
    now[0] += (TREND_MINUTES + 2) * 60
    a.request("fraud", 200, 0.01)
    a.publish()
    assert sum(m.requests for m in restarted.minutes("fraud", TREND_MINUTES)) == 1
