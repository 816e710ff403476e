"""The canary guard: a breach needs the share above tolerance and statistical significance."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from bastion.core.errors import InvalidInput
from bastion.monitoring.guard import GuardLimits, exceeds, judge
from bastion.monitoring.windows import VersionWindow, WindowConfig

CFG = WindowConfig(slice_seconds=10, slices=30)


def _summary(n, *, errors=0, latency=0.01, slow=0, slow_latency=1.0, version="2", vid="mv_2"):
    w = VersionWindow("ep", version, vid, None, config=CFG, clock=lambda: 0.0)
    for i in range(n):
        status = 500 if i < errors else 200
        w.request(status, slow_latency if i < slow else latency, now=1.0)
    return w.summary(now=1.0)


def test_exceeds_agrees_with_scipys_binomial_test():
    for events, trials, p0 in [(3, 20, 0.01), (9, 100, 0.05), (30, 1000, 0.02), (2, 50, 0.01)]:
        hit, p = exceeds(events, trials, p0, 0.001)
        expected = binomtest(events, trials, p0, alternative="greater").pvalue
        assert p == pytest.approx(expected, rel=1e-9)
        assert hit == (expected < 0.001)


def test_at_or_below_tolerance_is_never_a_breach():
    assert exceeds(1, 100, 0.01, 0.5) == (False, 1.0)
    assert exceeds(0, 100, 0.01, 0.5) == (False, 1.0)
    assert exceeds(0, 0, 0.01, 0.5) == (False, 1.0)


def test_an_erroring_canary_breaches_and_a_healthy_one_does_not():
    limits = GuardLimits(min_requests=20)
    stable = _summary(500, version="1", vid="mv_1")
    bad = judge(_summary(40, errors=10), stable, limits)
    assert [b.signal for b in bad.breaches] == ["error_rate"]
    assert bad.breaches[0].events == 10
    assert "10/40" in bad.reason()
    good = judge(_summary(400, errors=2), stable, limits)  # 0.5 % < 1 %
    assert not good.breached
    assert "error_rate" in good.judged


def test_a_single_error_in_few_requests_is_not_significant():
    verdict = judge(_summary(25, errors=1), None, GuardLimits(min_requests=20))
    assert not verdict.breached


def test_too_few_requests_are_not_judged():
    verdict = judge(_summary(10, errors=10), None, GuardLimits(min_requests=20))
    assert not verdict.breached
    assert "error_rate" in verdict.insufficient


def test_the_stable_versions_error_rate_raises_the_tolerance():
    limits = GuardLimits(min_requests=20)
    noisy_stable = _summary(1000, errors=50, version="1", vid="mv_1")  # 5 %: tolerance 10 %
    assert not judge(_summary(200, errors=12), noisy_stable, limits).breached
    assert judge(_summary(200, errors=40), noisy_stable, limits).breached


def test_a_slow_canary_breaches_latency():
    limits = GuardLimits(min_requests=20, latency_p95=0.2)
    stable = _summary(500, latency=0.01, version="1", vid="mv_1")
    verdict = judge(_summary(100, slow=30, slow_latency=0.6), stable, limits)
    assert "latency_p95" in {b.signal for b in verdict.breaches}
    fine = judge(_summary(100, slow=2, slow_latency=0.6), stable, limits)
    assert "latency_p95" not in {b.signal for b in fine.breaches}


def test_a_slow_stable_version_raises_the_latency_limit():
    limits = GuardLimits(min_requests=20, latency_p95=0.2)
    stable = _summary(500, latency=0.5, version="1", vid="mv_1")  # p95 ~0.5 s: limit ~0.75 s
    verdict = judge(_summary(100, latency=0.5), stable, limits)
    assert not verdict.breached


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_error_rate": 1.0},
        {"error_ratio": 0.5},
        {"latency_p95": 0},
        {"alpha": 0.0},
        {"min_requests": 0},
        {"max_anomaly_rate": -0.1},
    ],
)
def test_bad_limits_are_refused(kwargs):
    with pytest.raises(InvalidInput) as info:
        GuardLimits(**kwargs)
    assert info.value.code == "monitoring.bad_limit"


def _anomalous(rows, anomalous, *, version="2", vid="mv_2"):
    w = VersionWindow("ep", version, vid, None, config=CFG, clock=lambda: 0.0)
    for _ in range(rows // 10):
        w.request(200, 0.01, now=1.0)
    w.observe(rows, {}, {("f", "out_of_range"): anomalous} if anomalous else {}, None, now=1.0)
    return w.summary(now=1.0)


def test_anomalies_the_stable_version_sees_too_are_not_the_canarys():
    limits = GuardLimits(min_requests=20)
    alone = judge(_anomalous(400, 200), None, limits)
    assert [b.signal for b in alone.breaches] == ["anomaly_rate"]
    both = judge(_anomalous(400, 200), _anomalous(400, 190, version="1", vid="mv_1"), limits)
    assert not both.breached
    own = judge(_anomalous(400, 200), _anomalous(400, 2, version="1", vid="mv_1"), limits)
    assert [b.signal for b in own.breaches] == ["anomaly_rate"]
