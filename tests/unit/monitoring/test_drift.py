"""Drift statistics: agreement with SciPy and with the textbook PSI on the same numbers,
injected drift detected (mean shift, new categories, label flip), unchanged data of every
sample size not flagged, and the edges (empty windows, missing features, bad counts)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency

from bastion.core.errors import InvalidInput
from bastion.monitoring.drift import (
    DriftThresholds,
    batch_drift,
    compare,
    compare_counts,
    parse_thresholds,
    smoothed_proportions,
)
from bastion.registry.profile import build_profile


def raises(code: str) -> Any:
    class _Check:
        def __enter__(self) -> None:
            return None

        def __exit__(self, kind: Any, value: Any, tb: Any) -> bool:
            assert isinstance(value, InvalidInput), f"expected InvalidInput({code}), got {value!r}"
            assert value.code == code, value
            return True

    return _Check()


def finite_everywhere(doc: Any) -> bool:
    if isinstance(doc, float):
        return math.isfinite(doc)
    if isinstance(doc, dict):
        return all(finite_everywhere(v) for v in doc.values())
    if isinstance(doc, list):
        return all(finite_everywhere(v) for v in doc)
    return True


# -- agreement with independent computations -------------------------------------------------------

counts = st.lists(st.integers(0, 10_000), min_size=2, max_size=25)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), reference=counts)
def test_statistics_agree_with_scipy_and_the_psi_formula(data: Any, reference: list[int]) -> None:
    current = data.draw(
        st.lists(st.integers(0, 10_000), min_size=len(reference), max_size=len(reference))
    )
    ref, cur = np.array(reference), np.array(current)
    result = compare_counts("f", "numeric", ref, cur, DriftThresholds(min_rows=1))
    if ref.sum() == 0 or cur.sum() == 0:
        assert (result.status, result.psi, result.js, result.chi2, result.p_value) == (
            "insufficient", 0.0, 0.0, 0.0, 1.0,
        )  # fmt: skip
        return
    # The smoothing, written out independently of the code under test.
    k = ref.size
    p = (ref / ref.sum() + 1e-4) / (1 + k * 1e-4)
    q = (cur / cur.sum() + 1e-4) / (1 + k * 1e-4)
    assert np.allclose(smoothed_proportions(ref), p)
    assert result.psi == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-9, abs=1e-12)
    assert result.js == pytest.approx(float(jensenshannon(p, q, base=2)), rel=1e-7, abs=1e-7)
    table = np.vstack([ref, cur])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        assert (result.chi2, result.p_value) == (0.0, 1.0)
    else:
        expected = chi2_contingency(table)
        assert result.chi2 == pytest.approx(expected.statistic, rel=1e-9, abs=1e-9)
        assert result.p_value == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-12)
    assert result.n_reference == ref.sum()
    assert result.n_current == cur.sum()
    assert finite_everywhere(result.to_json())


def test_two_by_two_table_uses_yates_correction_like_scipy() -> None:
    ref, cur = np.array([0, 30, 70]), np.array([0, 45, 55])  # one slot empty: 2x2 after dropping
    result = compare_counts("f", "categorical", ref, cur)
    expected = chi2_contingency(np.array([[30, 70], [45, 55]]))
    assert expected.dof == 1
    assert result.chi2 == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)


def test_identical_counts_have_zero_drift() -> None:
    ref = np.array([10, 20, 30, 0])
    result = compare_counts("f", "numeric", ref, ref * 5)
    assert result.psi == pytest.approx(0.0, abs=1e-12)
    assert result.js == pytest.approx(0.0, abs=1e-7)
    assert result.p_value == pytest.approx(1.0)
    assert result.status == "ok"


def test_missing_rates_come_from_the_last_slot() -> None:
    result = compare_counts("f", "numeric", np.array([90, 0, 10]), np.array([50, 0, 50]))
    assert result.missing_reference == pytest.approx(0.1)
    assert result.missing_current == pytest.approx(0.5)
    assert result.status == "drift"  # exactly min_rows (100) current rows is enough


# -- injected drift is detected --------------------------------------------------------------------


def test_mean_shift_of_half_a_standard_deviation_is_detected() -> None:
    rng = np.random.default_rng(10)
    ref = {"x": rng.normal(size=5000), "steady": rng.normal(size=5000)}
    cur = {"x": rng.normal(0.5, 1, size=5000), "steady": rng.normal(size=5000)}
    report = batch_drift(ref, cur)
    assert report.drifted == ("x",)
    x = next(f for f in report.features if f.name == "x")
    assert x.status == "drift"
    assert x.psi > 0.2
    assert x.js > 0.1
    assert x.p_value < 1e-10
    assert report.share == pytest.approx(0.5)
    assert report.score == pytest.approx(x.js)
    assert report.any_drift


def test_new_categories_are_detected() -> None:
    rng = np.random.default_rng(11)
    labels = np.array(["a", "b", "c"], dtype=object)
    ref = {"country": rng.choice(labels, size=5000)}
    new = np.array(["a", "b", "c", "x", "y"], dtype=object)
    cur = {"country": rng.choice(new, size=5000, p=[0.3, 0.3, 0.2, 0.1, 0.1])}
    report = batch_drift(ref, cur)
    assert report.drifted == ("country",)
    f = report.features[0]
    assert f.kind == "categorical"
    assert f.psi > 1.0  # the "other" slot was empty in the reference


def test_a_label_flip_in_the_prediction_is_detected() -> None:
    rng = np.random.default_rng(12)
    x = {"x": rng.normal(size=4000)}
    before = (rng.random(4000) < 0.7).astype(int)  # 70 % ones
    after = (rng.random(4000) < 0.3).astype(int)  # 30 % ones
    report = batch_drift(
        x, {"x": rng.normal(size=4000)}, reference_prediction=before, current_prediction=after
    )
    assert report.drifted == ()  # the inputs did not change
    assert report.prediction is not None
    assert report.prediction.status == "drift"
    assert report.prediction_drifted
    assert report.any_drift
    assert report.prediction.psi > 0.5


def test_missing_values_appearing_are_drift() -> None:
    rng = np.random.default_rng(13)
    cur = rng.normal(size=5000)
    cur[:1000] = np.nan
    report = batch_drift({"x": rng.normal(size=5000)}, {"x": cur})
    assert report.drifted == ("x",)
    assert report.features[0].missing_current == pytest.approx(0.2)


def test_values_outside_a_discrete_reference_are_drift() -> None:
    rng = np.random.default_rng(14)
    ref = {"level": rng.integers(1, 4, size=3000).astype(float)}
    cur = {"level": np.r_[rng.integers(1, 4, size=2500), np.full(500, 7)].astype(float)}
    assert batch_drift(ref, cur).drifted == ("level",)


# -- unchanged data is not flagged, whatever the sample size ---------------------------------------

LABELS = np.array([f"c{i}" for i in range(30)], dtype=object)
ZIPF = (1 / np.arange(1, 31)) / np.sum(1 / np.arange(1, 31))


def draw(rng: np.random.Generator, n: int, *, numeric_only: bool = False) -> dict[str, Any]:
    columns: dict[str, Any] = {
        "normal": rng.normal(size=n),
        "lognormal": rng.lognormal(size=n),
        "counts": rng.poisson(3, size=n).astype(float),
        "binary": (rng.random(n) < 0.3).astype(float),
    }
    if not numeric_only:
        columns["zipf"] = rng.choice(LABELS, size=n, p=ZIPF)
        columns["three"] = rng.choice(LABELS[:3], size=n, p=[0.6, 0.3, 0.1])
    return columns


@pytest.mark.parametrize("n", [50, 100, 1_000, 10_000, 100_000])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unchanged_data_is_not_flagged(n: int, seed: int) -> None:
    rng = np.random.default_rng([seed, n])
    report = batch_drift(draw(rng, n), draw(rng, n), categorical=(), prediction_kind="auto")
    assert report.drifted == (), [f for f in report.features if f.status == "drift"]
    assert not report.any_drift
    expected = "insufficient" if n < 100 else "ok"
    assert {f.status for f in report.features} == {expected}


def test_unchanged_data_at_a_million_rows_is_not_flagged() -> None:
    rng = np.random.default_rng(99)
    report = batch_drift(
        draw(rng, 1_000_000, numeric_only=True), draw(rng, 1_000_000, numeric_only=True)
    )
    assert report.drifted == ()
    # At this size even a tiny difference is significant; the effect size is what keeps it ok.
    assert all(f.js < 0.01 for f in report.features)


def test_a_significant_but_negligible_difference_is_not_drift() -> None:
    # 0.03 sd at a million rows: the chi-squared test calls it real (p ~ 0), the effect is tiny.
    rng = np.random.default_rng(98)
    report = batch_drift({"x": rng.normal(size=1_000_000)}, {"x": rng.normal(0.03, 1, 1_000_000)})
    f = report.features[0]
    assert f.p_value < 1e-6
    assert f.js < 0.05
    assert f.status == "ok"


def test_small_current_window_against_a_large_reference_is_not_flagged() -> None:
    rng = np.random.default_rng(15)
    ref = draw(rng, 100_000)
    for size in (100, 150, 300, 600):
        report = batch_drift(ref, draw(rng, size))
        assert report.drifted == (), (size, report.render())


def test_a_small_sample_with_a_large_looking_psi_is_not_drift() -> None:
    # 100 rows over 11 slots: a JS distance past its threshold, but not significant.
    ref = np.array([1000] * 10 + [0])
    cur = np.array([14, 5, 12, 6, 13, 7, 12, 6, 15, 10, 0])
    result = compare_counts("f", "numeric", ref, cur)
    assert result.js >= DriftThresholds().js
    assert result.p_value >= DriftThresholds().alpha
    assert result.status == "ok"
    few = compare_counts("f", "numeric", ref, np.array([9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
    assert few.psi > 2
    assert few.status == "insufficient"


# -- windows and profiles: edges -------------------------------------------------------------------


def test_an_empty_window_is_insufficient_and_has_no_nan() -> None:
    profile = build_profile({"x": np.arange(200.0), "c": ["a", "b"] * 100})
    empty = {name: np.zeros(f.slots, dtype=np.int64) for name, f in profile.features.items()}
    report = compare(profile, empty)
    assert [f.status for f in report.features] == ["insufficient", "insufficient"]
    for f in report.features:
        assert (f.psi, f.js, f.chi2, f.p_value, f.n_current) == (0.0, 0.0, 0.0, 1.0, 0)
        assert f.missing_current == 0.0
    assert (report.score, report.share, report.drifted) == (0.0, 0.0, ())
    assert finite_everywhere(report.to_json())
    assert "insufficient" in report.render()


def test_a_current_batch_with_no_rows_is_insufficient() -> None:
    report = batch_drift({"x": np.arange(200.0)}, {"x": np.array([], dtype=float)})
    assert report.features[0].status == "insufficient"
    assert report.current_rows == 0
    assert not report.any_drift


def test_nan_only_current_data_is_drift_of_the_missing_rate_not_nan() -> None:
    report = batch_drift({"x": np.arange(500.0)}, {"x": np.full(500, np.nan)})
    f = report.features[0]
    assert f.status == "drift"
    assert f.missing_current == 1.0
    assert finite_everywhere(report.to_json())


def test_profile_missing_a_feature_is_an_error() -> None:
    profile = build_profile({"x": np.arange(200.0)})
    counts = {"x": profile.features["x"].bin(np.arange(200.0)), "y": np.array([1, 2])}
    with raises("drift.unknown_feature"):
        compare(profile, counts)


def test_current_counts_missing_a_feature_is_an_error() -> None:
    profile = build_profile({"x": np.arange(200.0), "y": np.arange(200.0)})
    with raises("drift.missing_feature"):
        compare(profile, {"x": profile.features["x"].bin(np.arange(10.0))})


def test_batch_columns_must_match() -> None:
    with raises("drift.missing_feature"):
        batch_drift({"x": [1.0, 2.0], "y": [1.0, 2.0]}, {"x": [1.0]})
    with raises("drift.unknown_feature"):
        batch_drift({"x": [1.0, 2.0]}, {"x": [1.0], "z": [2.0]})


def test_batch_current_columns_of_different_lengths_are_an_error() -> None:
    with raises("drift.bad_columns"):
        batch_drift({"x": [1.0, 2.0], "y": [1.0, 2.0]}, {"x": [1.0], "y": [1.0, 2.0]})


def test_batch_prediction_on_one_side_only_is_an_error() -> None:
    with raises("drift.bad_columns"):
        batch_drift({"x": [1.0, 2.0]}, {"x": [1.0]}, reference_prediction=[0, 1])


def test_wrong_count_vector_length_is_an_error() -> None:
    profile = build_profile({"x": np.arange(200.0)})
    with raises("drift.bad_counts"):
        compare(profile, {"x": np.array([1, 2, 3])})


def test_prediction_counts_without_a_reference_prediction_are_an_error() -> None:
    profile = build_profile({"x": np.arange(200.0)})
    counts = {"x": profile.features["x"].bin(np.arange(200.0))}
    with raises("drift.unknown_feature"):
        compare(profile, counts, prediction=np.array([1, 2]))


@pytest.mark.parametrize(
    "bad",
    [
        np.array([1.5, 2.0]),  # not integers
        np.array([1, -1]),  # negative
        np.array([[1, 2]]),  # not 1-D
        np.array([], dtype=np.int64),  # no slots
    ],
)
def test_bad_count_vectors_are_refused(bad: Any) -> None:
    with raises("drift.bad_counts"):
        compare_counts("f", "numeric", bad, bad)


def test_count_vectors_of_different_lengths_are_refused() -> None:
    with raises("drift.bad_counts"):
        compare_counts("f", "numeric", np.array([1, 2]), np.array([1, 2, 3]))


def test_unknown_kind_is_refused() -> None:
    with raises("drift.bad_counts"):
        compare_counts("f", "ordinal", np.array([1, 2]), np.array([1, 2]))


# -- thresholds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"psi": 0},
        {"psi": -1},
        {"psi": float("inf")},
        {"psi": float("nan")},
        {"js": 0},
        {"js": 1.5},
        {"alpha": 0},
        {"alpha": 2},
        {"min_rows": 0},
        {"min_rows": 10**13},
        {"min_rows": 1.5},
        {"psi": True},
        {"js": "0.1"},
    ],
)
def test_bad_thresholds_are_refused(kwargs: dict[str, Any]) -> None:
    with raises("drift.bad_threshold"):
        DriftThresholds(**kwargs)


def test_thresholds_at_their_limits_are_accepted() -> None:
    DriftThresholds(psi=1e-9, js=1.0, alpha=1.0, min_rows=1)
    DriftThresholds(min_rows=10**12)


def test_per_feature_thresholds_change_one_verdict() -> None:
    rng = np.random.default_rng(16)
    ref = {"a": rng.normal(size=5000), "b": rng.normal(size=5000)}
    cur = {"a": rng.normal(0.5, 1, size=5000), "b": rng.normal(0.5, 1, size=5000)}
    lenient = DriftThresholds(psi=5.0, js=0.9)
    report = batch_drift(ref, cur, per_feature={"b": lenient})
    assert report.drifted == ("a",)
    b = next(f for f in report.features if f.name == "b")
    assert b.thresholds == lenient
    assert b.to_json()["thresholds"]["js"] == 0.9


def test_per_feature_thresholds_for_an_unknown_feature_are_an_error() -> None:
    with raises("drift.unknown_feature"):
        batch_drift({"a": [1.0]}, {"a": [1.0]}, per_feature={"typo": DriftThresholds()})


def test_parse_thresholds_merges_over_the_base() -> None:
    base = DriftThresholds(alpha=0.05)
    parsed = parse_thresholds({"a": {"psi": 0.3}, "b": {}}, base=base)
    assert parsed == {"a": DriftThresholds(psi=0.3, alpha=0.05), "b": base}


@pytest.mark.parametrize("doc", [[], {"a": []}, {"a": {"psy": 0.3}}, {"a": {"js": 2}}])
def test_parse_thresholds_rejects(doc: Any) -> None:
    with raises("drift.bad_threshold"):
        parse_thresholds(doc, base=DriftThresholds())


def test_min_rows_decides_insufficient() -> None:
    ref = np.array([500, 500, 0])
    cur = np.array([0, 99, 0])
    assert compare_counts("f", "numeric", ref, cur, DriftThresholds(min_rows=100)).status == (
        "insufficient"
    )
    assert compare_counts("f", "numeric", ref, cur, DriftThresholds(min_rows=99)).status == "drift"


# -- report ----------------------------------------------------------------------------------------


def test_render_lists_drifted_features_first_and_the_prediction_last() -> None:
    rng = np.random.default_rng(17)
    ref = {"calm": rng.normal(size=3000), "moved": rng.normal(size=3000)}
    cur = {"calm": rng.normal(size=3000), "moved": rng.normal(1, 1, size=3000)}
    report = batch_drift(
        ref, cur, reference_prediction=rng.integers(0, 2, 3000),
        current_prediction=rng.integers(0, 2, 3000),
    )  # fmt: skip
    lines = report.render().splitlines()
    assert lines[0].startswith("Compared 3000 current rows with 3000 reference rows: 1 of 2")
    assert lines[2].split()[0] == "moved"
    assert lines[2].split()[-1] == "DRIFT"
    assert lines[3].split()[0] == "calm"
    assert lines[-1].split()[0] == "prediction"
    doc = report.to_json()
    assert doc["drift"] is True
    assert doc["drifted"] == ["moved"]
    assert [f["name"] for f in doc["features"]] == ["calm", "moved"]
    assert doc["prediction"]["status"] == "ok"
