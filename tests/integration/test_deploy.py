"""Deployments through the real policy gates and ledger, on SQLite and PostgreSQL: plans,
promotion, rollback, the kill switch, shadows, the controller's steps, and every refusal."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from bastion.core import ManualClock
from bastion.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from bastion.deploy import RolloutPlan, RouteSpec
from bastion.identity import Role
from bastion.platform import Platform
from bastion.policy import PolicyDenied
from releases import Release, make_release
from support import Actor, MakeActor


@pytest.fixture
def rel(platform: Platform, make_actor: MakeActor, admin: Actor, tmp_path: Path) -> Release:
    return make_release(platform, make_actor, admin.token, tmp_path)


def _events(platform: Platform, prefix: str = "deploy.") -> list[dict[str, object]]:
    with platform.database.read() as session:
        entries = platform.audit.events(session, limit=1000)
    return [json.loads(e.body) for e in entries if e.type.startswith(prefix)]


def test_first_deployment_is_all_at_once_gated_and_ledgered(rel: Release) -> None:
    v1 = rel.ready()
    deployments = rel.platform.deployments
    with pytest.raises(Conflict) as refused:
        deployments.deploy(
            rel.deployer, "fraud", "scorer", v1, plan=RolloutPlan(kind="canary", weight=10)
        )
    assert refused.value.code == "deploy.no_stable"
    endpoint = deployments.deploy(rel.deployer, "fraud", "scorer", v1)
    assert endpoint.stable is not None
    assert endpoint.stable.number == v1
    assert endpoint.state == "serving"
    assert endpoint.generation == 1
    assert endpoint.rollout is not None
    assert endpoint.rollout.state == "completed"
    events = _events(rel.platform)
    assert [e["type"] for e in events] == ["deploy.endpoint.deploy"]
    data = events[0]["data"]
    assert isinstance(data, dict)
    assert data["version"] == v1
    assert data["decision_id"]
    with pytest.raises(Conflict) as again:
        deployments.deploy(rel.deployer, "fraud", "scorer", v1)
    assert again.value.code == "deploy.already_serving"
    rel.platform.ledger.verify()


def test_an_unapproved_version_is_denied_and_nothing_changes(rel: Release) -> None:
    v1 = rel.register()
    with pytest.raises(PolicyDenied) as denied:
        rel.platform.deployments.deploy(rel.deployer, "fraud", "scorer", v1)
    assert any("signature" in r for r in denied.value.details["reasons"])
    with pytest.raises(NotFound):
        rel.platform.deployments.get(rel.deployer, "fraud")
    assert _events(rel.platform) == []
    denials = _events(rel.platform, "policy.decision")
    assert denials
    assert denials[-1]["data"]["allow"] is False  # type: ignore[index]


def test_canary_then_promote_then_rollback(rel: Release) -> None:
    d = rel.platform.deployments
    v1, v2 = rel.ready(), rel.ready()
    d.deploy(rel.deployer, "fraud", "scorer", v1)
    canary = d.deploy(
        rel.deployer, "fraud", "scorer", v2, plan=RolloutPlan(kind="canary", weight=20)
    )
    assert canary.canary is not None
    assert canary.canary.number == v2
    assert canary.canary_weight == 20
    assert canary.stable is not None
    assert canary.stable.number == v1
    with pytest.raises(Conflict) as busy:
        d.deploy(rel.deployer, "fraud", "scorer", v1)
    assert busy.value.code == "deploy.rollout_open"
    promoted = d.promote(rel.deployer, "fraud")
    assert promoted.stable is not None
    assert promoted.stable.number == v2
    assert promoted.canary is None
    assert promoted.previous is not None
    assert promoted.previous.number == v1
    back = d.rollback(rel.deployer, "fraud", reason="bad latency")
    assert back.stable is not None
    assert back.stable.number == v1
    history = d.history(rel.deployer, "fraud")
    assert [e.action for e in history] == ["rollback", "promote", "canary_start", "deploy"]
    assert history[0].reason == "bad latency"
    assert back.generation == 4


def test_rolling_back_a_canary_leaves_the_stable_version(rel: Release) -> None:
    d = rel.platform.deployments
    v1, v2 = rel.ready(), rel.ready()
    d.deploy(rel.deployer, "fraud", "scorer", v1)
    d.deploy(rel.deployer, "fraud", "scorer", v2, plan=RolloutPlan(kind="canary", weight=50))
    back = d.rollback(rel.deployer, "fraud")
    assert back.canary is None
    assert back.canary_weight == 0
    assert back.stable is not None
    assert back.stable.number == v1
    assert back.rollout is not None
    assert back.rollout.state == "rolled_back"
    with pytest.raises(Conflict):
        d.promote(rel.deployer, "fraud")


def test_rollback_with_nothing_earlier_is_refused(rel: Release) -> None:
    d = rel.platform.deployments
    d.deploy(rel.deployer, "fraud", "scorer", rel.ready())
    with pytest.raises(Conflict) as refused:
        d.rollback(rel.deployer, "fraud")
    assert refused.value.code == "deploy.no_previous"


def test_kill_switch_and_revive(rel: Release) -> None:
    d = rel.platform.deployments
    d.deploy(rel.deployer, "fraud", "scorer", rel.ready())
    killed = d.kill(rel.deployer, "fraud", reason="incident 42")
    assert killed.state == "killed"
    with pytest.raises(Conflict):
        d.kill(rel.deployer, "fraud")
    assert d.revive(rel.deployer, "fraud").state == "serving"
    with pytest.raises(Conflict):
        d.revive(rel.deployer, "fraud")
    types = [e["type"] for e in _events(rel.platform)]
    assert types[-2:] == ["deploy.endpoint.kill", "deploy.endpoint.revive"]


def test_the_kill_switch_is_never_blocked_by_evidence(rel: Release) -> None:
    d = rel.platform.deployments
    v1 = rel.ready()
    d.deploy(rel.deployer, "fraud", "scorer", v1)
    # The approval is revoked after deployment: the evidence no longer releases the version,
    # yet the safety actions still work.
    for approval in rel.platform.approvals.list(rel.deployer, "scorer", v1):
        rel.platform.approvals.revoke(rel.approvers[0], approval.id, reason="leak")
    assert d.kill(rel.deployer, "fraud").state == "killed"


def test_linear_rollout_steps_bakes_and_completes(rel: Release, clock: ManualClock) -> None:
    d = rel.platform.deployments
    v1, v2 = rel.ready(), rel.ready()
    d.deploy(rel.deployer, "fraud", "scorer", v1)
    plan = RolloutPlan(kind="linear", steps=(10, 50), interval=60, bake=300)
    assert plan.steps == (10, 50, 100)
    started = d.deploy(rel.deployer, "fraud", "scorer", v2, plan=plan)
    assert started.canary_weight == 10
    assert d.advance() == []  # not due yet
    clock.advance(timedelta(seconds=61))
    assert d.advance() == ["fraud"]
    assert d.get(rel.deployer, "fraud").canary_weight == 50
    d.pause(rel.deployer, "fraud")
    clock.advance(timedelta(seconds=120))
    assert d.advance() == []
    assert d.get(rel.deployer, "fraud").canary_weight == 50
    d.resume(rel.deployer, "fraud")
    clock.advance(timedelta(seconds=61))
    assert d.advance() == ["fraud"]
    baking = d.get(rel.deployer, "fraud")
    assert baking.stable is not None
    assert baking.stable.number == v2
    assert baking.rollout is not None
    assert baking.rollout.state == "baking"
    clock.advance(timedelta(seconds=301))
    assert d.advance() == ["fraud"]
    done = d.get(rel.deployer, "fraud")
    assert done.rollout is not None
    assert done.rollout.state == "completed"
    actions = [e.action for e in d.history(rel.deployer, "fraud")]
    assert actions == [
        "complete", "promote", "resume", "pause", "step", "linear_start", "deploy"
    ]  # fmt: skip
    actors = {e.actor for e in d.history(rel.deployer, "fraud")[:3]}
    assert "system:rollout-controller" in actors


def test_a_baking_version_rolls_back_to_its_predecessor(rel: Release, clock: ManualClock) -> None:
    d = rel.platform.deployments
    v1, v2 = rel.ready(), rel.ready()
    d.deploy(rel.deployer, "fraud", "scorer", v1)
    d.deploy(rel.deployer, "fraud", "scorer", v2, plan=RolloutPlan(bake=600))
    now = d.get(rel.deployer, "fraud")
    assert now.rollout is not None
    assert now.rollout.state == "baking"
    back = d.rollback(rel.deployer, "fraud")
    assert back.stable is not None
    assert back.stable.number == v1


def test_canary_auto_promotes_after_a_clean_bake(rel: Release, clock: ManualClock) -> None:
    d = rel.platform.deployments
    v1, v2 = rel.ready(), rel.ready()
    d.deploy(rel.deployer, "fraud", "scorer", v1)
    d.deploy(
        rel.deployer,
        "fraud",
        "scorer",
        v2,
        plan=RolloutPlan(kind="canary", weight=5, bake=120, auto_promote=True),
    )
    clock.advance(timedelta(seconds=121))
    assert d.advance() == ["fraud"]
    done = d.get(rel.deployer, "fraud")
    assert done.stable is not None
    assert done.stable.number == v2
    assert done.rollout is not None
    assert done.rollout.state == "completed"


def test_shadow_is_gated_and_can_be_cleared(rel: Release) -> None:
    d = rel.platform.deployments
    v1, v2 = rel.ready(), rel.ready()
    d.deploy(rel.deployer, "fraud", "scorer", v1)
    shadowed = d.set_shadow(rel.deployer, "fraud", v2, share=25)
    assert shadowed.shadow is not None
    assert shadowed.shadow.number == v2
    assert shadowed.shadow_share == 25
    unapproved = rel.register()
    with pytest.raises(PolicyDenied):
        d.set_shadow(rel.deployer, "fraud", unapproved)
    cleared = d.set_shadow(rel.deployer, "fraud", None)
    assert cleared.shadow is None


def test_only_deployers_scoped_to_the_endpoint_may_change_it(
    rel: Release, platform: Platform, make_actor: MakeActor
) -> None:
    v1 = rel.ready()
    for caller in (rel.client, rel.dev, rel.admin, rel.approvers[0]):
        with pytest.raises(PermissionDenied):
            platform.deployments.deploy(caller, "fraud", "scorer", v1)
    scoped = platform.tokens.authenticate(
        make_actor("ops-other", Role.DEPLOYER, resources=("endpoint:other",)).token
    )
    with pytest.raises(PermissionDenied) as denied:
        platform.deployments.deploy(scoped, "fraud", "scorer", v1)
    assert denied.value.code == "auth.scope_denied"
    platform.deployments.deploy(rel.deployer, "fraud", "scorer", v1)
    with pytest.raises(PermissionDenied):
        platform.deployments.kill(scoped, "fraud")
    with pytest.raises(PermissionDenied):
        platform.deployments.get(rel.client, "fraud")


@pytest.mark.parametrize(
    ("plan", "code"),
    [
        ({"kind": "blue-green"}, "deploy.bad_plan"),
        ({"kind": "canary", "weight": 0}, "deploy.bad_plan"),
        ({"kind": "canary", "weight": 100}, "deploy.bad_plan"),
        ({"kind": "canary", "weight": 101}, "deploy.bad_weight"),
        ({"kind": "canary", "weight": float("nan")}, "deploy.bad_weight"),
        ({"kind": "canary", "weight": True}, "deploy.bad_weight"),
        ({"kind": "linear", "steps": [], "interval": 60}, "deploy.bad_plan"),
        ({"kind": "linear", "steps": [50, 10], "interval": 60}, "deploy.bad_plan"),
        ({"kind": "linear", "steps": [10, 50], "interval": 0}, "deploy.bad_plan"),
        ({"kind": "linear", "steps": list(range(1, 30)), "interval": 5}, "deploy.bad_plan"),
        ({"kind": "all-at-once", "steps": [10]}, "deploy.bad_plan"),
        ({"kind": "all-at-once", "bake": -1}, "deploy.bad_plan"),
        ({"kind": "all-at-once", "bake": 10**9}, "deploy.bad_plan"),
        ({"kind": "linear", "steps": [10], "interval": 5, "auto_promote": True}, "deploy.bad_plan"),
        ({"kind": "canary", "colour": "blue"}, "deploy.bad_plan"),
    ],
)
def test_bad_plans_are_refused(plan: dict[str, object], code: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        RolloutPlan.from_json(plan)
    assert refused.value.code == code


def test_bad_names_limits_and_models_change_nothing(rel: Release) -> None:
    d = rel.platform.deployments
    v1 = rel.ready()
    for name in ("Fraud", "-x", "a" * 64, "a b", "../x", ""):
        with pytest.raises(InvalidInput) as bad:
            d.deploy(rel.deployer, name, "scorer", v1)
        assert bad.value.code == "deploy.bad_endpoint_name"
    for limits in (
        {"principal": {"rate": 0, "burst": 1}},
        {"principal": {"rate": 1}},
        {"endpoint": {"rate": 1, "burst": 0}},
        {"max_rows": 0},
        {"max_rows": 10**6},
        {"per_ip": 3},
    ):
        with pytest.raises(InvalidInput) as bad:
            d.deploy(rel.deployer, "fraud", "scorer", v1, limits=limits)
        assert bad.value.code == "deploy.bad_limits"
    with pytest.raises(NotFound):
        d.deploy(rel.deployer, "fraud", "nope", 1)
    with pytest.raises(NotFound):
        d.deploy(rel.deployer, "fraud", "scorer", 99)
    d.deploy(rel.deployer, "fraud", "scorer", v1, limits={"max_rows": 10})
    other = rel.ready("other-model")
    with pytest.raises(Conflict) as mismatch:
        d.deploy(rel.deployer, "fraud", "other-model", other)
    assert mismatch.value.code == "deploy.model_mismatch"
    assert d.get(rel.deployer, "fraud").limits == {"max_rows": 10}
    assert len(_events(rel.platform)) == 1


def test_listeners_hear_committed_changes_only(rel: Release) -> None:
    heard: list[RouteSpec] = []
    rel.platform.deployments.add_listener(heard.append)
    unapproved = rel.register()
    with pytest.raises(PolicyDenied):
        rel.platform.deployments.deploy(rel.deployer, "fraud", "scorer", unapproved)
    assert heard == []
    rel.platform.deployments.deploy(rel.deployer, "fraud", "scorer", rel.ready())
    assert [(s.name, s.generation, s.last_action) for s in heard] == [("fraud", 1, "deploy")]
    specs = rel.platform.deployments.routes()
    assert [s.name for s in specs] == ["fraud"]
    assert specs[0].last_action == "deploy"
    assert rel.platform.deployments.generations() == {"fraud": 1}


def test_concurrent_deployments_one_wins_and_the_other_is_refused(rel: Release) -> None:
    import threading

    d = rel.platform.deployments
    v1, v2, v3 = rel.ready(), rel.ready(), rel.ready()
    d.deploy(rel.deployer, "fraud", "scorer", v1)
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def start(version: int) -> None:
        barrier.wait()
        try:
            d.deploy(
                rel.deployer, "fraud", "scorer", version, plan=RolloutPlan(kind="canary", weight=10)
            )
            outcomes.append("ok")
        except Conflict as error:
            outcomes.append(error.code)

    threads = [threading.Thread(target=start, args=(v,)) for v in (v2, v3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["deploy.rollout_open", "ok"]
    endpoint = d.get(rel.deployer, "fraud")
    assert endpoint.canary is not None
    assert endpoint.generation == 2
