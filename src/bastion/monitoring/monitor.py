"""The monitor of one gateway process: windows, SLOs, alerts, canary verdicts, published evidence.

The request path calls `window(...)` (cached per endpoint version) and `request(...)`; the
serving loop calls `evaluate(now, watched)` every pass, which

1. sums each version's rolling window and computes its drift report against the version's
   reference profile (cached for `/metrics` and the API);
2. evaluates the SLO burn-rate rules and the drift and anomaly alerts, and hands the set of
   firing alerts to the alert router (which notifies the sinks of changes only);
3. judges every canary against its stable version (`guard.judge`) on the evidence of this
   process plus what other replicas published, and returns the verdicts — the serving runtime
   rolls back the breached ones through the deployment service and reports back with
   `rolled_back(...)`;
4. every `publish_seconds`, writes this process's window summaries to `monitor_windows` (one
   row per endpoint version and replica: counts only), so the CLI, incident snapshots and other
   replicas see the same evidence, and the minutes of traffic counted since the last publish to
   `monitor_minutes` (requests, 5xx, slow per endpoint, replica and minute; kept
   `TREND_MINUTES`), so `minutes(...)` — the dashboards' trends — adds up every replica's
   minutes, this process's live ones included, and outlives a restart.

May import `bastion.registry`, `bastion.ledger`, `bastion.store` and below; not serving/deploy.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session

from bastion.core.errors import BastionError
from bastion.core.ids import new_id
from bastion.monitoring.alerts import Alert, AlertRouter
from bastion.monitoring.drift import DriftReport, DriftThresholds
from bastion.monitoring.guard import GuardLimits, Verdict, exceeds, judge
from bastion.monitoring.slo import ALERT_NAMES, MINUTE, MinuteCounts, SloTracker
from bastion.monitoring.windows import VersionWindow, Windows, WindowSummary
from bastion.registry.profile import ReferenceProfile
from bastion.store.db import Database
from bastion.store.tables import ModelVersionRow, MonitorMinuteRow, MonitorWindowRow

log = logging.getLogger("bastion.monitoring")

RECENT_ANOMALIES: Final = 50
# The alerts this monitor raises and may therefore resolve (others' alerts are left alone).
MONITOR_ALERTS: Final = frozenset(
    {*ALERT_NAMES.values(), "DriftDetected", "InputAnomalies", "CanaryRolledBack"}
)
STALE_ROWS: Final = timedelta(days=1)
TREND_MINUTES: Final = 360  # published minutes are kept this long (SloTracker.minutes' limit)


@dataclass(frozen=True)
class Watched:
    """One routed endpoint as the monitor needs it: which version ids play which role."""

    endpoint: str
    stable_id: str | None
    canary_id: str | None
    shadow_id: str | None
    canary_weight: float = 0.0
    canary_since: float | None = None  # unix seconds: when the canary's rollout started


@dataclass(frozen=True)
class CanaryVerdict:
    endpoint: str
    canary_id: str
    stable_id: str | None
    verdict: Verdict
    canary: WindowSummary
    stable: WindowSummary | None
    drift: DriftReport | None

    def evidence(self) -> dict[str, Any]:
        """What the rollback's ledger entry and incident carry: the breaches, both windows'
        headline figures, the drift scores (counts only — never inputs)."""
        return {
            "breaches": [b.to_json() for b in self.verdict.breaches],
            "judged": list(self.verdict.judged),
            "canary": self.canary.overview(),
            "stable": self.stable.overview() if self.stable is not None else None,
            "drift": (
                {
                    "score": self.drift.score,
                    "drifted": list(self.drift.drifted),
                    "prediction": (
                        self.drift.prediction.to_json() if self.drift.prediction else None
                    ),
                }
                if self.drift is not None
                else None
            ),
        }


@dataclass
class _State:
    summary: WindowSummary
    drift: DriftReport | None
    window: VersionWindow


@dataclass
class MonitorConfig:
    guard: GuardLimits = field(default_factory=GuardLimits)
    drift: DriftThresholds = field(default_factory=DriftThresholds)
    per_feature: Mapping[str, DriftThresholds] | None = None
    drift_alert_score: float = 0.1
    anomaly_alert_rate: float = 0.05
    publish_seconds: float = 5.0


class Monitor:
    def __init__(
        self,
        *,
        windows: Windows,
        slo: SloTracker,
        alerts: AlertRouter,
        database: Database | None,
        config: MonitorConfig | None = None,
        clock: Callable[[], float] = time.time,
        replica: str | None = None,
    ) -> None:
        self.windows = windows
        self.slo = slo
        self.alerts = alerts
        self._db = database
        self.config = config or MonitorConfig()
        self._clock = clock
        self.replica = replica or f"{socket.gethostname()[:40]}:{os.getpid()}:{new_id('rep')[-6:]}"
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str], _State] = {}
        self._published = 0.0
        self._minutes_published: float | None = None  # when minutes were last written
        self._rollbacks: dict[tuple[str, str], int] = {}
        self._rolled: dict[Any, tuple[Alert, float]] = {}
        self._evidence: dict[str, int] = {}
        self._anomalies: deque[dict[str, Any]] = deque(maxlen=RECENT_ANOMALIES)

    # -- the request path ---------------------------------------------------------------------

    def window(
        self, endpoint: str, version: str, version_id: str, profile: ReferenceProfile | None
    ) -> VersionWindow:
        return self.windows.get(endpoint, version, version_id, profile)

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        self.slo.record(endpoint, status, seconds)

    def anomalies(
        self,
        endpoint: str,
        version: str,
        counts: Mapping[tuple[str, str], int],
        sample: Mapping[str, str] | None = None,
    ) -> None:
        """Remember the latest anomalies (field, kind and count — no values) for incidents and
        the debug view; `sample` (`samples.anomalous_sample`: one row as bins and bounds, no
        values) goes with the request's first."""
        at = self._clock()
        for i, ((name, kind), n) in enumerate(counts.items()):
            self._anomalies.append(
                {"at": at, "endpoint": endpoint, "version": version, "field": name,
                 "kind": kind, "count": n,
                 "sample": dict(sample) if sample is not None and i == 0 else None}
            )  # fmt: skip

    def recent_anomalies(self, endpoint: str) -> list[dict[str, Any]]:
        return [a for a in list(self._anomalies) if a["endpoint"] == endpoint]

    # -- the loop -----------------------------------------------------------------------------

    def evaluate(self, watched: Sequence[Watched], now: float | None = None) -> list[CanaryVerdict]:
        """One monitoring pass (see the module docstring); the canaries in breach."""
        now = self._clock() if now is None else now
        states = self._summarise(now)
        firing = list(self.slo.evaluate(now))
        firing.extend(self._signal_alerts(states, watched, now))
        with self._lock:
            for key, (alert, until) in list(self._rolled.items()):
                if now < until:
                    firing.append(alert)
                else:
                    del self._rolled[key]
        self.alerts.sync(firing, names=MONITOR_ALERTS)
        verdicts = self._judge(states, watched, now)
        if self._db is not None and now - self._published >= self.config.publish_seconds:
            self._published = now
            try:
                self.publish(now)
            except Exception:  # logged; publishing is evidence, not serving
                log.exception("publishing monitoring windows failed")
        return verdicts

    def rolled_back(self, verdict: CanaryVerdict, seconds: float) -> None:
        """The runtime rolled `verdict`'s canary back `seconds` after the breach was seen."""
        signals = sorted({b.signal for b in verdict.verdict.breaches}) or ["unknown"]
        with self._lock:
            for signal in signals:
                key = (verdict.endpoint, signal)
                self._rollbacks[key] = self._rollbacks.get(key, 0) + 1
        alert = Alert(
            name="CanaryRolledBack",
            severity="page",
            endpoint=verdict.endpoint,
            summary=f"canary v{verdict.canary.version} of {verdict.endpoint} was rolled back "
            f"automatically: {verdict.verdict.reason()}"[:500],
            labels={"version": verdict.canary.version, "signals": ",".join(signals)},
            value=seconds,
            started_at=self._clock(),
            evidence=verdict.evidence(),
        )
        # It stays firing for one window length (then resolves), so it is sent once.
        with self._lock:
            self._rolled[alert.key] = (alert, self._clock() + self.windows.config.seconds)
        self.alerts.fire(alert)

    def summary(self, endpoint: str, version_id: str) -> WindowSummary | None:
        state = self._states.get((endpoint, version_id))
        return state.summary if state is not None else None

    def drift(self, endpoint: str, version_id: str) -> DriftReport | None:
        state = self._states.get((endpoint, version_id))
        return state.drift if state is not None else None

    def states(self) -> list[tuple[WindowSummary, DriftReport | None]]:
        return [(s.summary, s.drift) for s in list(self._states.values())]

    # -- publishing -------------------------------------------------------------------------

    def publish(self, now: float | None = None) -> int:
        """Write this replica's summaries to `monitor_windows`; delete rows nobody has
        refreshed for a day. Returns the rows written."""
        if self._db is None:
            return 0
        now = self._clock() if now is None else now
        at = datetime.fromtimestamp(now, UTC)
        written = 0
        with self._db.transaction() as session:
            for state in list(self._states.values()):
                s = state.summary
                row = session.scalar(
                    sa.select(MonitorWindowRow).where(
                        MonitorWindowRow.endpoint == s.endpoint,
                        MonitorWindowRow.version_id == s.version_id,
                        MonitorWindowRow.replica == self.replica,
                    )
                )
                if row is None:
                    row = MonitorWindowRow(
                        id=new_id("mw"),
                        endpoint=s.endpoint,
                        version_id=s.version_id,
                        replica=self.replica,
                    )
                    session.add(row)
                row.since = datetime.fromtimestamp(s.since, UTC)
                row.until = datetime.fromtimestamp(s.until, UTC)
                row.summary = s.to_json()
                row.updated_at = at
                written += 1
            session.execute(
                sa.delete(MonitorWindowRow).where(MonitorWindowRow.updated_at < at - STALE_ROWS)
            )
            self._publish_minutes(session, now, at)
        return written

    def _publish_minutes(self, session: Session, now: float, at: datetime) -> None:
        """Upsert the minutes counted since the last publish (all the tracker holds, the first
        time), one row per endpoint and minute with traffic; drop minutes past the trends'
        span."""
        since = self._minutes_published
        count = TREND_MINUTES if since is None else int(now // MINUTE - since // MINUTE) + 1
        count = max(1, min(TREND_MINUTES, count))
        for endpoint in self.slo.endpoints():
            counted = [m for m in self.slo.minutes(endpoint, count, now) if m.requests]
            if not counted:
                continue
            keys = [int(m.start // MINUTE) for m in counted]
            rows = {
                row.minute: row
                for row in session.scalars(
                    sa.select(MonitorMinuteRow).where(
                        MonitorMinuteRow.endpoint == endpoint,
                        MonitorMinuteRow.replica == self.replica,
                        MonitorMinuteRow.minute.in_(keys),
                    )
                )
            }
            for key, m in zip(keys, counted, strict=True):
                row = rows.get(key)
                if row is None:
                    row = MonitorMinuteRow(endpoint=endpoint, replica=self.replica, minute=key)
                    session.add(row)
                row.requests, row.errors, row.slow = m.requests, m.errors, m.slow
                row.updated_at = at
        oldest = int(now // MINUTE) - TREND_MINUTES
        session.execute(sa.delete(MonitorMinuteRow).where(MonitorMinuteRow.minute < oldest))
        self._minutes_published = now

    def minutes(self, endpoint: str, count: int, now: float | None = None) -> list[MinuteCounts]:
        """The last `count` minutes of `endpoint`'s traffic (oldest first, the current one
        last, zeros where there was none): this process's live counts plus what other
        replicas — and earlier runs of this server — published."""
        now = self._clock() if now is None else now
        own = self.slo.minutes(endpoint, count, now)
        if self._db is None:
            return own
        first = int(own[0].start // MINUTE)
        with self._db.read() as session:
            rows = session.execute(
                sa.select(
                    MonitorMinuteRow.minute,
                    sa.func.sum(MonitorMinuteRow.requests),
                    sa.func.sum(MonitorMinuteRow.errors),
                    sa.func.sum(MonitorMinuteRow.slow),
                )
                .where(
                    MonitorMinuteRow.endpoint == endpoint,
                    MonitorMinuteRow.replica != self.replica,
                    MonitorMinuteRow.minute >= first,
                )
                .group_by(MonitorMinuteRow.minute)
            ).all()
        others = {int(m): (int(r), int(e), int(sl)) for m, r, e, sl in rows}
        merged = []
        for m in own:
            r, e, sl = others.get(int(m.start // MINUTE), (0, 0, 0))
            merged.append(MinuteCounts(m.start, m.requests + r, m.errors + e, m.slow + sl))
        return merged

    def published(
        self,
        endpoint: str,
        *,
        exclude_self: bool = True,
        now: float | None = None,
        started: Mapping[str, float] | None = None,
    ) -> dict[str, WindowSummary]:
        """Other replicas' summaries of `endpoint` that still overlap the window, summed per
        version id; `started`: per version id, leave out summaries that began counting
        earlier."""
        if self._db is None:
            return {}
        now = self._clock() if now is None else now
        fresh = datetime.fromtimestamp(now - self.windows.config.seconds, UTC)
        query = sa.select(MonitorWindowRow).where(
            MonitorWindowRow.endpoint == endpoint, MonitorWindowRow.until >= fresh
        )
        if exclude_self:
            query = query.where(MonitorWindowRow.replica != self.replica)
        with self._db.read() as session:
            rows = session.scalars(query).all()
        return merge_rows([r.summary for r in rows], started=started)

    # -- metrics --------------------------------------------------------------------------

    def collector(self) -> Collector:
        return _MonitorCollector(self)

    # -- internals --------------------------------------------------------------------------

    def _summarise(self, now: float) -> dict[tuple[str, str], _State]:
        states: dict[tuple[str, str], _State] = {}
        for window in self.windows.all():
            summary = window.summary(now)
            report = None
            if window.profile is not None:
                try:
                    report = summary.drift(
                        window.profile, self.config.drift, self.config.per_feature
                    )
                except Exception:  # a profile the window cannot use: no drift, logged
                    log.exception("drift of %s v%s failed", window.endpoint, window.version)
            states[(window.endpoint, window.version_id)] = _State(summary, report, window)
        self._states = states
        return states

    def _signal_alerts(
        self, states: Mapping[tuple[str, str], _State], watched: Sequence[Watched], now: float
    ) -> Iterator[Alert]:
        stable = {(w.endpoint, w.stable_id) for w in watched if w.stable_id}
        cfg = self.config
        for key, state in states.items():
            if key not in stable:
                continue
            s, report = state.summary, state.drift
            if report is not None and report.any_drift and report.score >= cfg.drift_alert_score:
                yield Alert(
                    name="DriftDetected",
                    severity="ticket",
                    endpoint=s.endpoint,
                    summary=f"inputs or predictions of {s.endpoint} v{s.version} drifted from "
                    f"the training data (score {report.score:.3f}; "
                    f"{', '.join(report.drifted[:5]) or 'prediction'})",
                    labels={"version": s.version},
                    value=report.score,
                    started_at=now,
                    evidence={"drifted": list(report.drifted), "score": report.score},
                )
            name, anomalous = s.anomaly_field
            hit, p = exceeds(anomalous, s.rows, cfg.anomaly_alert_rate, cfg.guard.alpha)
            if hit and s.rows >= cfg.guard.min_requests:
                yield Alert(
                    name="InputAnomalies",
                    severity="ticket",
                    endpoint=s.endpoint,
                    summary=f"{s.anomaly_rate:.1%} of {name} values sent to {s.endpoint} "
                    f"v{s.version} are out of range or unseen (p={p:.1e})",
                    labels={"version": s.version, "field": str(name)},
                    value=s.anomaly_rate,
                    started_at=now,
                )

    def _judge(
        self, states: Mapping[tuple[str, str], _State], watched: Sequence[Watched], now: float
    ) -> list[CanaryVerdict]:
        verdicts = []
        evidence: dict[str, int] = {}
        for w in watched:
            if w.canary_id is None:
                continue
            since = w.canary_since if w.canary_since is not None else 0.0
            canary_state = states.get((w.endpoint, w.canary_id))
            if canary_state is not None and canary_state.summary.started < since:
                # Counts from before this rollout (an earlier one, or as stable): the gateway
                # resets the window at the canary's first request; until then there is none.
                canary_state = None
            stable_state = states.get((w.endpoint, w.stable_id)) if w.stable_id else None
            # Other replicas' windows of the canary count only if they were reset for this
            # rollout (started after it began).
            others = self._others(w.endpoint, now, {w.canary_id: since})
            canary = _combine(
                canary_state.summary if canary_state else None, others.get(w.canary_id)
            )
            evidence[w.endpoint] = canary.requests if canary is not None else 0
            if canary is None:
                continue
            stable = _combine(stable_state.summary if stable_state else None,
                              others.get(w.stable_id or ""))  # fmt: skip
            window = canary_state.window if canary_state else None
            report = None
            if window is not None and window.profile is not None:
                try:
                    report = canary.drift(
                        window.profile, self.config.drift, self.config.per_feature
                    )
                except BastionError:
                    log.exception("drift of the canary window failed")
            stable_drift = stable_state.drift if stable_state is not None else None
            verdict = judge(
                canary, stable, self.config.guard, drift=report, stable_drift=stable_drift
            )
            if verdict.breached:
                verdicts.append(
                    CanaryVerdict(
                        w.endpoint, w.canary_id, w.stable_id, verdict, canary, stable, report
                    )
                )
        self._evidence = evidence
        return verdicts

    def hold(self, endpoint: str) -> str | None:
        """Why `endpoint`'s canary may not be stepped or promoted yet (None: it may): fewer
        requests in its window, as of the last pass, than the guard needs to judge it."""
        if endpoint not in self._evidence:
            return None  # no canary at the last pass
        seen, needed = self._evidence[endpoint], self.config.guard.min_requests
        if seen < needed:
            return f"the canary answered {seen} requests in its window; {needed} are needed"
        return None

    def _others(
        self, endpoint: str, now: float, started: Mapping[str, float]
    ) -> dict[str, WindowSummary]:
        try:
            return self.published(endpoint, now=now, started=started)
        except Exception:
            log.exception("reading other replicas' windows failed")
            return {}


def merge_rows(
    docs: Sequence[Mapping[str, Any]], *, started: Mapping[str, float] | None = None
) -> dict[str, WindowSummary]:
    """Sum published summaries per version id (bad rows are skipped and logged; with
    `started`, so are those of a listed version that began counting before its time)."""
    out: dict[str, WindowSummary] = {}
    for doc in docs:
        try:
            summary = WindowSummary.from_json(doc)
        except BastionError:
            log.warning("skipping a malformed monitor window row")
            continue
        if started and summary.started < started.get(summary.version_id, 0.0):
            continue
        prior = out.get(summary.version_id)
        out[summary.version_id] = summary if prior is None else prior.merge(summary)
    return out


def _combine(mine: WindowSummary | None, others: WindowSummary | None) -> WindowSummary | None:
    if mine is None:
        return others
    if others is None:
        return mine
    return mine.merge(others)


class _MonitorCollector(Collector):
    """The monitor's figures as of its last pass (scrapes never compute drift)."""

    def __init__(self, monitor: Monitor) -> None:
        self._m = monitor

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())  # names and types only

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        score, js, psi, pred, anomaly, requests, errors, latency, rollbacks = families
        for summary, report in self._m.states():
            ev = [summary.endpoint, summary.version]
            requests.add_metric(ev, summary.requests)
            errors.add_metric(ev, summary.error_rate)
            anomaly.add_metric(ev, summary.anomaly_rate)
            for q in (0.5, 0.95, 0.99):
                value = summary.latency_quantile(q)
                if value is not None and value != float("inf"):
                    latency.add_metric([*ev, str(q)], value)
            if report is not None:
                score.add_metric(ev, report.score)
                for f in report.features:
                    js.add_metric([*ev, f.name], f.js)
                    psi.add_metric([*ev, f.name], f.psi)
                if report.prediction is not None:
                    pred.add_metric(ev, report.prediction.js)
        with self._m._lock:
            for (endpoint, signal), n in self._m._rollbacks.items():
                rollbacks.add_metric([endpoint, signal], n)
        return iter(families)

    @staticmethod
    def _families() -> list[Any]:
        ev = ["endpoint", "version"]
        return [
            GaugeMetricFamily("bastion_monitor_drift_score",
                              "Endpoint-level drift score over the window: the largest "
                              "Jensen-Shannon distance among features with enough data.",
                              labels=ev),
            GaugeMetricFamily("bastion_monitor_feature_drift_js",
                              "Jensen-Shannon distance (base 2) of a feature's window against "
                              "the reference profile.", labels=[*ev, "feature"]),
            GaugeMetricFamily("bastion_monitor_feature_drift_psi",
                              "Population stability index of a feature's window against the "
                              "reference profile.", labels=[*ev, "feature"]),
            GaugeMetricFamily("bastion_monitor_prediction_drift_js",
                              "Jensen-Shannon distance of the predictions against the training "
                              "labels.", labels=ev),
            GaugeMetricFamily("bastion_monitor_anomaly_rate",
                              "The worst field's share of out-of-range or unseen values over "
                              "the window.", labels=ev),
            GaugeMetricFamily("bastion_monitor_window_requests",
                              "Requests answered in the window.", labels=ev),
            GaugeMetricFamily("bastion_monitor_window_error_ratio",
                              "Share of server errors (5xx) in the window.", labels=ev),
            GaugeMetricFamily("bastion_monitor_window_latency_seconds",
                              "Latency quantiles over the window (bucket upper bounds, 25 % "
                              "resolution).", labels=[*ev, "quantile"]),
            CounterMetricFamily("bastion_deploy_automatic_rollbacks",
                                "Canaries rolled back by the monitor, by breached signal.",
                                labels=["endpoint", "signal"]),
        ]  # fmt: skip


def published_windows(
    database: Database, endpoint: str, *, since: datetime | None = None
) -> dict[str, WindowSummary]:
    """Every replica's published summaries of `endpoint` (updated since `since`), summed per
    version id: what a process without live windows (the CLI) knows."""
    query = sa.select(MonitorWindowRow.summary).where(MonitorWindowRow.endpoint == endpoint)
    if since is not None:
        query = query.where(MonitorWindowRow.until >= since)
    with database.read() as session:
        return merge_rows(list(session.scalars(query)))


def endpoint_windows(
    monitor: Monitor | None, database: Database, endpoint: str
) -> dict[str, WindowSummary]:
    """What is known of `endpoint`'s versions: this process's live windows merged with what
    the other replicas published, per version id (only the published ones without a
    monitor). The one view of the windows the API and the dashboards both show."""
    if monitor is None:
        return published_windows(database, endpoint)
    out = dict(monitor.published(endpoint))
    for window in monitor.windows.all():
        if window.endpoint != endpoint:
            continue
        live = window.summary()
        prior = out.get(window.version_id)
        out[window.version_id] = live if prior is None else live.merge(prior)
    return out


def reference_profiles(
    database: Database, version_ids: Sequence[str]
) -> dict[str, ReferenceProfile]:
    """The reference profiles of these versions (those that have one and parse)."""
    if not version_ids:
        return {}
    with database.read() as session:
        rows = session.execute(
            sa.select(ModelVersionRow.id, ModelVersionRow.reference_profile).where(
                ModelVersionRow.id.in_(list(version_ids))
            )
        ).all()
    out = {}
    for version_id, doc in rows:
        if doc is None:
            continue
        try:
            out[version_id] = ReferenceProfile.from_json(doc)
        except BastionError:
            log.warning("the reference profile of %s does not parse", version_id)
    return out
