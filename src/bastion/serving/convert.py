"""scikit-learn → ONNX at registration time, and the proof that the conversion is faithful.

The developer's CLI converts a fitted estimator before registering it, so the gateway serves
it with ONNX Runtime (microseconds per row, no pickle anywhere) instead of scikit-learn
(milliseconds). The model's inputs are derived from the version's `InputContract`, exactly as
the ONNX loader (`bastion.serving.loaders`) maps them back:

* an all-numeric contract (number, integer, boolean) → one `FloatTensorType([None, F])` named
  `input`, fed with `Batch.matrix(np.float32)`;
* a contract with string fields → one `[None, 1]` input per field, named after it:
  `StringTensorType` for strings, `FloatTensorType` for numbers (integers and booleans too:
  the batch holds them as float64 and the estimator was fitted on floats, and an int64 input
  next to a float one would break skl2onnx's column concatenation). The estimator is then
  expected to take an object matrix in contract order, e.g. a `ColumnTransformer` selecting
  columns by integer index.

Classifiers are converted with `zipmap=False` (`label` and `probabilities` tensors instead of
a list of dicts per row). The ONNX `metadata_props` record what the loader cannot recover
from the graph: `bastion.classes` (JSON class labels in probability-column order),
`bastion.contract_fields` (JSON field names), `bastion.task`, and `bastion.probabilities`
(whether the `probabilities` output holds `predict_proba` or decision scores).

`check_equivalent` runs both on a batch: labels must agree exactly, probabilities within
`atol`, regression values within `atol + rtol·|value|` (ONNX computes in float32).

Imports `bastion.serving.loaders`, `bastion.registry` (the contract) and `bastion.core`;
skl2onnx and scikit-learn are imported when first needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bastion.core.errors import InvalidInput
from bastion.serving.loaders import (
    METADATA_CLASSES,
    METADATA_FIELDS,
    METADATA_PROBABILITIES,
    METADATA_TASK,
    ModelField,
    OnnxPredictor,
    Prediction,
    SklearnPredictor,
    fields_of,
    onnx_predictor,
)

if TYPE_CHECKING:
    from bastion.registry.contract import Batch, InputContract

__all__ = [
    "ConversionFailed",
    "EquivalenceReport",
    "check_equivalent",
    "convert_skops",
    "sample_records",
    "to_onnx",
]

_REASON_CHARS = 1000


class ConversionFailed(InvalidInput):
    """The estimator cannot be converted (`convert.unsupported`) or the ONNX model does not
    predict what the estimator predicts (`convert.mismatch`)."""

    default_code = "convert.unsupported"


@dataclass(frozen=True, slots=True)
class EquivalenceReport:
    """How closely the ONNX model reproduces the estimator on one batch."""

    rows: int
    task: str
    label_mismatches: int
    max_abs_prob_diff: float | None
    max_abs_value_diff: float | None
    atol: float
    rtol: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "task": self.task,
            "label_mismatches": self.label_mismatches,
            "max_abs_prob_diff": self.max_abs_prob_diff,
            "max_abs_value_diff": self.max_abs_value_diff,
            "atol": self.atol,
            "rtol": self.rtol,
        }


def to_onnx(estimator: Any, contract: InputContract, *, target_opset: int | None = None) -> bytes:
    """Convert a fitted scikit-learn estimator (or pipeline) for `contract`; the serialized
    ONNX model, checked by `onnx.checker`.

    Raises `ConversionFailed(code="convert.unsupported")` with skl2onnx's reason when an
    estimator (or a step of it) has no converter, or when the result would not be servable.
    """
    import onnx
    from sklearn.base import is_classifier  # type: ignore[import-untyped]

    fields = fields_of(contract)
    classifier = bool(is_classifier(estimator))
    model = _convert(estimator, fields, classifier, target_opset)
    outputs = {o.name: o for o in model.graph.output}
    maps = sorted(n for n, o in outputs.items() if not o.type.HasField("tensor_type"))
    if maps:
        raise ConversionFailed(
            f"the converted model returns sequences of maps ({', '.join(maps)}), which the "
            "gateway does not serve",
            code="convert.unsupported",
            details={"estimator": type(estimator).__name__, "outputs": maps},
        )
    props = {p.key: p.value for p in model.metadata_props}
    props[METADATA_FIELDS] = json.dumps([f.name for f in fields])
    props[METADATA_TASK] = "classification" if classifier else "regression"
    if classifier:
        classes = getattr(estimator, "classes_", None)
        if classes is not None:
            props[METADATA_CLASSES] = json.dumps(np.asarray(classes).tolist())
        has_proba = callable(getattr(estimator, "predict_proba", None))
        props[METADATA_PROBABILITIES] = "true" if has_proba else "false"
    onnx.helper.set_model_props(model, props)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        raise ConversionFailed(
            f"skl2onnx produced an invalid model: {str(error)[:_REASON_CHARS]}",
            code="convert.unsupported",
            details={"estimator": type(estimator).__name__},
        ) from error
    data: bytes = model.SerializeToString()
    return data


def _convert(
    estimator: Any, fields: tuple[ModelField, ...], classifier: bool, target_opset: int | None
) -> Any:
    from skl2onnx import convert_sklearn  # type: ignore[import-untyped]
    from skl2onnx.common.data_types import (  # type: ignore[import-untyped]
        FloatTensorType,
        StringTensorType,
    )

    initial: list[tuple[str, Any]]
    if any(f.text for f in fields):
        initial = [
            (f.name, StringTensorType([None, 1]) if f.text else FloatTensorType([None, 1]))
            for f in fields
        ]
    else:
        initial = [("input", FloatTensorType([None, len(fields)]))]
    options = {id(estimator): {"zipmap": False}} if classifier else None
    try:
        try:
            return convert_sklearn(
                estimator, initial_types=initial, options=options, target_opset=target_opset
            )
        except NameError as error:
            # Classifiers whose converter has no ZipMap (LinearSVC, RidgeClassifier) refuse
            # the option; they already return plain tensors.
            if options is None or "'zipmap'" not in str(error):
                raise
            return convert_sklearn(estimator, initial_types=initial, target_opset=target_opset)
    except Exception as error:  # skl2onnx raises many types; all mean "cannot convert"
        reason = f"{type(error).__name__}: {error}"[:_REASON_CHARS]
        raise ConversionFailed(
            f"{type(estimator).__name__} cannot be converted to ONNX ({reason})",
            code="convert.unsupported",
            details={"estimator": type(estimator).__name__, "reason": reason},
        ) from error


def check_equivalent(
    estimator: Any,
    onnx_bytes: bytes,
    batch: Batch,
    *,
    atol: float = 1e-4,
    rtol: float = 1e-5,
) -> EquivalenceReport:
    """Predict `batch` with the estimator and with ONNX Runtime on `onnx_bytes`; return the
    report when labels agree exactly, probabilities within `atol` and regression values
    within `atol + rtol·|value|`, else raise `ConversionFailed(code="convert.mismatch")` with
    the numbers in `details`. The field order is the one recorded in the model
    (`bastion.contract_fields`), else the batch's."""
    import onnx

    model = onnx.load_model_from_string(onnx_bytes)
    props = {p.key: p.value for p in model.metadata_props}
    names = json.loads(props[METADATA_FIELDS]) if METADATA_FIELDS in props else None
    if not isinstance(names, list) or set(names) != set(batch.columns):
        names = list(batch.columns)
    fields = tuple(
        ModelField(str(name), np.asarray(batch.columns[name]).dtype == object) for name in names
    )
    ours: OnnxPredictor = onnx_predictor(onnx_bytes, fields, path="converted.onnx")
    theirs = SklearnPredictor(estimator, fields, kind="sklearn", path="estimator")
    return _compare(ours.predict(batch), theirs.predict(batch), batch.rows, atol, rtol)


def _compare(
    onnx_out: Prediction, sk_out: Prediction, rows: int, atol: float, rtol: float
) -> EquivalenceReport:
    problems: list[str] = []
    mismatches = 0
    prob_diff: float | None = None
    value_diff: float | None = None
    if "label" in sk_out.outputs:
        task = "classification"
        ref = np.asarray(sk_out.outputs["label"])
        got = np.asarray(onnx_out.outputs.get("label", np.array([])))
        if got.shape != ref.shape:
            mismatches = rows
            problems.append(f"label shape {got.shape} vs {ref.shape}")
        else:
            mismatches = int(np.count_nonzero(got.astype(object) != ref.astype(object)))
            if mismatches:
                problems.append(f"{mismatches} of {rows} labels differ")
        if "probabilities" in sk_out.outputs:
            ref_p = np.asarray(sk_out.outputs["probabilities"], dtype=np.float64)
            got_p = onnx_out.outputs.get("probabilities")
            if got_p is None or np.shape(got_p) != ref_p.shape:
                problems.append("probabilities missing or of another shape")
            else:
                prob_diff = float(np.max(np.abs(np.asarray(got_p, np.float64) - ref_p)))
                if not prob_diff <= atol:
                    problems.append(f"probabilities differ by up to {prob_diff:.3g} > {atol:g}")
    else:
        task = "regression"
        ref_v = np.asarray(sk_out.outputs["value"], dtype=np.float64)
        got_v = onnx_out.outputs.get("value")
        if got_v is None or np.shape(got_v) != ref_v.shape:
            problems.append("values missing or of another shape")
        else:
            diff = np.abs(np.asarray(got_v, np.float64) - ref_v)
            value_diff = float(np.max(diff))
            if not np.all(diff <= atol + rtol * np.abs(ref_v)):
                problems.append(f"values differ by up to {value_diff:.3g}")
    report = EquivalenceReport(
        rows=rows,
        task=task,
        label_mismatches=mismatches,
        max_abs_prob_diff=prob_diff,
        max_abs_value_diff=value_diff,
        atol=atol,
        rtol=rtol,
    )
    if problems:
        raise ConversionFailed(
            f"the ONNX model does not reproduce the estimator: {'; '.join(problems)}",
            code="convert.mismatch",
            details=report.to_dict(),
        )
    return report


def sample_records(
    contract: InputContract, rows: int = 256, *, seed: int = 0
) -> list[dict[str, Any]]:
    """Rows inside the contract (uniform over each numeric field's training range, drawn from
    its categories), for an equivalence check when no training data is at hand."""
    from bastion.registry.contract import FieldType

    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = [{} for _ in range(rows)]
    for spec in contract.fields:
        low = spec.minimum if spec.minimum is not None else -1.0
        high = spec.maximum if spec.maximum is not None else 1.0
        for row in out:
            if spec.type is FieldType.STRING:
                row[spec.name] = str(rng.choice(spec.categories)) if spec.categories else "a"
            elif spec.type is FieldType.BOOLEAN:
                row[spec.name] = bool(rng.integers(0, 2))
            elif spec.type is FieldType.INTEGER:
                row[spec.name] = int(rng.integers(int(low), int(high) + 1))
            else:
                row[spec.name] = float(rng.uniform(low, high))
    return out


def convert_skops(
    data: bytes,
    contract: InputContract,
    *,
    allowlist: Any,
    records: list[dict[str, Any]] | None = None,
) -> tuple[bytes, EquivalenceReport]:
    """The developer's conversion at registration: load a skops file (only allow-listed
    types), convert it for `contract`, and prove the ONNX model predicts what it predicts on
    `records` (the training rows, or rows sampled inside the contract)."""
    import skops.io as sio

    untrusted = sio.get_untrusted_types(data=data)
    refused = [t for t in untrusted if not allowlist.allows_skops_type(t)]
    if refused:
        raise ConversionFailed(
            f"the skops file holds types outside the allow-list: {', '.join(refused[:5])}",
            code="convert.untrusted_type",
            details={"types": refused[:50]},
        )
    estimator = sio.loads(data, trusted=untrusted)
    onnx_bytes = to_onnx(estimator, contract)
    batch = contract.validate_records(records or sample_records(contract))
    return onnx_bytes, check_equivalent(estimator, onnx_bytes, batch)
