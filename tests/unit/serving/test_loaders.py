"""Model loaders: real scikit-learn models saved as ONNX, skops, pickle and joblib, loaded from
in-memory bytes and compared with the estimator they came from; and every refusal (no or
several candidates, untrusted skops types, scan findings, ZipMap outputs, inputs that do not
fit the contract), with hostile pickles proven not to run.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnx
import pytest
import skops.io as sio
from onnx import TensorProto, helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from bastion.core.errors import BastionError, ConfigError, InvalidInput
from bastion.registry.contract import Batch, InputContract
from bastion.serving import loaders
from bastion.serving.convert import to_onnx
from bastion.serving.loaders import MLBOM_NAME, Prediction, load_predictor
from bastion.supplychain.scan import AllowList
from unit.supplychain.pickle_forge import call_pickle

ALLOW = AllowList.default()


# -- models and contracts -----------------------------------------------------------------------


def numeric_contract(width: int, max_rows: int = 1000) -> InputContract:
    return InputContract.from_json(
        {
            "contract_version": 1,
            "max_rows": max_rows,
            "fields": [{"name": f"x{i}", "type": "number"} for i in range(width)],
        }
    )


def numeric_batch(contract: InputContract, x: np.ndarray) -> Batch:
    return contract.validate_columns({name: x[:, i] for i, name in enumerate(contract.names)})


class Case:
    """A fitted estimator with its contract, a batch and the rows as a matrix."""

    def __init__(self, estimator: Any, x: np.ndarray) -> None:
        self.estimator = estimator
        self.x = x
        self.contract = numeric_contract(x.shape[1])
        self.batch = numeric_batch(self.contract, x)
        self._cache: dict[str, bytes] = {}

    def saved(self, kind: str) -> bytes:
        if kind not in self._cache:
            self._cache[kind] = SAVERS[kind](self)
        return self._cache[kind]


def _joblib_bytes(obj: Any, compress: int = 0) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(obj, buffer, compress=compress)
    return buffer.getvalue()


SAVERS: dict[str, Callable[[Case], bytes]] = {
    "onnx": lambda c: to_onnx(c.estimator, c.contract),
    "skops": lambda c: sio.dumps(c.estimator),
    "pickle": lambda c: pickle.dumps(c.estimator, protocol=5),
    "joblib": lambda c: _joblib_bytes(c.estimator),
}


@pytest.fixture(scope="module")
def cases() -> dict[str, Case]:
    xb, yb = load_breast_cancer(return_X_y=True)
    xi, yi = load_iris(return_X_y=True)
    xd, yd = load_diabetes(return_X_y=True)
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(xb, yb)
    rf = RandomForestClassifier(n_estimators=100, max_depth=4, random_state=0).fit(xb, yb)
    iris = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(xi, yi)
    ridge = Ridge(alpha=0.5).fit(xd, yd)
    return {
        "lr": Case(lr, xb[:400]),
        "rf": Case(rf, xb[:400]),
        "iris": Case(iris, xi),
        "ridge": Case(ridge, xd[:400]),
    }


@pytest.fixture(scope="module")
def mixed() -> tuple[Pipeline, InputContract, Batch, np.ndarray]:
    """A pipeline over a string field and two numbers, fitted on an object matrix."""
    rng = np.random.default_rng(7)
    n = 300
    age = rng.normal(45, 12, n).round()
    income = rng.normal(50, 15, n)
    city = rng.choice(["paris", "rome", "oslo"], n)
    y = np.where((age > 45) ^ (city == "rome"), "yes", "no")
    x = np.empty((n, 3), dtype=object)
    x[:, 0], x[:, 1], x[:, 2] = age, city, income
    columns = ColumnTransformer(
        [("num", StandardScaler(), [0, 2]), ("cat", OneHotEncoder(handle_unknown="ignore"), [1])]
    )
    model = make_pipeline(columns, LogisticRegression()).fit(x, y)
    contract = InputContract.from_json(
        {
            "contract_version": 1,
            "fields": [
                {"name": "age", "type": "integer"},
                {"name": "city", "type": "string", "nullable": True},
                {"name": "income", "type": "number"},
            ],
        }
    )
    batch = contract.validate_columns(
        {"age": age[:200].tolist(), "city": city[:200].tolist(), "income": income[:200].tolist()}
    )
    return model, contract, batch, x[:200]


def expect_refusal(code: str, call: Callable[[], object]) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        call()
    assert caught.value.code == code, caught.value.message
    return caught.value


# -- each kind loads and predicts like the estimator ---------------------------------------------


@pytest.mark.parametrize("kind", ["onnx", "skops", "pickle", "joblib"])
@pytest.mark.parametrize("name", ["lr", "rf", "iris"])
def test_classifiers_load_and_predict_like_the_estimator(
    cases: dict[str, Case], name: str, kind: str
) -> None:
    case = cases[name]
    predictor = load_predictor(
        {f"model/{kind}.bin": case.saved(kind)}, case.contract, allowlist=ALLOW
    )
    assert predictor.kind == kind
    assert predictor.task == "classification"
    out = predictor.predict(case.batch)
    want_label = case.estimator.predict(case.x)
    want_proba = case.estimator.predict_proba(case.x)
    np.testing.assert_array_equal(out.outputs["label"], want_label)
    np.testing.assert_array_equal(out.primary(), want_label)
    assert out.classes == tuple(case.estimator.classes_.tolist())
    assert out.outputs["probabilities"].shape == want_proba.shape
    if kind == "onnx":
        np.testing.assert_allclose(out.outputs["probabilities"], want_proba, atol=1e-4, rtol=0)
    else:
        np.testing.assert_array_equal(out.outputs["probabilities"], want_proba)


@pytest.mark.parametrize("kind", ["onnx", "skops", "pickle", "joblib"])
def test_regressor_loads_and_predicts_like_the_estimator(cases: dict[str, Case], kind: str) -> None:
    case = cases["ridge"]
    predictor = load_predictor({"m": case.saved(kind)}, case.contract, allowlist=ALLOW)
    assert (predictor.kind, predictor.task) == (kind, "regression")
    out = predictor.predict(case.batch)
    want = case.estimator.predict(case.x)
    assert set(out.outputs) == {"value"}
    assert out.classes is None
    assert out.primary().shape == (len(case.x),)
    if kind == "onnx":
        np.testing.assert_allclose(out.primary(), want, rtol=1e-5, atol=1e-4)
    else:
        np.testing.assert_array_equal(out.primary(), want)


def test_compressed_joblib_loads(cases: dict[str, Case]) -> None:
    case = cases["lr"]
    predictor = load_predictor(
        {"m.joblib": _joblib_bytes(case.estimator, compress=3)}, case.contract, allowlist=ALLOW
    )
    assert predictor.kind == "joblib"
    np.testing.assert_array_equal(
        predictor.predict(case.batch).outputs["label"], case.estimator.predict(case.x)
    )


def test_mixed_contract_onnx_and_skops_agree_with_the_pipeline(
    mixed: tuple[Pipeline, InputContract, Batch, np.ndarray],
) -> None:
    model, contract, batch, x = mixed
    want = model.predict_proba(x)
    onnx_model = load_predictor({"m.onnx": to_onnx(model, contract)}, contract, allowlist=ALLOW)
    skops_model = load_predictor({"m.skops": sio.dumps(model)}, contract, allowlist=ALLOW)
    for predictor in (onnx_model, skops_model):
        out = predictor.predict(batch)
        np.testing.assert_array_equal(out.outputs["label"], model.predict(x))
        np.testing.assert_allclose(out.outputs["probabilities"], want, atol=1e-4, rtol=0)
        assert out.classes == ("no", "yes")
    assert onnx_model.describe()["inputs"] == [
        {"name": "age", "datatype": "FP32", "shape": [-1, 1]},
        {"name": "city", "datatype": "BYTES", "shape": [-1, 1]},
        {"name": "income", "datatype": "FP32", "shape": [-1, 1]},
    ]
    assert skops_model.describe()["inputs"][1] == {
        "name": "city",
        "datatype": "BYTES",
        "shape": [-1, 1],
    }


def test_onnx_refuses_a_null_string_the_model_cannot_take(
    mixed: tuple[Pipeline, InputContract, Batch, np.ndarray],
) -> None:
    model, contract, _, _ = mixed
    predictor = load_predictor({"m.onnx": to_onnx(model, contract)}, contract, allowlist=ALLOW)
    batch = contract.validate_records([{"age": 30, "city": None, "income": 40.0}])
    error = expect_refusal("serving.input_conversion", lambda: predictor.predict(batch))
    assert error.details == {"field": "city"}


def test_describe_in_v2_terms(cases: dict[str, Case]) -> None:
    case = cases["iris"]
    onnx_model = load_predictor({"a": case.saved("onnx")}, case.contract, allowlist=ALLOW)
    assert onnx_model.describe() == {
        "platform": "onnxruntime",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
        ],
    }
    skops_model = load_predictor({"a": case.saved("skops")}, case.contract, allowlist=ALLOW)
    assert skops_model.describe() == {
        "platform": "sklearn",
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
        ],
    }
    ridge = cases["ridge"]
    value = load_predictor({"r": ridge.saved("onnx")}, ridge.contract, allowlist=ALLOW)
    assert value.describe()["outputs"] == [{"name": "value", "datatype": "FP32", "shape": [-1]}]


def test_onnx_session_is_cpu_only_and_single_threaded(cases: dict[str, Case]) -> None:
    case = cases["lr"]
    predictor = load_predictor({"m.onnx": case.saved("onnx")}, case.contract, allowlist=ALLOW)
    assert isinstance(predictor, loaders.OnnxPredictor)
    session = predictor._session
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert session.get_session_options().intra_op_num_threads == 1
    assert session.get_session_options().inter_op_num_threads == 1


def test_loads_from_a_bytearray_copy(cases: dict[str, Case]) -> None:
    case = cases["lr"]
    data = bytearray(case.saved("skops"))
    predictor = load_predictor({"m": data}, case.contract, allowlist=ALLOW)  # type: ignore[dict-item]
    data[:] = b"\0" * len(data)  # the caller's buffer changing afterwards changes nothing
    np.testing.assert_array_equal(
        predictor.predict(case.batch).primary(), case.estimator.predict(case.x)
    )


def test_prediction_primary_is_label_or_value() -> None:
    label = np.array([1, 0])
    assert Prediction({"label": label, "probabilities": np.eye(2)}, (0, 1)).primary() is label
    value = np.array([0.5])
    assert Prediction({"value": value}, None).primary() is value


# -- choosing the artifact ------------------------------------------------------------------------


def test_prefers_onnx_then_skops_then_pickle(cases: dict[str, Case]) -> None:
    case = cases["lr"]
    files = {
        MLBOM_NAME: b'{"bomFormat": "CycloneDX"}',
        "README.md": b"# a model\n",
        "model.onnx": case.saved("onnx"),
        "model.skops": case.saved("skops"),
        "model.pkl": case.saved("pickle"),
    }
    assert load_predictor(files, case.contract, allowlist=ALLOW).kind == "onnx"
    del files["model.onnx"]
    assert load_predictor(files, case.contract, allowlist=ALLOW).kind == "skops"
    del files["model.skops"]
    assert load_predictor(files, case.contract, allowlist=ALLOW).kind == "pickle"


def test_kind_is_sniffed_from_content_never_the_name(cases: dict[str, Case]) -> None:
    case = cases["lr"]
    files = {"model.pkl": case.saved("onnx"), "model.onnx": case.saved("pickle")}
    assert load_predictor(files, case.contract, allowlist=ALLOW).path == "model.pkl"
    assert load_predictor(files, case.contract, allowlist=ALLOW, prefer="pickle").path == (
        "model.onnx"
    )


def test_prefer_forces_a_kind(cases: dict[str, Case]) -> None:
    case = cases["lr"]
    files = {"a": case.saved("onnx"), "b": case.saved("skops"), "c": case.saved("joblib")}
    assert load_predictor(files, case.contract, allowlist=ALLOW, prefer="skops").kind == "skops"
    assert load_predictor(files, case.contract, allowlist=ALLOW, prefer="joblib").kind == "joblib"
    error = expect_refusal(
        "serving.no_loadable_artifact",
        lambda: load_predictor(
            {"a": case.saved("onnx")}, case.contract, allowlist=ALLOW, prefer="skops"
        ),
    )
    assert error.details["files"] == {"a": "onnx"}
    expect_refusal(
        "serving.unknown_kind",
        lambda: load_predictor(files, case.contract, allowlist=ALLOW, prefer="tensorflow"),
    )


@pytest.mark.parametrize(
    ("kinds", "candidates"),
    [
        (("onnx", "onnx", "skops"), ["a", "b"]),
        (("skops", "skops", "pickle"), ["a", "b"]),
        (("pickle", "joblib"), ["a", "b"]),
    ],
)
def test_several_candidates_of_the_chosen_kind_are_ambiguous(
    cases: dict[str, Case], kinds: tuple[str, ...], candidates: list[str]
) -> None:
    case = cases["lr"]
    files = {name: case.saved(kind) for name, kind in zip("abc", kinds, strict=False)}
    error = expect_refusal(
        "serving.ambiguous_artifact",
        lambda: load_predictor(files, case.contract, allowlist=ALLOW),
    )
    assert error.details["candidates"] == candidates


@pytest.mark.parametrize(
    "files",
    [
        {},
        {MLBOM_NAME: b"{}", "notes.txt": b"trained on 2024 data\n"},
        {"weights.npy": b"\x93NUMPY\x01\x00v\x00" + b" " * 117 + b"\n"},
    ],
)
def test_no_loadable_artifact(cases: dict[str, Case], files: dict[str, bytes]) -> None:
    case = cases["lr"]
    expect_refusal(
        "serving.no_loadable_artifact",
        lambda: load_predictor(files, case.contract, allowlist=ALLOW),
    )


def test_the_mlbom_is_never_a_candidate_even_if_it_holds_a_model(cases: dict[str, Case]) -> None:
    case = cases["lr"]
    files = {f"meta/{MLBOM_NAME}": case.saved("onnx"), "m.skops": case.saved("skops")}
    assert load_predictor(files, case.contract, allowlist=ALLOW).kind == "skops"


# -- refusals: untrusted content ------------------------------------------------------------------


def test_skops_types_must_be_allow_listed(cases: dict[str, Case]) -> None:
    case = cases["lr"]
    forest = RandomForestClassifier(n_estimators=3, max_depth=2, random_state=0)
    data = sio.dumps(forest.fit(case.x, case.estimator.predict(case.x)))
    strict = AllowList(version="test", globals=ALLOW.globals, skops_types=frozenset())
    error = expect_refusal(
        "serving.untrusted_type",
        lambda: load_predictor({"rf.skops": data}, case.contract, allowlist=strict),
    )
    assert error.details["types"] == ["sklearn.tree._tree.Tree"]
    # the shipped list trusts the tree type, so the same bytes load
    assert load_predictor({"rf.skops": data}, case.contract, allowlist=ALLOW).kind == "skops"


class Scaler2:
    """A custom transformer: skops reports its type as untrusted."""

    def fit(self, x: Any, y: Any = None) -> Scaler2:
        return self

    def transform(self, x: Any) -> Any:
        return x * 2


def test_skops_with_a_custom_class_is_refused(cases: dict[str, Case]) -> None:
    case = cases["lr"]
    model = make_pipeline(Scaler2(), StandardScaler(), LogisticRegression())
    model.fit(case.x, case.estimator.predict(case.x))
    error = expect_refusal(
        "serving.untrusted_type",
        lambda: load_predictor({"m.skops": sio.dumps(model)}, case.contract, allowlist=ALLOW),
    )
    assert any(t.endswith("Scaler2") for t in error.details["types"])


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["reduce", "forge", "joblib"])
def test_hostile_pickle_is_refused_without_running(
    cases: dict[str, Case], tmp_path: Path, how: str
) -> None:
    marker = tmp_path / "pwned"
    payload = {
        "reduce": lambda: pickle.dumps(Evil(marker), protocol=5),
        "forge": lambda: call_pickle("os", "system", f"touch {marker}").data,
        "joblib": lambda: _joblib_bytes(Evil(marker)),
    }[how]()
    case = cases["lr"]
    error = expect_refusal(
        "serving.scan_rejected",
        lambda: load_predictor({"model.pkl": payload}, case.contract, allowlist=ALLOW),
    )
    assert error.details["findings"]
    assert not marker.exists()


def test_restricted_unpickler_refuses_what_the_allowlist_does_not_name(tmp_path: Path) -> None:
    """Belt and braces behind the scan: even handed a hostile pickle directly, the loader's
    unpickler resolves nothing off the allow-list, so nothing is imported or called."""
    marker = tmp_path / "pwned"
    for payload in (
        pickle.dumps(Evil(marker), protocol=5),
        call_pickle("os", "system", f"touch {marker}", proto=2).data,
        call_pickle("builtins", "eval", f"open('{marker}', 'w')").data,
    ):
        with pytest.raises(loaders._RefusedGlobal):
            loaders._unpickle_restricted(payload, ALLOW)
    assert not marker.exists()
    # an allow-listed pickle still loads
    assert loaders._unpickle_restricted(pickle.dumps({"a": [1.5, 2]}), ALLOW) == {"a": [1.5, 2]}


def test_pickle_with_trailing_data_is_refused(cases: dict[str, Case]) -> None:
    case = cases["lr"]
    payload = case.saved("pickle") + pickle.dumps({"x": 1})
    error = expect_refusal(
        "serving.scan_rejected",
        lambda: load_predictor({"m.pkl": payload}, case.contract, allowlist=ALLOW),
    )
    assert "pickle.trailing_data" in error.details["findings"]


def test_onnx_with_external_data_is_refused_before_onnx_runtime_sees_it() -> None:
    """An initializer whose bytes live in an outside file (here an absolute path) would make
    ONNX Runtime read from disk: the scan refuses it and no session is created."""
    model = onnx.load_model_from_string(_typed_model(bias=True))
    (tensor,) = model.graph.initializer
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="/etc/hostname")
    tensor.external_data.add(key="length", value="4")
    error = expect_refusal(
        "serving.scan_rejected",
        lambda: load_predictor({"m.onnx": model.SerializeToString()}, TYPED, allowlist=ALLOW),
    )
    assert any(code.startswith("onnx.") for code in error.details["findings"])
    # the untouched model loads
    assert load_predictor({"m.onnx": _typed_model(bias=True)}, TYPED, allowlist=ALLOW)


@pytest.mark.parametrize(
    "obj", [{"weights": [1.0, 2.0]}, [1, 2, 3], "just a string"], ids=["dict", "list", "str"]
)
def test_a_pickle_that_is_not_a_model_is_refused(cases: dict[str, Case], obj: object) -> None:
    case = cases["lr"]
    expect_refusal(
        "serving.not_a_model",
        lambda: load_predictor(
            {"m.pkl": pickle.dumps(obj, protocol=5)}, case.contract, allowlist=ALLOW
        ),
    )


def test_an_unfitted_estimator_is_refused(cases: dict[str, Case]) -> None:
    case = cases["lr"]
    expect_refusal(
        "serving.not_a_model",
        lambda: load_predictor(
            {"m.skops": sio.dumps(LogisticRegression())}, case.contract, allowlist=ALLOW
        ),
    )


# -- refusals: the model does not fit the contract ------------------------------------------------


def test_zipmap_output_is_refused_at_load(cases: dict[str, Case]) -> None:
    case = cases["iris"]
    zipmapped = convert_sklearn(
        case.estimator, initial_types=[("input", FloatTensorType([None, 4]))]
    ).SerializeToString()
    error = expect_refusal(
        "serving.zipmap_output",
        lambda: load_predictor({"m.onnx": zipmapped}, case.contract, allowlist=ALLOW),
    )
    assert "zipmap=False" in error.message


def test_onnx_width_must_match_the_contract(cases: dict[str, Case]) -> None:
    case = cases["lr"]  # 30 features
    error = expect_refusal(
        "serving.input_mismatch",
        lambda: load_predictor(
            {"m.onnx": case.saved("onnx")}, numeric_contract(4), allowlist=ALLOW
        ),
    )
    assert error.details["model_inputs"] == [
        {"name": "input", "type": "tensor(float)", "shape": [-1, 30]}
    ]
    assert len(error.details["contract_fields"]) == 4


def test_sklearn_width_must_match_the_contract(cases: dict[str, Case]) -> None:
    case = cases["lr"]
    expect_refusal(
        "serving.input_mismatch",
        lambda: load_predictor(
            {"m.skops": case.saved("skops")}, numeric_contract(4), allowlist=ALLOW
        ),
    )


def test_onnx_field_order_recorded_at_conversion_is_enforced(cases: dict[str, Case]) -> None:
    case = cases["iris"]
    swapped = InputContract.from_json(
        {
            "contract_version": 1,
            "fields": [{"name": n, "type": "number"} for n in ("x1", "x0", "x2", "x3")],
        }
    )
    error = expect_refusal(
        "serving.input_mismatch",
        lambda: load_predictor({"m.onnx": case.saved("onnx")}, swapped, allowlist=ALLOW),
    )
    assert "x0" in error.message


def test_per_field_inputs_must_be_named_like_the_fields(
    mixed: tuple[Pipeline, InputContract, Batch, np.ndarray],
) -> None:
    model, contract, _, _ = mixed
    renamed = InputContract.from_json(
        {
            "contract_version": 1,
            "fields": [
                {"name": "age", "type": "integer"},
                {"name": "town", "type": "string"},
                {"name": "income", "type": "number"},
            ],
        }
    )
    data = to_onnx(model, contract)
    expect_refusal(
        "serving.input_mismatch", lambda: load_predictor({"m": data}, renamed, allowlist=ALLOW)
    )
    numeric_city = InputContract.from_json(
        {
            "contract_version": 1,
            "fields": [
                {"name": "age", "type": "integer"},
                {"name": "city", "type": "number"},
                {"name": "income", "type": "number"},
            ],
        }
    )
    error = expect_refusal(
        "serving.input_mismatch",
        lambda: load_predictor({"m": data}, numeric_city, allowlist=ALLOW),
    )
    assert "city" in error.message


def _typed_model(*, fixed_batch: bool = False, rank3: bool = False, bias: bool = False) -> bytes:
    """A hand-built graph with int64 and bool inputs: value = count + flag (+ bias)."""
    batch: int | str = 1 if fixed_batch else "N"
    shape = [batch, 1, 1] if rank3 else [batch, 1]
    nodes = [
        helper.make_node("Cast", ["count"], ["c"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["flag"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["c", "f"], ["sum" if bias else "variable"]),
    ]
    initializers = []
    if bias:
        nodes.append(helper.make_node("Add", ["sum", "bias"], ["variable"]))
        initializers.append(helper.make_tensor("bias", TensorProto.FLOAT, [1], [0.5]))
    graph = helper.make_graph(
        nodes,
        "typed",
        [
            helper.make_tensor_value_info("count", TensorProto.INT64, shape),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, shape),
        ],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, shape)],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


TYPED = InputContract.from_json(
    {
        "contract_version": 1,
        "fields": [
            {"name": "count", "type": "integer", "nullable": True},
            {"name": "flag", "type": "boolean"},
        ],
    }
)


def test_int64_and_bool_inputs_are_fed_per_field() -> None:
    predictor = load_predictor({"t.onnx": _typed_model()}, TYPED, allowlist=ALLOW)
    assert predictor.task == "regression"
    batch = TYPED.validate_records([{"count": 3, "flag": True}, {"count": -2, "flag": False}])
    np.testing.assert_array_equal(predictor.predict(batch).primary(), [4.0, -2.0])
    assert predictor.describe()["inputs"] == [
        {"name": "count", "datatype": "INT64", "shape": [-1, 1]},
        {"name": "flag", "datatype": "BOOL", "shape": [-1, 1]},
    ]
    null = TYPED.validate_records([{"count": None, "flag": True}])
    error = expect_refusal("serving.input_conversion", lambda: predictor.predict(null))
    assert error.details == {"field": "count"}


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [({"fixed_batch": True}, "fixed batch size"), ({"rank3": True}, "not a 2-D tensor")],
)
def test_onnx_input_shapes_that_cannot_serve_a_batch_are_refused(
    kwargs: dict[str, bool], why: str
) -> None:
    error = expect_refusal(
        "serving.input_mismatch",
        lambda: load_predictor({"t.onnx": _typed_model(**kwargs)}, TYPED, allowlist=ALLOW),
    )
    assert why in error.message


def test_an_empty_batch_is_refused(cases: dict[str, Case]) -> None:
    case = cases["lr"]
    empty = Batch(rows=0, columns={n: np.empty(0) for n in case.contract.names}, anomalies={})
    for kind in ("onnx", "skops"):
        predictor = load_predictor({"m": case.saved(kind)}, case.contract, allowlist=ALLOW)
        expect_refusal("serving.empty_batch", lambda p=predictor: p.predict(empty))


def test_a_model_failing_at_predict_time_is_an_internal_error(cases: dict[str, Case]) -> None:
    """A `predict` that raises (here: an estimator whose steps disagree) is reported with
    its type only, as an internal error, never as the caller's fault."""
    case = cases["lr"]
    predictor = load_predictor({"m": case.saved("skops")}, case.contract, allowlist=ALLOW)
    assert isinstance(predictor, loaders.SklearnPredictor)
    predictor._estimator.steps[-1][1].coef_ = np.zeros((1, 3))  # corrupt the fitted model
    with pytest.raises(BastionError) as caught:
        predictor.predict(case.batch)
    assert not isinstance(caught.value, InvalidInput)
    assert caught.value.code == "serving.predict_failed"


def test_a_clean_pickle_that_fails_to_load_is_refused(cases: dict[str, Case]) -> None:
    """Allow-listed globals called with arguments they reject: the scan passes, the load
    fails, and the failure is reported by type only."""
    payload = call_pickle("numpy", "dtype", "no-such-dtype").data
    error = expect_refusal(
        "serving.load_failed",
        lambda: load_predictor({"m.pkl": payload}, cases["lr"].contract, allowlist=ALLOW),
    )
    assert error.details["error"] == "TypeError"


@pytest.mark.parametrize("threads", [-1, 65])
def test_onnx_thread_count_is_bounded(cases: dict[str, Case], threads: int) -> None:
    case = cases["lr"]
    with pytest.raises(ConfigError) as caught:
        load_predictor({"m": case.saved("onnx")}, case.contract, allowlist=ALLOW, threads=threads)
    assert caught.value.code == "serving.bad_threads"
