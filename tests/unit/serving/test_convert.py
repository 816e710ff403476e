"""scikit-learn → ONNX conversion: real estimators converted for a contract, the metadata the
loader reads back, the equivalence check (and its refusal with numbers), and estimators
skl2onnx cannot convert.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC

from bastion.registry.contract import Batch, InputContract
from bastion.serving.convert import ConversionFailed, EquivalenceReport, check_equivalent, to_onnx
from bastion.serving.loaders import load_predictor
from bastion.supplychain.scan import AllowList


def numeric(x: np.ndarray) -> tuple[InputContract, Batch]:
    contract = InputContract.from_json(
        {
            "contract_version": 1,
            "fields": [{"name": f"x{i}", "type": "number"} for i in range(x.shape[1])],
        }
    )
    return contract, contract.validate_columns({f"x{i}": x[:, i] for i in range(x.shape[1])})


def props(data: bytes) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load_model_from_string(data).metadata_props}


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    return x, y


@pytest.mark.parametrize(
    "make",
    [
        lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        lambda: RandomForestClassifier(n_estimators=100, max_depth=4, random_state=0),
    ],
    ids=["lr-pipeline", "random-forest"],
)
def test_binary_classifiers_convert_and_match(
    cancer: tuple[np.ndarray, np.ndarray], make: Any
) -> None:
    x, y = cancer
    model = make().fit(x, y)
    contract, batch = numeric(x)
    data = to_onnx(model, contract)
    report = check_equivalent(model, data, batch)
    assert isinstance(report, EquivalenceReport)
    assert report.rows == len(x)
    assert report.task == "classification"
    assert report.label_mismatches == 0
    assert report.max_abs_prob_diff is not None
    assert report.max_abs_prob_diff <= 1e-4
    meta = props(data)
    assert json.loads(meta["bastion.classes"]) == [0, 1]
    assert json.loads(meta["bastion.contract_fields"]) == list(contract.names)
    assert meta["bastion.task"] == "classification"
    assert meta["bastion.probabilities"] == "true"
    outputs = [o.name for o in onnx.load_model_from_string(data).graph.output]
    assert outputs == ["label", "probabilities"]  # zipmap disabled


def test_multiclass_and_regression_convert_and_match() -> None:
    xi, yi = load_iris(return_X_y=True)
    iris = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(xi, yi)
    contract, batch = numeric(xi)
    report = check_equivalent(iris, to_onnx(iris, contract), batch)
    assert report.label_mismatches == 0

    xd, yd = load_diabetes(return_X_y=True)
    ridge = Ridge().fit(xd, yd)
    contract, batch = numeric(xd)
    data = to_onnx(ridge, contract)
    report = check_equivalent(ridge, data, batch)
    assert report.task == "regression"
    assert report.max_abs_value_diff is not None
    assert report.max_abs_value_diff < 1e-3  # float32 arithmetic on values around 100
    assert props(data)["bastion.task"] == "regression"
    assert "bastion.classes" not in props(data)


def test_string_classes_and_mixed_fields() -> None:
    rng = np.random.default_rng(3)
    n = 200
    city = rng.choice(["a", "b", "c"], n)
    size = rng.normal(0, 1, n)
    y = np.where(size > 0, "big", "small")
    x = np.empty((n, 2), dtype=object)
    x[:, 0], x[:, 1] = city, size
    model = make_pipeline(
        ColumnTransformer([("c", OneHotEncoder(), [0]), ("n", StandardScaler(), [1])]),
        LogisticRegression(),
    ).fit(x, y)
    contract = InputContract.from_json(
        {
            "contract_version": 1,
            "fields": [{"name": "city", "type": "string"}, {"name": "size", "type": "number"}],
        }
    )
    batch = contract.validate_columns({"city": city.tolist(), "size": size.tolist()})
    data = to_onnx(model, contract)
    inputs = {
        i.name: i.type.tensor_type.elem_type for i in onnx.load_model_from_string(data).graph.input
    }
    assert inputs == {"city": onnx.TensorProto.STRING, "size": onnx.TensorProto.FLOAT}
    assert check_equivalent(model, data, batch).label_mismatches == 0
    assert json.loads(props(data)["bastion.classes"]) == ["big", "small"]


def test_classifier_without_predict_proba_keeps_scores_out_of_probabilities(
    cancer: tuple[np.ndarray, np.ndarray],
) -> None:
    """LinearSVC's converter has no ZipMap option (the first attempt is refused, the second
    goes without it) and its `probabilities` output holds decision scores: the metadata says
    so and the loader serves the label only."""
    x, y = cancer
    x = StandardScaler().fit_transform(x)
    model = LinearSVC().fit(x, y)
    contract, batch = numeric(x)
    data = to_onnx(model, contract)
    assert props(data)["bastion.probabilities"] == "false"
    assert check_equivalent(model, data, batch).max_abs_prob_diff is None
    predictor = load_predictor({"m.onnx": data}, contract, allowlist=AllowList.default())
    out = predictor.predict(batch)
    assert set(out.outputs) == {"label"}
    np.testing.assert_array_equal(out.primary(), model.predict(x))


class Doubler(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """No skl2onnx converter exists for this estimator."""

    def fit(self, x: Any, y: Any) -> Doubler:
        return self

    def predict(self, x: Any) -> Any:
        return x[:, 0] * 2


def test_unsupported_estimator_is_refused_with_skl2onnx_reason() -> None:
    contract, _ = numeric(np.zeros((1, 3)))
    with pytest.raises(ConversionFailed) as caught:
        to_onnx(Doubler(), contract)
    assert caught.value.code == "convert.unsupported"
    assert caught.value.details["estimator"] == "Doubler"
    assert "shape calculator" in caught.value.details["reason"]


def test_mismatch_is_refused_with_the_numbers(cancer: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = cancer
    contract, batch = numeric(x)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    other = make_pipeline(StandardScaler(), LogisticRegression(C=1e-3)).fit(x, y)
    with pytest.raises(ConversionFailed) as caught:
        check_equivalent(model, to_onnx(other, contract), batch)
    assert caught.value.code == "convert.mismatch"
    details = caught.value.details
    assert details["max_abs_prob_diff"] > 0.1
    assert details["rows"] == len(x)
    assert "probabilities differ" in caught.value.message

    # the faithful conversion fails too when the tolerance is below float32 precision
    with pytest.raises(ConversionFailed) as caught:
        check_equivalent(model, to_onnx(model, contract), batch, atol=0.0)
    assert caught.value.code == "convert.mismatch"
    assert 0 < caught.value.details["max_abs_prob_diff"] < 1e-5


def test_label_disagreement_is_a_mismatch(cancer: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = cancer
    contract, batch = numeric(x)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    flipped = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, 1 - y)
    with pytest.raises(ConversionFailed) as caught:
        check_equivalent(model, to_onnx(flipped, contract), batch, atol=1.0)
    assert caught.value.details["label_mismatches"] == len(x)
