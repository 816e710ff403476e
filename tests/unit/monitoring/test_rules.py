"""The exported Prometheus rules, checked by the real `promtool`: `check rules` accepts them and
`test rules` shows they fire (and stay quiet) on generated series.

Test files are built here from the generator's output, not committed, so they follow it.
Without promtool these skip with a reason, unless BASTION_REQUIRE_PROMTOOL=1 (CI), where they
fail instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bastion.core.errors import InvalidInput
from bastion.monitoring.metrics import REQUEST_BUCKETS, GatewayMetrics
from bastion.monitoring.rules import latency_bucket, prometheus_rules, render_rules
from bastion.monitoring.slo import ALERT_NAMES, DAY, HOUR, MINUTE, BurnRule, SloSpec

FAST_A = "BastionSloAvailabilityFastBurn"
SLOW_A = "BastionSloAvailabilitySlowBurn"
FAST_L = "BastionSloLatencyFastBurn"
SLOW_L = "BastionSloLatencySlowBurn"


@pytest.fixture
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("BASTION_REQUIRE_PROMTOOL") == "1":
            pytest.fail("BASTION_REQUIRE_PROMTOOL=1 but promtool is not installed")
        pytest.skip("promtool is not installed (Debian package `prometheus`)")
    return found


def run(promtool: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def strip_annotations(doc: dict[str, Any]) -> dict[str, Any]:
    """The rules without annotations, for tests that only assert which alerts fire."""
    return {
        "groups": [
            {**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
            for g in doc["groups"]
        ]
    }


def sel(metric: str, **labels: str) -> str:
    return metric + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def requests(endpoint: str, status: int, per_minute: float, minutes: int, **extra: str) -> Any:
    labels = {"endpoint": endpoint, "version": "v1", "status": str(status), **extra}
    return {
        "series": sel("bastion_gateway_requests_total", **labels),
        "values": f"0+{per_minute:g}x{minutes}",
    }


def latency(endpoint: str, fast: float, total: float, minutes: int, le: str = "0.2") -> list[Any]:
    """Histogram series: `fast` requests a minute within `le`, `total` a minute in all."""
    base = "bastion_gateway_request_duration_seconds"
    ev = {"endpoint": endpoint, "version": "v1"}
    return [
        {"series": sel(f"{base}_bucket", **ev, le=le), "values": f"0+{fast:g}x{minutes}"},
        {"series": sel(f"{base}_bucket", **ev, le="+Inf"), "values": f"0+{total:g}x{minutes}"},
        {"series": sel(f"{base}_count", **ev), "values": f"0+{total:g}x{minutes}"},
    ]


def expect(at: str, alertname: str, *fired: dict[str, Any]) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alertname, "exp_alerts": list(fired)}


def unit_test(
    promtool: str,
    tmp_path: Path,
    rules: dict[str, Any],
    input_series: list[Any],
    checks: list[dict[str, Any]],
    *,
    evaluation_interval: str = "1m",
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": evaluation_interval,
        # Recording rules first, then the alerts that read them: without an order promtool
        # evaluates groups in Go map order, and an alert may read the previous evaluation.
        "group_eval_order": [g["name"] for g in rules["groups"]],
        "tests": [{"interval": "1m", "input_series": input_series, "alert_rule_test": checks}],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    return run(promtool, tmp_path, "test", "rules", "test.yml")


def passes(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stdout + done.stderr


# -- promtool check rules -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        SloSpec(),
        SloSpec(availability=0.995),
        SloSpec(latency_threshold=0.5, latency_objective=0.99),
        SloSpec(availability=0.9999, period=28 * DAY),
    ],
    ids=["defaults", "99.5%", "latency-0.5s", "99.99%-28d"],
)
def test_promtool_accepts_the_rule_file(promtool: str, tmp_path: Path, spec: SloSpec) -> None:
    path = tmp_path / "bastion.rules.yml"
    path.write_text(render_rules(spec))
    done = run(promtool, tmp_path, "check", "rules", str(path))
    passes(done)
    assert "SUCCESS: 30 rules found" in done.stdout  # 21 recording + 4 burn + 5 operational


def test_promtool_accepts_custom_rules_and_a_job_selector(promtool: str, tmp_path: Path) -> None:
    rules = (
        BurnRule("page", long_window=2 * HOUR, short_window=10 * MINUTE, factor=10),
        BurnRule("ticket", long_window=7 * DAY, short_window=12 * HOUR, factor=1),
    )
    text = render_rules(SloSpec(), rules, job_selector='job="bastion", env=~"prod|stage"')
    (tmp_path / "r.yml").write_text(text)
    passes(run(promtool, tmp_path, "check", "rules", "r.yml"))


# -- promtool test rules ------------------------------------------------------------------------


def test_fast_burn_pages_at_2_percent_errors(promtool: str, tmp_path: Path) -> None:
    series = [requests("fraud", 200, 98, 120), requests("fraud", 503, 2, 120)]
    page = {
        "exp_labels": {"severity": "page", "slo": "availability", "endpoint": "fraud"},
        "exp_annotations": {
            "summary": "fraud: availability error budget burning fast",
            "description": "The 5xx ratio of endpoint fraud is 2% over the long window; the "
            "budget is 0.1 % (99.9 % of requests not 5xx over 30d). Burn-rate rules "
            "(long/short window at factor): 1h/5m at 14.4x, 6h/30m at 6x.",
        },
    }
    ticket = {
        "exp_labels": {"severity": "ticket", "slo": "availability", "endpoint": "fraud"},
        "exp_annotations": {
            "summary": "fraud: availability error budget burning slowly",
            "description": "The 5xx ratio of endpoint fraud is 2% over the long window; the "
            "budget is 0.1 % (99.9 % of requests not 5xx over 30d). Burn-rate rules "
            "(long/short window at factor): 1d/2h at 3x, 3d/6h at 1x.",
        },
    }
    checks = [
        expect("1h", FAST_A, page),
        expect("1h", SLOW_A, ticket),
        expect("1h", FAST_L),  # no histogram: no latency alert
    ]
    passes(unit_test(promtool, tmp_path, prometheus_rules(), series, checks))


def test_the_harness_can_fail(promtool: str, tmp_path: Path) -> None:
    series = [requests("fraud", 200, 98, 120), requests("fraud", 503, 2, 120)]
    done = unit_test(
        promtool, tmp_path, strip_annotations(prometheus_rules()), series, [expect("1h", FAST_A)]
    )
    assert done.returncode != 0
    assert FAST_A in done.stdout + done.stderr


def test_low_error_rates_stay_quiet(promtool: str, tmp_path: Path) -> None:
    series = [requests("fraud", 200, 1999, 240), requests("fraud", 500, 1, 240)]  # 0.05 %
    checks = [expect(t, name) for t in ("1h", "4h") for name in (FAST_A, SLOW_A, FAST_L, SLOW_L)]
    checks += [expect("4h", "BastionRollback"), expect("4h", "BastionAuthFailureSpike")]
    passes(unit_test(promtool, tmp_path, strip_annotations(prometheus_rules()), series, checks))


def test_slow_burn_tickets_at_0_4_percent_over_a_day(promtool: str, tmp_path: Path) -> None:
    minutes = 26 * 60
    series = [requests("fraud", 200, 996, minutes), requests("fraud", 503, 4, minutes)]
    ticket = {"exp_labels": {"severity": "ticket", "slo": "availability", "endpoint": "fraud"}}
    checks = [expect("1d", SLOW_A, ticket), expect("1d", FAST_A)]  # 4x: below both pages
    rules = strip_annotations(prometheus_rules())
    # Series every minute, rules every 10 minutes: a simulated day in a fraction of the time.
    passes(unit_test(promtool, tmp_path, rules, series, checks, evaluation_interval="10m"))


def test_latency_page_at_20_percent_slow_against_99_percent(promtool: str, tmp_path: Path) -> None:
    series = [requests("fraud", 200, 100, 120), *latency("fraud", fast=80, total=100, minutes=120)]
    page = {"exp_labels": {"severity": "page", "slo": "latency", "endpoint": "fraud"}}
    rules = strip_annotations(prometheus_rules(SloSpec(latency_objective=0.99)))
    checks = [expect("1h", FAST_L, page), expect("1h", FAST_A), expect("1h", SLOW_A)]
    passes(unit_test(promtool, tmp_path, rules, series, checks))


def test_20_percent_slow_against_95_percent_is_a_ticket_not_a_page(
    promtool: str, tmp_path: Path
) -> None:
    # Burn 4 (20 % / 5 %): above the 1d/2h ticket's 3x, below the pages' 6x and 14.4x.
    series = [requests("fraud", 200, 100, 180), *latency("fraud", fast=80, total=100, minutes=180)]
    ticket = {"exp_labels": {"severity": "ticket", "slo": "latency", "endpoint": "fraud"}}
    checks = [expect("2h", SLOW_L, ticket), expect("2h", FAST_L)]
    passes(unit_test(promtool, tmp_path, strip_annotations(prometheus_rules()), series, checks))


def test_a_trickle_of_failures_does_not_page(promtool: str, tmp_path: Path) -> None:
    # 1 request every 5 minutes, half of them 5xx: 6 requests in 30 m, fewer than 10.
    series = [requests("quiet", 200, 0.1, 180), requests("quiet", 500, 0.1, 180)]
    ticket = {"exp_labels": {"severity": "ticket", "slo": "availability", "endpoint": "quiet"}}
    checks = [expect("2h", FAST_A), expect("2h", SLOW_A, ticket)]  # 24 requests in 2 h: enough
    passes(unit_test(promtool, tmp_path, strip_annotations(prometheus_rules()), series, checks))


def test_job_selector_limits_the_alerts(promtool: str, tmp_path: Path) -> None:
    series = [
        requests("mine", 200, 98, 120, job="bastion"),
        requests("mine", 503, 2, 120, job="bastion"),
        requests("theirs", 200, 98, 120, job="other"),
        requests("theirs", 503, 2, 120, job="other"),
    ]
    page = {"exp_labels": {"severity": "page", "slo": "availability", "endpoint": "mine"}}
    rules = strip_annotations(prometheus_rules(job_selector='job="bastion"'))
    passes(unit_test(promtool, tmp_path, rules, series, [expect("1h", FAST_A, page)]))


def test_operational_alerts(promtool: str, tmp_path: Path) -> None:
    series = [
        # A process's first rollback: the series appears at 30 m with count 1.
        {
            "series": sel("bastion_deploy_time_to_rollback_seconds_count", endpoint="fraud"),
            "values": "_x29 1x60",
        },
        # A later one in a process that had rolled back before: 1 -> 2 at 60 m.
        {
            "series": sel("bastion_deploy_time_to_rollback_seconds_count", endpoint="churn"),
            "values": "1x59 2x30",
        },
        {
            "series": sel(
                "bastion_gateway_model_loads_total",
                endpoint="fraud",
                version="v2",
                outcome="refused",
            ),
            "values": "_x9 1x80",
        },
        {
            "series": sel(
                "bastion_gateway_model_loads_total", endpoint="fraud", version="v1", outcome="ok"
            ),
            "values": "0+1x89",
        },
        {
            "series": sel("bastion_gateway_receipts_dropped_total", endpoint="fraud"),
            "values": "0x49 0+5x40",
        },
        {
            "series": sel("bastion_gateway_auth_failures_total", endpoint="fraud", code="x"),
            "values": "0+120x89",  # 2 per second
        },
        {
            "series": sel("bastion_gateway_auth_failures_total", endpoint="churn", code="x"),
            "values": "0+30x89",  # 0.5 per second: under the threshold
        },
        {
            "series": sel("bastion_monitor_drift_score", endpoint="fraud", version="v1"),
            "values": "0.3x89",
        },
        {
            "series": sel("bastion_monitor_drift_score", endpoint="churn", version="v1"),
            "values": "0.05x89",
        },
    ]

    def fired(severity: str, **labels: str) -> dict[str, Any]:
        return {"exp_labels": {"severity": severity, **labels}}

    checks = [
        expect("25m", "BastionRollback"),
        expect("31m", "BastionRollback", fired("ticket", endpoint="fraud")),
        expect("40m", "BastionRollback"),
        expect("61m", "BastionRollback", fired("ticket", endpoint="churn")),
        expect("11m", "BastionModelLoadRefused", fired("page", endpoint="fraud", version="v2")),
        expect("30m", "BastionModelLoadRefused"),
        expect("45m", "BastionReceiptsDropped"),
        expect("55m", "BastionReceiptsDropped", fired("ticket", endpoint="fraud")),
        expect("3m", "BastionAuthFailureSpike"),  # pending: needs 5 m
        expect("10m", "BastionAuthFailureSpike", fired("ticket", endpoint="fraud")),
        expect("10m", "BastionDriftDetected"),  # pending: needs 15 m
        expect("20m", "BastionDriftDetected", fired("ticket", endpoint="fraud", version="v1")),
    ]
    passes(unit_test(promtool, tmp_path, strip_annotations(prometheus_rules()), series, checks))


# -- generation (no promtool) -------------------------------------------------------------------


def rules_by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r.get("alert") or r["record"]: r for g in doc["groups"] for r in g["rules"]}


def test_names_windows_and_thresholds() -> None:
    rules = rules_by_name(prometheus_rules())
    for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
        for prefix in (
            "bastion:slo_requests:rate",
            "bastion:slo_errors:ratio_rate",
            "bastion:slo_latency_slow:ratio_rate",
        ):
            assert f"{prefix}{w}" in rules
    assert set(ALERT_NAMES.values()) <= set(rules)  # the tracker and Prometheus share names
    page = rules[FAST_A]["expr"]
    assert "bastion:slo_errors:ratio_rate1h >= 0.0144" in page
    assert "bastion:slo_errors:ratio_rate5m >= 0.0144" in page
    assert "bastion:slo_errors:ratio_rate6h >= 0.006" in page
    assert "bastion:slo_requests:rate5m * 300 >= 10" in page
    assert rules[FAST_A]["labels"] == {"severity": "page", "slo": "availability"}
    slow = rules[SLOW_L]["expr"]
    assert "bastion:slo_latency_slow:ratio_rate1d >= 0.15" in slow  # 3 x 5 %
    assert rules[SLOW_L]["labels"] == {"severity": "ticket", "slo": "latency"}
    latency = rules["bastion:slo_latency_slow:ratio_rate5m"]["expr"]
    assert 'bastion_gateway_request_duration_seconds_bucket{le="0.2"}[5m]' in latency


def test_render_is_the_document_as_yaml_with_a_header() -> None:
    spec = SloSpec(availability=0.995)
    text = render_rules(spec, min_requests=20)
    assert text.startswith("# Bastion SLO")
    assert yaml.safe_load(text) == prometheus_rules(spec, min_requests=20)


def test_latency_threshold_must_be_a_histogram_bucket() -> None:
    for bound in REQUEST_BUCKETS:
        prometheus_rules(SloSpec(latency_threshold=bound))
    for bad in (0.15, 0.3, 0.2001, 20.0):
        with pytest.raises(InvalidInput) as caught:
            prometheus_rules(SloSpec(latency_threshold=bad))
        assert caught.value.code == "rules.latency_not_a_bucket"
    assert latency_bucket(200 / 1000) == "0.2"


def test_le_labels_match_what_the_gateway_exposes() -> None:
    metrics = GatewayMetrics()
    metrics.version("e", "v").request(200, 0.01)
    body, _ = metrics.render()
    exposed = {
        s.labels["le"]
        for f in text_string_to_metric_families(body.decode())
        for s in f.samples
        if s.name == "bastion_gateway_request_duration_seconds_bucket"
    }
    assert {latency_bucket(b) for b in REQUEST_BUCKETS} | {"+Inf"} == exposed


@pytest.mark.parametrize(
    "selector",
    [
        "job=bastion",
        'job="a"}[5m])) or vector(1) #',
        'job="a\nb"',
        'job="a" env="b"',
        '="x"',
        'job="' + "a" * 600 + '"',
    ],
)
def test_bad_job_selectors_are_refused(selector: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        prometheus_rules(job_selector=selector)
    assert caught.value.code == "rules.bad_selector"


def test_the_job_selector_reaches_every_gateway_selector() -> None:
    doc = prometheus_rules(job_selector='job="bastion"')
    selectors = re.findall(r"(bastion_[a-z_]+)(\{[^}]*\})?\[", yaml.safe_dump(doc, width=10**6))
    assert selectors
    for metric, matchers in selectors:
        assert 'job="bastion"' in matchers, metric


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_requests": 0},
        {"min_requests": True},
        {"auth_failure_rate": 0},
        {"drift_threshold": float("nan")},
    ],
)
def test_bad_limits_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as caught:
        prometheus_rules(**kwargs)
    assert caught.value.code == "rules.bad_limit"


def test_period_shorter_than_a_rule_window_is_refused() -> None:
    with pytest.raises(InvalidInput):
        prometheus_rules(SloSpec(period=DAY))  # the 3d/6h ticket looks back 3 days
    with pytest.raises(InvalidInput):
        prometheus_rules(rules=())
