"""Differentially private training of tabular classifiers with diffprivlib (IBM).

`train_dp(x, y, epsilon=..., bounds=...)` trains one of three diffprivlib models and hands
back a plain scikit-learn `Pipeline` (public-bounds scaling, then the model) that the
registry, the skops loader and the gateway treat like any other model, together with the
guarantee it carries (ε, δ), the mechanism and the run's accountant.

**What is private and what is not.** Only the model's fitted parameters are covered by ε.
Everything that shapes the preprocessing must be *public*, or the guarantee leaks through it
(fitting a scaler on the private rows is itself a release of their min, max and mean). So:

1. every feature is clipped to public bounds `[lower, upper]` (from the version's input
   contract — see the caveat below) and mapped linearly onto `[-1, 1]`: a scikit-learn
   `MinMaxScaler(feature_range=(-1, 1), clip=True)` *fitted on the two bound rows only*,
   never on data;
2. logistic regression then L2-normalises each row (`Normalizer`), so every row has norm
   ≤ 1 and diffprivlib's sensitivity bound `data_norm` is exactly 1 — no data-derived norm;
   Gaussian naive Bayes and the random forest get the bounds `(-1, 1)` per feature.
3. The label set (`classes`) is treated as public: pass it, or it is read from `y` (a
   statement about which labels exist, not about any one person) and recorded as such.

Caveat, stated in every result (`params["bounds_source"]`): when the bounds come from a
contract that was *derived from the same data*, the min and max of each column were
published by the registry before training and are not covered by ε. Declare the contract
(bounds from domain knowledge) to close that gap.

**Mechanisms** (all pure ε-DP, δ = 0):

* `logistic_regression` — objective perturbation (Chaudhuri, Monteleoni & Sarwate, JMLR
  2011) with the Vector mechanism; one-vs-rest for more than two classes, each class getting
  ε / classes (diffprivlib's split).
* `gaussian_nb` — Laplace noise (truncated to the bounds) on per-class means and variances and
  geometric noise on class counts (Vaidya, Shafiq, Basu & Hong, 2013).
* `random_forest` — random trees built without looking at the data, each trained on a disjoint
  part of the rows (parallel composition), leaf labels chosen by Permute-and-Flip (Fletcher &
  Islam, 2019).

Each run gets its own `diffprivlib.BudgetAccountant` capped at (ε, δ); its `total()` after
the fit is what the result reports, and it must not exceed the request. A
`PrivacyLeakWarning` from diffprivlib (something computed from the data that should not have
been) fails the run (`privacy.leak`): fail closed. The diffprivlib model is then *exported*
to the equivalent scikit-learn estimator (same coefficients, trees or moments — pure
post-processing, which costs no privacy); the export is checked to predict the same labels.

diffprivlib and scikit-learn live in the optional extra `bastion[privacy]`
(diffprivlib 0.6.6 needs scikit-learn ≤ 1.7.2, which is the core's pin already) and are
imported lazily: without them a call raises `ConfigError` (`privacy.extra_missing`).

Beside `bastion.supplychain` in the layers: imports only `bastion.core` (and numpy); never
`bastion.registry` or above.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Final

import numpy as np

from bastion.core.errors import BastionError, ConfigError, InvalidInput

MODELS: Final = ("logistic_regression", "gaussian_nb", "random_forest")
MAX_EPSILON: Final = 1000.0
MAX_DELTA: Final = 0.1
MIN_ROWS: Final = 10
MAX_ROWS: Final = 10_000_000
MAX_FEATURES: Final = 1024
MAX_CLASSES: Final = 100
PREDICATE_TYPE: Final = "https://bastion.dev/attestations/differential-privacy/v1"

MECHANISMS: Final = {
    "logistic_regression": "diffprivlib.LogisticRegression (objective perturbation, "
    "Vector mechanism)",
    "gaussian_nb": "diffprivlib.GaussianNB (Laplace means and variances, geometric counts)",
    "random_forest": "diffprivlib.RandomForestClassifier (random trees, Permute-and-Flip leaves)",
}
_REFERENCES: Final = {
    "logistic_regression": "Chaudhuri, Monteleoni & Sarwate, Differentially private "
    "empirical risk minimization, JMLR 12 (2011)",
    "gaussian_nb": "Vaidya, Shafiq, Basu & Hong, Differentially private naive Bayes "
    "classification, WI-IAT (2013)",
    "random_forest": "Fletcher & Islam, Decision tree classification with differential "
    "privacy: a survey, ACM CSUR (2019); McKenna & Sheldon, Permute-and-Flip (2020)",
}


def _extra_missing(error: ImportError) -> ConfigError:
    return ConfigError(
        f"differential-privacy training needs the privacy extra ({error.name or error}); "
        "install it with: pip install 'bastion[privacy]'",
        code="privacy.extra_missing",
    )


@dataclass(frozen=True, slots=True)
class DpResult:
    """A trained DP model and its guarantee. `estimator` is a plain scikit-learn Pipeline."""

    estimator: Any
    epsilon: float  # what the run's accountant spent (≤ the request)
    delta: float
    mechanism: str  # short, for the budget ledger (≤ 128 characters)
    accountant: Mapping[str, Any]
    params: Mapping[str, Any]
    classes: tuple[Any, ...] = field(default=())

    def predicate(self) -> dict[str, Any]:
        """The guarantee as an attestation predicate (JSON, no data)."""
        return {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "mechanism": self.mechanism,
            "accountant": dict(self.accountant),
            "params": dict(self.params),
            "libraries": library_versions(),
        }


def dp_cost(model: str, epsilon: float, delta: float = 0.0) -> tuple[float, float]:
    """The (ε, δ) a `train_dp` run of `model` will spend, known *before* training, so the
    budget can be spent first. All three mechanisms are pure ε-DP: (ε, 0)."""
    _check_model(model)
    _check_privacy(epsilon, delta)
    return float(epsilon), 0.0


def train_dp(
    x: Any,
    y: Any,
    *,
    epsilon: float,
    delta: float = 0.0,
    model: str = "logistic_regression",
    bounds: tuple[Sequence[float], Sequence[float]],
    classes: Sequence[Any] | None = None,
    random_state: int | None = None,
    c: float = 1.0,
    n_estimators: int = 10,
    max_depth: int = 5,
) -> DpResult:
    """Train `model` on rows `x` (numeric, n x d) and labels `y` with (ε, δ)-DP.

    `bounds` is (lower, upper), one public value per feature; values outside are clipped.
    `delta` is what the caller allows; the built-in mechanisms spend none of it.
    `random_state` None (the default, and the only choice for a real release) draws the noise
    from the operating system's secure generator (diffprivlib uses `secrets.SystemRandom`);
    a fixed seed makes the noise reproducible — for tests only: whoever knows the seed can
    recompute the noise and subtract it, so the result records `noise: "seeded"`.

    Raises `InvalidInput` (`privacy.bad_data`, `privacy.bad_bounds`, `privacy.bad_amount`,
    `privacy.unknown_model`, `privacy.train_failed`), `BastionError` (`privacy.leak`,
    `privacy.export_mismatch`) and `ConfigError` (`privacy.extra_missing`).
    """
    _check_model(model)
    _check_privacy(epsilon, delta)
    matrix, labels = _check_data(x, y)
    lower, upper = _check_bounds(bounds, matrix.shape[1])
    label_set, classes_source = _classes(labels, classes)
    if (
        not (math.isfinite(c) and c > 0)
        or not 1 <= n_estimators <= 1000
        or not 1 <= max_depth <= 64
    ):
        raise InvalidInput(
            "c must be positive, n_estimators 1..1000, max_depth 1..64",
            code="privacy.bad_params",
        )
    try:
        from diffprivlib import BudgetAccountant  # type: ignore[import-untyped,unused-ignore]
        from diffprivlib.models import (  # type: ignore[import-untyped,unused-ignore]
            GaussianNB,
            LogisticRegression,
            RandomForestClassifier,
        )
        from diffprivlib.utils import PrivacyLeakWarning  # type: ignore[import-untyped,unused-ignore]
    except ImportError as error:
        raise _extra_missing(error) from None
    scaler = _bounds_scaler(lower, upper)
    scaled = scaler.transform(matrix)
    accountant = BudgetAccountant(epsilon=float(epsilon), delta=float(delta))
    params: dict[str, Any] = {
        "model": model,
        "reference": _REFERENCES[model],
        "features": int(matrix.shape[1]),
        "rows": int(matrix.shape[0]),
        "classes": [_native(v) for v in label_set],
        "classes_source": classes_source,
        "preprocessing": "clip to public bounds, map linearly onto [-1, 1] (MinMaxScaler "
        "fitted on the bounds only)",
        "noise": "secure (secrets.SystemRandom)" if random_state is None else "seeded",
    }
    if model == "logistic_regression":
        from sklearn.preprocessing import Normalizer  # type: ignore[import-untyped,unused-ignore]

        normaliser = Normalizer(norm="l2")
        features = normaliser.transform(scaled)
        dp_model: Any = LogisticRegression(
            epsilon=float(epsilon),
            data_norm=1.0,
            C=float(c),
            random_state=random_state,
            accountant=accountant,
        )
        params.update(
            preprocessing=params["preprocessing"] + ", then L2-normalise each row",
            data_norm=1.0,
            C=float(c),
        )
        steps: list[tuple[str, Any]] = [("bounds", scaler), ("normalise", normaliser)]
    elif model == "gaussian_nb":
        features = scaled
        width = matrix.shape[1]
        dp_model = GaussianNB(
            epsilon=float(epsilon),
            bounds=(-np.ones(width), np.ones(width)),
            random_state=random_state,
            accountant=accountant,
        )
        params.update(model_bounds=[-1.0, 1.0])
        steps = [("bounds", scaler)]
    else:
        features = scaled
        width = matrix.shape[1]
        dp_model = RandomForestClassifier(
            n_estimators=n_estimators,
            epsilon=float(epsilon),
            bounds=(-np.ones(width), np.ones(width)),
            classes=list(label_set),
            max_depth=max_depth,
            random_state=random_state,
            accountant=accountant,
        )
        params.update(model_bounds=[-1.0, 1.0], n_estimators=n_estimators, max_depth=max_depth)
        steps = [("bounds", scaler)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrivacyLeakWarning)
        # diffprivlib 0.6.6 passes an L-BFGS-B option SciPy deprecates: not ours to fix.
        warnings.filterwarnings(
            "ignore", message="scipy.optimize: The `disp`", category=DeprecationWarning
        )
        try:
            dp_model.fit(features, labels)
        except PrivacyLeakWarning as leak:
            raise BastionError(
                f"diffprivlib reports a privacy leak; refusing the run: {leak}",
                code="privacy.leak",
            ) from None
        except (ValueError, TypeError, ArithmeticError) as error:
            raise InvalidInput(
                f"DP training failed: {type(error).__name__}: {str(error)[:300]}",
                code="privacy.train_failed",
            ) from None
    spent_epsilon, spent_delta = (float(v) for v in accountant.total())
    if spent_epsilon > float(epsilon) * (1 + 1e-12) or spent_delta > float(delta) + 1e-18:
        raise BastionError(  # pragma: no cover - diffprivlib's accountant already refuses
            "the run spent more than it was given", code="privacy.overspent"
        )
    exported = _export(model, dp_model)
    if not np.array_equal(exported.predict(features), dp_model.predict(features)):
        raise BastionError(
            "the exported model does not predict what the DP model predicts",
            code="privacy.export_mismatch",
        )
    from sklearn.pipeline import Pipeline  # type: ignore[import-untyped,unused-ignore]

    pipeline = Pipeline([*steps, ("model", exported)])
    return DpResult(
        estimator=pipeline,
        epsilon=spent_epsilon,
        delta=spent_delta,
        mechanism=MECHANISMS[model],
        accountant={
            "library": "diffprivlib.BudgetAccountant",
            "composition": "sequential (slack 0)",
            "epsilon_cap": float(epsilon),
            "delta_cap": float(delta),
            "epsilon_spent": spent_epsilon,
            "delta_spent": spent_delta,
            "spends": [[float(e), float(d)] for e, d in accountant.spent_budget],
        },
        params=params,
        classes=tuple(_native(v) for v in label_set),
    )


def train_baseline(
    x: Any,
    y: Any,
    *,
    model: str = "logistic_regression",
    bounds: tuple[Sequence[float], Sequence[float]],
    random_state: int | None = None,
    c: float = 1.0,
    n_estimators: int = 10,
    max_depth: int = 5,
) -> Any:
    """The same model and preprocessing *without* differential privacy (scikit-learn), to
    measure what the guarantee costs in accuracy. Never registered."""
    _check_model(model)
    matrix, labels = _check_data(x, y)
    lower, upper = _check_bounds(bounds, matrix.shape[1])
    try:
        from sklearn.ensemble import RandomForestClassifier  # type: ignore[import-untyped,unused-ignore]
        from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped,unused-ignore]
        from sklearn.naive_bayes import GaussianNB  # type: ignore[import-untyped,unused-ignore]
        from sklearn.pipeline import Pipeline  # type: ignore[import-untyped,unused-ignore]
        from sklearn.preprocessing import Normalizer  # type: ignore[import-untyped,unused-ignore]
    except ImportError as error:  # pragma: no cover - scikit-learn is a core dependency
        raise _extra_missing(error) from None
    steps: list[tuple[str, Any]] = [("bounds", _bounds_scaler(lower, upper))]
    estimator: Any
    if model == "logistic_regression":
        steps.append(("normalise", Normalizer(norm="l2")))
        estimator = LogisticRegression(C=float(c), max_iter=1000)
    elif model == "gaussian_nb":
        estimator = GaussianNB()
    else:
        estimator = RandomForestClassifier(
            n_estimators=n_estimators, max_depth=max_depth, random_state=random_state
        )
    return Pipeline([*steps, ("model", estimator)]).fit(matrix, labels)


def accuracy(estimator: Any, x: Any, y: Any) -> float:
    """Share of rows whose predicted label is the true one."""
    matrix, labels = _check_data(x, y, minimum=1)
    return float(np.mean(np.asarray(estimator.predict(matrix)) == labels))


def holdout_split(y: Any, fraction: float, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, test): a stratified split keeping `fraction` of each class for
    testing (at least one row of each class with two or more rows). `fraction` 0 keeps
    every row for training (test empty)."""
    labels = np.asarray(y)
    if not 0.0 <= fraction < 1.0:
        raise InvalidInput("the holdout fraction must be in [0, 1)", code="privacy.bad_params")
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for label in sorted(set(labels.tolist()), key=str):
        rows = np.flatnonzero(labels == label)
        rng.shuffle(rows)
        n_test = round(len(rows) * fraction)
        if fraction > 0 and len(rows) >= 2:
            n_test = min(max(n_test, 1), len(rows) - 1)
        test.append(rows[:n_test])
        train.append(rows[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries a DP result depends on (for its attestation)."""
    out: dict[str, str | None] = {}
    for name in ("diffprivlib", "scikit-learn", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def bounds_from_contract(
    contract: Mapping[str, Any],
) -> tuple[list[str], tuple[list[float], list[float]]]:
    """Feature names and (lower, upper) from an input-contract document (its `fields`, each
    with `type` number, integer or boolean; booleans are [0, 1]). A field without finite
    `min` and `max`, or of another type, is `InvalidInput` (`privacy.unsupported_feature`)."""
    fields = contract.get("fields") if isinstance(contract, Mapping) else None
    if not isinstance(fields, list) or not fields:
        raise InvalidInput("the input contract has no fields", code="privacy.bad_bounds")
    names: list[str] = []
    lower: list[float] = []
    upper: list[float] = []
    for spec in fields:
        name = str(spec.get("name"))
        kind = spec.get("type")
        if kind == "boolean":
            lo, hi = 0.0, 1.0
        elif kind in ("number", "integer"):
            lo, hi = spec.get("min"), spec.get("max")
            if not all(isinstance(v, int | float) and math.isfinite(v) for v in (lo, hi)):
                raise InvalidInput(
                    f"field {name!r} has no finite min and max in the contract; DP training "
                    "needs public bounds for every feature",
                    code="privacy.unsupported_feature",
                )
        else:
            raise InvalidInput(
                f"field {name!r} is of type {kind}; DP training takes numeric and boolean "
                "features only",
                code="privacy.unsupported_feature",
            )
        names.append(name)
        lower.append(float(lo))
        upper.append(float(hi))
    return names, (lower, upper)


# -- internals ---------------------------------------------------------------------------------


def _check_model(model: str) -> None:
    if model not in MODELS:
        raise InvalidInput(
            f"unknown DP model {str(model)[:64]!r}; choose one of {', '.join(MODELS)}",
            code="privacy.unknown_model",
        )


def _check_privacy(epsilon: float, delta: float) -> None:
    for name, value, low, high in (
        ("epsilon", epsilon, 0.0, MAX_EPSILON),
        ("delta", delta, 0.0, MAX_DELTA),
    ):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InvalidInput(f"{name} must be a finite number", code="privacy.bad_amount")
        if value < low or value > high or (name == "epsilon" and value <= 0):
            raise InvalidInput(
                f"{name} must be in {'(' if name == 'epsilon' else '['}{low:g}, {high:g}]",
                code="privacy.bad_amount",
            )


def _check_data(x: Any, y: Any, minimum: int = MIN_ROWS) -> tuple[np.ndarray, np.ndarray]:
    try:
        matrix = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput("the features must be numbers", code="privacy.bad_data") from None
    labels = np.asarray(y)
    if matrix.ndim != 2 or labels.ndim != 1 or matrix.shape[0] != labels.shape[0]:
        raise InvalidInput("expected an n x d feature matrix and n labels", code="privacy.bad_data")
    n, d = matrix.shape
    if not minimum <= n <= MAX_ROWS or not 1 <= d <= MAX_FEATURES:
        raise InvalidInput(
            f"DP training takes {minimum} to {MAX_ROWS} rows and 1 to {MAX_FEATURES} features "
            f"(got {n} x {d})",
            code="privacy.bad_data",
        )
    if not np.isfinite(matrix).all():
        raise InvalidInput(
            "the features hold NaN or infinity (missing values are not supported)",
            code="privacy.bad_data",
        )
    return matrix, labels


def _check_bounds(
    bounds: tuple[Sequence[float], Sequence[float]], width: int
) -> tuple[np.ndarray, np.ndarray]:
    try:
        lower = np.asarray(bounds[0], dtype=np.float64).reshape(-1)
        upper = np.asarray(bounds[1], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, IndexError):
        raise InvalidInput(
            "bounds must be (lower, upper) arrays", code="privacy.bad_bounds"
        ) from None
    if lower.shape != (width,) or upper.shape != (width,):
        raise InvalidInput(
            f"bounds must hold one lower and one upper value per feature ({width})",
            code="privacy.bad_bounds",
        )
    if not (np.isfinite(lower).all() and np.isfinite(upper).all()) or (lower > upper).any():
        raise InvalidInput(
            "bounds must be finite with lower ≤ upper for every feature", code="privacy.bad_bounds"
        )
    return lower, upper


def _classes(labels: np.ndarray, classes: Sequence[Any] | None) -> tuple[np.ndarray, str]:
    if classes is None:
        found = np.unique(labels)
        source = "data (the label set is treated as public)"
    else:
        found = np.unique(np.asarray(list(classes)))
        if not np.isin(labels, found).all():
            raise InvalidInput("y holds labels outside `classes`", code="privacy.bad_data")
        source = "given"
    if not 2 <= len(found) <= MAX_CLASSES:
        raise InvalidInput(
            f"a classifier needs 2 to {MAX_CLASSES} classes (got {len(found)})",
            code="privacy.bad_data",
        )
    return found, source


def _bounds_scaler(lower: np.ndarray, upper: np.ndarray) -> Any:
    """A MinMaxScaler onto [-1, 1] with clipping, fitted on the two bound rows only."""
    from sklearn.preprocessing import MinMaxScaler  # type: ignore[import-untyped,unused-ignore]

    return MinMaxScaler(feature_range=(-1.0, 1.0), clip=True).fit(np.vstack([lower, upper]))


def _export(model: str, fitted: Any) -> Any:
    """The scikit-learn estimator equivalent to a fitted diffprivlib one (post-processing)."""
    if model == "logistic_regression":
        from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped,unused-ignore]

        plain: Any = LogisticRegression(C=fitted.C)
        for name in ("coef_", "intercept_", "classes_", "n_features_in_", "n_iter_"):
            setattr(plain, name, np.array(getattr(fitted, name)))
        plain.n_features_in_ = int(fitted.n_features_in_)
        return plain
    if model == "gaussian_nb":
        from sklearn.naive_bayes import GaussianNB  # type: ignore[import-untyped,unused-ignore]

        plain = GaussianNB(var_smoothing=fitted.var_smoothing)
        for name in ("classes_", "theta_", "var_", "class_prior_", "class_count_"):
            setattr(plain, name, np.array(getattr(fitted, name)))
        plain.epsilon_ = float(fitted.epsilon_)
        plain.n_features_in_ = int(fitted.n_features_in_)
        return plain
    from sklearn.ensemble import RandomForestClassifier  # type: ignore[import-untyped,unused-ignore]
    from sklearn.tree import DecisionTreeClassifier  # type: ignore[import-untyped,unused-ignore]

    width = int(fitted.n_features_in_)
    trees = []
    for tree in fitted.estimators_:
        plain_tree = DecisionTreeClassifier(max_depth=tree.max_depth)
        plain_tree.tree_ = tree.tree_
        plain_tree.classes_ = np.array(tree.classes_)
        plain_tree.n_classes_ = int(tree.n_classes_)
        plain_tree.n_outputs_ = 1
        plain_tree.n_features_in_ = width
        plain_tree.max_features_ = width
        trees.append(plain_tree)
    forest = RandomForestClassifier(n_estimators=len(trees), max_depth=fitted.max_depth)
    forest.estimators_ = trees
    forest.estimator_ = DecisionTreeClassifier(max_depth=fitted.max_depth)
    forest.classes_ = np.array(fitted.classes_)
    forest.n_classes_ = int(fitted.n_classes_)
    forest.n_outputs_ = 1
    forest.n_features_in_ = width
    return forest


def _native(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


__all__ = [
    "MECHANISMS",
    "MODELS",
    "PREDICATE_TYPE",
    "DpResult",
    "accuracy",
    "bounds_from_contract",
    "dp_cost",
    "holdout_split",
    "library_versions",
    "train_baseline",
    "train_dp",
]
