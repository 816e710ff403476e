"""SloTracker: burn rates, budgets and alerts on constructed traffic with an injected clock.

Times are chosen on hour boundaries so that which minute bucket a request lands in is exact;
every expected burn rate is computed by hand from the traffic put in.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bastion.core.errors import ConfigError, InvalidInput
from bastion.core.settings import Settings
from bastion.monitoring.slo import (
    DAY,
    DEFAULT_RULES,
    HOUR,
    MINUTE,
    OVERFLOW,
    BurnRule,
    SloSpec,
    SloTracker,
    duration_label,
    rule_windows,
)

T0 = 2000 * HOUR  # an hour boundary (so also a minute and ten-minute boundary)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def tracker(**kwargs: Any) -> SloTracker:
    kwargs.setdefault("clock", Clock())
    return SloTracker(**kwargs)


def minute_traffic(
    t: SloTracker, endpoint: str, minute: int, ok: int, errors: int = 0, slow: int = 0
) -> None:
    """`ok` fast 200s, `errors` 503s and `slow` slow 200s at T0 + `minute` minutes."""
    at = T0 + minute * MINUTE + 1
    for _ in range(ok):
        t.record(endpoint, 200, 0.01, now=at)
    for _ in range(errors):
        t.record(endpoint, 503, 0.01, now=at)
    for _ in range(slow):
        t.record(endpoint, 200, 0.5, now=at)


def exposition(t: SloTracker) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    registry = CollectorRegistry()
    registry.register(t.collector())
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# -- burn rates ---------------------------------------------------------------------------------


def test_burn_rates_are_exact_on_constructed_traffic() -> None:
    t = tracker()
    # An hour of 100 requests a minute: 2 errors a minute, then 10 a minute in the last 5.
    for m in range(55):
        minute_traffic(t, "fraud", m, ok=98, errors=2)
    for m in range(55, 60):
        minute_traffic(t, "fraud", m, ok=90, errors=10)
    now = T0 + 59 * MINUTE + 30  # inside minute 59: the 5m window is minutes 55..59
    burn = t.burn_rates("fraud", now=now)["availability"]
    assert burn[300.0] == pytest.approx((50 / 500) / 0.001)  # 100x
    assert burn[1800.0] == pytest.approx(((25 * 2 + 50) / 3000) / 0.001)
    assert burn[3600.0] == pytest.approx(((55 * 2 + 50) / 6000) / 0.001)
    assert burn[3 * DAY] == pytest.approx(burn[3600.0])  # nothing older exists
    assert set(burn) == {float(w) for w in rule_windows(DEFAULT_RULES)}


def test_latency_burn_counts_slow_non_5xx_requests_only() -> None:
    t = tracker(spec=SloSpec(latency_threshold=0.2, latency_objective=0.9))
    at = T0 + 10
    for _ in range(80):
        t.record("e", 200, 0.2, now=at)  # exactly at the threshold: fast (le bucket)
    for _ in range(20):
        t.record("e", 429, 0.3, now=at)  # slow 4xx: counts as slow
    for _ in range(50):
        t.record("e", 500, 9.0, now=at)  # slow 5xx: not part of the latency SLO
    burn = t.burn_rates("e", now=at)
    assert burn["latency"][300.0] == pytest.approx((20 / 100) / 0.1)
    assert burn["availability"][300.0] == pytest.approx((50 / 150) / 0.001)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422, 429, 499, 200, 302])
def test_client_errors_do_not_spend_the_availability_budget(status: int) -> None:
    t = tracker()
    for _ in range(100):
        t.record("e", status, 0.01, now=T0)
    assert t.burn_rates("e", now=T0)["availability"][300.0] == 0.0
    assert t.evaluate(now=T0) == []


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599])
def test_every_5xx_is_an_availability_error(status: int) -> None:
    t = tracker()
    t.record("e", status, 0.01, now=T0)
    assert t.budget("e", now=T0)["availability"].bad == 1


def test_windows_slide_and_old_buckets_expire() -> None:
    t = tracker()
    minute_traffic(t, "e", 0, ok=0, errors=10)
    at_start = t.burn_rates("e", now=T0 + 30)["availability"]
    assert at_start[300.0] == pytest.approx(1000.0)
    # Four minutes later the errors are still in the 5m window; five minutes later they left.
    assert t.burn_rates("e", now=T0 + 4 * MINUTE + 59)["availability"][300.0] > 0
    later = t.burn_rates("e", now=T0 + 5 * MINUTE)["availability"]
    assert later[300.0] == 0.0
    assert later[3600.0] == pytest.approx(1000.0)
    assert t.burn_rates("e", now=T0 + HOUR)["availability"][3600.0] == 0.0
    assert t.burn_rates("e", now=T0 + 3 * DAY)["availability"][3 * DAY] == 0.0


def test_a_reused_ring_slot_forgets_its_old_counts() -> None:
    t = tracker()
    minute_traffic(t, "e", 0, ok=0, errors=50)
    # 6 h later the minute ring wraps onto the same slot: the old errors must not show.
    minute_traffic(t, "e", 360, ok=100)
    burn = t.burn_rates("e", now=T0 + 360 * MINUTE + 30)["availability"]
    assert burn[300.0] == 0.0
    assert burn[6 * HOUR] == 0.0  # 6h ending in minute 360 starts at minute 1
    assert burn[DAY] == pytest.approx((50 / 150) / 0.001)  # ten-minute ring still has them


def test_a_window_with_no_traffic_burns_zero_and_never_alerts() -> None:
    t = tracker()
    minute_traffic(t, "e", 0, ok=0, errors=100)
    much_later = T0 + 10 * DAY
    burn = t.burn_rates("e", now=much_later)
    assert all(v == 0.0 for slo in burn.values() for v in slo.values())
    assert t.evaluate(now=much_later) == []
    assert t.burn_rates("never-seen", now=T0) == {
        "availability": dict.fromkeys(burn["availability"], 0.0),
        "latency": dict.fromkeys(burn["latency"], 0.0),
    }


def test_late_timestamps_count_in_the_newest_bucket() -> None:
    t = tracker()
    t.record("e", 200, 0.01, now=T0 + 10 * MINUTE)
    t.record("e", 503, 0.01, now=T0)  # ten minutes late
    burn = t.burn_rates("e", now=T0 + 10 * MINUTE)["availability"]
    assert burn[300.0] == pytest.approx(0.5 / 0.001)


# -- alerts -------------------------------------------------------------------------------------


def test_fast_burn_pages_with_evidence_of_the_strongest_rule() -> None:
    t = tracker()
    for m in range(60):
        minute_traffic(t, "fraud", m, ok=98, errors=2)  # 2 %: 20x the 0.1 % budget
    alerts = t.evaluate(now=T0 + 59 * MINUTE + 30)
    by_name = {a.name: a for a in alerts}
    assert set(by_name) == {"BastionSloAvailabilityFastBurn", "BastionSloAvailabilitySlowBurn"}
    page = by_name["BastionSloAvailabilityFastBurn"]
    assert page.severity == "page"
    assert page.endpoint == "fraud"
    assert dict(page.labels) == {"slo": "availability"}
    assert page.value == pytest.approx(20.0)
    assert page.evidence["rule"] == "1h/5m"  # 14.4x beats 6x: the strongest rule that fires
    assert page.evidence["short_window_requests"] == 500
    assert page.evidence["short_window_bad"] == 10
    assert "\n" not in page.summary
    ticket = by_name["BastionSloAvailabilitySlowBurn"]
    assert ticket.severity == "ticket"
    assert ticket.evidence["rule"] == "1d/2h"


def test_low_burn_does_not_alert() -> None:
    t = tracker()
    for m in range(60):
        minute_traffic(t, "e", m, ok=2000, errors=1)  # 0.05 %: half the budget rate
    assert t.evaluate(now=T0 + 59 * MINUTE + 30) == []


def test_both_windows_must_burn() -> None:
    t = tracker()
    # A burst in the last 5 minutes after a clean hour: the short window burns, the long
    # window (1h) does not reach 14.4x.
    for m in range(55):
        minute_traffic(t, "e", m, ok=100)
    for m in range(55, 60):
        minute_traffic(t, "e", m, ok=95, errors=5)
    now = T0 + 59 * MINUTE + 30
    burn = t.burn_rates("e", now=now)["availability"]
    assert burn[300.0] >= 14.4
    assert burn[3600.0] < 14.4
    assert not [a for a in t.evaluate(now=now) if a.name == "BastionSloAvailabilityFastBurn"]


def test_min_requests_guards_the_short_window() -> None:
    rules = (BurnRule("page", long_window=HOUR, short_window=5 * MINUTE, factor=14.4),)
    quiet = tracker(rules=rules, min_requests=10)
    for _ in range(9):
        quiet.record("e", 503, 0.01, now=T0 + 30)
    assert quiet.burn_rates("e", now=T0 + 30)["availability"][300.0] == pytest.approx(1000.0)
    assert quiet.evaluate(now=T0 + 30) == []
    quiet.record("e", 503, 0.01, now=T0 + 30)  # the tenth
    assert [a.name for a in quiet.evaluate(now=T0 + 30)] == ["BastionSloAvailabilityFastBurn"]


def test_latency_alerts_fire_from_slow_requests() -> None:
    t = tracker(spec=SloSpec(latency_objective=0.99))
    for m in range(60):
        minute_traffic(t, "e", m, ok=80, slow=20)  # 20 % slow: 20x the 1 % budget
    names = {a.name for a in t.evaluate(now=T0 + 59 * MINUTE + 30)}
    assert names == {"BastionSloLatencyFastBurn", "BastionSloLatencySlowBurn"}


def test_per_endpoint_specs_override_the_default() -> None:
    t = tracker(specs={"lenient": SloSpec(availability=0.9)})
    for name in ("strict", "lenient"):
        for m in range(60):
            minute_traffic(t, name, m, ok=98, errors=2)
    now = T0 + 59 * MINUTE + 30
    assert t.burn_rates("lenient", now=now)["availability"][3600.0] == pytest.approx(0.2)
    assert {a.endpoint for a in t.evaluate(now=now)} == {"strict"}


# -- budget -------------------------------------------------------------------------------------


def test_budget_counts_the_period_and_says_how_much_was_observed() -> None:
    t = tracker()
    for h in range(48):  # two days, one error per 2,000 requests each hour
        at = T0 + h * HOUR + 5
        for _ in range(1999):
            t.record("e", 200, 0.01, now=at)
        t.record("e", 500, 0.5, now=at)
    now = T0 + 48 * HOUR
    budget = t.budget("e", now=now)
    a = budget["availability"]
    assert (a.requests, a.bad) == (96_000, 48)
    assert a.allowed_bad == pytest.approx(96.0)
    assert a.remaining == pytest.approx(0.5)
    assert a.observed_seconds == pytest.approx(48 * HOUR - 5)
    assert a.period == 30 * DAY
    lat = budget["latency"]
    assert (lat.requests, lat.bad) == (96_000 - 48, 0)  # the slow ones were 5xx
    assert lat.remaining == 1.0
    # 31 days on, the period has moved past all of it.
    gone = t.budget("e", now=T0 + 31 * DAY + 48 * HOUR)["availability"]
    assert (gone.requests, gone.remaining, gone.observed_seconds) == (0, 1.0, 30 * DAY)


def test_budget_goes_negative_when_overspent() -> None:
    t = tracker()
    for _ in range(100):
        t.record("e", 503, 0.01, now=T0)
    assert t.budget("e", now=T0)["availability"].remaining == pytest.approx(1 - 100 / 0.1)
    untouched = t.budget("other", now=T0)["availability"]
    assert (untouched.requests, untouched.remaining) == (0, 1.0)


# -- limits -------------------------------------------------------------------------------------


def test_endpoints_past_the_cap_share_overflow() -> None:
    t = tracker(max_endpoints=2)
    for name in ("a", "b", "c", "d"):
        t.record(name, 503, 0.01, now=T0)
    t.record(OVERFLOW, 200, 0.01, now=T0)  # the reserved label is never an endpoint of its own
    assert t.endpoints() == ["a", "b", OVERFLOW]
    assert t.budget(OVERFLOW, now=T0)["availability"].requests == 3
    assert t.budget(OVERFLOW, now=T0)["availability"].bad == 2
    assert t.budget("c", now=T0)["availability"].requests == 0
    assert {a.endpoint for a in t.evaluate(now=T0)} <= {"a", "b", OVERFLOW}


def test_memory_is_fixed_per_endpoint() -> None:
    t = tracker()
    t.record("e", 200, 0.01, now=T0)
    state = t._states["e"]  # internal: the rings' arrays
    sizes = (len(state.counts), len(state.epochs))
    for minute in range(0, 40 * 24 * 60, 7):  # 40 days, a request every 7 minutes
        t.record("e", 503 if minute % 2 else 200, 0.01, now=T0 + minute * MINUTE)
    assert (len(state.counts), len(state.epochs)) == sizes
    assert sizes[1] == 360 + 432 + 720  # minute ring 6 h, ten-minute ring 3 d, hour ring 30 d
    assert t.endpoints() == ["e"]


def test_concurrent_records_are_all_counted() -> None:
    t = tracker()

    def work() -> None:
        for i in range(5000):
            t.record("e", 500 if i % 10 == 0 else 200, 0.01, now=T0 + i % 120)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    a = t.budget("e", now=T0 + 200)["availability"]
    assert (a.requests, a.bad) == (20_000, 2000)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"availability": 1.0},
        {"availability": 0.0},
        {"availability": float("nan")},
        {"availability": True},
        {"latency_objective": 1.5},
        {"latency_threshold": 0},
        {"latency_threshold": float("inf")},
        {"period": 1800},
        {"period": 5000},
        {"period": 401 * DAY},
    ],
)
def test_bad_specs_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as caught:
        SloSpec(**kwargs)
    assert caught.value.code == "slo.bad_spec"


@pytest.mark.parametrize(
    "args",
    [
        ("sms", HOUR, 300, 14.4),
        ("page", 300, HOUR, 14.4),  # short longer than long
        ("page", HOUR, HOUR, 14.4),
        ("page", HOUR, 30, 14.4),  # not whole minutes
        ("page", 7 * HOUR + 60, HOUR, 2),  # above 6 h: whole ten minutes
        ("page", 31 * DAY, HOUR, 2),
        ("page", HOUR, 300, 0),
        ("page", HOUR, 300, float("nan")),
    ],
)
def test_bad_burn_rules_are_refused(args: tuple[Any, ...]) -> None:
    with pytest.raises(InvalidInput) as caught:
        BurnRule(*args)
    assert caught.value.code == "slo.bad_rule"


def test_tracker_refuses_inconsistent_configuration() -> None:
    with pytest.raises(InvalidInput, match="period"):
        SloTracker(SloSpec(period=DAY))  # the default rules look back 3 days
    with pytest.raises(InvalidInput):
        SloTracker(rules=())
    with pytest.raises(InvalidInput):
        SloTracker(max_endpoints=0)
    with pytest.raises(InvalidInput):
        SloTracker(min_requests=0)


def test_duration_labels() -> None:
    assert [duration_label(w) for w in rule_windows(DEFAULT_RULES)] == [
        "5m",
        "30m",
        "1h",
        "2h",
        "6h",
        "1d",
        "3d",
    ]
    assert duration_label(5400) == "1h30m"
    with pytest.raises(InvalidInput):
        duration_label(0.5)


# -- exposition and settings --------------------------------------------------------------------


def test_collector_exposes_objectives_burn_rates_and_budgets() -> None:
    clock = Clock(T0 + 59 * MINUTE + 30)
    t = tracker(clock=clock)
    for m in range(60):
        minute_traffic(t, "fraud", m, ok=98, errors=2)
    samples = exposition(t)

    def value(name: str, **labels: str) -> float:
        return samples[(name, frozenset(labels.items()))]

    assert value("bastion_slo_objective", endpoint="fraud", slo="availability") == 0.999
    assert value("bastion_slo_objective", endpoint="fraud", slo="latency") == 0.95
    burn = "bastion_slo_burn_rate"
    assert value(burn, endpoint="fraud", slo="availability", window="1h") == pytest.approx(20)
    assert value(burn, endpoint="fraud", slo="latency", window="5m") == 0.0
    windows = {dict(k[1])["window"] for k in samples if k[0] == burn}
    assert windows == {"5m", "30m", "1h", "2h", "6h", "1d", "3d"}
    remaining = value(
        "bastion_slo_error_budget_remaining_ratio", endpoint="fraud", slo="availability"
    )
    assert remaining == pytest.approx(1 - 120 / 6.0)


def test_spec_from_settings() -> None:
    spec = SloSpec.from_settings(
        Settings.from_env(slo_availability=0.995, slo_latency_ms=500, slo_latency_objective=0.9)
    )
    assert spec == SloSpec(availability=0.995, latency_threshold=0.5, latency_objective=0.9)
    defaults = SloSpec.from_settings(Settings.from_env())
    assert defaults == SloSpec()


@pytest.mark.parametrize(
    "overrides",
    [
        {"slo_availability": 1.0},
        {"slo_latency_ms": 0},
        {"slo_latency_objective": 0},
        {"slo_min_requests": 0},
        {"alert_repeat_seconds": 0},
    ],
)
def test_slo_settings_are_validated(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env(**overrides)


# -- property -----------------------------------------------------------------------------------

events = st.lists(
    st.tuples(
        st.integers(0, 59),  # minute of the hour
        st.sampled_from([200, 201, 404, 429, 500, 503]),
        st.sampled_from([0.001, 0.2, 0.2000001, 3.0]),
    ),
    max_size=300,
)


@settings(max_examples=60, deadline=None)
@given(events)
def test_burn_rates_match_a_direct_count(traffic: list[tuple[int, int, float]]) -> None:
    t = tracker()
    traffic = sorted(traffic)  # in time order: a late record counts in the newest bucket
    for minute, status, latency in traffic:
        t.record("e", status, latency, now=T0 + minute * MINUTE + 7)
    now = T0 + 59 * MINUTE + 30
    burn = t.burn_rates("e", now=now)
    for window, first_minute in ((300.0, 55), (1800.0, 30), (3600.0, 0)):
        inside = [(s, lat) for m, s, lat in traffic if m >= first_minute]
        errors = sum(1 for s, _ in inside if s >= 500)
        served = [lat for s, lat in inside if s < 500]
        slow = sum(1 for lat in served if lat > 0.2)
        expected_a = (errors / len(inside)) / 0.001 if inside else 0.0
        expected_l = (slow / len(served)) / 0.05 if served else 0.0
        assert burn["availability"][window] == pytest.approx(expected_a)
        assert burn["latency"][window] == pytest.approx(expected_l)
