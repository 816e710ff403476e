"""Policy gates, approvals and attestations end to end through the services, on SQLite and
PostgreSQL: the gate x role x condition matrix, segregation of duties, bad input that
changes nothing, decision records, bundle changes, and the property that one principal alone
can never get a version released."""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from bastion.core import ManualClock
from bastion.core.errors import (
    AuthenticationError,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from bastion.identity import Caller, Role
from bastion.platform import Platform
from bastion.policy import GATES, PolicyBundle, PolicyDenied, PolicyError
from bastion.registry import DatasetRef, ModelSpec, VersionSpec
from bastion.store.tables import ApprovalRow, ModelAliasRow, PolicyDecisionRow
from bastion.supplychain.attestations import verify_envelope
from bastion.supplychain.signing import load_public_key_pem
from support import MakeActor

VALIDATION = "https://bastion.dev/attestations/validation/v1"
MIA = "https://bastion.dev/attestations/membership-inference/v1"
CSV = b"age,income,approved\n34,52000,1\n51,61000,0\n"
DEPLOYMENT = {"deployment": {"endpoint": "fraud", "kind": "stable", "weight": 100}}


def _model_bytes() -> bytes:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    return pickle.dumps(LogisticRegression().fit(x, (x[:, 0] > 0).astype(int)), protocol=5)


@dataclass
class World:
    platform: Platform
    tmp: Path
    dev: Caller
    steward: Caller
    approvers: list[Caller]
    deployer: Caller
    admin: Caller

    def dataset(self, classification: str, *, name: str = "loans", purpose: str = "credit") -> None:
        path = self.tmp / f"{name}-{classification}.csv"
        path.write_bytes(CSV + classification.encode() + b",1,1\n")
        self.platform.datasets.register(
            self.steward,
            name,
            classification_=classification,
            purposes=[purpose],
            retention_days=30,
            file=path,
        )

    def version(self, *, datasets: tuple[str, ...] = ("loans",), purpose: str = "credit") -> int:
        root = self.tmp / f"model-{os.urandom(4).hex()}"
        root.mkdir()
        (root / "model.pkl").write_bytes(_model_bytes())
        upload = self.platform.staging.create(self.dev)
        self.platform.staging.add_tree(self.dev, upload.id, root)
        version = self.platform.models.register_version(
            self.dev,
            "scorer",
            upload.id,
            VersionSpec(datasets=tuple(DatasetRef.parse(d) for d in datasets)),
            create=ModelSpec(purpose=purpose),
        )
        return version.version

    def release_ready(self, number: int, approvals: int) -> None:
        self.platform.signatures.sign(self.dev, "scorer", number)
        self.platform.attestations.attest(
            self.dev, "scorer", number, VALIDATION, {"passed": True, "auc": 0.91}
        )
        # Confidential and restricted lineage also needs a passing membership-inference audit.
        self.platform.attestations.attest(self.dev, "scorer", number, MIA, {"auc_upper": 0.55})
        for approver in self.approvers[:approvals]:
            self.platform.approvals.approve(approver, "scorer", number, comment="ok")

    def deploy_check(
        self, number: int, actor: Caller | None = None
    ) -> tuple[bool, tuple[str, ...]]:
        decision, _ = self.platform.gates.check(
            actor or self.deployer, "deploy", "scorer", number, **DEPLOYMENT
        )
        return decision.allow, decision.reasons


@pytest.fixture
def world(platform: Platform, make_actor: MakeActor, admin: object, tmp_path: Path) -> World:
    def caller(name: str, *roles: Role) -> Caller:
        return platform.tokens.authenticate(make_actor(name, *roles).token)

    return World(
        platform=platform,
        tmp=tmp_path,
        dev=caller("dev", Role.MODEL_DEVELOPER),
        steward=caller("steward", Role.DATA_STEWARD),
        approvers=[caller(f"approver{i}", Role.APPROVER) for i in range(3)],
        deployer=caller("ops", Role.DEPLOYER),
        admin=platform.tokens.authenticate(admin.token),  # type: ignore[attr-defined]
    )


def _decisions(platform: Platform, gate: str) -> list[PolicyDecisionRow]:
    with platform.database.read() as session:
        return list(
            session.scalars(
                sa.select(PolicyDecisionRow)
                .where(PolicyDecisionRow.gate == gate)
                .order_by(PolicyDecisionRow.at)
            ).all()
        )


def _ledger(platform: Platform, kind: str) -> list[dict[str, object]]:
    platform.ledger.sequence_all()
    bodies = [json.loads(e.body) for e in platform.ledger.entries(0, platform.ledger.size())]
    return [b for b in bodies if b["type"] == kind]


# -- the deploy gate matrix ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("classification", "needed"), [("public", 1), ("internal", 1), ("confidential", 2)]
)
def test_quorum_follows_the_classification(world: World, classification: str, needed: int) -> None:
    world.dataset(classification)
    number = world.version()
    world.release_ready(number, needed - 1)
    allowed, reasons = world.deploy_check(number)
    assert not allowed
    assert any(f"needs {needed} approvals" in r for r in reasons), reasons
    world.platform.approvals.approve(world.approvers[needed - 1], "scorer", number)
    assert world.deploy_check(number) == (True, ())


def test_restricted_needs_three_including_a_data_steward(world: World) -> None:
    world.dataset("restricted")
    number = world.version()
    world.release_ready(number, 3)
    allowed, reasons = world.deploy_check(number)
    assert not allowed
    assert any("data-steward" in r for r in reasons)
    world.platform.approvals.approve(world.steward, "scorer", number)
    allowed, reasons = world.deploy_check(number)
    assert (allowed, reasons) == (True, ())


@pytest.mark.parametrize(
    ("missing", "needle"),
    [
        ("signature", "no signature that verifies"),
        ("attestation", "validation attestation"),
        ("approvals", "needs 1 approvals"),
    ],
)
def test_each_piece_of_evidence_is_required(world: World, missing: str, needle: str) -> None:
    world.dataset("internal")
    number = world.version()
    world.platform.signatures.sign(world.dev, "scorer", number)
    if missing != "attestation":
        world.platform.attestations.attest(
            world.dev, "scorer", number, VALIDATION, {"passed": True}
        )
    if missing != "approvals":
        world.platform.approvals.approve(world.approvers[0], "scorer", number)
    if missing == "signature":  # approvals need a signature, so take its trust away after
        (key,) = world.platform.signatures.list_keys(world.admin)
        world.platform.signatures.revoke_key(world.admin, key.id)
    allowed, reasons = world.deploy_check(number)
    assert not allowed
    assert any(needle in r for r in reasons), reasons


def test_a_failed_validation_does_not_count(world: World) -> None:
    world.dataset("public")
    number = world.version()
    world.platform.signatures.sign(world.dev, "scorer", number)
    world.platform.attestations.attest(world.dev, "scorer", number, VALIDATION, {"passed": False})
    world.platform.approvals.approve(world.approvers[0], "scorer", number)
    allowed, reasons = world.deploy_check(number)
    assert not allowed
    assert any("validation attestation" in r for r in reasons)


def test_a_deployer_who_approved_does_not_count(world: World, make_actor: MakeActor) -> None:
    both = world.platform.tokens.authenticate(
        make_actor("both", Role.APPROVER, Role.DEPLOYER).token
    )
    world.dataset("public")
    number = world.version()
    world.platform.signatures.sign(world.dev, "scorer", number)
    world.platform.attestations.attest(world.dev, "scorer", number, VALIDATION, {"passed": True})
    world.platform.approvals.approve(both, "scorer", number)
    allowed, reasons = world.deploy_check(number, both)
    assert not allowed
    assert any("segregation of duties" in r for r in reasons), reasons
    assert world.deploy_check(number)[0]  # another deployer may deploy it


def test_expired_data_blocks_release(world: World, clock: ManualClock) -> None:
    world.dataset("public")
    number = world.version()
    world.release_ready(number, 1)
    assert world.deploy_check(number)[0]
    clock.advance(timedelta(days=31))  # retention 30 days; approvals last 30 days too
    allowed, reasons = world.deploy_check(number)
    assert not allowed
    assert any("past its retention" in r for r in reasons)


# -- approvals -------------------------------------------------------------------------------


def test_the_author_may_not_approve_even_holding_the_role(
    world: World, make_actor: MakeActor
) -> None:
    author = world.platform.tokens.authenticate(
        make_actor("author", Role.MODEL_DEVELOPER, Role.APPROVER).token
    )
    world.dataset("public")
    world.dev = author
    number = world.version()
    world.platform.signatures.sign(author, "scorer", number)
    with pytest.raises(PolicyDenied) as caught:
        world.platform.approvals.approve(author, "scorer", number)
    assert any("author" in r for r in caught.value.details["reasons"])
    assert world.platform.approvals.list(author, "scorer", number) == []
    (denial,) = _decisions(world.platform, "approval_grant")
    assert denial.allow is False
    assert denial.input["actor"]["id"] == author.principal_id


def test_approval_refusals_change_nothing(world: World) -> None:
    world.dataset("public")
    number = world.version()
    approver = world.approvers[0]
    with pytest.raises(PolicyDenied, match="no signature"):
        world.platform.approvals.approve(approver, "scorer", number)  # unsigned
    world.platform.signatures.sign(world.dev, "scorer", number)
    with pytest.raises(Conflict) as wrong:
        world.platform.approvals.approve(approver, "scorer", number, digest="sha256:" + "0" * 64)
    assert wrong.value.code == "approval.digest_mismatch"
    with pytest.raises(InvalidInput):
        world.platform.approvals.approve(approver, "scorer", number, purpose="research")
    with pytest.raises(PermissionDenied):
        world.platform.approvals.approve(world.deployer, "scorer", number)  # no approval.grant
    assert world.platform.approvals.list(approver, "scorer", number) == []
    digest = world.platform.models.version(approver, "scorer", number).artifact_digest
    first = world.platform.approvals.approve(approver, "scorer", number, digest=digest)
    assert first.state == "valid"
    with pytest.raises(PolicyDenied, match="already approved"):  # a replay counts once
        world.platform.approvals.approve(approver, "scorer", number)
    assert len(world.platform.approvals.list(approver, "scorer", number)) == 1
    (granted,) = _ledger(world.platform, "registry.approval.granted")
    assert granted["actor"] == approver.principal_id
    assert granted["data"]["artifact_digest"] == digest  # type: ignore[index]
    assert granted["data"]["decision_id"] == first.decision_id  # type: ignore[index]


def test_revocation_and_expiry(world: World, clock: ManualClock) -> None:
    world.dataset("public")
    number = world.version()
    world.release_ready(number, 1)
    assert world.deploy_check(number)[0]
    (approval,) = world.platform.approvals.list(world.dev, "scorer", number)
    with pytest.raises(PermissionDenied):
        world.platform.approvals.revoke(world.approvers[1], approval.id)  # not theirs
    revoked = world.platform.approvals.revoke(world.approvers[0], approval.id, "found a bug")
    assert revoked.state == "revoked"
    assert not world.deploy_check(number)[0]
    with pytest.raises(Conflict):
        world.platform.approvals.revoke(world.approvers[0], approval.id)
    with pytest.raises(NotFound):
        world.platform.approvals.revoke(world.admin, "apr_nope")
    again = world.platform.approvals.approve(world.approvers[1], "scorer", number)
    assert world.deploy_check(number)[0]
    clock.advance(timedelta(days=world.platform.settings.approval_ttl_days, seconds=1))
    (state,) = {
        a.state
        for a in world.platform.approvals.list(world.dev, "scorer", number)
        if a.id == again.id
    }
    assert state == "expired"
    assert not world.deploy_check(number)[0]
    assert world.platform.approvals.revoke(world.admin, again.id).state == "revoked"  # admin may


def test_a_new_version_needs_new_approvals(world: World) -> None:
    world.dataset("public")
    first = world.version()
    world.release_ready(first, 1)
    assert world.deploy_check(first)[0]
    second = world.version()
    world.platform.signatures.sign(world.dev, "scorer", second)
    world.platform.attestations.attest(world.dev, "scorer", second, VALIDATION, {"passed": True})
    allowed, reasons = world.deploy_check(second)
    assert not allowed
    assert any("it has 0" in r for r in reasons)


def test_an_approval_of_other_bytes_never_counts(world: World) -> None:
    world.dataset("public")
    number = world.version()
    world.release_ready(number, 1)
    with world.platform.database.transaction() as session:
        session.execute(sa.update(ApprovalRow).values(artifact_digest="sha256:" + "9" * 64))
    (approval,) = world.platform.approvals.list(world.dev, "scorer", number)
    assert approval.state == "superseded"
    assert not world.deploy_check(number)[0]


# -- attestations ----------------------------------------------------------------------------


def test_attestations_are_signed_statements_about_the_digest(world: World) -> None:
    world.dataset("public")
    number = world.version()
    made = world.platform.attestations.attest(
        world.dev, "scorer", number, VALIDATION, {"passed": True, "auc": 0.9}
    )
    assert made.verified
    envelope = world.platform.attestations.envelope(world.dev, made.id)
    key = load_public_key_pem(world.platform.signatures.platform_public_key_pem.encode())
    statement = verify_envelope(key, envelope)
    version = world.platform.models.version(world.dev, "scorer", number)
    assert statement.subject_digest == version.artifact_digest
    assert statement.predicate == {"passed": True, "auc": 0.9}
    for bad_type in ("validation", "ftp://x", "https://x y"):
        with pytest.raises(InvalidInput):
            world.platform.attestations.attest(world.dev, "scorer", number, bad_type, {})
    with pytest.raises(PermissionDenied):
        world.platform.attestations.attest(world.deployer, "scorer", number, VALIDATION, {})
    # A tampered envelope in the store stops verifying, so the gate stops counting it.
    from bastion.store.tables import AttestationRow

    with world.platform.database.transaction() as session:
        row = session.get(AttestationRow, made.id)
        assert row is not None
        doc = json.loads(row.envelope)
        doc["payload"] = doc["payload"][:-8] + "AAAAAAA="
        row.envelope = json.dumps(doc).encode()
    (listed,) = world.platform.attestations.list(world.dev, "scorer", number)
    assert not listed.verified


# -- records, other gates, dry runs ------------------------------------------------------------


def test_decisions_are_recorded_with_the_change_and_denials_alone(world: World) -> None:
    world.dataset("public")
    world.version()
    (allowed,) = _decisions(world.platform, "model_register")
    assert allowed.allow
    (registered,) = _ledger(world.platform, "registry.version.registered")
    assert registered["data"]["decision_id"] == allowed.id  # type: ignore[index]
    (entry,) = [
        e
        for e in _ledger(world.platform, "policy.decision")
        if e["data"]["gate"] == "model_register"  # type: ignore[index]
    ]
    assert entry["data"]["input_digest"] == allowed.input_digest  # type: ignore[index]
    assert entry["data"]["bundle_digest"] == world.platform.policy.active().digest  # type: ignore[index]
    from bastion.policy.engine import input_digest

    assert input_digest(allowed.input) == allowed.input_digest
    world.dataset("public", name="clicks", purpose="marketing")
    with pytest.raises(PolicyDenied) as caught:
        world.version(datasets=("clicks",))  # trains a credit model on marketing data
    assert "purpose limitation" in caught.value.message
    assert [v.version for v in world.platform.models.versions(world.dev, "scorer")] == [1]
    denied = [d for d in _decisions(world.platform, "model_register") if not d.allow]
    assert len(denied) == 1
    assert "purpose" in denied[0].reasons[0]


def test_dataset_gate_requires_retention_for_sensitive_data(world: World) -> None:
    path = world.tmp / "x.csv"
    path.write_bytes(CSV)
    with pytest.raises(PolicyDenied, match="retention"):
        world.platform.datasets.register(
            world.steward, "pii", classification_="restricted", purposes=["x"], file=path
        )
    assert world.platform.datasets.list(world.steward) == []
    assert list((world.platform.settings.home / "blobs").rglob("ds_*")) == []


def test_champion_promotion_is_gated_and_other_aliases_are_not(world: World) -> None:
    world.dataset("public")
    number = world.version()
    world.platform.models.set_alias(world.dev, "scorer", "candidate", number)
    with pytest.raises(PolicyDenied, match="promotion to champion"):
        world.platform.models.set_alias(world.dev, "scorer", "champion", number)
    world.release_ready(number, 1)
    world.platform.models.set_alias(world.dev, "scorer", "champion", number)
    assert world.platform.models.get(world.dev, "scorer").aliases == {
        "candidate": number,
        "champion": number,
    }


def test_unarchiving_is_refused_by_code_and_policy(world: World) -> None:
    world.dataset("public")
    number = world.version()
    world.platform.models.set_status(world.dev, "scorer", number, "archived")
    with pytest.raises(Conflict):
        world.platform.models.set_status(world.dev, "scorer", number, "registered")
    with pytest.raises(PolicyDenied, match="archived"):
        world.platform.signatures.sign(world.dev, "scorer", number)


def test_dry_runs_record_nothing(world: World) -> None:
    world.dataset("public")
    number = world.version()
    before = len(_decisions(world.platform, "deploy"))
    decision, document = world.platform.gates.check(
        world.deployer, "deploy", "scorer", number, **DEPLOYMENT
    )
    assert not decision.allow
    assert document["gate"] == "deploy"
    assert document["version"]["signature"]["verified"] is False
    assert len(_decisions(world.platform, "deploy")) == before
    with pytest.raises(PolicyError):
        world.platform.gates.check(world.deployer, "launch", "scorer", number)
    # A dry run cannot be made on someone else's behalf or about another time.
    for key in ("actor", "time", "input_version"):
        with pytest.raises(InvalidInput, match="may not replace"):
            world.platform.gates.check(
                world.deployer, "deploy", "scorer", number, **{key: {"id": "x"}}, **DEPLOYMENT
            )


# -- bundle changes ----------------------------------------------------------------------------


def _bundle_with(platform: Platform, caller: Caller, **changes: str) -> PolicyBundle:
    files = platform.policy.bundle_files(caller, 0)
    files.update(changes)
    return PolicyBundle.from_files(files)


def test_apply_needs_admin_and_passing_tests_and_keeps_the_old_on_failure(world: World) -> None:
    platform = world.platform
    default = platform.policy.active().digest
    lax = json.loads(platform.policy.bundle_files(world.admin, 0)["data.json"])
    lax["bastion"]["config"]["promotion_aliases"] = ["champion", "production"]
    with pytest.raises(PermissionDenied):
        platform.policy.apply(world.dev, _bundle_with(platform, world.admin))
    broken = _bundle_with(
        platform, world.admin, **{"gates/deploy.rego": "package bastion.gates.deploy\nallow if {\n"}
    )
    with pytest.raises(PolicyError) as syntax:
        platform.policy.apply(world.admin, broken)
    assert syntax.value.code in {"policy.syntax", "policy.tests_failed"}
    failing = _bundle_with(
        platform,
        world.admin,
        **{"tests/extra_test.rego": "package x_test\nimport rego.v1\ntest_no if { false }\n"},
    )
    with pytest.raises(PolicyError) as tests:
        platform.policy.apply(world.admin, failing)
    assert tests.value.code == "policy.tests_failed"
    assert tests.value.details["failed"] == 1
    assert platform.policy.active().digest == default
    assert platform.policy.history(world.admin) == []
    new = _bundle_with(platform, world.admin, **{"data.json": json.dumps(lax)})
    info = platform.policy.apply(world.admin, new)
    assert info.version == 1
    assert platform.policy.active().digest == new.digest != default
    (applied,) = _ledger(platform, "policy.bundle.applied")
    assert applied["data"]["previous_digest"] == default  # type: ignore[index]
    (change,) = _decisions(platform, "policy_change")
    assert change.allow
    assert change.bundle_digest == default  # decided by the bundle being replaced


def test_a_bundle_whose_tests_crash_the_engine_is_refused(world: World) -> None:
    crashing = _bundle_with(
        world.platform,
        world.admin,
        **{
            "tests/crash_test.rego": (
                "package crash_test\nimport rego.v1\nimport data.bastion.gates.deploy\n"
                'test_whole if { deploy.allow with input as {"version": {}} }\n'
            )
        },
    )
    with pytest.raises(PolicyError) as caught:
        world.platform.policy.apply(world.admin, crashing)
    assert caught.value.code == "policy.tests_failed"
    assert any(f["status"] == "crashed" for f in caught.value.details["failures"])


# -- one principal alone ------------------------------------------------------------------------


def test_one_principal_with_every_non_admin_role_cannot_release_alone(
    world: World, make_actor: MakeActor
) -> None:
    """Whatever one principal does — register, sign, attest, approve, promote — its own
    version never becomes deployable or champion when the policy needs approvers."""
    solo = world.platform.tokens.authenticate(
        make_actor(
            "solo", Role.MODEL_DEVELOPER, Role.APPROVER, Role.DATA_STEWARD, Role.DEPLOYER
        ).token
    )
    world.steward = solo
    world.dev = solo
    world.dataset("confidential")
    number = world.version()
    world.platform.signatures.sign(solo, "scorer", number)
    world.platform.attestations.attest(solo, "scorer", number, VALIDATION, {"passed": True})
    world.platform.attestations.attest(solo, "scorer", number, MIA, {"auc_upper": 0.55})
    with pytest.raises(PolicyDenied):
        world.platform.approvals.approve(solo, "scorer", number)
    with pytest.raises(PolicyDenied):
        world.platform.models.set_alias(solo, "scorer", "champion", number)
    assert not world.deploy_check(number, solo)[0]
    # The same version with two independent approvers is deployable by someone else:
    # the test above could fail.
    for approver in world.approvers[:2]:
        world.platform.approvals.approve(approver, "scorer", number)
    assert world.deploy_check(number)[0]
    with world.platform.database.read() as session:
        assert (
            session.scalar(
                sa.select(sa.func.count())
                .select_from(ModelAliasRow)
                .where(ModelAliasRow.alias == "champion")
            )
            == 0
        )


# -- the documented examples have the shapes Bastion really builds ------------------------------

EXAMPLES = resources.files("bastion.policy").joinpath("examples")
FREE_FORM = {"predicate"}  # an attestation's predicate is whatever its producer measured


def _same_shape(example: object, real: object, path: str = "input") -> None:
    if example is None or real is None:  # nullable fields (expires_at, purpose, ...)
        return
    if isinstance(example, dict):
        assert isinstance(real, dict), path
        assert set(example) == set(real), (path, sorted(set(example) ^ set(real)))
        for key in example:
            if key not in FREE_FORM:
                _same_shape(example[key], real[key], f"{path}.{key}")
    elif isinstance(example, list):
        assert isinstance(real, list), path
        if example and real:
            for item in example:
                _same_shape(item, real[0], f"{path}[]")
    else:
        kinds = (bool, int | float, str)
        assert [isinstance(example, k) for k in kinds] == [isinstance(real, k) for k in kinds], (
            path,
            example,
            real,
        )


def _recorded_input(platform: Platform, gate: str) -> dict[str, object]:
    allowed = [d for d in _decisions(platform, gate) if d.allow]
    assert allowed, gate
    return allowed[-1].input


def test_the_documented_examples_have_the_shapes_bastion_builds(world: World) -> None:
    platform = world.platform
    world.dataset("confidential")
    number = world.version()
    world.release_ready(number, 2)
    _, deploy = platform.gates.check(world.deployer, "deploy", "scorer", number, **DEPLOYMENT)
    platform.models.set_alias(world.dev, "scorer", "champion", number)
    platform.models.set_status(world.dev, "scorer", world.version(), "deprecated")
    platform.policy.apply(world.admin, _bundle_with(platform, world.admin))
    platform.privacy_budgets.set_budget(world.steward, "loans", 1.0, 1e-6)
    platform.privacy_budgets.spend(
        world.steward, "loans", 0.5, 0.0, mechanism="m", purpose="shape", subject="model:x"
    )
    platform.privacy_risk.measure(
        world.steward, "loans", quasi_identifiers=["age"], sensitive=["approved"]
    )
    # Same level: allowed without k, yet it carries the measured report the example shows.
    platform.privacy_risk.release_check(world.steward, "loans", "confidential", "shape")
    real = {
        g: _recorded_input(platform, g)
        for g in GATES
        if g not in {"deploy", "rollout", "retention"}
    }
    real["deploy"] = deploy
    for gate, document in real.items():
        example = json.loads(EXAMPLES.joinpath(f"{gate}.json").read_text())
        _same_shape(example, document, gate)
    # Gates whose operations land with the gateway and retention issues: their shared
    # objects are the ones built today.
    rollout = json.loads(EXAMPLES.joinpath("rollout.json").read_text())
    for key in ("actor", "model", "version"):
        _same_shape(rollout[key], deploy[key], f"rollout.{key}")
    retention = json.loads(EXAMPLES.joinpath("retention.json").read_text())
    _same_shape(retention["dataset"], real["dataset_register"]["dataset"], "retention.dataset")
    denied = json.loads(EXAMPLES.joinpath("deploy-denied.json").read_text())
    _same_shape(denied, deploy, "deploy-denied")


# -- property: whatever one principal does, alone it cannot release -----------------------------

SOLO_ACTIONS = st.sampled_from(
    [
        "sign",
        "attest_pass",
        "attest_fail",
        "approve",
        "approve_with_digest",
        "revoke_own",
        "champion",
        "candidate",
        "deprecate",
        "reregister",
        "new_version",
        "narrow_token_approver",
        "narrow_token_deployer",
        "wait_a_day",
    ]
)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the policy, not the database
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(actions=["sign", "attest_pass", "approve", "champion"])
@example(actions=["sign", "attest_pass", "narrow_token_approver", "approve", "champion"])
@example(actions=["attest_pass", "new_version", "sign", "attest_pass", "approve_with_digest"])
@given(actions=st.lists(SOLO_ACTIONS, min_size=1, max_size=12))
def test_no_sequence_of_calls_by_one_principal_releases_a_version(
    world: World, make_actor: MakeActor, clock: ManualClock, actions: list[str]
) -> None:
    """The default policy needs two approvers for confidential lineage. One principal holding
    every non-admin role, calling anything in any order (its own narrowed tokens included),
    never gets a version deployable — by itself or by anyone else — or promoted to champion."""
    platform = world.platform
    solo = platform.tokens.authenticate(
        make_actor(
            f"solo-{os.urandom(3).hex()}",
            Role.MODEL_DEVELOPER,
            Role.APPROVER,
            Role.DATA_STEWARD,
            Role.DEPLOYER,
        ).token
    )
    world.dev = world.steward = solo
    data = f"loans-{os.urandom(3).hex()}"  # fresh each example: the clock moves on
    world.dataset("confidential", name=data)
    numbers = [world.version(datasets=(data,))]
    me = solo
    for action in actions:
        number = numbers[-1]
        version = platform.models.version(solo, "scorer", number)
        try:
            if action == "sign":
                platform.signatures.sign(me, "scorer", number)
            elif action in {"attest_pass", "attest_fail"}:
                passed = action == "attest_pass"
                platform.attestations.attest(me, "scorer", number, VALIDATION, {"passed": passed})
            elif action == "approve":
                platform.approvals.approve(me, "scorer", number)
            elif action == "approve_with_digest":
                platform.approvals.approve(me, "scorer", number, digest=version.artifact_digest)
            elif action == "revoke_own":
                for a in platform.approvals.list(me, "scorer", number):
                    platform.approvals.revoke(me, a.id, "changed my mind")
            elif action in {"champion", "candidate"}:
                platform.models.set_alias(me, "scorer", action, number)
            elif action == "deprecate":
                platform.models.set_status(me, "scorer", number, "deprecated")
            elif action == "reregister":
                platform.models.set_status(me, "scorer", number, "registered")
            elif action == "new_version":
                numbers.append(world.version(datasets=(data,)))
            elif action.startswith("narrow_token_"):
                role = action.removeprefix("narrow_token_")
                issued = platform.tokens.create(solo, roles=[role])
                me = platform.tokens.authenticate(issued.secret)
            elif action == "wait_a_day":
                clock.advance(timedelta(days=1))
        except (
            AuthenticationError,
            PolicyDenied,
            PermissionDenied,
            Conflict,
            InvalidInput,
            NotFound,
        ):
            pass
        assert not world.deploy_check(number, solo)[0]
        assert not world.deploy_check(number)[0]  # nor for an independent deployer
    for n in numbers:
        assert not world.deploy_check(n, me)[0]
        assert not world.deploy_check(n)[0]
    assert "champion" not in platform.models.get(solo, "scorer").aliases


OPA_STYLE = """package bastion.gates.deploy

import rego.v1

# Written as for OPA: sprintf messages, RFC 3339 time arithmetic, regex, semver, object.get.
min_age_days := object.get(data.bastion.config, "min_age_days", 0)

deny contains msg if {
	age := time.parse_rfc3339_ns(input.time) - time.parse_rfc3339_ns(input.version.created_at)
	age < min_age_days * 86400000000000
	msg := sprintf(
		"%s@%d is younger than %d days",
		[input.model.name, input.version.number, min_age_days],
	)
}

deny contains msg if {
	not regex.match(`^[a-z][a-z0-9-]*$`, input.model.name)
	msg := sprintf("model name %q is not allowed", [input.model.name])
}

deny contains "the policy needs semver 1.x" if semver.compare("1.4.0", "2.0.0") >= 0
"""


def test_policies_written_for_opa_run_unchanged(world: World, clock: ManualClock) -> None:
    config = json.loads(world.platform.policy.bundle_files(world.admin, 0)["data.json"])
    config["bastion"]["config"]["min_age_days"] = 2
    bundle = _bundle_with(
        world.platform,
        world.admin,
        **{"gates/deploy_opa.rego": OPA_STYLE, "data.json": json.dumps(config)},
    )
    world.platform.policy.apply(world.admin, bundle)
    world.dataset("public")
    number = world.version()
    world.release_ready(number, 1)
    allowed, reasons = world.deploy_check(number)
    assert not allowed
    assert reasons == (f"scorer@{number} is younger than 2 days",)
    clock.advance(timedelta(days=2, seconds=1))
    assert world.deploy_check(number) == (True, ())
