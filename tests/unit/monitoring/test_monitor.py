"""The process monitor without a server: alerts from windows, canary verdicts, holds, merging
published summaries; and the defined behaviour for a profile that lacks a feature and for
missing values."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.core.errors import ConfigError
from bastion.core.settings import Settings
from bastion.monitoring.alerts import AlertRouter, LogSink
from bastion.monitoring.guard import GuardLimits
from bastion.monitoring.monitor import Monitor, MonitorConfig, Watched, merge_rows
from bastion.monitoring.slo import SloTracker
from bastion.monitoring.windows import VersionWindow, WindowConfig, Windows
from bastion.registry.profile import build_profile

NOW = 1_000_000.0


def _monitor(**config: object) -> Monitor:
    clock = lambda: NOW  # noqa: E731
    return Monitor(
        windows=Windows(WindowConfig(), clock=clock),
        slo=SloTracker(clock=clock),
        alerts=AlertRouter([LogSink()], clock=clock),
        database=None,
        config=MonitorConfig(guard=GuardLimits(min_requests=20), **config),  # type: ignore[arg-type]
        clock=clock,
    )


def _profile(n: int = 5000, seed: int = 0):
    rng = np.random.default_rng(seed)
    return build_profile({"a": rng.normal(size=n), "b": rng.normal(size=n)})


def _traffic(window: VersionWindow, rows: np.ndarray, *, status: int = 200) -> None:
    for start in range(0, len(rows), 10):
        chunk = rows[start : start + 10]
        window.request(status, 0.002, now=NOW)
        window.observe(len(chunk), {"a": chunk, "b": chunk, "c": chunk}, {}, None, now=NOW)


def test_a_feature_the_profile_lacks_is_not_watched_and_nothing_breaks():
    profile = _profile()  # a and b; the traffic also carries c
    window = VersionWindow("ep", "1", "mv_1", profile, clock=lambda: NOW)
    _traffic(window, np.random.default_rng(1).normal(size=500))
    summary = window.summary(now=NOW)
    assert set(summary.features) == {"a", "b"}
    report = summary.drift(profile)
    assert [f.name for f in report.features] == ["a", "b"]
    assert not report.any_drift


def test_missing_values_fall_in_the_missing_slot():
    profile = _profile()
    window = VersionWindow("ep", "1", "mv_1", profile, clock=lambda: NOW)
    values = np.full(200, np.nan)
    window.observe(200, {"a": values, "b": values}, {}, None, now=NOW)
    counts = window.summary(now=NOW).features["a"]
    assert counts[-1] == 200
    assert sum(counts) == 200
    report = window.summary(now=NOW).drift(profile)
    assert report.any_drift  # all missing where the reference had none: that is drift


def test_drift_alert_fires_then_resolves_when_traffic_returns():
    monitor = _monitor()
    profile = _profile()
    window = monitor.window("ep", "1", "mv_1", profile)
    _traffic(window, np.random.default_rng(2).normal(3.0, 1.0, size=500))
    watched = [Watched("ep", "mv_1", None, None)]
    monitor.evaluate(watched, NOW)
    assert [a.name for a in monitor.alerts.active()] == ["DriftDetected"]
    window.reset(NOW)  # the window moves on: the shifted traffic is gone
    _traffic(window, np.random.default_rng(3).normal(size=500))
    monitor.evaluate(watched, NOW)
    assert monitor.alerts.active() == []


def test_an_erroring_canary_gives_a_verdict_and_a_healthy_one_none():
    monitor = _monitor()
    stable = monitor.window("ep", "1", "mv_1", None)
    canary = monitor.window("ep", "2", "mv_2", None)
    for _ in range(200):
        stable.request(200, 0.002, now=NOW)
    for i in range(30):
        canary.request(500 if i % 2 else 200, 0.002, now=NOW)
    verdicts = monitor.evaluate([Watched("ep", "mv_1", "mv_2", None, 50.0)], NOW)
    assert [v.endpoint for v in verdicts] == ["ep"]
    evidence = verdicts[0].evidence()
    assert evidence["breaches"][0]["signal"] == "error_rate"
    assert evidence["canary"]["errors"] == 15
    assert evidence["stable"]["requests"] == 200


def test_hold_until_the_canary_has_enough_requests():
    monitor = _monitor()
    canary = monitor.window("ep", "2", "mv_2", None)
    watched = [Watched("ep", "mv_1", "mv_2", None, 10.0)]
    monitor.evaluate(watched, NOW)
    assert "0 requests" in str(monitor.hold("ep"))
    for _ in range(25):
        canary.request(200, 0.002, now=NOW)
    monitor.evaluate(watched, NOW)
    assert monitor.hold("ep") is None
    assert monitor.hold("no-canary-here") is None


def test_published_rows_from_before_a_rollout_are_left_out_and_bad_rows_skipped():
    old = VersionWindow("ep", "2", "mv_2", None, clock=lambda: 100.0)
    new = VersionWindow("ep", "2", "mv_2", None, clock=lambda: 500.0)
    old.request(500, 0.01, now=100.0)
    new.request(200, 0.01, now=500.0)
    docs = [old.summary(now=500.0).to_json(), new.summary(now=500.0).to_json(), {"junk": 1}]
    merged = merge_rows(docs)
    assert merged["mv_2"].requests == 1  # the old row's request has left its window anyway
    assert merge_rows(docs, started={"mv_2": 400.0})["mv_2"].started == 500.0
    assert "mv_2" not in merge_rows(docs[:1], started={"mv_2": 400.0})


def test_a_bad_drift_thresholds_file_is_a_config_error(tmp_path):
    from bastion.platform import _drift_thresholds

    assert _drift_thresholds(None) is None
    good = tmp_path / "good.json"
    good.write_text('{"a": {"psi": 0.3}}')
    assert _drift_thresholds(good)["a"].psi == 0.3  # type: ignore[index]
    for name, text in (("bad.json", "{"), ("neg.json", '{"a": {"psi": -1}}'), ("list.json", "[]")):
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            _drift_thresholds(path)
        assert info.value.code == "config.bad_thresholds"
    with pytest.raises(ConfigError):
        _drift_thresholds(tmp_path / "missing.json")
    assert Settings(drift_thresholds=good).drift_thresholds == good


def test_a_canary_window_from_before_the_rollout_is_not_evidence():
    monitor = _monitor()
    canary = monitor.window("ep", "2", "mv_2", None)
    for _ in range(30):
        canary.request(500, 0.002, now=NOW)  # an earlier rollout of the same version failed
    rollout = NOW + 5  # redeployed later: nothing of the new rollout has been seen yet
    watched = [Watched("ep", "mv_1", "mv_2", None, 50.0, canary_since=rollout)]
    assert monitor.evaluate(watched, NOW + 6) == []
    assert "0 requests" in str(monitor.hold("ep"))
    canary.reset(rollout)
    for _ in range(30):
        canary.request(500, 0.002, now=NOW + 6)
    assert [v.endpoint for v in monitor.evaluate(watched, NOW + 6)] == ["ep"]
