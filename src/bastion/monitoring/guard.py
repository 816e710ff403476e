"""The canary guard: is a canary's window evidence enough to roll it back?

Each signal is a share of events among trials in the canary's window, held against a tolerated
share; a breach needs the observed share above the tolerance **and** a one-sided binomial test
saying the true share is above it with significance `alpha` (default 0.001). That is what
"breached for long enough to be statistically meaningful" means here: at 5 canary requests a
second, two failed requests out of two already reject a 1 % tolerance at p = 1e-4, while a single
slow request among fifty never does. No fixed wait, and no flapping on noise.

Signals (events / trials, against the tolerated share):

* `error_rate`: 5xx / requests, against max(`max_error_rate`, stable's rate * `error_ratio`);
* `latency_p95`: requests slower than L95 / requests, against 5 %, where
  L95 = max(`latency_p95`, stable's p95 * `latency_ratio`); `latency_p99` likewise with 1 %;
* `anomaly_rate`: the worst field's anomalous values / rows, against
  max(`max_anomaly_rate`, stable's rate * `error_ratio`);
* `shadow_divergence`: different / compared, when the canary also runs as the shadow, against
  `max_divergence`;
* `drift`: the canary's drift report (inputs and predictions against its own reference
  profile) says drifted, with a score of at least `max_drift_score` and above the stable
  version's own score by `DRIFT_MARGIN`.

The stable version's rates raise the tolerances because both versions see the same traffic: a
canary is rolled back for what it does worse, not for traffic that hurts every version alike
(the SLO, drift and anomaly alerts report that).

A signal with fewer than `min_requests` trials is not judged (`insufficient`). The stable
version's figures are used only when it has at least `min_requests` itself.

May import `bastion.registry` and below (through the window and drift modules).
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import asdict, dataclass
from typing import Any

from bastion.core.errors import InvalidInput
from bastion.monitoring.drift import DriftReport
from bastion.monitoring.windows import WindowSummary


@functools.cache
def _binom_sf() -> Any:
    """`scipy.stats.binom.sf`, imported on first use: scipy.stats takes half a second to
    import, which every `bastion` command would otherwise pay (scipy ships no type stubs)."""
    return importlib.import_module("scipy.stats").binom.sf


DRIFT_MARGIN = 0.05


@dataclass(frozen=True)
class GuardLimits:
    max_error_rate: float = 0.01
    error_ratio: float = 2.0
    latency_p95: float = 0.2
    latency_p99: float = 1.0
    latency_ratio: float = 1.5
    max_anomaly_rate: float = 0.05
    max_divergence: float = 0.1
    max_drift_score: float = 0.2
    alpha: float = 0.001
    min_requests: int = 20

    def __post_init__(self) -> None:
        for name in ("max_error_rate", "max_anomaly_rate", "max_divergence", "max_drift_score"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise InvalidInput(f"{name} must be within [0, 1)", code="monitoring.bad_limit")
        for name in ("error_ratio", "latency_ratio"):
            if getattr(self, name) < 1.0:
                raise InvalidInput(f"{name} must be at least 1", code="monitoring.bad_limit")
        for name in ("latency_p95", "latency_p99"):
            if not 0.0 < getattr(self, name) <= 600:
                raise InvalidInput(f"{name} must be within (0, 600] s", code="monitoring.bad_limit")
        if not 0.0 < self.alpha < 0.5:
            raise InvalidInput("alpha must be within (0, 0.5)", code="monitoring.bad_limit")
        if self.min_requests < 1:
            raise InvalidInput("min_requests must be positive", code="monitoring.bad_limit")


@dataclass(frozen=True)
class Breach:
    signal: str
    observed: float  # the canary's share (or drift score)
    limit: float  # the tolerated share (or score)
    events: int
    trials: int
    p_value: float
    detail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    breaches: tuple[Breach, ...]
    judged: tuple[str, ...]  # signals with enough data to judge
    insufficient: tuple[str, ...]

    @property
    def breached(self) -> bool:
        return bool(self.breaches)

    def reason(self) -> str:
        return "; ".join(b.detail for b in self.breaches)


def exceeds(events: int, trials: int, tolerance: float, alpha: float) -> tuple[bool, float]:
    """Whether `events` in `trials` show a true share above `tolerance` (one-sided binomial
    test at `alpha`), and the p-value."""
    if trials <= 0 or events <= 0 or events / trials <= tolerance:
        return False, 1.0
    p = float(_binom_sf()(events - 1, trials, tolerance))
    return p < alpha, p


def judge(
    canary: WindowSummary,
    stable: WindowSummary | None,
    limits: GuardLimits,
    *,
    drift: DriftReport | None = None,
    stable_drift: DriftReport | None = None,
) -> Verdict:
    breaches: list[Breach] = []
    judged: list[str] = []
    insufficient: list[str] = []
    n = canary.requests
    base = stable if stable is not None and stable.requests >= limits.min_requests else None

    def check(signal: str, events: int, trials: int, tolerance: float, what: str) -> None:
        if trials < limits.min_requests:
            insufficient.append(signal)
            return
        judged.append(signal)
        hit, p = exceeds(events, trials, tolerance, limits.alpha)
        if hit:
            share = events / trials
            breaches.append(
                Breach(
                    signal=signal,
                    observed=round(share, 6),
                    limit=round(tolerance, 6),
                    events=events,
                    trials=trials,
                    p_value=p,
                    detail=(
                        f"{signal}: {what} {events}/{trials} ({share:.1%}) above the tolerated "
                        f"{tolerance:.1%} (p={p:.1e})"
                    ),
                )
            )

    tolerated = limits.max_error_rate
    if base is not None:
        tolerated = max(tolerated, min(0.5, base.error_rate * limits.error_ratio))
    check("error_rate", canary.errors, n, tolerated, "server errors")

    for signal, q, floor, share in (
        ("latency_p95", 0.95, limits.latency_p95, 0.05),
        ("latency_p99", 0.99, limits.latency_p99, 0.01),
    ):
        limit = floor
        if base is not None:
            stable_q = base.latency_quantile(q)
            if stable_q is not None and stable_q != float("inf"):
                limit = max(limit, stable_q * limits.latency_ratio)
        check(signal, canary.slower_than(limit), n, share, f"requests slower than {limit:.3g} s")

    field, anomalous = canary.anomaly_field
    tolerated = limits.max_anomaly_rate
    if base is not None and base.rows >= limits.min_requests:
        # The same traffic reaches both versions: only anomalies the canary sees more of
        # (a narrower contract) are its own.
        tolerated = max(tolerated, min(0.99, base.anomaly_rate * limits.error_ratio))
    check("anomaly_rate", anomalous, canary.rows, tolerated,
          f"anomalous values in {field or '-'}")  # fmt: skip

    compared = canary.shadow_same + canary.shadow_different
    if compared:
        check("shadow_divergence", canary.shadow_different, compared, limits.max_divergence,
              "predictions different from the stable version's")  # fmt: skip

    if drift is not None:
        enough = any(f.status != "insufficient" for f in drift.features) or (
            drift.prediction is not None and drift.prediction.status != "insufficient"
        )
        if not enough:
            insufficient.append("drift")
        else:
            judged.append("drift")
            prediction_drifted = drift.prediction is not None and drift.prediction.status == "drift"
            # Traffic that drifted as far from the stable version's training data is not the
            # canary's fault (the DriftDetected alert covers it): a breach is the canary's own.
            own = (
                stable_drift is None
                or not stable_drift.any_drift
                or drift.score > stable_drift.score + DRIFT_MARGIN
            )
            if (
                own
                and (drift.drifted or prediction_drifted)
                and drift.score >= limits.max_drift_score
            ):
                names = list(drift.drifted) + (["prediction"] if prediction_drifted else [])
                breaches.append(
                    Breach(
                        signal="drift",
                        observed=round(drift.score, 6),
                        limit=limits.max_drift_score,
                        events=len(names),
                        trials=len(drift.features) + (1 if drift.prediction else 0),
                        p_value=min(
                            [f.p_value for f in drift.features if f.status == "drift"]
                            + (
                                [drift.prediction.p_value]
                                if prediction_drifted and drift.prediction
                                else []
                            )
                        ),
                        detail=f"drift: score {drift.score:.3f} ≥ {limits.max_drift_score} "
                        f"({', '.join(names[:5])})",
                    )
                )
    return Verdict(tuple(breaches), tuple(judged), tuple(insufficient))
