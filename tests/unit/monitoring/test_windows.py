"""Rolling windows: slices expire, counts add up, drift binning is deferred but exact."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.core.errors import InvalidInput
from bastion.monitoring.windows import (
    LATENCY_BOUNDS,
    VersionWindow,
    WindowConfig,
    Windows,
    WindowSummary,
)
from bastion.registry.profile import build_profile

CFG = WindowConfig(slice_seconds=10, slices=6, pending_rows=64)


def _window(profile=None, config=CFG):
    return VersionWindow("ep", "1", "mv_1", profile, config=config, clock=lambda: 0.0)


def test_requests_errors_and_latency_are_counted_per_window():
    w = _window()
    for i in range(100):
        w.request(200 if i % 10 else 503, 0.001 * (i + 1), now=5.0)
    w.request(404, 0.5, now=5.0)  # client errors are not server errors
    s = w.summary(now=5.0)
    assert s.requests == 101
    assert s.errors == 10
    assert s.error_rate == pytest.approx(10 / 101)
    assert sum(s.latency) == 101
    p50 = s.latency_quantile(0.5)
    assert 0.04 <= p50 <= 0.07  # the 51st fastest is 51 ms, bucket bounds are 25 % apart
    assert s.slower_than(0.2) == 1  # only the 0.5 s request is certainly slower than 200 ms


def test_slices_expire_after_the_window():
    w = _window()
    w.request(500, 0.01, now=0.0)
    w.request(200, 0.01, now=55.0)
    assert w.summary(now=55.0).requests == 2
    # 6 slices of 10 s: at t=60 the slice [0, 10) has left the window.
    s = w.summary(now=60.0)
    assert (s.requests, s.errors) == (1, 0)
    assert w.summary(now=200.0).requests == 0


def test_a_window_with_no_traffic_is_defined():
    s = _window().summary(now=1.0)
    assert s.requests == 0
    assert s.error_rate == 0.0
    assert s.latency_quantile(0.95) is None
    assert s.anomaly_rate == 0.0
    assert s.divergence == 0.0


def test_ring_memory_is_fixed():
    w = _window()
    for t in range(0, 10_000, 3):
        w.request(200, 0.001, now=float(t))
    assert len(w._ring) == CFG.slices


def test_anomalies_rate_is_the_worst_fields_share():
    w = _window()
    w.observe(100, {}, {("a", "out_of_range"): 3, ("b", "unseen_category"): 9}, None, now=1.0)
    w.observe(100, {}, {("b", "out_of_range"): 1}, None, now=2.0)
    s = w.summary(now=2.0)
    assert s.rows == 200
    assert s.anomaly_field == ("b", 10)
    assert s.anomaly_rate == pytest.approx(10 / 200)


def test_drift_counts_match_binning_everything_at_once():
    rng = np.random.default_rng(1)
    ref = {"x": rng.normal(size=5000), "c": rng.choice(["a", "b", "c"], 5000).astype(object)}
    profile = build_profile(ref, prediction=rng.integers(0, 2, 5000).astype(np.float64))
    w = _window(profile)
    xs, cs, ps = [], [], []
    for i in range(300):  # many small batches, crossing the pending limit and slices
        x = rng.normal(0.3, 1, size=3)
        c = rng.choice(["a", "b", "z"], 3).astype(object)
        p = rng.integers(0, 2, 3)
        w.observe(3, {"x": x, "c": c}, {}, p, now=float(i % 50))
        xs.append(x), cs.append(c), ps.append(p)
    s = w.summary(now=50.0)
    x_all, c_all = np.concatenate(xs), np.concatenate(cs)
    assert s.features["x"] == profile.features["x"].bin(x_all).tolist()
    assert s.features["c"] == profile.features["c"].bin(c_all).tolist()
    assert s.prediction == profile.prediction.bin(np.concatenate(ps).astype(float)).tolist()
    assert sum(s.features["c"]) == 900


def test_shifted_traffic_drifts_and_same_traffic_does_not():
    rng = np.random.default_rng(2)
    profile = build_profile({"x": rng.normal(size=20_000)})
    same, shifted = _window(profile), _window(profile)
    for i in range(200):
        same.observe(10, {"x": rng.normal(size=10)}, {}, None, now=float(i % 60))
        shifted.observe(10, {"x": rng.normal(1.0, 1, size=10)}, {}, None, now=float(i % 60))
    assert not same.summary(now=59.0).drift(profile).any_drift
    report = shifted.summary(now=59.0).drift(profile)
    assert report.drifted == ("x",)


def test_summaries_merge_and_round_trip():
    w1, w2 = _window(), _window()
    w1.request(200, 0.01, now=1.0)
    w2.request(503, 0.02, now=2.0)
    w2.shadow(False, now=2.0)
    merged = w1.summary(now=2.0).merge(WindowSummary.from_json(w2.summary(now=2.0).to_json()))
    assert (merged.requests, merged.errors, merged.replicas) == (2, 1, 2)
    assert merged.shadow_different == 1
    other = WindowSummary(endpoint="ep", version="2", version_id="mv_2", since=0, until=1)
    with pytest.raises(InvalidInput):
        merged.merge(other)


def test_malformed_summary_json_is_refused():
    with pytest.raises(InvalidInput) as info:
        WindowSummary.from_json({"endpoint": "ep"})
    assert info.value.code == "monitoring.bad_window"
    doc = _window().summary(now=0.0).to_json()
    doc["latency"] = [1, 2]
    with pytest.raises(InvalidInput):
        WindowSummary.from_json(doc)


def test_windows_registry_caps_and_shares_overflow():
    ws = Windows(WindowConfig(max_windows=2), clock=lambda: 0.0)
    a = ws.get("ep", "1", "mv_1", None)
    assert ws.get("ep", "1", "mv_1", None) is a
    ws.get("ep", "2", "mv_2", None)
    o1 = ws.get("ep", "3", "mv_3", None)
    o2 = ws.get("other", "1", "mv_9", None)
    assert o1 is o2
    assert o1.endpoint == "_overflow"


@pytest.mark.parametrize(
    "kwargs",
    [{"slice_seconds": 0.0}, {"slices": 0}, {"pending_rows": 0}, {"max_windows": 0}],
)
def test_bad_window_config_is_refused(kwargs):
    with pytest.raises(InvalidInput) as info:
        WindowConfig(**kwargs)
    assert info.value.code == "monitoring.bad_window"


def test_latency_bounds_cover_100us_to_minutes():
    assert LATENCY_BOUNDS[0] == pytest.approx(1e-4)
    assert LATENCY_BOUNDS[-1] > 60


def test_reset_forgets_earlier_counts_and_records_when():
    w = _window()
    w.request(500, 0.01, now=1.0)
    assert w.summary(now=1.0).errors == 1
    w.reset(2.0)
    s = w.summary(now=2.5)
    assert (s.requests, s.errors, s.started) == (0, 0, 2.0)
    w.request(200, 0.01, now=3.0)
    assert w.summary(now=3.0).requests == 1
