"""Reference profiles: exact counts in one pass, the slot layout, edge cases of real columns
(NaN, None, inf, constants, booleans, discrete values), the top-k, limits, and a strict JSON
round trip whose every rejection has its own test."""

from __future__ import annotations

import copy
import json
import math
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.core.canonical import canonical_json
from bastion.core.errors import InvalidInput
from bastion.registry.profile import (
    FORMAT,
    MAX_FEATURES,
    FeatureProfile,
    ReferenceProfile,
    build_profile,
    category_key,
)


def one(values: Any, **kwargs: Any) -> FeatureProfile:
    return build_profile({"x": values}, **kwargs).features["x"]


class _Raises:
    """`pytest.raises(InvalidInput)` that also checks the error's code."""

    def __init__(self, code: str) -> None:
        self.code = code
        self._cm = pytest.raises(InvalidInput)

    def __enter__(self) -> Any:
        return self._cm.__enter__()

    def __exit__(self, *exc: Any) -> bool:
        handled = self._cm.__exit__(*exc)
        assert self._cm.excinfo is not None
        assert self._cm.excinfo.value.code == self.code, self._cm.excinfo.value
        return bool(handled)


# -- numeric ---------------------------------------------------------------------------------------


def test_continuous_column_gets_quantile_bins_with_exact_counts() -> None:
    x = np.random.default_rng(1).normal(size=100_000)
    f = one(x)
    assert f.kind == "numeric"
    assert len(f.edges) == 9
    assert f.total == x.size == sum(f.counts)
    assert f.counts[-1] == 0  # no missing values
    # Counts are exact for the stored (rounded) edges.
    slots = np.searchsorted(np.asarray(f.edges), x, side="right")
    assert list(np.bincount(slots, minlength=10)) == list(f.counts[:-1])
    # Rounded, yet each bin still holds roughly a tenth of the rows.
    assert all(0.06 < c / x.size < 0.14 for c in f.counts[:-1])
    # Rounding keeps the edges short (what keeps profiles small).
    assert all(len(repr(e)) <= 6 for e in f.edges), f.edges


def test_quantile_edges_are_near_the_true_quantiles() -> None:
    x = np.random.default_rng(2).uniform(0, 1000, size=50_000)
    f = one(x, bins=4)
    assert len(f.edges) == 3
    for edge, q in zip(f.edges, (250, 500, 750), strict=True):
        assert abs(edge - q) < 40


def test_nan_and_none_are_missing() -> None:
    f = one([1.0, None, float("nan"), 2.0, 3.0])
    assert f.counts[-1] == 2
    assert f.missing_rate == pytest.approx(0.4)
    assert f.total == 5


def test_all_nan_column_has_one_bin_and_is_all_missing() -> None:
    f = one(np.full(50, np.nan))
    assert f.edges == ()
    assert f.slots == 2
    assert f.counts == (0, 50)
    assert f.missing_rate == 1.0


def test_column_of_only_infinities_has_one_bin_holding_them() -> None:
    f = one(np.array([np.inf, -np.inf, np.nan]))
    assert f.edges == ()
    assert f.counts == (2, 1)


def test_constant_column_gets_a_bin_below_its_value_and_one_above() -> None:
    f = one(np.full(100, 7.0))
    assert len(f.edges) == 2
    assert f.edges[0] <= 7.0 < f.edges[1]
    assert f.counts == (0, 100, 0, 0)
    # A current value other than 7 lands in a slot the reference left empty.
    assert list(f.bin([6.0, 7.0, 8.0])) == [1, 1, 1, 0]


def test_booleans_are_numeric_zero_one_with_a_bin_each() -> None:
    f = one(np.array([True, False, True, True]))
    assert f.kind == "numeric"
    assert f.edges[0] <= 0.0 < f.edges[1] <= 1.0 < f.edges[2]
    assert f.counts == (0, 1, 3, 0, 0)


def test_discrete_integers_get_one_bin_per_value_with_edges_between_them() -> None:
    values = np.random.default_rng(3).integers(0, 5, size=10_000)  # 0..4: five values
    f = one(values, bins=10)
    assert f.edges == (0.0, 0.5, 1.5, 2.5, 3.5, 4.2)
    per_value = np.bincount(values, minlength=5)
    assert list(f.counts) == [0, *per_value.tolist(), 0, 0]


def test_discrete_detection_is_exact_even_when_a_value_is_rare() -> None:
    # 3 common values and one that appears once: the sample may miss it, the check does not.
    values = np.array([1.0, 2.0, 3.0] * 20_000 + [10.0])
    f = one(values, bins=4)
    assert f.counts[-3] == 1  # the value 10 has a bin of its own
    assert f.total == values.size


def test_more_distinct_values_than_bins_use_quantiles() -> None:
    values = np.arange(1000) % 11  # 11 distinct values, 10 bins
    f = one(values.astype(float), bins=10)
    assert len(f.edges) <= 9


def test_infinities_fall_in_the_outer_bins() -> None:
    x = np.r_[np.random.default_rng(4).normal(size=1000), np.inf, -np.inf, np.inf]
    f = one(x)
    slots = f.slot_indices(np.array([-np.inf, np.inf]))
    assert list(slots) == [0, len(f.edges)]
    assert f.total == x.size


def test_a_categorical_name_turns_numbers_into_labels() -> None:
    f = build_profile({"x": [1, 2, 2, 3.0, None]}, categorical=["x"]).features["x"]
    assert f.kind == "categorical"
    assert f.categories == ("2", "1", "3")
    assert f.counts == (2, 1, 1, 0, 1)
    # Integers and integral floats are the same label when binning current data.
    assert list(f.bin(np.array([2.0, 2, 1.5, np.nan]))) == [2, 0, 0, 1, 1]


# -- categorical -----------------------------------------------------------------------------------


def test_top_k_by_count_ties_by_name_and_the_rest_in_other() -> None:
    values = ["b"] * 5 + ["a"] * 5 + ["c"] * 3 + ["d"] * 1 + [None] * 2
    f = one(np.array(values, dtype=object), top_k=2)
    assert f.categories == ("a", "b")  # tie at 5, broken by name
    assert f.counts == (5, 5, 4, 2)
    assert f.total == 16
    assert f.missing_rate == pytest.approx(2 / 16)


def test_unseen_categories_are_other_and_missing_is_missing() -> None:
    f = one(np.array(["x", "y", "x"], dtype=object))
    cur = np.array(["x", "new", None, float("nan"), "y"], dtype=object)
    assert list(f.slot_indices(cur)) == [0, 2, 3, 3, 1]
    assert list(f.bin(cur)) == [1, 1, 1, 2]


def test_numpy_string_arrays_are_categorical() -> None:
    f = one(np.array(["a", "b", "a"]))
    assert f.kind == "categorical"
    assert f.counts == (2, 1, 0, 0)


def test_overlong_category_values_count_as_other() -> None:
    long = "z" * 201
    f = one(np.array([long, long, "a"], dtype=object))
    assert f.categories == ("a",)
    assert f.counts == (1, 2, 0)
    assert list(f.slot_indices(np.array([long], dtype=object))) == [1]


def test_category_key_maps_values_to_text() -> None:
    assert category_key(None) is None
    assert category_key(float("nan")) is None
    assert category_key(3) == "3"
    assert category_key(3.0) == "3"
    assert category_key(np.int64(3)) == "3"
    assert category_key(2.5) == "2.5"
    assert category_key(True) == "True"
    assert category_key("3.0") == "3.0"


# -- bin == bincount(slot_indices) -----------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    reference=st.lists(
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5)),
        min_size=1,
        max_size=60,
    ),
    current=st.lists(
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5)),
        max_size=60,
    ),
    bins=st.integers(2, 12),
)
def test_numeric_bin_equals_bincount_of_slot_indices(
    reference: list[float], current: list[float], bins: int
) -> None:
    f = one(np.asarray(reference, dtype=np.float64), bins=bins)
    assert f.total == len(reference)
    assert list(f.bin(np.asarray(reference, dtype=np.float64))) == list(f.counts)
    cur = np.asarray(current, dtype=np.float64)
    expected = np.bincount(f.slot_indices(cur), minlength=f.slots)
    assert list(f.bin(cur)) == list(expected)
    assert all(b > a for a, b in zip(f.edges, f.edges[1:], strict=False))


@settings(max_examples=60, deadline=None)
@given(
    reference=st.lists(st.one_of(st.none(), st.sampled_from("abcdefg")), min_size=1, max_size=60),
    current=st.lists(st.one_of(st.none(), st.sampled_from("abcdefghij")), max_size=60),
    top_k=st.integers(1, 8),
)
def test_categorical_bin_equals_bincount_of_slot_indices(
    reference: list[str | None], current: list[str | None], top_k: int
) -> None:
    ref = np.array(reference, dtype=object)
    f = one(ref, top_k=top_k)
    assert list(f.bin(ref)) == list(f.counts)
    cur = np.array(current, dtype=object)
    expected = np.bincount(f.slot_indices(cur), minlength=f.slots)
    assert list(f.bin(cur)) == list(expected)


def test_many_features_one_pass_every_feature_counts_every_row() -> None:
    rng = np.random.default_rng(5)
    columns: dict[str, Any] = {f"n{i}": rng.normal(size=3000) for i in range(5)}
    columns["c"] = rng.choice(np.array(["a", "b", None], dtype=object), size=3000)
    profile = build_profile(columns, prediction=rng.integers(0, 2, size=3000))
    assert profile.rows == 3000
    assert [f.total for f in profile.features.values()] == [3000] * 6
    assert profile.prediction is not None
    assert profile.prediction.total == 3000
    assert list(profile.features) == [*(f"n{i}" for i in range(5)), "c"]


def test_prediction_kind_can_force_labels() -> None:
    profile = build_profile(
        {"x": [1.0, 2.0, 3.0]}, prediction=[0, 1, 1], prediction_kind="categorical"
    )
    assert profile.prediction is not None
    assert profile.prediction.kind == "categorical"
    assert profile.prediction.categories == ("1", "0")


# -- limits and rejections of build_profile --------------------------------------------------------


@pytest.mark.parametrize("bins", [1, 101, True, 2.5])
def test_bins_outside_limits_are_refused(bins: Any) -> None:
    with _Raises("monitoring.bad_profile"):
        build_profile({"x": [1.0, 2.0]}, bins=bins)


@pytest.mark.parametrize("top_k", [0, 1001])
def test_top_k_outside_limits_is_refused(top_k: int) -> None:
    with _Raises("monitoring.bad_profile"):
        build_profile({"x": ["a"]}, top_k=top_k)


def test_bins_and_top_k_at_their_limits_are_accepted() -> None:
    x = np.random.default_rng(6).normal(size=5000)
    assert len(one(x, bins=100).edges) == 99
    assert len(one(x, bins=2).edges) == 1
    labels = np.array([str(i) for i in range(1500)], dtype=object)
    assert len(one(labels, top_k=1000).categories) == 1000
    assert len(one(labels, top_k=1).categories) == 1


def test_more_than_ten_thousand_features_are_refused() -> None:
    columns = {f"f{i}": [1.0] for i in range(MAX_FEATURES + 1)}
    with _Raises("monitoring.bad_profile"):
        build_profile(columns)


def test_columns_of_different_lengths_are_refused() -> None:
    with _Raises("monitoring.bad_profile"):
        build_profile({"a": [1.0, 2.0], "b": [1.0]})


def test_prediction_of_another_length_is_refused() -> None:
    with _Raises("monitoring.bad_profile"):
        build_profile({"a": [1.0, 2.0]}, prediction=[1])


def test_zero_rows_are_refused() -> None:
    with _Raises("monitoring.bad_profile"):
        build_profile({"a": np.array([], dtype=float)})


def test_nothing_to_profile_is_refused() -> None:
    with _Raises("monitoring.bad_profile"):
        build_profile({})


def test_unknown_categorical_name_is_refused() -> None:
    with _Raises("monitoring.bad_profile"):
        build_profile({"a": [1.0]}, categorical=["b"])


def test_dates_are_refused() -> None:
    with _Raises("monitoring.bad_profile"):
        build_profile({"a": np.array(["2026-01-01"], dtype="datetime64[D]")})


@pytest.mark.parametrize("name", ["", "n" * 257])
def test_bad_column_names_are_refused(name: str) -> None:
    with _Raises("monitoring.bad_profile"):
        build_profile({name: [1.0]})


def test_text_in_a_numeric_feature_cannot_be_binned() -> None:
    f = one([1.0, 2.0])
    with _Raises("monitoring.bad_values"):
        f.bin(np.array(["a"], dtype=object))


# -- JSON ------------------------------------------------------------------------------------------


def sample_profile() -> ReferenceProfile:
    rng = np.random.default_rng(7)
    return build_profile(
        {
            "amount": rng.lognormal(size=500),
            "age": rng.integers(18, 22, size=500),
            "country": rng.choice(np.array(["fr", "de", None], dtype=object), size=500),
        },
        prediction=rng.integers(0, 2, size=500),
    )


def test_json_round_trip_through_text_and_canonical_form() -> None:
    profile = sample_profile()
    doc = profile.to_json()
    assert doc["format"] == FORMAT
    assert ReferenceProfile.from_json(json.loads(json.dumps(doc))) == profile
    assert ReferenceProfile.from_json(json.loads(canonical_json(doc))) == profile


def test_digest_is_stable_and_changes_with_the_counts() -> None:
    profile = sample_profile()
    digest = profile.digest()
    assert digest.startswith("sha256:")
    assert len(digest) == len("sha256:") + 64
    assert ReferenceProfile.from_json(profile.to_json()).digest() == digest
    doc = profile.to_json()
    doc["features"]["amount"]["counts"][0] += 1
    doc["features"]["amount"]["counts"][1] -= 1
    assert ReferenceProfile.from_json(doc).digest() != digest


def test_fifty_feature_ten_bin_profile_is_under_eight_kib() -> None:
    rng = np.random.default_rng(8)
    columns = {f"feature_{i}": rng.normal(i, 1 + i / 10, size=1_000_000) for i in range(50)}
    size = len(canonical_json(build_profile(columns).to_json()))
    assert size < 8 * 1024, size


def mutated(change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(sample_profile().to_json())
    change(doc)
    return doc


REJECTIONS = {
    "not an object": lambda d: d.clear(),
    "unknown format": lambda d: d.update(format=2),
    "format as a string": lambda d: d.update(format="1"),
    "format as a bool": lambda d: d.update(format=True),
    "extra top-level key": lambda d: d.update(extra=1),
    "rows not an integer": lambda d: d.update(rows=500.0),
    "rows not matching counts": lambda d: d.update(rows=499),
    "features not an object": lambda d: d.update(features=[]),
    "feature not an object": lambda d: d["features"].update(amount=[1, 2]),
    "feature with both edges and categories": lambda d: d["features"]["amount"].update(
        categories=["a"]
    ),
    "feature with unknown key": lambda d: d["features"]["amount"].update(kind="numeric"),
    "edges not a list": lambda d: d["features"]["amount"].update(edges="1,2"),
    "edge a string": lambda d: d["features"]["amount"]["edges"].__setitem__(0, "0.5"),
    "edge a bool": lambda d: d["features"]["amount"]["edges"].__setitem__(0, True),
    "edges not increasing": lambda d: d["features"]["amount"]["edges"].reverse(),
    "edges repeated": lambda d: d["features"]["amount"]["edges"].__setitem__(
        1, d["features"]["amount"]["edges"][0]
    ),
    "counts too short": lambda d: d["features"]["amount"]["counts"].pop(),
    "counts too long": lambda d: d["features"]["amount"]["counts"].append(0),
    "negative count": lambda d: d["features"]["age"]["counts"].__setitem__(0, -1),
    "count a float": lambda d: d["features"]["age"]["counts"].__setitem__(0, 1.5),
    "count a bool": lambda d: d["features"]["age"]["counts"].__setitem__(0, False),
    "category not a string": lambda d: d["features"]["country"]["categories"].__setitem__(0, 1),
    "duplicate categories": lambda d: d["features"]["country"]["categories"].__setitem__(
        1, d["features"]["country"]["categories"][0]
    ),
    "overlong category": lambda d: d["features"]["country"]["categories"].__setitem__(0, "x" * 201),
    "prediction malformed": lambda d: d.update(prediction={"edges": []}),
    "no features and no prediction": lambda d: d.update(features={}, prediction=None),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_from_json_rejects(case: str) -> None:
    doc: Any = mutated(REJECTIONS[case])
    if case == "not an object":
        doc = []
    with _Raises("monitoring.bad_profile"):
        ReferenceProfile.from_json(doc)


def test_from_json_accepts_the_unmutated_document() -> None:
    # The mutations above start from a document that parses.
    assert ReferenceProfile.from_json(mutated(lambda d: None)) == sample_profile()


def test_from_json_rejects_a_non_finite_edge() -> None:
    doc = mutated(lambda d: None)
    doc["features"]["amount"]["edges"][-1] = float("inf")
    with _Raises("monitoring.bad_profile"):
        ReferenceProfile.from_json(doc)


def test_feature_profile_validates_on_construction() -> None:
    with _Raises("monitoring.bad_profile"):
        FeatureProfile("x", "numeric", (1.0, 2.0), (), (1, 2))  # 4 slots, 2 counts
    with _Raises("monitoring.bad_profile"):
        FeatureProfile("x", "ordinal", (), (), (0, 0))  # type: ignore[arg-type]


def test_unhashable_values_cannot_be_categories() -> None:
    bad = np.empty(1, dtype=object)
    bad[0] = ["a"]
    with _Raises("monitoring.bad_values"):
        build_profile({"x": bad})
    f = one(np.array(["a", "b"], dtype=object))
    with _Raises("monitoring.bad_values"):
        f.bin(bad)
    with _Raises("monitoring.bad_values"):
        f.slot_indices(bad)


def test_edges_near_the_float_limit_do_not_overflow() -> None:
    """Rounding toward a power of ten past 1.8e308 overflows; the edge search skips that
    precision instead of failing (hypothesis found it with values near the limit)."""
    big = sys.float_info.max
    for reference in ([big, big / 2, -big], [big * 0.9, big], [1.0, big]):
        f = one(np.asarray(reference, dtype=np.float64), bins=4)
        assert all(math.isfinite(e) for e in f.edges)
        assert sum(f.counts) == len(reference)
