"""Drift statistics: a reference profile's counts against current counts over the same slots.

The same functions serve batch files (`batch_drift`, `bastion drift REF CUR`) and the gateway's
rolling windows of binned counts (`compare_counts`, `compare`): everything works on count
vectors laid out as `bastion.registry.profile` describes (the last slot is "missing", so a
rising missing rate is drift like any other change of shape).

Per feature:
- proportions are smoothed before PSI and JS: p = (c/n + eps) / (1 + k*eps) with eps = 1e-4 and
  k slots, so an empty slot never makes a logarithm infinite (a slot empty on both sides gets
  equal proportions and contributes nothing);
- PSI = sum((q - p) * ln(q / p)), p reference, q current (natural log);
- JS = the Jensen-Shannon *distance* in base 2 (0..1) on the same smoothed proportions; equal to
  `scipy.spatial.distance.jensenshannon(p, q, base=2)`;
- chi-squared homogeneity test on the 2 x k table of raw counts after dropping the slots empty in
  both rows; equal to `scipy.stats.chi2_contingency` (Yates' correction when one degree of
  freedom, as SciPy does by default). Fewer than two slots left: chi2 0, p 1.

Verdict: "drift" iff n_current >= min_rows AND (psi >= psi_threshold OR js >= js_threshold) AND
p_value < alpha; "insufficient" when n_current < min_rows (or the reference is empty); else "ok".
Both halves are needed for "unchanged data of any sample size is not flagged": the p-value alone
flags every negligible difference once n is large (Evidently#50, alibi-detect#646), so the
effect size (PSI/JS, as Evidently's and NannyML's defaults use for large data) must be large as
well; and on small samples noise alone makes PSI and JS look large (PSI is roughly
(k-1)/n for unchanged data), so the difference must also be significant. An empty window has
n_current = 0: status "insufficient", every statistic 0.0 and p 1.0. No NaN is ever produced.

Why alpha = 0.001 (not 0.01): with unchanged data, the chance a feature is flagged is about
alpha where noise alone can reach the effect-size thresholds (roughly n <= 1,000 rows on each
side; above that JS >= 0.1 by chance needs p < 1e-8), and nearly 0 elsewhere. At 0.01, a
50-feature endpoint checked on windows of a few hundred rows would raise a false alarm on
about two checks in five (1 - 0.99^50); at 0.001 a 0.5 sd mean shift is still flagged from
200 rows on (about two times in three at 100 rows), measured with 10 bins.

Endpoint level (`DriftReport`): `score` is the largest JS distance among the features with enough
data (0.0 if none), a number in [0, 1] that is comparable across features of any kind and
binning; `drifted` names the drifted features (never the prediction, which has its own
`prediction_drifted`), `share` is drifted / features with enough data.

Errors (`InvalidInput`): `drift.bad_threshold`, `drift.bad_counts`, `drift.missing_feature`,
`drift.unknown_feature`, `drift.bad_columns`.

Must not import bastion.deploy, bastion.serving, bastion.api, bastion.cli or bastion.platform.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from bastion.core.errors import InvalidInput
from bastion.registry.profile import FeatureProfile, ReferenceProfile, build_profile

Status = Literal["ok", "drift", "insufficient"]

SMOOTHING = 1e-4
MAX_MIN_ROWS = 10**12

# SciPy ships no type stubs; looked up once so mypy sees a plain callable, whatever the
# project's mypy overrides say. chdtrc(dof, x) is the chi-squared survival function.
_chdtrc: Any = importlib.import_module("scipy.special").chdtrc


def _bad(code: str, message: str) -> InvalidInput:
    return InvalidInput(message, code=code)


@dataclass(frozen=True)
class DriftThresholds:
    """When a feature counts as drifted (see the module docstring for the rule)."""

    psi: float = 0.2  # population stability index (effect size)
    js: float = 0.1  # Jensen-Shannon distance, base 2, 0..1 (effect size)
    alpha: float = 0.001  # significance of the chi-squared homogeneity test (see below)
    min_rows: int = 100  # fewer current rows: "insufficient", never "drift"

    def __post_init__(self) -> None:
        for name in ("psi", "js", "alpha"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _bad("drift.bad_threshold", f"{name} must be a number, got {value!r}")
        if not (math.isfinite(self.psi) and self.psi > 0):
            raise _bad("drift.bad_threshold", f"psi must be a finite number > 0, got {self.psi}")
        if not 0 < self.js <= 1:
            raise _bad("drift.bad_threshold", f"js must be in (0, 1], got {self.js}")
        if not 0 < self.alpha <= 1:
            raise _bad("drift.bad_threshold", f"alpha must be in (0, 1], got {self.alpha}")
        if (
            isinstance(self.min_rows, bool)
            or not isinstance(self.min_rows, int)
            or not 1 <= self.min_rows <= MAX_MIN_ROWS
        ):
            raise _bad(
                "drift.bad_threshold",
                f"min_rows must be an integer in [1, {MAX_MIN_ROWS}], got {self.min_rows!r}",
            )

    def to_json(self) -> dict[str, Any]:
        return {"psi": self.psi, "js": self.js, "alpha": self.alpha, "min_rows": self.min_rows}

    def override(self, doc: Any) -> DriftThresholds:
        """These thresholds with some replaced from `{"psi": .., "js": .., "alpha": ..,
        "min_rows": ..}` (any subset); `drift.bad_threshold` for other keys or values."""
        if not isinstance(doc, dict):
            raise _bad("drift.bad_threshold", "thresholds must be an object")
        allowed = {f.name for f in fields(self)}
        unknown = sorted(set(doc) - allowed)
        if unknown:
            raise _bad(
                "drift.bad_threshold",
                f"unknown threshold {', '.join(map(str, unknown))} (allowed: psi, js, alpha, "
                "min_rows)",
            )
        return DriftThresholds(**{**self.to_json(), **doc})


def parse_thresholds(doc: Any, *, base: DriftThresholds) -> dict[str, DriftThresholds]:
    """Per-feature overrides `{"feature": {"psi": 0.3}, ...}` applied over `base`."""
    if not isinstance(doc, dict):
        raise _bad("drift.bad_threshold", 'per-feature thresholds are {"feature": {...}}')
    return {str(name): base.override(value) for name, value in doc.items()}


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's (or the prediction's) drift statistics and verdict."""

    name: str
    kind: str
    status: Status
    psi: float
    js: float
    chi2: float
    p_value: float
    n_reference: int
    n_current: int
    missing_reference: float
    missing_current: float
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "psi": self.psi,
            "js": self.js,
            "chi2": self.chi2,
            "p_value": self.p_value,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "missing_reference": self.missing_reference,
            "missing_current": self.missing_current,
            "thresholds": self.thresholds.to_json(),
        }


@dataclass(frozen=True)
class DriftReport:
    """Every feature's drift, the prediction's, and the endpoint-level summary."""

    features: tuple[FeatureDrift, ...]
    prediction: FeatureDrift | None
    score: float  # largest JS distance among features with enough data; 0.0 if none
    drifted: tuple[str, ...]  # names of drifted features (not the prediction)
    share: float  # len(drifted) / features with enough data; 0.0 if none
    prediction_drifted: bool = False
    reference_rows: int = 0
    current_rows: int = 0  # the most rows any feature (or the prediction) was compared on

    @property
    def any_drift(self) -> bool:
        return bool(self.drifted) or self.prediction_drifted

    def to_json(self) -> dict[str, Any]:
        return {
            "drift": self.any_drift,
            "score": self.score,
            "share": self.share,
            "drifted": list(self.drifted),
            "prediction_drifted": self.prediction_drifted,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "features": [f.to_json() for f in self.features],
            "prediction": self.prediction.to_json() if self.prediction else None,
        }

    def render(self) -> str:
        """A plain-text table: a summary line, then one line per feature, widest drift first."""
        enough = sum(f.status != "insufficient" for f in self.features)
        lines = [
            f"Compared {self.current_rows} current rows with {self.reference_rows} reference "
            f"rows: {len(self.drifted)} of {enough} features drifted (share {self.share:.2f}, "
            f"score {self.score:.4f})"
            + (
                f"; prediction {'DRIFTED' if self.prediction_drifted else self.prediction.status}"
                if self.prediction
                else ""
            )
        ]
        rows = sorted(self.features, key=_order)
        if self.prediction is not None:
            rows.append(self.prediction)
        width = max([7, *(len(_printable(f.name)) for f in rows)])
        lines.append(
            f"{'feature':<{width}}  {'kind':<11}  {'PSI':>8}  {'JS':>6}  {'p':>9}  {'n':>9}  status"
        )
        for f in rows:
            status = "DRIFT" if f.status == "drift" else f.status
            lines.append(
                f"{_printable(f.name):<{width}}  {f.kind:<11}  {f.psi:>8.4f}  {f.js:>6.4f}  "
                f"{f.p_value:>9.3g}  {f.n_current:>9}  {status}"
            )
        return "\n".join(lines)


def _order(f: FeatureDrift) -> tuple[int, float, str]:
    rank = {"drift": 0, "ok": 1, "insufficient": 2}[f.status]
    return rank, -f.js, f.name


def _printable(name: str) -> str:
    return name if name.isprintable() else repr(name)


# -- statistics -----------------------------------------------------------------------------------


def smoothed_proportions(counts: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """The proportions PSI and JS are computed on (see the module docstring)."""
    total = float(counts.sum())
    return (counts / total + SMOOTHING) / (1.0 + SMOOTHING * counts.size)


def chi2_homogeneity(
    reference: npt.NDArray[np.int64], current: npt.NDArray[np.int64]
) -> tuple[float, float]:
    """(chi2, p) of the 2 x k contingency table, as `scipy.stats.chi2_contingency`."""
    table = np.vstack([reference, current]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or np.any(table.sum(axis=1) == 0):
        return 0.0, 1.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    dof = table.shape[1] - 1
    observed = table
    if dof == 1:  # Yates' continuity correction, as SciPy applies by default
        difference = expected - table
        observed = table + np.sign(difference) * np.minimum(0.5, np.abs(difference))
    chi2 = float(np.sum((observed - expected) ** 2 / expected))
    p_value = float(_chdtrc(dof, chi2))
    return chi2, min(max(p_value, 0.0), 1.0) if math.isfinite(p_value) else 1.0


def compare_counts(
    name: str,
    kind: str,
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    thresholds: DriftThresholds = DriftThresholds(),
) -> FeatureDrift:
    """Drift of one feature from its reference and current counts over the same slots.

    Raises `InvalidInput` (`drift.bad_counts`) unless both are same-length integer vectors of
    non-negative counts with at least one slot."""
    if kind not in ("numeric", "categorical"):
        raise _bad("drift.bad_counts", f"feature {name!r}: unknown kind {kind!r}")
    ref = _counts(reference, name, "reference")
    cur = _counts(current, name, "current")
    if ref.size != cur.size:
        raise _bad(
            "drift.bad_counts",
            f"feature {name!r}: {cur.size} current counts for {ref.size} reference slots",
        )
    n_ref, n_cur = int(ref.sum()), int(cur.sum())
    missing_ref = float(ref[-1]) / n_ref if n_ref else 0.0
    missing_cur = float(cur[-1]) / n_cur if n_cur else 0.0
    if n_ref == 0 or n_cur == 0:
        return FeatureDrift(
            name, kind, "insufficient", 0.0, 0.0, 0.0, 1.0, n_ref, n_cur,
            missing_ref, missing_cur, thresholds,
        )  # fmt: skip
    p = smoothed_proportions(ref)
    q = smoothed_proportions(cur)
    psi = float(np.sum((q - p) * np.log(q / p)))
    m = (p + q) / 2
    divergence = float(np.sum(p * np.log(p / m)) + np.sum(q * np.log(q / m))) / 2
    js = min(math.sqrt(max(divergence, 0.0) / math.log(2)), 1.0)
    chi2, p_value = chi2_homogeneity(ref, cur)
    status: Status
    if n_cur < thresholds.min_rows:
        status = "insufficient"
    elif (psi >= thresholds.psi or js >= thresholds.js) and p_value < thresholds.alpha:
        status = "drift"
    else:
        status = "ok"
    return FeatureDrift(
        name, kind, status, max(psi, 0.0), js, chi2, p_value, n_ref, n_cur,
        missing_ref, missing_cur, thresholds,
    )  # fmt: skip


def _counts(values: npt.ArrayLike, name: str, which: str) -> npt.NDArray[np.int64]:
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0 or array.dtype.kind not in "iu":
        raise _bad(
            "drift.bad_counts",
            f"feature {name!r}: {which} counts must be a non-empty 1-D integer vector",
        )
    if array.dtype.kind == "i" and np.any(array < 0):
        raise _bad("drift.bad_counts", f"feature {name!r}: {which} counts are negative")
    if array.dtype.kind == "u" and array.size and int(array.max()) > np.iinfo(np.int64).max:
        raise _bad("drift.bad_counts", f"feature {name!r}: {which} counts are too large")
    return array.astype(np.int64, copy=False)


# -- whole profiles -------------------------------------------------------------------------------


def compare(
    reference: ReferenceProfile,
    current: Mapping[str, npt.ArrayLike],
    *,
    prediction: npt.ArrayLike | None = None,
    thresholds: DriftThresholds = DriftThresholds(),
    per_feature: Mapping[str, DriftThresholds] | None = None,
    prediction_thresholds: DriftThresholds | None = None,
) -> DriftReport:
    """Drift of every profiled feature from current count vectors (`FeatureProfile.bin` output).

    `current` must cover exactly the profile's features (`drift.missing_feature`,
    `drift.unknown_feature`); each vector must have the feature's slot count
    (`drift.bad_counts`). `prediction` is the current prediction counts; it needs a profile
    with a prediction (`drift.unknown_feature` otherwise) and is judged with
    `prediction_thresholds` (default `thresholds`). `per_feature` overrides thresholds by
    feature name; naming a feature the profile lacks is `drift.unknown_feature`.
    """
    _same_names(reference.features, current, "the current counts")
    overrides = dict(per_feature or {})
    unknown = sorted(set(overrides) - set(reference.features))
    if unknown:
        raise _bad(
            "drift.unknown_feature",
            f"thresholds name {_names(unknown)}, which the reference lacks",
        )
    results = []
    for name, profile in reference.features.items():
        results.append(_compare_one(profile, current[name], overrides.get(name, thresholds)))
    predicted = None
    if prediction is not None:
        if reference.prediction is None:
            raise _bad(
                "drift.unknown_feature", "current prediction counts but the profile has none"
            )
        predicted = _compare_one(
            reference.prediction, prediction, prediction_thresholds or thresholds
        )
    return _report(tuple(results), predicted, reference.rows)


def _compare_one(
    profile: FeatureProfile, counts: npt.ArrayLike, thresholds: DriftThresholds
) -> FeatureDrift:
    vector = np.asarray(counts)
    if vector.ndim != 1 or vector.size != profile.slots:
        raise _bad(
            "drift.bad_counts",
            f"feature {profile.name!r}: expected {profile.slots} counts, got shape {vector.shape}",
        )
    return compare_counts(
        profile.name,
        profile.kind,
        np.asarray(profile.counts, dtype=np.int64),
        vector,
        thresholds,
    )


def _report(
    features: tuple[FeatureDrift, ...], prediction: FeatureDrift | None, reference_rows: int
) -> DriftReport:
    enough = [f for f in features if f.status != "insufficient"]
    drifted = tuple(f.name for f in features if f.status == "drift")
    rows = [f.n_current for f in features] + ([prediction.n_current] if prediction else [])
    return DriftReport(
        features=features,
        prediction=prediction,
        score=max((f.js for f in enough), default=0.0),
        drifted=drifted,
        share=len(drifted) / len(enough) if enough else 0.0,
        prediction_drifted=prediction is not None and prediction.status == "drift",
        reference_rows=reference_rows,
        current_rows=max(rows, default=0),
    )


def _same_names(expected: Mapping[str, Any], given: Mapping[str, Any], what: str) -> None:
    missing = [name for name in expected if name not in given]
    if missing:
        raise _bad(
            "drift.missing_feature",
            f"{what} lack {_names(missing)}, which the reference has",
        )
    extra = [name for name in given if name not in expected]
    if extra:
        raise _bad(
            "drift.unknown_feature",
            f"{what} hold {_names(extra)}, which the reference lacks",
        )


def _names(names: list[Any], limit: int = 10) -> str:
    shown = ", ".join(repr(str(n)) for n in names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"feature{'s' if len(names) > 1 else ''} {shown}{more}"


def batch_drift(
    reference: Mapping[str, npt.ArrayLike],
    current: Mapping[str, npt.ArrayLike],
    *,
    categorical: Collection[str] = (),
    bins: int = 10,
    top_k: int = 20,
    thresholds: DriftThresholds = DriftThresholds(),
    per_feature: Mapping[str, DriftThresholds] | None = None,
    reference_prediction: npt.ArrayLike | None = None,
    current_prediction: npt.ArrayLike | None = None,
    prediction_thresholds: DriftThresholds | None = None,
    prediction_kind: Literal["auto", "numeric", "categorical"] = "auto",
) -> DriftReport:
    """Profile `reference`, bin `current` with that profile, compare (see `compare`).

    Both must hold the same columns (`drift.missing_feature` / `drift.unknown_feature`), the
    current columns all of one length (`drift.bad_columns`); the predictions, if any, are
    given for both or neither (`drift.bad_columns`). Profile limits and bad values raise
    `monitoring.bad_profile` / `monitoring.bad_values`.
    """
    _same_names(reference, current, "the current data")
    lengths = {np.shape(values)[0] if np.ndim(values) else -1 for values in current.values()}
    if current_prediction is not None:
        lengths.add(np.shape(current_prediction)[0] if np.ndim(current_prediction) else -1)
    if len(lengths) > 1 or -1 in lengths:
        raise _bad("drift.bad_columns", "the current columns have different lengths")
    if (reference_prediction is None) != (current_prediction is None):
        raise _bad(
            "drift.bad_columns", "give the prediction for both the reference and the current data"
        )
    profile = build_profile(
        reference,
        prediction=reference_prediction,
        categorical=categorical,
        bins=bins,
        top_k=top_k,
        prediction_kind=prediction_kind,
    )
    counts = {name: profile.features[name].bin(current[name]) for name in profile.features}
    predicted = None
    if current_prediction is not None and profile.prediction is not None:
        predicted = profile.prediction.bin(current_prediction)
    return compare(
        profile,
        counts,
        prediction=predicted,
        thresholds=thresholds,
        per_feature=per_feature,
        prediction_thresholds=prediction_thresholds,
    )
