"""Membership-inference audits (`bastion.privacy.audit`): the metrics against scikit-learn and
by hand, the issue's ranking (an overfit random forest is riskier than a DP model), the
black-box path for models given as a callable, reproducibility, and every rejection."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score

from bastion.core.errors import ConfigError, InvalidInput
from bastion.privacy import audit as audit_module
from bastion.privacy.audit import audit, audit_estimator, label_indices, metrics
from bastion.privacy.dp import holdout_split, train_dp

# Noisy labels (20 % flipped): a forest grown to full depth memorises its training rows.
X, Y = make_classification(
    n_samples=1200, n_features=10, n_informative=5, flip_y=0.2, random_state=0
)
MEMBERS, NON_MEMBERS = holdout_split(Y, 0.5, 0)


@pytest.fixture(scope="module")
def overfit_forest() -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=100, max_depth=None, random_state=0).fit(
        X[MEMBERS], Y[MEMBERS]
    )


@pytest.fixture(scope="module")
def dp_model() -> Any:
    return train_dp(
        X[MEMBERS],
        Y[MEMBERS],
        epsilon=1.0,
        bounds=(X.min(axis=0), X.max(axis=0)),
        random_state=0,
    ).estimator


def _audit(model: Any, **kwargs: Any) -> audit_module.AuditReport:
    return audit_estimator(model, X[MEMBERS], Y[MEMBERS], X[NON_MEMBERS], Y[NON_MEMBERS], **kwargs)


def test_an_overfit_forest_is_riskier_than_a_dp_model(
    overfit_forest: RandomForestClassifier, dp_model: Any
) -> None:
    forest = _audit(overfit_forest, seed=0)
    private = _audit(dp_model, seed=0)
    print(
        f"\nforest: auc_upper {forest.auc_upper:.3f} ({forest.worst_attack}), accuracy "
        f"{forest.target_accuracy_members:.2f}/{forest.target_accuracy_non_members:.2f}; "
        f"DP ε=1: auc_upper {private.auc_upper:.3f}, accuracy "
        f"{private.target_accuracy_members:.2f}/{private.target_accuracy_non_members:.2f}"
    )
    for attack in forest.attacks:
        print(
            f"  forest {attack.attack}: AUC {attack.auc:.3f} [{attack.auc_ci.low:.3f}, "
            f"{attack.auc_ci.high:.3f}] advantage {attack.advantage:.3f} "
            f"TPR@1% {attack.tpr_at_1pct_fpr:.3f}"
        )
    assert [a.attack for a in forest.attacks] == ["rf", "gb", "loss"]
    assert forest.target_accuracy_members == 1.0  # memorised, label noise included
    best_forest_low = max(a.auc_ci.low for a in forest.attacks)
    assert best_forest_low > private.auc_upper  # the intervals do not even overlap
    assert forest.auc_upper > 0.65
    assert private.auc_upper < 0.6
    assert all(a.auc > 0.6 for a in forest.attacks)
    assert all(abs(a.auc - 0.5) < 0.06 for a in private.attacks)
    assert private.target_accuracy_non_members > 0.65  # and the DP model is still useful


def test_the_report_is_reproducible_and_well_formed(dp_model: Any) -> None:
    one = _audit(dp_model, attacks=("loss", "rf"), bootstrap=30, seed=3)
    two = _audit(dp_model, attacks=("loss", "rf"), bootstrap=30, seed=3)
    assert one == two
    assert [a.attack for a in one.attacks] == ["loss", "rf"]
    assert (one.members, one.non_members, one.bootstrap, one.seed) == (600, 600, 30, 3)
    loss, rf = one.attacks
    # The attack model trains on one half of each side and is scored on the other; the loss
    # attack trains nothing and is scored on every row.
    assert rf.members_evaluated == rf.non_members_evaluated == 300
    assert rf.fpr_resolution == pytest.approx(1 / 300)
    assert loss.members_evaluated == loss.non_members_evaluated == 600
    assert loss.fpr_resolution == pytest.approx(1 / 600)
    for attack in one.attacks:
        assert attack.auc_ci.low <= attack.auc <= attack.auc_ci.high
        assert 0.0 <= attack.tpr_at_01pct_fpr <= attack.tpr_at_1pct_fpr <= 1.0
    assert one.auc_upper == max(a.auc_ci.high for a in one.attacks)
    doc = one.to_json()
    assert doc["attacks"][0]["auc_ci"]["high"] == one.attacks[0].auc_ci.high
    assert audit_module.predicate(one, members_sha256="x")["members_sha256"] == "x"


def test_a_model_given_as_a_callable_is_attacked_black_box(
    overfit_forest: RandomForestClassifier,
) -> None:
    """No estimator object: ART's BlackBoxClassifier wraps the callable, and the result is
    the estimator path's (same predictions, same seed)."""
    calls: list[int] = []

    def predict(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return np.asarray(overfit_forest.predict_proba(x))

    report = audit(
        predict,
        X[MEMBERS],
        Y[MEMBERS],
        X[NON_MEMBERS],
        Y[NON_MEMBERS],
        n_classes=2,
        bootstrap=20,
        seed=1,
    )
    assert calls == [600, 600]  # predictions computed once per side, shared by the attacks
    same = _audit(overfit_forest, bootstrap=20, seed=1)
    assert report == same


def test_metrics_by_hand() -> None:
    perfect = metrics(np.array([0.9, 0.8]), np.array([0.1, 0.2, 0.3]))
    assert perfect == {"auc": 1.0, "advantage": 1.0, "tpr@0.01": 1.0, "tpr@0.001": 1.0}
    ties = metrics(np.array([0.5, 0.5]), np.array([0.5, 0.5]))
    assert ties["auc"] == 0.5
    assert ties["advantage"] == 0.0
    # one member above every non-member, one below all: half found at zero false positives
    mixed = metrics(np.array([0.9, 0.0]), np.array([0.5, 0.4, 0.3, 0.2]))
    assert mixed["auc"] == 0.5
    assert mixed["tpr@0.01"] == 0.5
    assert mixed["advantage"] == 0.5


@settings(max_examples=100, deadline=None)
@given(
    members=st.lists(st.integers(0, 6), min_size=1, max_size=40),
    non_members=st.lists(st.integers(0, 6), min_size=1, max_size=40),
)
def test_auc_matches_scikit_learn(members: list[int], non_members: list[int]) -> None:
    """Ties included (small integer scores): the trapezoid is the Mann-Whitney AUC."""
    m, n = np.array(members, float), np.array(non_members, float)
    truth = np.r_[np.ones(len(m)), np.zeros(len(n))]
    assert metrics(m, n)["auc"] == pytest.approx(roc_auc_score(truth, np.r_[m, n]))


def test_label_indices_match_values_and_text() -> None:
    assert label_indices([1, 0, 1], [0, 1]).tolist() == [1, 0, 1]
    assert label_indices(["1", "0"], [0, 1]).tolist() == [1, 0]  # labels read from a CSV
    assert label_indices([2.0], [1, 2]).tolist() == [1]
    assert label_indices(["cat", "dog"], ["dog", "cat"]).tolist() == [1, 0]
    with pytest.raises(InvalidInput) as error:
        label_indices([0, 7], [0, 1])
    assert error.value.code == "privacy.unknown_label"
    assert "row 2" in error.value.message


def _predict(x: np.ndarray) -> np.ndarray:
    return np.tile([0.4, 0.6], (len(x), 1))


ROWS = np.random.default_rng(0).normal(size=(40, 3))
LABELS = np.arange(40) % 2


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"attacks": ("rf", "nn")}, "privacy.unknown_attack"),
        ({"attacks": ()}, "privacy.unknown_attack"),
        ({"bootstrap": 9}, "privacy.bad_audit_input"),
        ({"bootstrap": 10_001}, "privacy.bad_audit_input"),
        ({"n_classes": 1}, "privacy.bad_audit_input"),
        ({"x_members": ROWS[:19], "y_members": LABELS[:19]}, "privacy.bad_audit_input"),
        ({"x_members": ROWS[:, :2]}, "privacy.bad_audit_input"),
        ({"x_members": np.where(ROWS > 2, np.inf, ROWS)}, "privacy.bad_audit_input"),
        ({"y_members": LABELS[:-1]}, "privacy.bad_audit_input"),
        ({"y_members": LABELS + 1}, "privacy.unknown_label"),
        ({"y_members": LABELS.astype(float)}, "privacy.unknown_label"),
        ({"predict_proba": lambda x: np.ones((len(x), 3))}, "privacy.bad_audit_input"),
        ({"predict_proba": lambda x: np.full((len(x), 2), np.nan)}, "privacy.bad_audit_input"),
    ],
)
def test_bad_audits_are_refused(kwargs: dict[str, Any], code: str) -> None:
    args: dict[str, Any] = {
        "predict_proba": _predict,
        "x_members": ROWS,
        "y_members": LABELS,
        "x_non_members": ROWS + 1,
        "y_non_members": LABELS,
        "n_classes": 2,
        "bootstrap": 10,
        **kwargs,
    }
    with pytest.raises(InvalidInput) as error:
        audit(**args)
    assert error.value.code == code


def test_an_estimator_needs_probabilities_and_known_labels(
    overfit_forest: RandomForestClassifier,
) -> None:
    with pytest.raises(InvalidInput) as no_proba:
        audit_estimator(object(), ROWS, LABELS, ROWS, LABELS)
    assert no_proba.value.code == "privacy.bad_audit_input"
    with pytest.raises(InvalidInput) as unknown:
        audit_estimator(overfit_forest, X[:30], np.full(30, 9), X[30:60], Y[30:60], bootstrap=10)
    assert unknown.value.code == "privacy.unknown_label"


def test_without_the_extra_the_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    audit_module._art.cache_clear()
    for name in [m for m in sys.modules if m == "art" or m.startswith("art.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "art", None)
    try:
        with pytest.raises(ConfigError) as error:
            audit(
                _predict, ROWS, LABELS, ROWS + 1, LABELS, n_classes=2, attacks=("rf",),
                bootstrap=10,
            )  # fmt: skip
        assert error.value.code == "privacy.extra_missing"
        assert "pip install 'bastion[privacy]'" in error.value.message
        # The loss attack needs no ART at all.
        report = audit(
            _predict, ROWS, LABELS, ROWS + 1, LABELS, n_classes=2, attacks=("loss",),
            bootstrap=10,
        )  # fmt: skip
        assert [a.attack for a in report.attacks] == ["loss"]
    finally:
        audit_module._art.cache_clear()
