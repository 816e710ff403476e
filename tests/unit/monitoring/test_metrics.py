"""GatewayMetrics: every check reads the rendered Prometheus text back through
prometheus_client's own parser, so what is asserted is what a scraper would see."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from bastion.core.errors import Conflict, InvalidInput
from bastion.monitoring.metrics import (
    OTHER,
    OVERFLOW,
    REQUEST_BUCKETS,
    ROLLBACK_BUCKETS,
    GatewayMetrics,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(metrics: GatewayMetrics) -> Samples:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate sample {key}"
            out[key] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples if n == name]


# -- per version --------------------------------------------------------------------------------


def test_requests_count_by_status_and_fill_the_latency_histogram() -> None:
    m = GatewayMetrics()
    v = m.version("fraud", "v1")
    for status, seconds in [
        (200, 0.0003),
        (200, 0.0003),
        (200, 0.0005),  # on a bound: counts in that bucket (le)
        (200, 0.0015),
        (500, 0.2),
        (429, 20.0),
    ]:
        v.request(status, seconds)
    s = scrape(m)
    ev = {"endpoint": "fraud", "version": "v1"}
    assert value(s, "bastion_gateway_requests_total", **ev, status="200") == 4
    assert value(s, "bastion_gateway_requests_total", **ev, status="500") == 1
    assert value(s, "bastion_gateway_requests_total", **ev, status="429") == 1
    assert len(series(s, "bastion_gateway_requests_total")) == 3

    name = "bastion_gateway_request_duration_seconds"
    buckets = {
        float(labels["le"]): value(s, f"{name}_bucket", **labels)
        for labels in series(s, f"{name}_bucket")
    }
    assert sorted(buckets) == [*REQUEST_BUCKETS, math.inf]
    assert buckets[0.0005] == 3
    assert buckets[0.001] == 3
    assert buckets[0.002] == 4
    assert buckets[0.25] == 5
    assert buckets[10.0] == 5
    assert buckets[math.inf] == 6
    assert value(s, f"{name}_count", **ev) == 6
    assert value(s, f"{name}_sum", **ev) == pytest.approx(20.2026)


def test_status_codes_outside_http_range_share_other() -> None:
    m = GatewayMetrics()
    v = m.version("e", "v")
    for status in (0, 99, 600, 10**6, True):
        v.request(status, 0.001)
    v.request(204, 0.001)
    s = scrape(m)
    assert value(s, "bastion_gateway_requests_total", endpoint="e", version="v", status=OTHER) == 5
    assert value(s, "bastion_gateway_requests_total", endpoint="e", version="v", status="204") == 1


def test_contract_violations() -> None:
    m = GatewayMetrics()
    v = m.version("e", "v1")
    v.violations()
    v.violations(4)
    v.violations(0)
    s = scrape(m)
    assert value(s, "bastion_gateway_contract_violations_total", endpoint="e", version="v1") == 5
    with pytest.raises(InvalidInput) as info:
        v.violations(-1)
    assert info.value.code == "metrics.invalid_value"


def test_input_anomalies_by_field_and_kind() -> None:
    m = GatewayMetrics()
    v = m.version("e", "v1")
    v.anomalies({("age", "out_of_range"): 2, ("country", "unknown_category"): 1})
    v.anomalies({("age", "out_of_range"): 3, ("age", "missing"): 0})
    s = scrape(m)
    name = "bastion_gateway_input_anomalies_total"
    ev = {"endpoint": "e", "version": "v1"}
    assert value(s, name, **ev, field="age", kind="out_of_range") == 5
    assert value(s, name, **ev, field="country", kind="unknown_category") == 1
    assert value(s, name, **ev, field="age", kind="missing") is None  # zero counts add no series
    with pytest.raises(InvalidInput) as info:
        v.anomalies({("age", "out_of_range"): -1})
    assert info.value.code == "metrics.invalid_value"


def test_anomaly_fields_are_capped_per_version() -> None:
    m = GatewayMetrics(max_fields=256)
    v = m.version("e", "v1")
    v.anomalies({(f"f{i}", "nan"): 1 for i in range(300)})
    v.anomalies({("f0", "nan"): 1, ("f299", "nan"): 1})  # f0 admitted, f299 not
    w = m.version("e", "v2")  # the cap is per version
    w.anomalies({("f299", "nan"): 1})
    s = scrape(m)
    name = "bastion_gateway_input_anomalies_total"
    v1_fields = {lbl["field"] for lbl in series(s, name) if lbl["version"] == "v1"}
    assert len(v1_fields) == 257
    assert OTHER in v1_fields
    assert value(s, name, endpoint="e", version="v1", field=OTHER, kind="nan") == 45
    assert value(s, name, endpoint="e", version="v1", field="f0", kind="nan") == 2
    assert value(s, name, endpoint="e", version="v2", field="f299", kind="nan") == 1


def test_anomaly_kinds_are_capped_too() -> None:
    m = GatewayMetrics()
    v = m.version("e", "v1")
    v.anomalies({("x", f"kind{i}"): 1 for i in range(70)})
    s = scrape(m)
    kinds = {lbl["kind"] for lbl in series(s, "bastion_gateway_input_anomalies_total")}
    assert len(kinds) == 65
    assert (
        value(
            s,
            "bastion_gateway_input_anomalies_total",
            endpoint="e",
            version="v1",
            field="x",
            kind=OTHER,
        )
        == 6
    )


def test_shadow_comparisons_and_divergence_ratio() -> None:
    m = GatewayMetrics()
    v = m.version("fraud", "v2")
    ratio = "bastion_gateway_shadow_divergence_ratio"
    ev = {"endpoint": "fraud", "version": "v2"}
    assert value(scrape(m), ratio, **ev) is None  # no series before the first comparison

    v.shadow("error")
    assert value(scrape(m), ratio, **ev) == 0  # created, nothing compared yet
    expected = []
    for outcome in ["same", "same", "different", "same", "dropped", "different", "error"]:
        v.shadow(outcome)
        expected.append(value(scrape(m), ratio, **ev))
    assert expected == pytest.approx([0, 0, 1 / 3, 1 / 4, 1 / 4, 2 / 5, 2 / 5])

    s = scrape(m)
    counts = {
        o: value(s, "bastion_gateway_shadow_comparisons_total", **ev, outcome=o)
        for o in ("same", "different", "error", "dropped")
    }
    assert counts == {"same": 3, "different": 2, "error": 2, "dropped": 1}
    assert value(s, ratio, endpoint="fraud", version="v1") is None
    with pytest.raises(InvalidInput) as info:
        v.shadow("differs")
    assert info.value.code == "metrics.invalid_label"
    assert info.value.details == {"label": "outcome", "value": "differs"}


def test_model_loads() -> None:
    m = GatewayMetrics()
    v = m.version("e", "v1")
    v.model_load("ok")
    v.model_load("refused")
    v.model_load("refused")
    s = scrape(m)
    name = "bastion_gateway_model_loads_total"
    assert value(s, name, endpoint="e", version="v1", outcome="ok") == 1
    assert value(s, name, endpoint="e", version="v1", outcome="refused") == 2
    with pytest.raises(InvalidInput) as info:
        v.model_load("failed")
    assert info.value.code == "metrics.invalid_label"


def test_version_metrics_are_cached_per_pair() -> None:
    m = GatewayMetrics()
    assert m.version("e", "v1") is m.version("e", "v1")
    assert m.version("e", "v1") is not m.version("e", "v2")
    assert m.version("e", "v1") is not m.version("f", "v1")


def test_version_cache_is_safe_across_threads() -> None:
    m = GatewayMetrics(max_versions=50)
    seen: list[object] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for i in range(100):
            seen.append(m.version("e", f"v{i}"))
            m.version("e", "shared").request(200, 0.001)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = scrape(m)
    assert (
        value(s, "bastion_gateway_requests_total", endpoint="e", version="shared", status="200")
        == 800
    )
    versions = {
        lbl["version"] for lbl in series(s, "bastion_gateway_request_duration_seconds_count")
    }
    assert len(versions) == 51  # 50 admitted pairs (one of them "shared") + _overflow
    assert OVERFLOW in versions


# -- per endpoint and process-wide ---------------------------------------------------------------


def test_rate_limited_by_scope() -> None:
    m = GatewayMetrics()
    m.rate_limited("e", "principal")
    m.rate_limited("e", "principal")
    m.rate_limited("e", "endpoint")
    s = scrape(m)
    assert value(s, "bastion_gateway_rate_limited_total", endpoint="e", scope="principal") == 2
    assert value(s, "bastion_gateway_rate_limited_total", endpoint="e", scope="endpoint") == 1
    with pytest.raises(InvalidInput) as info:
        m.rate_limited("e", "global")
    assert info.value.code == "metrics.invalid_label"


def test_auth_failures_by_code_with_a_cap() -> None:
    m = GatewayMetrics()
    m.auth_failure("e", "auth.token_expired")
    m.auth_failure("e", "auth.token_expired")
    m.auth_failure("e", "auth.scope_denied")
    for i in range(70):
        m.auth_failure("e", f"made.up_{i}")
    s = scrape(m)
    name = "bastion_gateway_auth_failures_total"
    assert value(s, name, endpoint="e", code="auth.token_expired") == 2
    assert value(s, name, endpoint="e", code="auth.scope_denied") == 1
    assert len(series(s, name)) == 65
    assert value(s, name, endpoint="e", code=OTHER) == 8  # 72 codes seen, 64 kept


def test_ratelimit_backend_errors() -> None:
    m = GatewayMetrics()
    for reason in ("timeout", "error", "circuit_open", "circuit_open", "weird"):
        m.ratelimit_backend_error(reason)
    s = scrape(m)
    name = "bastion_gateway_ratelimit_backend_errors_total"
    assert value(s, name, reason="circuit_open") == 2
    assert value(s, name, reason="timeout") == 1
    assert value(s, name, reason=OTHER) == 1


def test_receipts_queue_and_drops() -> None:
    m = GatewayMetrics()
    m.receipt_dropped("e")
    m.receipt_dropped("e")
    m.set_receipt_queue(17)
    m.set_receipt_queue(3)
    s = scrape(m)
    assert value(s, "bastion_gateway_receipts_dropped_total", endpoint="e") == 2
    assert value(s, "bastion_gateway_receipt_queue_depth") == 3


def test_rollback_histogram_and_last_value() -> None:
    m = GatewayMetrics()
    m.rollback("e", 4.0)
    m.rollback("e", 42.0)
    s = scrape(m)
    name = "bastion_deploy_time_to_rollback_seconds"
    assert value(s, f"{name}_count", endpoint="e") == 2
    assert value(s, f"{name}_sum", endpoint="e") == 46
    assert value(s, f"{name}_bucket", endpoint="e", le="5.0") == 1
    assert value(s, f"{name}_bucket", endpoint="e", le="60.0") == 2
    les = sorted(float(lbl["le"]) for lbl in series(s, f"{name}_bucket"))
    assert les == [*ROLLBACK_BUCKETS, math.inf]
    assert value(s, "bastion_deploy_last_time_to_rollback_seconds", endpoint="e") == 42


def test_traffic_weights_by_role() -> None:
    m = GatewayMetrics()
    m.set_weight("e", "v1", "stable", 0.9)
    m.set_weight("e", "v2", "canary", 0.1)
    m.set_weight("e", "v3", "shadow", 1.0)
    m.set_weight("e", "v2", "canary", 0.25)
    s = scrape(m)
    name = "bastion_deploy_traffic_weight"
    assert value(s, name, endpoint="e", version="v1", role="stable") == 0.9
    assert value(s, name, endpoint="e", version="v2", role="canary") == 0.25
    assert value(s, name, endpoint="e", version="v3", role="shadow") == 1.0
    with pytest.raises(InvalidInput) as info:
        m.set_weight("e", "v1", "primary", 1.0)
    assert info.value.code == "metrics.invalid_label"


def test_endpoint_serving_state() -> None:
    m = GatewayMetrics()
    m.endpoint_state("a", serving=True)
    m.endpoint_state("b", serving=True)
    m.endpoint_state("b", serving=False)
    s = scrape(m)
    assert value(s, "bastion_endpoint_serving", endpoint="a") == 1
    assert value(s, "bastion_endpoint_serving", endpoint="b") == 0


# -- cardinality ----------------------------------------------------------------------------------


def test_version_pairs_past_the_cap_share_overflow() -> None:
    m = GatewayMetrics(max_versions=3)
    kept = [m.version("e", f"v{i}") for i in range(3)]
    extra = [m.version("e", "v3"), m.version("f", "v0"), m.version("g", "v9")]
    assert all(x is extra[0] for x in extra)
    assert (extra[0].endpoint, extra[0].version) == (OVERFLOW, OVERFLOW)
    assert [(k.endpoint, k.version) for k in kept] == [("e", "v0"), ("e", "v1"), ("e", "v2")]
    assert m.version("e", "v1") is kept[1]  # admitted pairs keep their labels
    for x in extra:
        x.request(200, 0.001)
    m.set_weight("h", "v1", "canary", 0.5)
    s = scrape(m)
    assert (
        value(
            s, "bastion_gateway_requests_total", endpoint=OVERFLOW, version=OVERFLOW, status="200"
        )
        == 3
    )
    assert (
        value(
            s, "bastion_deploy_traffic_weight", endpoint=OVERFLOW, version=OVERFLOW, role="canary"
        )
        == 0.5
    )
    assert len(m._versions) == 3  # the cache does not grow past the cap


def test_endpoints_past_the_cap_share_overflow() -> None:
    m = GatewayMetrics(max_endpoints=2)
    for endpoint in ("a", "b", "c", "d"):
        m.rate_limited(endpoint, "endpoint")
        m.endpoint_state(endpoint, serving=True)
    s = scrape(m)
    assert {lbl["endpoint"] for lbl in series(s, "bastion_gateway_rate_limited_total")} == {
        "a",
        "b",
        OVERFLOW,
    }
    assert value(s, "bastion_gateway_rate_limited_total", endpoint=OVERFLOW, scope="endpoint") == 2
    # A new endpoint's versions overflow too, an admitted endpoint's new versions do not.
    assert m.version("c", "v1").endpoint == OVERFLOW
    assert (m.version("a", "v7").endpoint, m.version("a", "v7").version) == ("a", "v7")


@pytest.mark.parametrize("field", ["max_endpoints", "max_versions", "max_fields"])
@pytest.mark.parametrize("bad", [0, -1, True, 2.0])
def test_caps_must_be_positive_integers(field: str, bad: object) -> None:
    with pytest.raises(InvalidInput) as info:
        GatewayMetrics(**{field: bad})  # type: ignore[arg-type]
    assert info.value.code == "metrics.invalid_value"


# -- registry, collectors, exposition -------------------------------------------------------------


def test_two_instances_share_nothing_and_the_default_registry_stays_clean() -> None:
    a = GatewayMetrics()
    b = GatewayMetrics()
    a.version("e", "v1").request(200, 0.001)
    a.set_receipt_queue(5)
    sb = scrape(b)
    assert (
        value(sb, "bastion_gateway_requests_total", endpoint="e", version="v1", status="200")
        is None
    )
    assert value(sb, "bastion_gateway_receipt_queue_depth") == 0
    assert value(scrape(a), "bastion_gateway_receipt_queue_depth") == 5
    assert not [f for f in REGISTRY.collect() if f.name.startswith("bastion_")]


def test_a_given_registry_is_used() -> None:
    registry = CollectorRegistry()
    m = GatewayMetrics(registry)
    assert m.registry is registry
    m.set_receipt_queue(2)
    assert registry.get_sample_value("bastion_gateway_receipt_queue_depth") == 2


class DownloadCounts(Collector):
    """Like a collector that reads model download counts from the database."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "bastion_model_downloads", "Model downloads.", labels=["model"]
        )
        for model, n in self.counts.items():
            family.add_metric([model], n)
        yield family


class DescribedDownloadCounts(DownloadCounts):
    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily("bastion_model_downloads", "Model downloads.", labels=["model"])


def test_custom_collectors_are_rendered_and_read_at_scrape_time() -> None:
    m = GatewayMetrics()
    counts = {"fraud": 3}
    m.add_collector(DownloadCounts(counts))
    assert value(scrape(m), "bastion_model_downloads_total", model="fraud") == 3
    counts["fraud"] = 4
    assert value(scrape(m), "bastion_model_downloads_total", model="fraud") == 4
    for clash in (DownloadCounts({}), DescribedDownloadCounts({})):
        with pytest.raises(Conflict) as info:
            m.add_collector(clash)
        assert info.value.code == "metrics.duplicate"
    with pytest.raises(Conflict):  # nor may it take one of the gateway's own names
        m.add_collector(Shadowing())


class Shadowing(Collector):
    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("bastion_gateway_requests", "Clash.")


def test_a_described_collector_is_not_collected_when_added() -> None:
    m = GatewayMetrics()
    counts = DescribedDownloadCounts({"fraud": 1})
    calls = []
    original = counts.collect

    def counting_collect() -> Iterator[Metric]:
        calls.append(1)
        return original()

    counts.collect = counting_collect  # type: ignore[method-assign]
    m.add_collector(counts)
    assert calls == []
    assert value(scrape(m), "bastion_model_downloads_total", model="fraud") == 1
    assert calls == [1]


def test_created_series_are_left_out_unless_asked_for() -> None:
    lean = GatewayMetrics()
    lean.version("e", "v1").request(200, 0.001)
    lean.rollback("e", 3.0)
    assert b"_created" not in lean.render()[0]
    full = GatewayMetrics(created_series=True)
    full.version("e", "v1").request(200, 0.001)
    body = full.render()[0].decode()
    assert "bastion_gateway_requests_created{" in body
    assert "bastion_gateway_request_duration_seconds_created{" in body


def test_render_is_prometheus_text() -> None:
    m = GatewayMetrics()
    m.version("e", "v1").request(200, 0.001)
    body, content_type = m.render()
    assert content_type.startswith("text/plain; version=")
    assert "# TYPE bastion_gateway_requests_total counter" in body.decode()
    assert "# TYPE bastion_gateway_request_duration_seconds histogram" in body.decode()
