"""`SloTracker.minutes`: the per-minute counts behind the burn rates, for the dashboards'
trends — zero-filled, oldest first, the current minute last, bounded to the fine ring."""

from __future__ import annotations

import pytest

from bastion.core.errors import InvalidInput
from bastion.monitoring.slo import HOUR, MINUTE, MinuteCounts, SloTracker

T0 = 2000 * HOUR


def test_minutes_are_zero_filled_oldest_first() -> None:
    t = SloTracker(clock=lambda: T0 + 4 * MINUTE + 30)
    for minute, (ok, errors, slow) in {0: (3, 1, 0), 2: (5, 0, 2), 4: (1, 0, 0)}.items():
        at = T0 + minute * MINUTE + 1
        for _ in range(ok):
            t.record("fraud", 200, 0.01, now=at)
        for _ in range(errors):
            t.record("fraud", 503, 0.01, now=at)
        for _ in range(slow):
            t.record("fraud", 200, 0.5, now=at)
    got = t.minutes("fraud", 6)
    assert [m.start for m in got] == [T0 + (k - 1) * MINUTE for k in range(6)]
    assert [(m.requests, m.errors, m.slow) for m in got] == [
        (0, 0, 0), (4, 1, 0), (0, 0, 0), (7, 0, 2), (0, 0, 0), (1, 0, 0),
    ]  # fmt: skip
    assert t.minutes("fraud", 2) == [
        MinuteCounts(T0 + 3 * MINUTE, 0, 0, 0),
        MinuteCounts(T0 + 4 * MINUTE, 1, 0, 0),
    ]
    # The same counts the burn rates sum: 12 requests, 1 error, 2 slow in the last 5 minutes.
    burn = t.burn_rates("fraud")
    assert burn["availability"][300.0] == pytest.approx((1 / 12) / 0.001)


def test_an_unseen_endpoint_is_zeros_and_the_count_is_bounded() -> None:
    t = SloTracker(clock=lambda: T0)
    expected = [MinuteCounts(T0 + (k - 2) * MINUTE, 0, 0, 0) for k in range(3)]
    assert t.minutes("nobody", 3) == expected
    assert len(t.minutes("nobody", 360)) == 360
    for bad in (0, 361, True, 1.5):
        with pytest.raises(InvalidInput):
            t.minutes("nobody", bad)  # type: ignore[arg-type]


def test_old_minutes_leave_the_series() -> None:
    now = [T0]
    t = SloTracker(clock=lambda: now[0])
    t.record("fraud", 200, 0.01, now=T0)
    assert sum(m.requests for m in t.minutes("fraud", 60)) == 1
    now[0] = T0 + 60 * MINUTE
    assert sum(m.requests for m in t.minutes("fraud", 60)) == 0
    assert sum(m.requests for m in t.minutes("fraud", 61)) == 1
