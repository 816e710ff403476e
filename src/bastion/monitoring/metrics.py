"""The gateway's Prometheus metrics: one `GatewayMetrics` per process, rendered at `/metrics`.

Every metric lives in the instance's own `CollectorRegistry` (nothing is registered in the
prometheus_client default registry and there are no module globals), so tests and embedded
servers can build as many instances as they like without sharing a sample.

The request path gets a `VersionMetrics` per (endpoint, version) pair from `version()`, cached
in a dict, with its label children bound once (`.labels()` takes a lock and builds a key; doing
that per request would cost more than the observation itself). Per-request calls are then a
dict lookup for the status code's counter and a histogram observation.

Exposed series (all names `bastion_`-prefixed):

    bastion_gateway_requests_total{endpoint,version,status}
    bastion_gateway_request_duration_seconds{endpoint,version}       histogram, 0.5 ms .. 10 s
    bastion_gateway_contract_violations_total{endpoint,version}
    bastion_gateway_input_anomalies_total{endpoint,version,field,kind}
    bastion_gateway_rate_limited_total{endpoint,scope}               scope principal|endpoint
    bastion_gateway_ratelimit_backend_errors_total{reason}           Redis limiter fell back
    bastion_gateway_auth_failures_total{endpoint,code}
    bastion_gateway_shadow_comparisons_total{endpoint,version,outcome}
    bastion_gateway_shadow_divergence_ratio{endpoint,version}        different / (same + different)
    bastion_gateway_receipts_dropped_total{endpoint}
    bastion_gateway_receipt_queue_depth
    bastion_gateway_model_loads_total{endpoint,version,outcome}      outcome ok|refused
    bastion_deploy_time_to_rollback_seconds{endpoint}                histogram, 1 ms .. 1 h
    bastion_deploy_last_time_to_rollback_seconds{endpoint}
    bastion_deploy_traffic_weight{endpoint,version,role}             role stable|canary|shadow
    bastion_endpoint_serving{endpoint}                               1 serving, 0 not

Cardinality is bounded even though endpoint and version names arrive validated: past
`max_endpoints` endpoints or `max_versions` (endpoint, version) pairs, new ones share the label
value `_overflow`; past `max_fields` anomaly fields (256) per version the field is `_other`, and
likewise for anomaly kinds, auth failure codes and out-of-range status codes. Closed
vocabularies (scope, role, shadow and model-load outcomes) are checked and a wrong value is an
`InvalidInput` (code `metrics.invalid_label`): it is a programming error, not traffic.

The text exposition leaves out the `*_created` series prometheus_client adds to every counter
and histogram (they double the series count and nothing here reads them); pass
`created_series=True` to keep them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from bastion.core.errors import Conflict, InvalidInput

OVERFLOW: Final = "_overflow"
OTHER: Final = "_other"

REQUEST_BUCKETS: Final = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,  # the default latency SLO threshold: an SLO's threshold must be a bucket bound
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# A rollback in the process that made it swaps routes in milliseconds; other replicas follow
# within their poll interval; the monitoring issue's automatic rollbacks add detection time.
ROLLBACK_BUCKETS: Final = (
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    15.0,
    60.0,
    300.0,
    3600.0,
)

SCOPES: Final = frozenset({"principal", "endpoint"})
ROLES: Final = frozenset({"stable", "canary", "shadow"})
SHADOW_OUTCOMES: Final = ("same", "different", "error", "dropped")
MODEL_LOAD_OUTCOMES: Final = ("ok", "refused")
BACKEND_ERROR_REASONS: Final = frozenset({"timeout", "error", "circuit_open"})

_MAX_KINDS_PER_VERSION: Final = 64
_MAX_AUTH_CODES: Final = 64
_COUNTER_LIKE: Final = frozenset({"counter", "histogram", "summary"})


def _invalid_label(label: str, value: str, allowed: Iterable[str]) -> InvalidInput:
    return InvalidInput(
        f"{label} must be one of {', '.join(sorted(allowed))}",
        code="metrics.invalid_label",
        details={"label": label, "value": value[:64]},
    )


class _Families:
    """The metric families of one registry (labelled parents; children are bound later)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        ev = ("endpoint", "version")
        self.requests = Counter(
            "bastion_gateway_requests_total",
            "Gateway requests by endpoint, model version and HTTP status.",
            [*ev, "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "bastion_gateway_request_duration_seconds",
            "Gateway request latency, receipt to response, in seconds.",
            ev,
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.violations = Counter(
            "bastion_gateway_contract_violations_total",
            "Requests rejected by the model's input contract.",
            ev,
            registry=registry,
        )
        self.anomalies = Counter(
            "bastion_gateway_input_anomalies_total",
            "Input values outside the contract's expectations, by field and kind.",
            [*ev, "field", "kind"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "bastion_gateway_rate_limited_total",
            "Requests refused with 429, by the limit that refused them.",
            ["endpoint", "scope"],
            registry=registry,
        )
        self.ratelimit_backend_errors = Counter(
            "bastion_gateway_ratelimit_backend_errors_total",
            "Rate-limit decisions not made by the shared backend (Redis), by reason.",
            ["reason"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "bastion_gateway_auth_failures_total",
            "Requests refused by authentication or authorisation, by error code.",
            ["endpoint", "code"],
            registry=registry,
        )
        self.shadow = Counter(
            "bastion_gateway_shadow_comparisons_total",
            "Shadow predictions compared with the stable version's, by outcome.",
            [*ev, "outcome"],
            registry=registry,
        )
        self.divergence = Gauge(
            "bastion_gateway_shadow_divergence_ratio",
            "Share of compared shadow predictions that differ: different / (same + different).",
            ev,
            registry=registry,
        )
        self.receipts_dropped = Counter(
            "bastion_gateway_receipts_dropped_total",
            "Prediction receipts dropped because the receipt queue was full.",
            ["endpoint"],
            registry=registry,
        )
        self.receipt_queue = Gauge(
            "bastion_gateway_receipt_queue_depth",
            "Prediction receipts waiting to be written.",
            registry=registry,
        )
        self.model_loads = Counter(
            "bastion_gateway_model_loads_total",
            "Model loads by the gateway, by outcome (refused: failed verification).",
            [*ev, "outcome"],
            registry=registry,
        )
        self.rollback = Histogram(
            "bastion_deploy_time_to_rollback_seconds",
            "Time from a rollback's trigger to the stable version serving all traffic.",
            ["endpoint"],
            buckets=ROLLBACK_BUCKETS,
            registry=registry,
        )
        self.last_rollback = Gauge(
            "bastion_deploy_last_time_to_rollback_seconds",
            "The most recent time to rollback, in seconds.",
            ["endpoint"],
            registry=registry,
        )
        self.weight = Gauge(
            "bastion_deploy_traffic_weight",
            "Share of an endpoint's traffic routed to a version, by role.",
            [*ev, "role"],
            registry=registry,
        )
        self.serving = Gauge(
            "bastion_endpoint_serving",
            "1 while the endpoint serves predictions, 0 otherwise.",
            ["endpoint"],
            registry=registry,
        )


class VersionMetrics:
    """The metrics of one (endpoint, version) pair, with label children bound once.

    `endpoint` and `version` are the label values actually used (`_overflow` past the caps).
    """

    def __init__(self, families: _Families, endpoint: str, version: str, max_fields: int) -> None:
        self.endpoint = endpoint
        self.version = version
        self._families = families
        self._max_fields = max_fields
        self._lock = threading.Lock()
        self._status: dict[int, Counter] = {}
        self._other_status: Counter | None = None
        self._duration = families.duration.labels(endpoint, version)
        self._violations = families.violations.labels(endpoint, version)
        self._fields: set[str] = set()
        self._kinds: set[str] = set()
        self._anomaly: dict[tuple[str, str], Counter] = {}
        self._model_loads = {
            outcome: families.model_loads.labels(endpoint, version, outcome)
            for outcome in MODEL_LOAD_OUTCOMES
        }
        # Shadow series appear on first use only: a version that is never a shadow shows no
        # divergence ratio of 0.
        self._shadow: dict[str, Counter] | None = None
        self._divergence: Gauge | None = None
        self._same = 0
        self._different = 0

    def request(self, status: int, seconds: float) -> None:
        """One request answered with `status` after `seconds`."""
        counter = self._status.get(status)
        if counter is None:
            counter = self._status_counter(status)
        counter.inc()
        self._duration.observe(seconds)

    def violations(self, n_requests: int = 1) -> None:
        """`n_requests` requests rejected by the input contract."""
        if n_requests < 0:
            raise _negative("n_requests")
        self._violations.inc(n_requests)

    def anomalies(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Add `n` to each (field, kind) anomaly count."""
        for (field, kind), n in counts.items():
            if n <= 0:
                if n < 0:
                    raise _negative("anomaly count")
                continue
            counter = self._anomaly.get((field, kind))
            if counter is None:
                counter = self._anomaly_counter(field, kind)
            counter.inc(n)

    def shadow(self, outcome: str) -> None:
        """One shadow comparison: `same`, `different`, `error` (the shadow failed) or `dropped`
        (not run: the shadow queue was full). Keeps the divergence ratio current."""
        if outcome not in SHADOW_OUTCOMES:
            raise _invalid_label("outcome", outcome, SHADOW_OUTCOMES)
        with self._lock:
            if self._shadow is None:
                f = self._families
                self._shadow = {
                    o: f.shadow.labels(self.endpoint, self.version, o) for o in SHADOW_OUTCOMES
                }
                self._divergence = f.divergence.labels(self.endpoint, self.version)
            self._shadow[outcome].inc()
            if outcome == "same":
                self._same += 1
            elif outcome == "different":
                self._different += 1
            else:
                return
            assert self._divergence is not None
            self._divergence.set(self._different / (self._same + self._different))

    def model_load(self, outcome: str) -> None:
        """One model load: `ok`, or `refused` (verification failed)."""
        counter = self._model_loads.get(outcome)
        if counter is None:
            raise _invalid_label("outcome", outcome, MODEL_LOAD_OUTCOMES)
        counter.inc()

    def _status_counter(self, status: int) -> Counter:
        with self._lock:
            if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
                counter = self._families.requests.labels(self.endpoint, self.version, str(status))
                self._status[status] = counter
                return counter
            if self._other_status is None:
                self._other_status = self._families.requests.labels(
                    self.endpoint, self.version, OTHER
                )
            return self._other_status

    def _anomaly_counter(self, field: str, kind: str) -> Counter:
        with self._lock:
            if field not in self._fields:
                if len(self._fields) < self._max_fields:
                    self._fields.add(field)
                else:
                    field = OTHER
            if kind not in self._kinds:
                if len(self._kinds) < _MAX_KINDS_PER_VERSION:
                    self._kinds.add(kind)
                else:
                    kind = OTHER
            counter = self._anomaly.get((field, kind))
            if counter is None:
                counter = self._families.anomalies.labels(self.endpoint, self.version, field, kind)
                self._anomaly[(field, kind)] = counter
            return counter


def _negative(what: str) -> InvalidInput:
    return InvalidInput(
        f"{what} must not be negative (counters only go up)",
        code="metrics.invalid_value",
        details={"field": what},
    )


class _WithoutCreated(Collector):
    """A view of a registry whose counters and histograms omit their `_created` samples."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            if family.type in _COUNTER_LIKE:
                created = family.name + "_created"
                family.samples = [s for s in family.samples if s.name != created]
            yield family


class GatewayMetrics:
    """Every metric the gateway exposes, in one private registry."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_endpoints: int = 1000,
        max_versions: int = 1000,
        max_fields: int = 256,
        created_series: bool = False,
    ) -> None:
        for name, value in (
            ("max_endpoints", max_endpoints),
            ("max_versions", max_versions),
            ("max_fields", max_fields),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInput(
                    f"{name} must be a positive integer",
                    code="metrics.invalid_value",
                    details={"field": name},
                )
        # auto_describe: a collector without describe() is collected once when added, so that
        # clashing metric names are refused then rather than rendered twice.
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._f = _Families(self.registry)
        self._max_endpoints = max_endpoints
        self._max_versions = max_versions
        self._max_fields = max_fields
        self._exposed: Collector = (
            self.registry if created_series else _WithoutCreated(self.registry)
        )
        self._lock = threading.Lock()
        self._endpoints: set[str] = set()
        self._versions: dict[tuple[str, str], VersionMetrics] = {}
        self._overflow: VersionMetrics | None = None
        self._auth_codes: set[str] = set()
        self._receipt_queue = self._f.receipt_queue

    # -- per version ---------------------------------------------------------------------------

    def version(self, endpoint: str, version: str) -> VersionMetrics:
        """The metrics of one endpoint version (cached; `_overflow` labels past the caps)."""
        metrics = self._versions.get((endpoint, version))
        if metrics is not None:
            return metrics
        with self._lock:
            metrics = self._versions.get((endpoint, version))
            if metrics is not None:
                return metrics
            if len(self._versions) < self._max_versions and self._admit_endpoint(endpoint):
                metrics = VersionMetrics(self._f, endpoint, version, self._max_fields)
                self._versions[(endpoint, version)] = metrics
                return metrics
            if self._overflow is None:
                self._overflow = VersionMetrics(self._f, OVERFLOW, OVERFLOW, self._max_fields)
            return self._overflow

    def set_weight(self, endpoint: str, version: str, role: str, weight: float) -> None:
        """The share (0..1) of `endpoint`'s traffic routed to `version` in `role`."""
        if role not in ROLES:
            raise _invalid_label("role", role, ROLES)
        labels = self.version(endpoint, version)
        self._f.weight.labels(labels.endpoint, labels.version, role).set(weight)

    # -- per endpoint --------------------------------------------------------------------------

    def rate_limited(self, endpoint: str, scope: str) -> None:
        """One request refused with 429 by the `principal` or the `endpoint` limit."""
        if scope not in SCOPES:
            raise _invalid_label("scope", scope, SCOPES)
        self._f.rate_limited.labels(self._endpoint(endpoint), scope).inc()

    def auth_failure(self, endpoint: str, code: str) -> None:
        """One request refused by authentication/authorisation with error `code`."""
        if code not in self._auth_codes:
            with self._lock:
                if len(self._auth_codes) < _MAX_AUTH_CODES:
                    self._auth_codes.add(code)
                else:
                    code = OTHER
        self._f.auth_failures.labels(self._endpoint(endpoint), code).inc()

    def receipt_dropped(self, endpoint: str) -> None:
        self._f.receipts_dropped.labels(self._endpoint(endpoint)).inc()

    def rollback(self, endpoint: str, seconds: float) -> None:
        """A rollback of `endpoint` completed `seconds` after its trigger."""
        label = self._endpoint(endpoint)
        self._f.rollback.labels(label).observe(seconds)
        self._f.last_rollback.labels(label).set(seconds)

    def endpoint_state(self, endpoint: str, serving: bool) -> None:
        self._f.serving.labels(self._endpoint(endpoint)).set(1 if serving else 0)

    # -- process-wide --------------------------------------------------------------------------

    def set_receipt_queue(self, depth: int) -> None:
        self._receipt_queue.set(depth)

    def ratelimit_backend_error(self, reason: str) -> None:
        """A rate-limit decision the shared backend did not make (`RedisRateLimiter`'s
        `on_backend_error` callback): `timeout`, `error`, `circuit_open`; others count as
        `_other`."""
        label = reason if reason in BACKEND_ERROR_REASONS else OTHER
        self._f.ratelimit_backend_errors.labels(label).inc()

    def add_collector(self, collector: Collector) -> None:
        """Expose a custom collector's metrics too (e.g. model download counts from the DB).

        Give it a `describe()` (the families it yields, without values) unless collecting it
        once now is cheap: without one, the registry collects it to learn its names.
        """
        try:
            self.registry.register(collector)
        except ValueError as exc:  # a metric name already taken
            raise Conflict(
                "a collector's metric names clash with metrics already registered",
                code="metrics.duplicate",
            ) from exc

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition: (body, content type)."""
        return generate_latest(self._exposed), CONTENT_TYPE_LATEST

    # -- labels --------------------------------------------------------------------------------

    def _endpoint(self, endpoint: str) -> str:
        if endpoint in self._endpoints:
            return endpoint
        with self._lock:
            return endpoint if self._admit_endpoint(endpoint) else OVERFLOW

    def _admit_endpoint(self, endpoint: str) -> bool:
        """Whether `endpoint` may be a label value (call with the lock held)."""
        if endpoint in self._endpoints:
            return True
        if len(self._endpoints) < self._max_endpoints:
            self._endpoints.add(endpoint)
            return True
        return False
