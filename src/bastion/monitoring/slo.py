"""Service-level objectives per endpoint: availability and latency SLOs, error budgets, and
multiwindow, multi-burn-rate alerts (Google SRE workbook, "Alerting on SLOs", alert 6).

Definitions (the same in `SloTracker` and in the Prometheus rules of `bastion.monitoring.rules`):

- availability: the share of requests that are not server errors. Only HTTP 5xx is bad;
  4xx answers (contract violations, 401/403, 429 from the rate limiter) are the caller's
  problem or a deliberate refusal and do not spend the availability budget.
- latency: the share of non-5xx requests answered within `latency_threshold` seconds
  ("p95 < 200 ms" is `latency_threshold=0.2, latency_objective=0.95`). A request exactly at
  the threshold is fast, as in a Prometheus histogram's `le` bucket.
- burn rate over a window: the bad share in the window divided by the budget share
  `1 - objective`; 1.0 spends the budget exactly over the period. A window with no requests
  burns 0.0.
- a `BurnRule` fires when the burn rate over BOTH its long and its short window is at least
  its factor, and the short window holds at least `min_requests` requests (so that one failed
  request at 3 a.m. does not page anyone).

`SloTracker` keeps, per endpoint, fixed-size rings of counters (requests, 5xx, slow non-5xx):
one-minute buckets for windows up to 6 h, ten-minute buckets for the longer rule windows and
hour buckets for the error-budget period. A window of W seconds sums the buckets of its ring
that started within the last W seconds, the current partial bucket included, so it covers
between W minus one bucket width and W seconds. Memory is allocated once per endpoint, on
first sight (about 48 KiB for the default rules and a 30-day period), and endpoints past
`max_endpoints` share the `_overflow` label.

The tracker lives in process memory: a restart forgets it, and each replica sees only its own
traffic. Prometheus evaluating the rules exported by `bastion monitoring rules` is the durable,
fleet-wide path; the tracker gives every process its own view for /metrics and the alert sinks.

Imports `bastion.core` and `bastion.monitoring.alerts`; never `bastion.deploy`,
`bastion.serving`, `bastion.api`, `bastion.cli` or `bastion.platform` (layers above).
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

import numpy as np
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bastion.core.errors import InvalidInput
from bastion.monitoring.alerts import Alert

if TYPE_CHECKING:
    from bastion.core.settings import Settings

Slo = Literal["availability", "latency"]
Severity = Literal["page", "ticket"]

SLOS: Final[tuple[Slo, ...]] = ("availability", "latency")
OVERFLOW: Final = "_overflow"
# The alert names, shared with the Prometheus rules so that both paths page under one name.
ALERT_NAMES: Final[Mapping[tuple[Slo, Severity], str]] = {
    ("availability", "page"): "BastionSloAvailabilityFastBurn",
    ("availability", "ticket"): "BastionSloAvailabilitySlowBurn",
    ("latency", "page"): "BastionSloLatencyFastBurn",
    ("latency", "ticket"): "BastionSloLatencySlowBurn",
}

MINUTE: Final = 60
_TEN_MINUTES: Final = 600
HOUR: Final = 3600
DAY: Final = 86400
_FINE_SPAN: Final = 6 * HOUR  # windows up to this use one-minute buckets
MAX_PERIOD: Final = 400 * DAY
MAX_WINDOW: Final = 30 * DAY
_NEVER: Final = -(2**62)  # the epoch of a bucket that never held data
_TOTAL, _ERRORS, _SLOW = 0, 1, 2
_COUNTERS: Final = 3


def _bad_spec(message: str, **details: object) -> InvalidInput:
    return InvalidInput(message, code="slo.bad_spec", details=details)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def duration_label(seconds: float) -> str:
    """A whole number of seconds as a Prometheus duration: 300 → `5m`, 5400 → `1h30m`."""
    rest = int(seconds)
    if rest != seconds or rest <= 0:
        raise _bad_spec("a duration must be a positive whole number of seconds", seconds=seconds)
    parts = []
    for unit, size in (("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


@dataclass(frozen=True)
class SloSpec:
    """The objectives of one endpoint.

    `availability`: share of requests that are not 5xx. `latency_threshold` (seconds) and
    `latency_objective`: share of non-5xx requests at most that slow. `period`: the
    error-budget period in seconds, a whole number of hours.
    """

    availability: float = 0.999
    latency_threshold: float = 0.2
    latency_objective: float = 0.95
    period: float = 30 * DAY

    def __post_init__(self) -> None:
        for name in ("availability", "latency_objective"):
            value = getattr(self, name)
            if not _finite(value) or not 0 < value < 1:
                raise _bad_spec(f"{name} must be a share strictly between 0 and 1", field=name)
        if not _finite(self.latency_threshold) or not 0 < self.latency_threshold <= 3600:
            raise _bad_spec("latency_threshold must be in (0, 3600] seconds", field="latency")
        if not _finite(self.period) or self.period % HOUR or not HOUR <= self.period <= MAX_PERIOD:
            raise _bad_spec(
                f"period must be whole hours between 1 h and {MAX_PERIOD // DAY} days",
                field="period",
            )

    def objective(self, slo: Slo) -> float:
        return self.availability if slo == "availability" else self.latency_objective

    @classmethod
    def from_settings(cls, settings: Settings) -> SloSpec:
        """The default SLO of every endpoint from `BASTION_SLO_*`."""
        return cls(
            availability=settings.slo_availability,
            latency_threshold=settings.slo_latency_ms / 1000,
            latency_objective=settings.slo_latency_objective,
        )


DEFAULT_SPEC: Final = SloSpec()


@dataclass(frozen=True)
class BurnRule:
    """Fire at `severity` when both windows (seconds) burn at least `factor` times the
    sustainable rate. Windows are whole minutes, and whole ten-minute spans above 6 h."""

    severity: Severity
    long_window: float
    short_window: float
    factor: float

    def __post_init__(self) -> None:
        if self.severity not in ("page", "ticket"):
            raise InvalidInput(
                "a burn rule's severity is page or ticket",
                code="slo.bad_rule",
                details={"severity": str(self.severity)[:32]},
            )
        for name in ("long_window", "short_window"):
            w = getattr(self, name)
            step = MINUTE if _finite(w) and w <= _FINE_SPAN else _TEN_MINUTES
            if not _finite(w) or w % step or not MINUTE <= w <= MAX_WINDOW:
                raise InvalidInput(
                    f"{name} must be whole minutes up to 6 h, whole ten minutes up to "
                    f"{MAX_WINDOW // DAY} days",
                    code="slo.bad_rule",
                    details={"field": name},
                )
        if self.short_window >= self.long_window:
            raise InvalidInput(
                "a burn rule's short window must be shorter than its long window",
                code="slo.bad_rule",
            )
        if not _finite(self.factor) or self.factor <= 0:
            raise InvalidInput("a burn rule's factor must be positive", code="slo.bad_rule")

    @property
    def label(self) -> str:
        """`1h/5m`: long/short windows."""
        return f"{duration_label(self.long_window)}/{duration_label(self.short_window)}"


# SRE workbook, table 5-8: 2 % of a 30-day budget in 1 h, 5 % in 6 h (page); 10 % in 3 days
# (ticket; 1 d at 3x catches it sooner).
DEFAULT_RULES: Final = (
    BurnRule("page", long_window=HOUR, short_window=5 * MINUTE, factor=14.4),
    BurnRule("page", long_window=6 * HOUR, short_window=30 * MINUTE, factor=6.0),
    BurnRule("ticket", long_window=DAY, short_window=2 * HOUR, factor=3.0),
    BurnRule("ticket", long_window=3 * DAY, short_window=6 * HOUR, factor=1.0),
)


def rule_windows(rules: Sequence[BurnRule]) -> tuple[int, ...]:
    """Every window (seconds) the rules use, ascending."""
    return tuple(sorted({int(w) for r in rules for w in (r.long_window, r.short_window)}))


@dataclass(frozen=True)
class BudgetStatus:
    """An SLO's error budget over the last `period` seconds, or over `observed_seconds` when
    the tracker has seen less than that (process start, or the endpoint's first request).

    `remaining` is 1.0 untouched, 0.0 spent, negative overspent: `1 - bad / allowed_bad`,
    and 1.0 when there were no requests.
    """

    slo: Slo
    objective: float
    requests: int
    bad: int
    allowed_bad: float
    remaining: float
    period: float
    observed_seconds: float


@dataclass(frozen=True)
class MinuteCounts:
    """One minute of an endpoint's traffic: requests, 5xx among them and slow non-5xx ones
    (slower than the latency threshold). `start` is the minute's start in unix seconds."""

    start: float
    requests: int
    errors: int
    slow: int


@dataclass(frozen=True)
class _WindowCounts:
    total: int
    errors: int
    slow: int

    def eligible(self, slo: Slo) -> int:
        return self.total if slo == "availability" else self.total - self.errors

    def bad(self, slo: Slo) -> int:
        return self.errors if slo == "availability" else self.slow

    def burn(self, slo: Slo, objective: float) -> float:
        n = self.eligible(slo)
        return (self.bad(slo) / n) / (1 - objective) if n else 0.0


class _Layout:
    """Ring sizes for one (rules, period): minute, ten-minute and hour rings in one array."""

    def __init__(self, windows: Sequence[int], period: float) -> None:
        coarse = [w for w in windows if w > _FINE_SPAN]
        self.widths = (MINUTE, _TEN_MINUTES, HOUR)
        self.sizes = (
            _FINE_SPAN // MINUTE,
            max(1, max(coarse, default=0) // _TEN_MINUTES),
            int(period) // HOUR,
        )
        starts = [0]
        for size in self.sizes[:-1]:
            starts.append(starts[-1] + size)
        self.starts = tuple(starts)
        self.slots = sum(self.sizes)
        self.ring_of = {w: 0 if w <= _FINE_SPAN else 1 for w in windows}


class _Endpoint:
    """The counters of one endpoint. `add` is the request path: O(1), no allocation."""

    __slots__ = ("counts", "epochs", "first_seen", "idx", "layout", "lock", "minute", "spec")

    def __init__(self, spec: SloSpec, layout: _Layout) -> None:
        self.spec = spec
        self.layout = layout
        self.lock = threading.Lock()
        self.epochs = array("q", [_NEVER]) * layout.slots
        self.counts = array("q", [0]) * (layout.slots * _COUNTERS)
        self.minute = _NEVER
        self.idx = (0, 0, 0)
        self.first_seen: float | None = None

    def add(self, now: float, error: bool, slow: bool) -> None:
        minute = int(now // MINUTE)
        with self.lock:
            if minute > self.minute:
                self._roll(minute)
                if self.first_seen is None:
                    self.first_seen = now
            # A timestamp older than the newest bucket (clock step, late caller) counts in
            # the newest bucket: the rings only move forward.
            c = self.counts
            i, j, k = self.idx
            c[i] += 1
            c[j] += 1
            c[k] += 1
            if error:
                c[i + _ERRORS] += 1
                c[j + _ERRORS] += 1
                c[k + _ERRORS] += 1
            elif slow:
                c[i + _SLOW] += 1
                c[j + _SLOW] += 1
                c[k + _SLOW] += 1

    def _roll(self, minute: int) -> None:
        layout = self.layout
        idx = []
        for width, size, start in zip(layout.widths, layout.sizes, layout.starts, strict=True):
            bucket = minute * MINUTE // width
            slot = start + bucket % size
            base = slot * _COUNTERS
            if self.epochs[slot] != bucket:
                self.epochs[slot] = bucket
                self.counts[base] = self.counts[base + 1] = self.counts[base + 2] = 0
            idx.append(base)
        self.minute = minute
        self.idx = (idx[0], idx[1], idx[2])

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, float | None]:
        with self.lock:
            epochs = np.frombuffer(self.epochs, dtype=np.int64).copy()
            counts = np.frombuffer(self.counts, dtype=np.int64).reshape(-1, _COUNTERS).copy()
            return epochs, counts, self.first_seen


class _View:
    """Window sums over one consistent snapshot of an endpoint's rings."""

    def __init__(self, state: _Endpoint, now: float) -> None:
        self.spec = state.spec
        self.layout = state.layout
        self.now = now
        self.epochs, self.counts, self.first_seen = state.snapshot()

    def _sum(self, ring: int, seconds: int) -> _WindowCounts:
        layout = self.layout
        start, size, width = layout.starts[ring], layout.sizes[ring], layout.widths[ring]
        epochs = self.epochs[start : start + size]
        newest = int(self.now // width)
        mask = (epochs <= newest) & (epochs > newest - seconds // width)
        total, errors, slow = self.counts[start : start + size][mask].sum(axis=0)
        return _WindowCounts(int(total), int(errors), int(slow))

    def window(self, seconds: int) -> _WindowCounts:
        return self._sum(self.layout.ring_of[seconds], seconds)

    def budget(self, slo: Slo) -> BudgetStatus:
        period = self.spec.period
        counts = self._sum(2, int(period))
        objective = self.spec.objective(slo)
        requests, bad = counts.eligible(slo), counts.bad(slo)
        allowed = requests * (1 - objective)
        observed = 0.0 if self.first_seen is None else min(period, self.now - self.first_seen)
        return BudgetStatus(
            slo=slo,
            objective=objective,
            requests=requests,
            bad=bad,
            allowed_bad=allowed,
            remaining=1.0 - bad / allowed if requests else 1.0,
            period=period,
            observed_seconds=max(0.0, observed),
        )


class SloTracker:
    """Per-endpoint SLO counters in fixed-size time buckets; burn rates, budgets, alerts.

    `record()` is on the request path: O(1), allocation only on an endpoint's first request,
    thread-safe (one lock per endpoint). `specs` overrides the default `spec` per endpoint.
    """

    def __init__(
        self,
        spec: SloSpec = DEFAULT_SPEC,
        rules: Sequence[BurnRule] = DEFAULT_RULES,
        *,
        specs: Mapping[str, SloSpec] | None = None,
        clock: Callable[[], float] = time.time,
        max_endpoints: int = 1000,
        min_requests: int = 10,
    ) -> None:
        for name, value in (("max_endpoints", max_endpoints), ("min_requests", min_requests)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _bad_spec(f"{name} must be a positive integer", field=name)
        self.rules = tuple(rules)
        if not self.rules:
            raise InvalidInput("an SLO tracker needs at least one burn rule", code="slo.bad_rule")
        self.spec = spec
        self._specs = dict(specs or {})
        self.windows = rule_windows(self.rules)
        longest = self.windows[-1]
        self._layouts: dict[float, _Layout] = {}
        for s in (spec, *self._specs.values()):
            if s.period < longest:
                raise _bad_spec(
                    "the error-budget period must be at least the longest rule window",
                    period=s.period,
                    longest_window=longest,
                )
            if s.period not in self._layouts:
                self._layouts[s.period] = _Layout(self.windows, s.period)
        self.min_requests = min_requests
        self._clock = clock
        self._max_endpoints = max_endpoints
        self._lock = threading.Lock()
        self._states: dict[str, _Endpoint] = {}
        self._overflow: _Endpoint | None = None

    # -- request path ---------------------------------------------------------------------------

    def record(self, endpoint: str, status: int, latency: float, now: float | None = None) -> None:
        """One request to `endpoint` answered with HTTP `status` after `latency` seconds."""
        state = self._states.get(endpoint)
        if state is None:
            state = self._admit(endpoint)
        state.add(
            self._clock() if now is None else now,
            500 <= status <= 599,
            latency > state.spec.latency_threshold,
        )

    def _admit(self, endpoint: str) -> _Endpoint:
        with self._lock:
            state = self._states.get(endpoint)
            if state is not None:
                return state
            if len(self._states) < self._max_endpoints and endpoint != OVERFLOW:
                spec = self._specs.get(endpoint, self.spec)
                state = _Endpoint(spec, self._layouts[spec.period])
                self._states[endpoint] = state
                return state
            if self._overflow is None:
                self._overflow = _Endpoint(self.spec, self._layouts[self.spec.period])
            return self._overflow

    # -- reading -------------------------------------------------------------------------------

    def endpoints(self) -> list[str]:
        """The endpoint labels with data, `_overflow` last when some endpoints share it."""
        with self._lock:
            names = sorted(self._states)
            return [*names, OVERFLOW] if self._overflow is not None else names

    def _state(self, endpoint: str) -> _Endpoint | None:
        if endpoint == OVERFLOW:
            return self._overflow
        return self._states.get(endpoint)

    def _view(self, endpoint: str, now: float | None) -> _View | None:
        state = self._state(endpoint)
        return None if state is None else _View(state, self._clock() if now is None else now)

    def burn_rates(self, endpoint: str, now: float | None = None) -> dict[str, dict[float, float]]:
        """`{"availability": {window_seconds: burn}, "latency": {...}}` for every rule window.

        An endpoint the tracker has not seen (or that went to `_overflow`) burns 0.0.
        """
        view = self._view(endpoint, now)
        spec = self._specs.get(endpoint, self.spec) if view is None else view.spec
        result: dict[str, dict[float, float]] = {slo: {} for slo in SLOS}
        for w in self.windows:
            counts = _WindowCounts(0, 0, 0) if view is None else view.window(w)
            for slo in SLOS:
                result[slo][float(w)] = counts.burn(slo, spec.objective(slo))
        return result

    def budget(self, endpoint: str, now: float | None = None) -> dict[str, BudgetStatus]:
        """Each SLO's error budget over the spec's period (see `BudgetStatus`)."""
        view = self._view(endpoint, now)
        if view is None:
            spec = self._specs.get(endpoint, self.spec)
            return {
                slo: BudgetStatus(slo, spec.objective(slo), 0, 0, 0.0, 1.0, spec.period, 0.0)
                for slo in SLOS
            }
        return {slo: view.budget(slo) for slo in SLOS}

    def minutes(self, endpoint: str, count: int, now: float | None = None) -> list[MinuteCounts]:
        """The last `count` one-minute buckets of `endpoint` (at most 6 h), oldest first and the
        current, partial minute last; a minute without requests (or an endpoint the tracker
        has not seen) is zeros. For trends: the same counts the burn rates sum."""
        limit = _FINE_SPAN // MINUTE
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= limit:
            raise InvalidInput(f"count must be 1 to {limit} minutes", code="slo.bad_window")
        at = self._clock() if now is None else now
        newest = int(at // MINUTE)
        rows = dict.fromkeys(range(newest - count + 1, newest + 1), (0, 0, 0))
        view = self._view(endpoint, at)
        if view is not None:
            start, size = view.layout.starts[0], view.layout.sizes[0]
            epochs = view.epochs[start : start + size]
            counts = view.counts[start : start + size]
            for epoch, row in zip(epochs.tolist(), counts.tolist(), strict=True):
                if epoch in rows:
                    rows[epoch] = (int(row[_TOTAL]), int(row[_ERRORS]), int(row[_SLOW]))
        return [MinuteCounts(float(m * MINUTE), *rows[m]) for m in sorted(rows)]

    def evaluate(self, now: float | None = None) -> list[Alert]:
        """The burn-rate alerts firing now: per endpoint, SLO and severity, the strongest rule
        (highest factor) whose long and short windows both burn at least its factor, with at
        least `min_requests` requests in its short window."""
        at = self._clock() if now is None else now
        alerts = []
        for endpoint in self.endpoints():
            state = self._state(endpoint)
            if state is None:
                continue
            view = _View(state, at)
            counts = {w: view.window(w) for w in self.windows}
            for slo in SLOS:
                objective = view.spec.objective(slo)
                fired: dict[Severity, tuple[BurnRule, float, float]] = {}
                for rule in self.rules:
                    short = counts[int(rule.short_window)]
                    if short.eligible(slo) < self.min_requests:
                        continue
                    long_burn = counts[int(rule.long_window)].burn(slo, objective)
                    short_burn = short.burn(slo, objective)
                    if long_burn >= rule.factor and short_burn >= rule.factor:
                        best = fired.get(rule.severity)
                        if best is None or rule.factor > best[0].factor:
                            fired[rule.severity] = (rule, long_burn, short_burn)
                for _, (rule, long_burn, short_burn) in sorted(fired.items()):
                    alerts.append(
                        _burn_alert(
                            endpoint, slo, view.spec, rule, long_burn, short_burn, counts, at
                        )
                    )
        return alerts

    def collector(self) -> Collector:
        """A Prometheus collector of objectives, burn rates and remaining budgets."""
        return _SloCollector(self)


def _burn_alert(
    endpoint: str,
    slo: Slo,
    spec: SloSpec,
    rule: BurnRule,
    long_burn: float,
    short_burn: float,
    counts: Mapping[int, _WindowCounts],
    at: float,
) -> Alert:
    short = counts[int(rule.short_window)]
    what = (
        "5xx errors"
        if slo == "availability"
        else f"requests slower than {spec.latency_threshold:g} s"
    )
    return Alert(
        name=ALERT_NAMES[(slo, rule.severity)],
        severity=rule.severity,
        endpoint=endpoint,
        summary=(
            f"{endpoint}: {slo} error budget burning {long_burn:.1f}x over {rule.label} "
            f"(threshold {rule.factor:g}x, objective {spec.objective(slo):g})"
        ),
        labels={"slo": slo},
        value=long_burn,
        started_at=at,
        evidence={
            "rule": rule.label,
            "factor": rule.factor,
            "burn_long": long_burn,
            "burn_short": short_burn,
            "objective": spec.objective(slo),
            "short_window_requests": short.eligible(slo),
            "short_window_bad": short.bad(slo),
            "bad_means": what,
        },
    )


class _SloCollector(Collector):
    def __init__(self, tracker: SloTracker) -> None:
        self._tracker = tracker

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "bastion_slo_objective",
                "SLO objective per endpoint: availability or latency share.",
                labels=["endpoint", "slo"],
            ),
            GaugeMetricFamily(
                "bastion_slo_burn_rate",
                "Error-budget burn rate over a window (1 spends the budget over the period).",
                labels=["endpoint", "slo", "window"],
            ),
            GaugeMetricFamily(
                "bastion_slo_error_budget_remaining_ratio",
                "Share of the period's error budget left (negative: overspent); this process.",
                labels=["endpoint", "slo"],
            ),
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        objective, burn, remaining = self._families()
        tracker = self._tracker
        now = tracker._clock()
        labels = {w: duration_label(w) for w in tracker.windows}
        for endpoint in tracker.endpoints():
            view = tracker._view(endpoint, now)
            if view is None:
                continue
            counts = {w: view.window(w) for w in tracker.windows}
            for slo in SLOS:
                target = view.spec.objective(slo)
                objective.add_metric([endpoint, slo], target)
                for w, c in counts.items():
                    burn.add_metric([endpoint, slo, labels[w]], c.burn(slo, target))
                remaining.add_metric([endpoint, slo], view.budget(slo).remaining)
        yield objective
        yield burn
        yield remaining
