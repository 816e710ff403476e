"""DP training (`bastion.privacy.dp`): the accuracy it costs on a bundled scikit-learn dataset
at ε = 1 and ε = 10, the guarantee each run reports, public-bounds preprocessing, the export to
plain scikit-learn that the registry's skops loader accepts, and every rejection."""

from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.datasets import load_breast_cancer

from bastion.core.errors import BastionError, ConfigError, InvalidInput
from bastion.privacy import dp
from bastion.privacy.dp import (
    MODELS,
    accuracy,
    bounds_from_contract,
    dp_cost,
    holdout_split,
    train_baseline,
    train_dp,
)
from bastion.supplychain.scan import AllowList

X, Y = load_breast_cancer(return_X_y=True)
BOUNDS = (X.min(axis=0), X.max(axis=0))


def _mean_accuracy(model: str, epsilon: float, seeds: int = 5) -> float:
    scores = []
    for seed in range(seeds):
        train, test = holdout_split(Y, 0.3, seed)
        result = train_dp(
            X[train], Y[train], epsilon=epsilon, model=model, bounds=BOUNDS, random_state=seed
        )
        scores.append(accuracy(result.estimator, X[test], Y[test]))
    return float(np.mean(scores))


def test_accuracy_on_breast_cancer_at_epsilon_1_and_10() -> None:
    """Reported (run with -s): mean holdout accuracy over 5 seeds. The non-private baseline
    is ~0.93 (LR) and DP costs accuracy, less at ε = 10 than at ε = 1."""
    train, test = holdout_split(Y, 0.3, 0)
    base = accuracy(
        train_baseline(X[train], Y[train], bounds=BOUNDS, random_state=0), X[test], Y[test]
    )
    table = {(model, eps): _mean_accuracy(model, eps) for model in MODELS for eps in (1.0, 10.0)}
    print(f"\nbreast_cancer, 30% holdout, mean of 5 seeds; non-DP LR baseline {base:.3f}")
    for (model, eps), score in table.items():
        print(f"  {model:20s} ε={eps:<4g} accuracy {score:.3f}")
    assert base > 0.9
    majority = max(np.mean(Y), 1 - np.mean(Y))  # 0.627: always answering "benign"
    assert table[("logistic_regression", 10.0)] > 0.85
    assert table[("logistic_regression", 10.0)] > table[("logistic_regression", 1.0)]
    assert table[("random_forest", 1.0)] > majority
    assert table[("gaussian_nb", 10.0)] > 0.85
    assert all(score < base + 0.05 for score in table.values())


@pytest.mark.parametrize("model", MODELS)
def test_the_guarantee_and_the_exported_model(model: str) -> None:
    result = train_dp(X, Y, epsilon=2.0, delta=1e-5, model=model, bounds=BOUNDS, random_state=1)
    assert (result.epsilon, result.delta) == (2.0, 0.0)  # pure ε-DP: no δ spent
    assert result.accountant["epsilon_spent"] == 2.0
    assert result.accountant["spends"] == [[2.0, 0.0]]
    assert result.accountant["delta_cap"] == 1e-5
    assert len(result.mechanism) <= 128
    assert result.mechanism.startswith("diffprivlib.")
    assert result.classes == (0, 1)
    assert "data" in result.params["classes_source"]
    # Plain scikit-learn all the way down, so the skops allow-list accepts it.
    for _, step in result.estimator.steps:
        assert type(step).__module__.startswith("sklearn."), type(step)
    blob = sio.dumps(result.estimator)
    untrusted = sio.get_untrusted_types(data=blob)
    allowlist = AllowList.load(None)
    assert [t for t in untrusted if not allowlist.allows_skops_type(t)] == []
    loaded = sio.loads(blob, trusted=untrusted)
    assert np.array_equal(loaded.predict(X), result.estimator.predict(X))
    assert np.allclose(loaded.predict_proba(X), result.estimator.predict_proba(X))
    predicate = result.predicate()
    assert predicate["epsilon"] == 2.0
    assert predicate["libraries"]["diffprivlib"] == "0.6.6"


def test_the_same_seed_trains_the_same_model() -> None:
    one = train_dp(X, Y, epsilon=1.0, bounds=BOUNDS, random_state=7).estimator
    two = train_dp(X, Y, epsilon=1.0, bounds=BOUNDS, random_state=7).estimator
    other = train_dp(X, Y, epsilon=1.0, bounds=BOUNDS, random_state=8).estimator
    assert np.array_equal(one[-1].coef_, two[-1].coef_)
    assert not np.array_equal(one[-1].coef_, other[-1].coef_)  # the noise is real


def test_preprocessing_depends_on_the_bounds_only() -> None:
    """The scaler is fitted on the two bound rows: the private data does not move it."""
    half = train_dp(X[:200], Y[:200], epsilon=1.0, bounds=BOUNDS, random_state=0).estimator
    full = train_dp(X, Y, epsilon=1.0, bounds=BOUNDS, random_state=0).estimator
    assert np.array_equal(half[0].data_min_, BOUNDS[0])
    assert np.array_equal(half[0].data_max_, full[0].data_max_)
    assert half[0].clip is True


@settings(max_examples=60, deadline=None)
@given(rows=hnp.arrays(np.float64, (5, 3), elements=st.floats(-1e6, 1e6)))
def test_every_preprocessed_row_has_norm_at_most_one(rows: np.ndarray) -> None:
    """Whatever the input (inside the bounds or far outside), the rows the DP logistic
    regression sees have L2 norm ≤ 1 = data_norm, so its sensitivity bound holds."""
    result = train_dp(
        np.r_[rows, np.eye(3)[[0, 1, 2, 0, 1, 2, 0]] * 5],
        np.r_[[0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1, 1]],
        epsilon=1.0,
        bounds=([-10.0, 0.0, 3.0], [10.0, 1.0, 3.0]),  # the last feature is constant
        random_state=0,
    )
    transformed = result.estimator[:-1].transform(rows)
    assert np.all(np.linalg.norm(transformed, axis=1) <= 1.0 + 1e-9)
    assert result.params["data_norm"] == 1.0


def test_dp_cost_is_known_before_training() -> None:
    assert dp_cost("logistic_regression", 1.5) == (1.5, 0.0)
    assert dp_cost("random_forest", 0.5, 1e-6) == (0.5, 0.0)
    with pytest.raises(InvalidInput):
        dp_cost("svm", 1.0)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"epsilon": 0.0}, "privacy.bad_amount"),
        ({"epsilon": -1.0}, "privacy.bad_amount"),
        ({"epsilon": float("nan")}, "privacy.bad_amount"),
        ({"epsilon": float("inf")}, "privacy.bad_amount"),
        ({"epsilon": 1001.0}, "privacy.bad_amount"),
        ({"epsilon": True}, "privacy.bad_amount"),
        ({"delta": -0.1}, "privacy.bad_amount"),
        ({"delta": 0.5}, "privacy.bad_amount"),
        ({"model": "svm"}, "privacy.unknown_model"),
        ({"bounds": (BOUNDS[0][:5], BOUNDS[1])}, "privacy.bad_bounds"),
        ({"bounds": (BOUNDS[1], BOUNDS[0])}, "privacy.bad_bounds"),
        ({"bounds": (np.full(30, np.nan), BOUNDS[1])}, "privacy.bad_bounds"),
        ({"bounds": "no"}, "privacy.bad_bounds"),
        ({"c": 0.0}, "privacy.bad_params"),
        ({"n_estimators": 0}, "privacy.bad_params"),
        ({"max_depth": 65}, "privacy.bad_params"),
        ({"classes": [0]}, "privacy.bad_data"),
        ({"classes": [5, 6]}, "privacy.bad_data"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], code: str) -> None:
    args: dict[str, Any] = {"epsilon": 1.0, "bounds": BOUNDS, **kwargs}
    with pytest.raises(InvalidInput) as error:
        train_dp(X, Y, **args)
    assert error.value.code == code


@pytest.mark.parametrize(
    ("x", "y"),
    [
        (X[:9], Y[:9]),  # too few rows
        (X, Y[:-1]),  # lengths differ
        (X[:, 0], Y),  # not a matrix
        (np.where(np.eye(569, 30) == 1, np.nan, X), Y),  # missing values
        (np.full((20, 30), "a"), np.arange(20) % 2),  # not numbers
        (X[:20], np.zeros(20)),  # one class
    ],
)
def test_bad_data_is_refused(x: Any, y: Any) -> None:
    with pytest.raises(InvalidInput) as error:
        train_dp(x, y, epsilon=1.0, bounds=BOUNDS)
    assert error.value.code == "privacy.bad_data"


def test_a_privacy_leak_warning_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from diffprivlib.models import LogisticRegression
    from diffprivlib.utils import PrivacyLeakWarning

    original = LogisticRegression.fit

    def leaky(self: Any, *args: Any, **kwargs: Any) -> Any:
        warnings.warn("computed from the data", PrivacyLeakWarning, stacklevel=2)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", leaky)
    with pytest.raises(BastionError) as error:
        train_dp(X, Y, epsilon=1.0, bounds=BOUNDS)
    assert error.value.code == "privacy.leak"


def test_without_the_extra_the_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "diffprivlib", None)
    with pytest.raises(ConfigError) as error:
        train_dp(X, Y, epsilon=1.0, bounds=BOUNDS)
    assert error.value.code == "privacy.extra_missing"
    assert "pip install 'bastion[privacy]'" in error.value.message


def test_holdout_split_is_stratified_disjoint_and_repeatable() -> None:
    train, test = holdout_split(Y, 0.3, 0)
    assert len(np.intersect1d(train, test)) == 0
    assert np.array_equal(np.sort(np.r_[train, test]), np.arange(len(Y)))
    assert abs(np.mean(Y[test]) - np.mean(Y)) < 0.01
    assert abs(len(test) / len(Y) - 0.3) < 0.01
    again, _ = holdout_split(Y, 0.3, 0)
    assert np.array_equal(train, again)
    everything, none = holdout_split(Y, 0.0, 0)
    assert (len(everything), len(none)) == (len(Y), 0)
    with pytest.raises(InvalidInput):
        holdout_split(Y, 1.0, 0)


def test_bounds_come_from_the_contract() -> None:
    contract = {
        "contract_version": 1,
        "fields": [
            {"name": "age", "type": "integer", "min": 18, "max": 95},
            {"name": "vip", "type": "boolean"},
            {"name": "income", "type": "number", "min": 0.0, "max": 1e6},
        ],
    }
    names, (lower, upper) = bounds_from_contract(contract)
    assert names == ["age", "vip", "income"]
    assert (lower, upper) == ([18.0, 0.0, 0.0], [95.0, 1.0, 1e6])
    for bad in (
        {"name": "city", "type": "string"},
        {"name": "score", "type": "number", "min": None, "max": 3},
        {"name": "score", "type": "number"},
    ):
        with pytest.raises(InvalidInput) as error:
            bounds_from_contract({"fields": [bad]})
        assert error.value.code == "privacy.unsupported_feature"
    with pytest.raises(InvalidInput):
        bounds_from_contract({"fields": []})


def test_library_versions_are_recorded() -> None:
    versions = dp.library_versions()
    assert versions["diffprivlib"] == "0.6.6"
    assert versions["scikit-learn"] is not None
