"""DP training and membership-inference audits through the service every edge calls
(`platform.private_models`), on SQLite and PostgreSQL: a DP logistic regression on a bundled
scikit-learn dataset registered with its attestation and exactly ε spent, an audit attested
with its bound, and the refusals that happen before anything is attested (an oversized row
file, training data deleted under retention)."""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from bastion.core import ManualClock
from bastion.core.errors import Conflict, InvalidInput, NotFound
from bastion.identity import Caller, Role
from bastion.platform import Platform
from bastion.policy import PolicyDenied
from bastion.privacy.dp import holdout_split
from bastion.workflows import MAX_AUDIT_FILE_BYTES, TrainResult
from support import MakeActor

DP = "https://bastion.dev/attestations/differential-privacy/v1"
MIA = "https://bastion.dev/attestations/membership-inference/v1"
HOLDOUT, SEED, EPSILON = 0.3, 0, 2.0


@dataclass(frozen=True)
class Trained:
    dev: Caller
    steward: Caller
    result: TrainResult
    members: bytes
    non_members: bytes


def _csv(names: list[str], x: np.ndarray, y: np.ndarray) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*names, "label"])
    for row, label in zip(x, y, strict=True):
        writer.writerow([*(repr(float(v)) for v in row), int(label)])
    return buffer.getvalue().encode()


@pytest.fixture
def trained(platform: Platform, make_actor: MakeActor, tmp_path: Path) -> Trained:
    """breast_cancer registered (30-day retention) with a budget of ε 5, and a DP logistic
    regression trained on it at ε 2 by a model developer."""
    steward = platform.tokens.authenticate(make_actor("sam", Role.DATA_STEWARD).token)
    dev = platform.tokens.authenticate(make_actor("dev", Role.MODEL_DEVELOPER).token)
    data = load_breast_cancer()
    names = [str(n).replace(" ", "_") for n in data.feature_names]
    x, y = data.data, data.target
    path = tmp_path / "cancer.csv"
    path.write_bytes(_csv(names, x, y))
    platform.datasets.register(
        steward,
        "cancer",
        classification_="confidential",
        purposes=["diagnosis"],
        retention_days=30,
        file=path,
    )
    platform.privacy_budgets.set_budget(steward, "cancer", 5.0, 0.0)
    result = platform.private_models.train(
        dev,
        dataset="cancer",
        target="label",
        epsilon=EPSILON,
        name="cancer-dp",
        holdout=HOLDOUT,
        seed=SEED,
        purpose="diagnosis",
    )
    members, non_members = holdout_split(y, HOLDOUT, SEED)  # the split the run made
    return Trained(
        dev,
        steward,
        result,
        _csv(names, x[members], y[members]),
        _csv(names, x[non_members], y[non_members]),
    )


def _attestations(platform: Platform, caller: Caller) -> dict[str, dict[str, object]]:
    return {
        a.predicate_type: dict(a.predicate)
        for a in platform.attestations.list(caller, "cancer-dp", 1)
    }


def test_training_registers_an_attested_version_and_spends_epsilon(
    platform: Platform, trained: Trained
) -> None:
    result, dev = trained.result, trained.dev
    assert (result.model, result.version, result.dataset) == ("cancer-dp", 1, "cancer@1")
    assert (result.epsilon, result.delta, result.dp_model) == (EPSILON, 0.0, "logistic_regression")
    assert not result.bounds_declared
    assert (result.split.train_rows, result.split.test_rows) == (398, 171)
    assert 0.0 <= result.scores["accuracy"] <= 1.0
    assert result.budget.epsilon_spent == EPSILON

    status = platform.privacy_budgets.status(dev, "cancer")
    assert (status.epsilon_spent, status.epsilon_remaining) == (EPSILON, 5.0 - EPSILON)
    (spend,) = platform.privacy_budgets.spends(dev, "cancer")
    assert (spend.id, spend.epsilon, spend.subject) == (result.spend_id, EPSILON, "model:cancer-dp")

    version = platform.models.version(dev, "cancer-dp", 1)
    assert version.id == result.version_id
    assert [(link.dataset, link.dataset_version) for link in version.lineage] == [("cancer", 1)]
    predicate = _attestations(platform, dev)[DP]
    assert (predicate["epsilon"], predicate["delta"]) == (EPSILON, 0.0)
    assert predicate["spend_id"] == result.spend_id
    assert predicate["bounds_source"] == result.bounds_source
    assert result.to_json()["budget"]["epsilon_spent"] == EPSILON


def test_an_audit_is_attested_and_oversized_rows_are_refused_first(
    platform: Platform, trained: Trained
) -> None:
    dev = trained.dev
    with pytest.raises(InvalidInput) as refused:
        platform.private_models.audit(
            dev,
            "cancer-dp",
            1,
            members_csv=bytes(MAX_AUDIT_FILE_BYTES + 1),  # calloc'd: never touched
            non_members_csv=trained.non_members,
            target="label",
        )
    assert refused.value.code == "privacy.bad_audit_input"
    assert list(_attestations(platform, dev)) == [DP]  # nothing attested

    audited = platform.private_models.audit(
        dev,
        "cancer-dp",
        "1",
        members_csv=trained.members,
        non_members_csv=trained.non_members,
        target="label",
        attacks="loss",
        bootstrap=20,
    )
    assert (audited.model, audited.version, audited.model_kind) == ("cancer-dp", 1, "skops")
    assert audited.members_sha256 == f"sha256:{hashlib.sha256(trained.members).hexdigest()}"
    assert (audited.report.members, audited.report.non_members) == (398, 171)
    assert [a.attack for a in audited.report.attacks] == ["loss"]
    recorded = _attestations(platform, dev)[MIA]
    assert recorded["auc_upper"] == audited.report.auc_upper
    assert recorded["members_sha256"] == audited.members_sha256
    assert recorded["non_members_sha256"] == audited.non_members_sha256
    assert audited.to_json()["attestation_id"] == audited.attestation_id


def test_an_audit_of_a_version_whose_training_data_is_deleted_is_refused(
    platform: Platform, trained: Trained, clock: ManualClock
) -> None:
    clock.advance(timedelta(days=31))
    assert platform.retention.enforce(trained.steward).count("deleted") == 1
    with pytest.raises(Conflict) as refused:
        platform.private_models.audit(
            trained.dev,
            "cancer-dp",
            1,
            members_csv=trained.members,
            non_members_csv=trained.non_members,
            target="label",
            attacks="loss",
            bootstrap=20,
        )
    assert refused.value.code == "privacy.data_deleted"
    assert list(_attestations(platform, trained.dev)) == [DP]


def test_what_registration_would_refuse_is_refused_before_the_spend(
    platform: Platform, trained: Trained
) -> None:
    """A purpose the dataset does not allow (a new model) is refused by the dry run of the
    model_register gate: no ε spent, no model made, and the same for an existing model."""
    with pytest.raises(PolicyDenied) as denied:
        platform.private_models.train(
            trained.dev, dataset="cancer", target="label", epsilon=0.5, name="cancer-ads",
            purpose="advertising",
        )  # fmt: skip
    assert any("purpose limitation" in r for r in denied.value.decision.reasons)
    assert platform.privacy_budgets.status(trained.dev, "cancer").epsilon_spent == EPSILON
    with pytest.raises(NotFound):
        platform.models.get(trained.dev, "cancer-ads")
    # The real registration agrees with the dry run: the trained model's second version passes.
    again = platform.private_models.train(
        trained.dev, dataset="cancer", target="label", epsilon=0.5, name="cancer-dp"
    )
    assert again.version == 2
