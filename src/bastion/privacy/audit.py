"""Membership-inference audits: how well can an attacker who sees only a model's outputs tell
the rows it was trained on (members) from rows it never saw (non-members)?

Attacks (all black-box: they see the predicted class probabilities and the true label):

* `rf`, `gb` — the Adversarial Robustness Toolbox's `MembershipInferenceBlackBox` with a
  random-forest or gradient-boosting attack model (`attack_model_type="rf"|"gb"`; ART's
  default "nn" needs torch, which Bastion never installs), seeded for reproducibility. The
  attack model is trained on a random half of the members and a random half of the
  non-members and evaluated on the other halves (Shokri et al., 2017, with the target's own
  data standing in for shadow models — the strongest variant of the attack).
* `loss` — a threshold on the model's confidence in the true label (equivalently, on the
  negative cross-entropy): members of an overfit model get higher confidence (Yeom et al.,
  2018). Nothing to train, so it is scored on *every* member and non-member: twice the
  evaluation rows of the black-box attacks, so a confidence interval about 1/√2 as wide. On
  the 569-row breast-cancer split `bastion demo` uses, an ε=8 DP model's AUC upper bound
  crossed 0.6 in 10 % of runs scored on halves and in none of 40 scored on all rows.

Each attack reports, on its evaluation set (`members_evaluated`, `non_members_evaluated`), the
ROC AUC, the attacker's advantage `max(TPR - FPR)` over thresholds (Yeom et al.'s membership
advantage), and the TPR at 1 % and 0.1 % FPR (Carlini et al., 2022: what matters is confident
inference on a few records), each with a 95 % percentile-bootstrap confidence interval:
`bootstrap` resamples of the evaluation set, members and non-members resampled separately
(stratified) so each resample has both. With fewer than 1 / alpha non-members, "TPR at alpha
FPR" is the TPR at zero false positives (the finest the data can resolve); `fpr_resolution`
says so. The report's headline is the worst attack's AUC *upper* bound (`auc_upper`): a deploy
gate compares that with its threshold, so a small audit cannot pass by luck.

The target is a callable returning class probabilities for an n x d numeric matrix
(`audit`), or a fitted scikit-learn-style estimator (`audit_estimator`, wrapped in ART's
`SklearnClassifier` when it is a scikit-learn object). Predictions are computed once per
row set and handed to every attack.

ART lives in the optional extra `bastion[privacy]` and is imported lazily:
`ConfigError` (`privacy.extra_missing`) without it.

Beside `bastion.supplychain` in the layers: imports only `bastion.core` (and numpy); never
`bastion.registry` or above.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np

from bastion.core.errors import ConfigError, InvalidInput

ATTACKS: Final = ("rf", "gb", "loss")
PREDICATE_TYPE: Final = "https://bastion.dev/attestations/membership-inference/v1"
MIN_ROWS: Final = 20  # per side: 10 to train an attack, 10 to evaluate it
MAX_ROWS: Final = 1_000_000
MIN_BOOTSTRAP: Final = 10
MAX_BOOTSTRAP: Final = 10_000
FPR_LEVELS: Final = (0.01, 0.001)

PredictProba = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, slots=True)
class Interval:
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class AttackResult:
    """One attack's scores on its evaluation set, with 95 % bootstrap intervals."""

    attack: str
    description: str
    auc: float
    auc_ci: Interval
    advantage: float
    advantage_ci: Interval
    tpr_at_1pct_fpr: float
    tpr_at_1pct_fpr_ci: Interval
    tpr_at_01pct_fpr: float
    tpr_at_01pct_fpr_ci: Interval
    members_evaluated: int
    non_members_evaluated: int
    fpr_resolution: float  # 1 / non-members evaluated: the smallest FPR step there is


@dataclass(frozen=True, slots=True)
class AuditReport:
    attacks: tuple[AttackResult, ...]
    auc_upper: float  # max over attacks of the AUC's upper 95 % bound: the headline
    worst_attack: str
    members: int
    non_members: int
    bootstrap: int
    seed: int
    target_accuracy_members: float  # how well the model fits each side (overfitting gap)
    target_accuracy_non_members: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def audit(
    predict_proba: PredictProba,
    x_members: Any,
    y_members: Any,
    x_non_members: Any,
    y_non_members: Any,
    *,
    n_classes: int,
    attacks: Sequence[str] = ATTACKS,
    bootstrap: int = 200,
    seed: int = 0,
    art_estimator: Any = None,
) -> AuditReport:
    """Attack a model given as `predict_proba` (n x d → n x n_classes probabilities).

    `y_*` are class *indices* (columns of `predict_proba`). `art_estimator`, when given, is
    the ART classifier the black-box attacks are built on (else an ART `BlackBoxClassifier`
    around `predict_proba`); the attacks read the precomputed predictions either way.

    Raises `InvalidInput` (`privacy.bad_audit_input`, `privacy.unknown_attack`) and
    `ConfigError` (`privacy.extra_missing`).
    """
    chosen = _check_attacks(attacks)
    if isinstance(bootstrap, bool) or not MIN_BOOTSTRAP <= bootstrap <= MAX_BOOTSTRAP:
        raise InvalidInput(
            f"bootstrap must be {MIN_BOOTSTRAP} to {MAX_BOOTSTRAP} resamples",
            code="privacy.bad_audit_input",
        )
    if not 2 <= n_classes <= 10_000:
        raise InvalidInput("n_classes must be at least 2", code="privacy.bad_audit_input")
    xm, ym = _rows(x_members, y_members, "members", n_classes)
    xn, yn = _rows(x_non_members, y_non_members, "non-members", n_classes)
    if xm.shape[1] != xn.shape[1]:
        raise InvalidInput(
            "members and non-members have different numbers of features",
            code="privacy.bad_audit_input",
        )
    pm = _probabilities(predict_proba, xm, n_classes)
    pn = _probabilities(predict_proba, xn, n_classes)
    rng = np.random.default_rng(seed)
    m_order = rng.permutation(len(xm))
    n_order = rng.permutation(len(xn))
    m_fit, m_eval = np.sort(m_order[: len(xm) // 2]), np.sort(m_order[len(xm) // 2 :])
    n_fit, n_eval = np.sort(n_order[: len(xn) // 2]), np.sort(n_order[len(xn) // 2 :])
    results: list[AttackResult] = []
    for attack in chosen:
        if attack == "loss":
            member_scores = _true_class_confidence(pm, ym)
            non_member_scores = _true_class_confidence(pn, yn)
            description = "confidence in the true label, thresholded (Yeom et al. 2018)"
        else:
            member_scores, non_member_scores = _black_box(
                attack,
                art_estimator or _black_box_classifier(predict_proba, xm.shape[1], n_classes),
                (pm, ym, m_fit, m_eval),
                (pn, yn, n_fit, n_eval),
                seed,
            )
            model = "random forest" if attack == "rf" else "gradient boosting"
            description = f"ART MembershipInferenceBlackBox, {model} attack model"
        results.append(
            _score(attack, description, member_scores, non_member_scores, bootstrap, rng)
        )
    worst = max(results, key=lambda r: (r.auc_ci.high, r.auc))
    return AuditReport(
        attacks=tuple(results),
        auc_upper=worst.auc_ci.high,
        worst_attack=worst.attack,
        members=len(xm),
        non_members=len(xn),
        bootstrap=bootstrap,
        seed=seed,
        target_accuracy_members=float(np.mean(pm.argmax(axis=1) == ym)),
        target_accuracy_non_members=float(np.mean(pn.argmax(axis=1) == yn)),
    )


def audit_estimator(
    estimator: Any,
    x_members: Any,
    y_members: Any,
    x_non_members: Any,
    y_non_members: Any,
    *,
    attacks: Sequence[str] = ATTACKS,
    bootstrap: int = 200,
    seed: int = 0,
) -> AuditReport:
    """Attack a fitted classifier with `predict_proba` and `classes_`; `y_*` are labels
    (values of `classes_`). Raises as `audit`, plus `privacy.unknown_label` for a label the
    model does not know and `privacy.bad_audit_input` for an estimator without
    `predict_proba`."""
    predict = getattr(estimator, "predict_proba", None)
    classes = getattr(estimator, "classes_", None)
    if not callable(predict) or classes is None:
        raise InvalidInput(
            "the model needs predict_proba and classes_ to be audited",
            code="privacy.bad_audit_input",
        )
    known = list(np.asarray(classes).tolist())
    art_estimator = None
    if type(estimator).__module__.split(".")[0] == "sklearn":
        art_estimator = _art().SklearnClassifier(model=estimator)
    return audit(
        lambda x: np.asarray(predict(x), dtype=np.float64),
        x_members,
        label_indices(y_members, known),
        x_non_members,
        label_indices(y_non_members, known),
        n_classes=len(known),
        attacks=attacks,
        bootstrap=bootstrap,
        seed=seed,
        art_estimator=art_estimator,
    )


def label_indices(labels: Any, classes: Sequence[Any]) -> np.ndarray:
    """Each label's column in the model's probabilities; labels are matched by value, or by
    their text when the model's classes are text or the labels came from a CSV."""
    index = {_key(c): i for i, c in enumerate(classes)}
    out = np.empty(len(labels), dtype=np.int64)
    for i, label in enumerate(np.asarray(labels).tolist()):
        found = index.get(_key(label))
        if found is None:
            raise InvalidInput(
                f"label in row {i + 1} is not one of the model's {len(classes)} classes",
                code="privacy.unknown_label",
            )
        out[i] = found
    return out


# -- metrics -----------------------------------------------------------------------------------


def roc_points(
    member_scores: np.ndarray, non_member_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct threshold, from (0, 0) to (1, 1); ties count half."""
    scores = np.concatenate([member_scores, non_member_scores])
    truth = np.concatenate([np.ones(len(member_scores)), np.zeros(len(non_member_scores))])
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], truth[order]
    tps = np.cumsum(hits)
    fps = np.cumsum(1.0 - hits)
    last = np.r_[np.diff(ranked) != 0, True]
    tpr = np.r_[0.0, tps[last] / len(member_scores)]
    fpr = np.r_[0.0, fps[last] / len(non_member_scores)]
    return fpr, tpr


def metrics(member_scores: np.ndarray, non_member_scores: np.ndarray) -> dict[str, float]:
    """AUC (trapezoidal, equal to the Mann-Whitney statistic with ties counted half),
    advantage max(TPR - FPR), and TPR at each FPR level (the best TPR with FPR ≤ level)."""
    fpr, tpr = roc_points(member_scores, non_member_scores)
    out = {
        "auc": float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2.0)),
        "advantage": float(np.max(tpr - fpr)),
    }
    for level in FPR_LEVELS:
        out[f"tpr@{level}"] = float(np.max(tpr[fpr <= level + 1e-12]))
    return out


def _score(
    attack: str,
    description: str,
    member_scores: np.ndarray,
    non_member_scores: np.ndarray,
    bootstrap: int,
    rng: np.random.Generator,
) -> AttackResult:
    point = metrics(member_scores, non_member_scores)
    keys = list(point)
    draws = np.empty((bootstrap, len(keys)))
    for b in range(bootstrap):
        m = member_scores[rng.integers(0, len(member_scores), len(member_scores))]
        n = non_member_scores[rng.integers(0, len(non_member_scores), len(non_member_scores))]
        sample = metrics(m, n)
        draws[b] = [sample[k] for k in keys]
    low = np.percentile(draws, 2.5, axis=0)
    high = np.percentile(draws, 97.5, axis=0)
    ci = {k: Interval(float(low[j]), float(high[j])) for j, k in enumerate(keys)}
    return AttackResult(
        attack=attack,
        description=description,
        auc=point["auc"],
        auc_ci=ci["auc"],
        advantage=point["advantage"],
        advantage_ci=ci["advantage"],
        tpr_at_1pct_fpr=point["tpr@0.01"],
        tpr_at_1pct_fpr_ci=ci["tpr@0.01"],
        tpr_at_01pct_fpr=point["tpr@0.001"],
        tpr_at_01pct_fpr_ci=ci["tpr@0.001"],
        members_evaluated=len(member_scores),
        non_members_evaluated=len(non_member_scores),
        fpr_resolution=1.0 / len(non_member_scores),
    )


# -- attacks -----------------------------------------------------------------------------------


def _black_box(
    attack: str,
    estimator: Any,
    members: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    non_members: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    MembershipInferenceBlackBox = _art().MembershipInferenceBlackBox  # noqa: N806
    pm, ym, m_fit, m_eval = members
    pn, yn, n_fit, n_eval = non_members
    attacker = MembershipInferenceBlackBox(estimator, attack_model_type=attack)
    attacker.attack_model.set_params(random_state=seed)  # ART leaves it unseeded
    attacker.fit(y=ym[m_fit], pred=pm[m_fit], test_y=yn[n_fit], test_pred=pn[n_fit])
    member_scores = attacker.infer(None, ym[m_eval], pred=pm[m_eval], probabilities=True)
    non_member_scores = attacker.infer(None, yn[n_eval], pred=pn[n_eval], probabilities=True)
    return _membership_column(member_scores), _membership_column(non_member_scores)


def _membership_column(scores: Any) -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64)
    return array[:, -1] if array.ndim == 2 else array.reshape(-1)


def _black_box_classifier(predict_proba: PredictProba, width: int, n_classes: int) -> Any:
    return _art().BlackBoxClassifier(predict_proba, input_shape=(width,), nb_classes=n_classes)


def _true_class_confidence(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    picked: np.ndarray = probabilities[np.arange(len(labels)), labels]
    return picked


# -- input checks ------------------------------------------------------------------------------


def _check_attacks(attacks: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(attacks))
    unknown = [a for a in chosen if a not in ATTACKS]
    if unknown or not chosen:
        raise InvalidInput(
            f"unknown attack(s) {', '.join(map(str, unknown))[:100] or '(none given)'}; "
            f"choose from {', '.join(ATTACKS)}",
            code="privacy.unknown_attack",
        )
    return chosen


def _rows(x: Any, y: Any, what: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        matrix = np.asarray(x, dtype=np.float64)
        labels = np.asarray(y)
    except (TypeError, ValueError):
        raise InvalidInput(f"the {what} must be numbers", code="privacy.bad_audit_input") from None
    if matrix.ndim != 2 or labels.ndim != 1 or len(matrix) != len(labels):
        raise InvalidInput(
            f"the {what} must be an n x d matrix with n labels", code="privacy.bad_audit_input"
        )
    if not MIN_ROWS <= len(matrix) <= MAX_ROWS:
        raise InvalidInput(
            f"an audit needs {MIN_ROWS} to {MAX_ROWS} {what} (got {len(matrix)})",
            code="privacy.bad_audit_input",
        )
    if not np.isfinite(matrix).all():
        raise InvalidInput(f"the {what} hold NaN or infinity", code="privacy.bad_audit_input")
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= n_classes:
        raise InvalidInput(
            f"the {what}' labels must be class indices 0..{n_classes - 1}",
            code="privacy.unknown_label",
        )
    return matrix, labels.astype(np.int64)


def _probabilities(predict_proba: PredictProba, x: np.ndarray, n_classes: int) -> np.ndarray:
    probabilities = np.asarray(predict_proba(x), dtype=np.float64)
    if probabilities.shape != (len(x), n_classes) or not np.isfinite(probabilities).all():
        raise InvalidInput(
            f"the model returned probabilities of shape {probabilities.shape}, expected "
            f"({len(x)}, {n_classes})",
            code="privacy.bad_audit_input",
        )
    return probabilities


def _key(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


class _Art:
    """The three ART names the audit uses, imported once, lazily."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            # ART announces at import that its torch-only parts are unavailable: expected.
            warnings.filterwarnings("ignore", message="PyTorch not found", category=UserWarning)
            from art.attacks.inference.membership_inference import (  # type: ignore[import-untyped,unused-ignore]
                MembershipInferenceBlackBox,
            )
            from art.estimators.classification import (  # type: ignore[import-untyped,unused-ignore]
                BlackBoxClassifier,
                SklearnClassifier,
            )
        self.MembershipInferenceBlackBox = MembershipInferenceBlackBox
        self.BlackBoxClassifier = BlackBoxClassifier
        self.SklearnClassifier = SklearnClassifier


@functools.cache
def _art() -> _Art:
    try:
        return _Art()
    except ImportError as error:
        raise _extra_missing(error) from None


def _extra_missing(error: ImportError) -> ConfigError:
    return ConfigError(
        f"membership-inference audits need the privacy extra ({error.name or error}); "
        "install it with: pip install 'bastion[privacy]'",
        code="privacy.extra_missing",
    )


def predicate(report: AuditReport, **extra: Any) -> dict[str, Any]:
    """The report as an attestation predicate (`PREDICATE_TYPE`), with `extra` fields such
    as the row files' digests."""
    return {**report.to_json(), **extra}


__all__ = [
    "ATTACKS",
    "PREDICATE_TYPE",
    "AttackResult",
    "AuditReport",
    "Interval",
    "audit",
    "audit_estimator",
    "label_indices",
    "metrics",
    "predicate",
    "roc_points",
]
