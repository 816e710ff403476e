"""Rolling windows of what each endpoint version answered: fixed memory, counts only.

A `VersionWindow` is a ring of `slices` time slices of `slice_seconds` each (defaults 30 x 10 s:
the last five minutes). A slice holds, for the requests that one gateway process answered with
that version:

* requests, server errors (HTTP 5xx) and a latency histogram (64 log-spaced buckets, 100 µs to
  about 2 min, 25 % apart, then one overflow bucket);
* rows predicted, contract violations (rejected requests) and anomalous values per field
  (out of range, unseen category — `Batch.anomalies`);
* for drift: the rows' values binned per feature with the version's reference profile
  (`FeatureProfile.bin`), and the predictions binned with the profile's label distribution;
* shadow comparisons (same / different) when the version runs as a shadow.

No input value is kept: a request's columns wait in a short pending list (at most
`pending_rows` rows, and never past the end of their slice) and are then reduced to bin counts
in one vectorised pass per feature — binning 1-row requests one by one would cost more than the
prediction. Memory per window is fixed by the profile (features x slots x slices counters).

`WindowSummary` is the sum over the slices still in the window: plain counts, so summaries from
several replicas (published to the `monitor_windows` table) add up. It answers the questions the
canary guard and the alerts ask: error rate, latency quantiles, how many requests were slower
than a limit, the worst field's anomaly rate, and the drift report against the profile.

May import `bastion.registry` (the profile) and below; nothing from serving or deploy.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from bastion.core.errors import InvalidInput
from bastion.monitoring.drift import DriftReport, DriftThresholds, compare
from bastion.registry.profile import FeatureProfile, ReferenceProfile

LATENCY_BOUNDS: Final[tuple[float, ...]] = tuple(1e-4 * 1.25**i for i in range(64))
_BUCKETS: Final = len(LATENCY_BOUNDS) + 1  # + the overflow bucket
OVERFLOW: Final = "_overflow"


@dataclass(frozen=True)
class WindowConfig:
    slice_seconds: float = 10.0
    slices: int = 30
    pending_rows: int = 4096
    max_windows: int = 1000
    max_fields: int = 256

    def __post_init__(self) -> None:
        if not 0.1 <= self.slice_seconds <= 3600:
            raise InvalidInput(
                "slice_seconds must be within [0.1, 3600]", code="monitoring.bad_window"
            )
        if not 1 <= self.slices <= 10_000:
            raise InvalidInput("slices must be within [1, 10000]", code="monitoring.bad_window")
        for name in ("pending_rows", "max_windows", "max_fields"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name} must be positive", code="monitoring.bad_window")

    @property
    def seconds(self) -> float:
        return self.slice_seconds * self.slices


class _Slice:
    __slots__ = (
        "anomalies",
        "errors",
        "features",
        "latency",
        "number",
        "prediction",
        "requests",
        "rows",
        "shadow_different",
        "shadow_same",
        "violations",
    )

    def __init__(self, number: int, profile: ReferenceProfile | None) -> None:
        self.number = number
        self.requests = 0
        self.errors = 0
        self.latency = [0] * _BUCKETS
        self.rows = 0
        self.violations = 0
        self.anomalies: dict[str, int] = {}
        self.shadow_same = 0
        self.shadow_different = 0
        self.features: dict[str, np.ndarray] = (
            {n: np.zeros(f.slots, dtype=np.int64) for n, f in profile.features.items()}
            if profile is not None
            else {}
        )
        self.prediction: np.ndarray | None = (
            np.zeros(profile.prediction.slots, dtype=np.int64)
            if profile is not None and profile.prediction is not None
            else None
        )


@dataclass
class _Pending:
    number: int
    rows: int
    columns: Mapping[str, np.ndarray]
    prediction: np.ndarray | None


@dataclass
class WindowSummary:
    """Counts over one window (or the sum of several replicas' windows)."""

    endpoint: str
    version: str
    version_id: str
    since: float  # unix seconds, start of the oldest slice included
    until: float
    requests: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * _BUCKETS)
    rows: int = 0
    violations: int = 0
    anomalies: dict[str, int] = field(default_factory=dict)
    features: dict[str, list[int]] = field(default_factory=dict)
    prediction: list[int] | None = None
    shadow_same: int = 0
    shadow_different: int = 0
    replicas: int = 1
    started: float = 0.0  # when counting began (the window's creation or last reset)

    # -- derived ------------------------------------------------------------------------------

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def latency_quantile(self, q: float) -> float | None:
        """The upper bound of the latency bucket holding quantile `q` (None without traffic;
        +inf when it falls in the overflow bucket). Resolution: 25 %."""
        total = sum(self.latency)
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for i, n in enumerate(self.latency):
            seen += n
            if seen >= rank and n:
                return LATENCY_BOUNDS[i] if i < len(LATENCY_BOUNDS) else float("inf")
        return float("inf")

    def slower_than(self, seconds: float) -> int:
        """Requests certainly slower than `seconds`: those in buckets whose lower bound is at
        least `seconds` (a request in the bucket straddling it is not counted)."""
        first = bisect.bisect_left(LATENCY_BOUNDS, seconds) + 1
        return sum(self.latency[first:])

    @property
    def anomaly_field(self) -> tuple[str | None, int]:
        """The field with most anomalous values, and their number."""
        if not self.anomalies:
            return None, 0
        name = max(self.anomalies, key=lambda k: (self.anomalies[k], k))
        return name, self.anomalies[name]

    @property
    def anomaly_rate(self) -> float:
        """The worst field's share of anomalous values among the rows predicted."""
        return self.anomaly_field[1] / self.rows if self.rows else 0.0

    @property
    def divergence(self) -> float:
        compared = self.shadow_same + self.shadow_different
        return self.shadow_different / compared if compared else 0.0

    def drift(
        self,
        profile: ReferenceProfile,
        thresholds: DriftThresholds | None = None,
        per_feature: Mapping[str, DriftThresholds] | None = None,
    ) -> DriftReport:
        """This window's inputs and predictions against `profile` (the one it was binned
        with)."""
        return compare(
            profile,
            {n: np.asarray(c, dtype=np.int64) for n, c in self.features.items()},
            prediction=(
                np.asarray(self.prediction, dtype=np.int64) if self.prediction is not None else None
            ),
            thresholds=thresholds or DriftThresholds(),
            per_feature=per_feature,
        )

    # -- combining and storing ----------------------------------------------------------------

    def merge(self, other: WindowSummary) -> WindowSummary:
        """The sum of two summaries of the same version (e.g. from two replicas)."""
        if other.version_id != self.version_id:
            raise InvalidInput(
                "only summaries of the same version add up", code="monitoring.bad_window"
            )
        anomalies = dict(self.anomalies)
        for k, v in other.anomalies.items():
            anomalies[k] = anomalies.get(k, 0) + v
        features = {n: list(c) for n, c in self.features.items()}
        for n, c in other.features.items():
            if n in features and len(features[n]) == len(c):
                features[n] = [a + b for a, b in zip(features[n], c, strict=True)]
            elif n not in features:
                features[n] = list(c)
        prediction = self.prediction
        if other.prediction is not None:
            prediction = (
                [a + b for a, b in zip(prediction, other.prediction, strict=True)]
                if prediction is not None and len(prediction) == len(other.prediction)
                else list(other.prediction)
            )
        return WindowSummary(
            endpoint=self.endpoint,
            version=self.version,
            version_id=self.version_id,
            since=min(self.since, other.since),
            until=max(self.until, other.until),
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            latency=[a + b for a, b in zip(self.latency, other.latency, strict=True)],
            rows=self.rows + other.rows,
            violations=self.violations + other.violations,
            anomalies=anomalies,
            features=features,
            prediction=prediction,
            shadow_same=self.shadow_same + other.shadow_same,
            shadow_different=self.shadow_different + other.shadow_different,
            replicas=self.replicas + other.replicas,
            started=max(self.started, other.started),
        )

    def overview(self) -> dict[str, Any]:
        """The headline numbers (for evidence, reports and the API)."""
        p50, p95, p99 = (self.latency_quantile(q) for q in (0.5, 0.95, 0.99))
        field_name, _ = self.anomaly_field
        return {
            "endpoint": self.endpoint,
            "version": self.version,
            "since": self.since,
            "until": self.until,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 6),
            "latency_p50": _finite(p50),
            "latency_p95": _finite(p95),
            "latency_p99": _finite(p99),
            "rows": self.rows,
            "violations": self.violations,
            "anomaly_rate": round(self.anomaly_rate, 6),
            "anomaly_field": field_name,
            "shadow_divergence": round(self.divergence, 6),
            "replicas": self.replicas,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "version": self.version,
            "version_id": self.version_id,
            "since": self.since,
            "until": self.until,
            "requests": self.requests,
            "errors": self.errors,
            "latency": list(self.latency),
            "rows": self.rows,
            "violations": self.violations,
            "anomalies": dict(self.anomalies),
            "features": {n: list(c) for n, c in self.features.items()},
            "prediction": list(self.prediction) if self.prediction is not None else None,
            "shadow_same": self.shadow_same,
            "shadow_different": self.shadow_different,
            "replicas": self.replicas,
            "started": self.started,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> WindowSummary:
        try:
            latency = [int(n) for n in doc["latency"]]
            if len(latency) != _BUCKETS:
                raise ValueError("latency buckets")
            prediction = doc.get("prediction")
            return cls(
                endpoint=str(doc["endpoint"]),
                version=str(doc["version"]),
                version_id=str(doc["version_id"]),
                since=float(doc["since"]),
                until=float(doc["until"]),
                requests=int(doc["requests"]),
                errors=int(doc["errors"]),
                latency=latency,
                rows=int(doc["rows"]),
                violations=int(doc["violations"]),
                anomalies={str(k): int(v) for k, v in dict(doc["anomalies"]).items()},
                features={str(k): [int(n) for n in v] for k, v in dict(doc["features"]).items()},
                prediction=[int(n) for n in prediction] if prediction is not None else None,
                shadow_same=int(doc["shadow_same"]),
                shadow_different=int(doc["shadow_different"]),
                replicas=int(doc.get("replicas", 1)),
                started=float(doc.get("started", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(
                f"not a window summary: {exc}", code="monitoring.bad_window"
            ) from None


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    return value if value != float("inf") else None


class VersionWindow:
    """The rolling window of one (endpoint, version) in this process. Thread-safe: the event
    loop records requests, the shadow worker comparisons, the monitor loop reads."""

    def __init__(
        self,
        endpoint: str,
        version: str,
        version_id: str,
        profile: ReferenceProfile | None,
        *,
        config: WindowConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.endpoint = endpoint
        self.version = version
        self.version_id = version_id
        self.profile = profile
        self._config = config or WindowConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._ring: list[_Slice | None] = [None] * self._config.slices
        self._pending: list[_Pending] = []
        self._pending_rows = 0
        self._features: Mapping[str, FeatureProfile] = profile.features if profile else {}
        self._started = self._clock()

    # -- recording (hot path) -----------------------------------------------------------------

    def request(self, status: int, seconds: float, now: float | None = None) -> None:
        """One answered request (any status) and its latency."""
        number = self._number(now)
        bucket = bisect.bisect_left(LATENCY_BOUNDS, seconds)
        with self._lock:
            s = self._slice(number)
            s.requests += 1
            if status >= 500:
                s.errors += 1
            s.latency[bucket] += 1

    def violation(self, now: float | None = None) -> None:
        """One request rejected by the input contract."""
        number = self._number(now)
        with self._lock:
            self._slice(number).violations += 1

    def observe(
        self,
        rows: int,
        columns: Mapping[str, np.ndarray],
        anomalies: Mapping[tuple[str, str], int],
        prediction: np.ndarray | None,
        now: float | None = None,
    ) -> None:
        """A predicted batch: its rows, anomalies, and (for drift) its columns and outputs,
        binned later in one pass."""
        number = self._number(now)
        with self._lock:
            s = self._slice(number)
            s.rows += rows
            if anomalies:
                for (name, _kind), n in anomalies.items():
                    if name in s.anomalies or len(s.anomalies) < self._config.max_fields:
                        s.anomalies[name] = s.anomalies.get(name, 0) + n
            if self.profile is None:
                return
            if self._pending and self._pending[-1].number != number:
                self._fold()
            self._pending.append(_Pending(number, rows, columns, prediction))
            self._pending_rows += rows
            if self._pending_rows >= self._config.pending_rows:
                self._fold()

    def shadow(self, same: bool, now: float | None = None) -> None:
        number = self._number(now)
        with self._lock:
            s = self._slice(number)
            if same:
                s.shadow_same += 1
            else:
                s.shadow_different += 1

    @property
    def started(self) -> float:
        return self._started

    def reset(self, since: float) -> None:
        """Forget everything counted so far: a version that becomes a canary at `since` is
        judged on its own rollout only. The gateway calls this on the canary's first request
        of a rollout, so nothing of the rollout itself is lost."""
        with self._lock:
            self._pending, self._pending_rows = [], 0
            self._ring = [None] * len(self._ring)
            self._started = since

    # -- reading ------------------------------------------------------------------------------

    def summary(self, now: float | None = None) -> WindowSummary:
        """The counts of the slices still inside the window at `now`."""
        number = self._number(now)
        cfg = self._config
        oldest = number - cfg.slices + 1
        with self._lock:
            self._fold()
            out = WindowSummary(
                endpoint=self.endpoint,
                version=self.version,
                version_id=self.version_id,
                since=oldest * cfg.slice_seconds,
                until=(number + 1) * cfg.slice_seconds,
                features={n: [0] * f.slots for n, f in self._features.items()},
                prediction=(
                    [0] * self.profile.prediction.slots
                    if self.profile is not None and self.profile.prediction is not None
                    else None
                ),
                started=self._started,
            )
            features = {n: np.zeros(f.slots, dtype=np.int64) for n, f in self._features.items()}
            prediction = (
                np.zeros(len(out.prediction), dtype=np.int64)
                if out.prediction is not None
                else None
            )
            latency = np.zeros(_BUCKETS, dtype=np.int64)
            for s in self._ring:
                if s is None or not oldest <= s.number <= number:
                    continue
                out.requests += s.requests
                out.errors += s.errors
                latency += np.asarray(s.latency, dtype=np.int64)
                out.rows += s.rows
                out.violations += s.violations
                for k, v in s.anomalies.items():
                    out.anomalies[k] = out.anomalies.get(k, 0) + v
                for n, counts in s.features.items():
                    features[n] += counts
                if prediction is not None and s.prediction is not None:
                    prediction += s.prediction
                out.shadow_same += s.shadow_same
                out.shadow_different += s.shadow_different
        out.latency = latency.tolist()
        out.features = {n: c.tolist() for n, c in features.items()}
        out.prediction = prediction.tolist() if prediction is not None else None
        return out

    # -- internals ----------------------------------------------------------------------------

    def _number(self, now: float | None) -> int:
        return int((self._clock() if now is None else now) // self._config.slice_seconds)

    def _slice(self, number: int) -> _Slice:
        """The slice for `number`, recycling the ring entry it replaces (lock held)."""
        i = number % len(self._ring)
        s = self._ring[i]
        if s is None or s.number != number:
            if s is not None and s.number > number:
                # A late observation for a slice already recycled: count it in the current one.
                return s
            if self._pending:
                self._fold()
            s = _Slice(number, self.profile)
            self._ring[i] = s
        return s

    def _fold(self) -> None:
        """Bin the pending columns into their slices (lock held)."""
        if not self._pending:
            return
        pending, self._pending, self._pending_rows = self._pending, [], 0
        profile = self.profile
        assert profile is not None
        groups: dict[int, list[_Pending]] = {}
        for p in pending:
            groups.setdefault(p.number, []).append(p)
        for number, items in groups.items():
            s = self._ring[number % len(self._ring)]
            if s is None or s.number != number:
                continue  # the slice left the window before it was binned
            for name, feature in self._features.items():
                parts = [p.columns[name] for p in items if name in p.columns]
                if parts:
                    values = parts[0] if len(parts) == 1 else np.concatenate(parts)
                    s.features[name] += feature.bin(values)
            if s.prediction is not None and profile.prediction is not None:
                outputs = [p.prediction for p in items if p.prediction is not None]
                if outputs:
                    values = outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
                    s.prediction += profile.prediction.bin(_as_kind(values, profile.prediction))


def _as_kind(values: np.ndarray, feature: FeatureProfile) -> np.ndarray:
    """Model outputs as the label profile bins them: categorical labels as they are (the
    profile maps numbers to text itself: 1 and 1.0 are both "1"), numeric ones as floats (a
    label that does not parse as a number is missing)."""
    values = np.asarray(values).reshape(-1)
    if feature.kind == "categorical":
        return values if values.dtype == object else values.astype(object)
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    out = np.full(values.shape, np.nan)
    for i, v in enumerate(values):
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            continue
    return out


class Windows:
    """Every version window of this process, created on first use (at most `max_windows`;
    past that, versions share one `_overflow` window without a profile)."""

    def __init__(
        self, config: WindowConfig | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config or WindowConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], VersionWindow] = {}
        self._overflow: VersionWindow | None = None

    def get(
        self,
        endpoint: str,
        version: str,
        version_id: str,
        profile: ReferenceProfile | None,
    ) -> VersionWindow:
        window = self._windows.get((endpoint, version_id))
        if window is not None:
            return window
        with self._lock:
            window = self._windows.get((endpoint, version_id))
            if window is not None:
                return window
            if len(self._windows) < self.config.max_windows:
                window = VersionWindow(
                    endpoint, version, version_id, profile, config=self.config, clock=self._clock
                )
                self._windows[(endpoint, version_id)] = window
                return window
            if self._overflow is None:
                self._overflow = VersionWindow(
                    OVERFLOW, OVERFLOW, OVERFLOW, None, config=self.config, clock=self._clock
                )
            return self._overflow

    def find(self, endpoint: str, version_id: str) -> VersionWindow | None:
        return self._windows.get((endpoint, version_id))

    def all(self) -> Sequence[VersionWindow]:
        with self._lock:
            return list(self._windows.values())

    def forget(self, keep: set[tuple[str, str]]) -> None:
        """Drop the windows of (endpoint, version id) pairs no longer routed."""
        with self._lock:
            for key in [k for k in self._windows if k not in keep]:
                del self._windows[key]
