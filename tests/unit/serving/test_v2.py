"""Open Inference Protocol (V2) tensors: both request layouts, every rejection, round trips."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest

from bastion.core.errors import BastionError, InvalidInput
from bastion.registry.contract import ContractViolation, FieldSpec, FieldType, InputContract
from bastion.serving.v2 import V2Invalid, decode_request, encode_response, encode_tensor

NUMERIC = InputContract(
    fields=(
        FieldSpec("age", FieldType.NUMBER, minimum=18, maximum=95),
        FieldSpec("n_items", FieldType.INTEGER),
        FieldSpec("member", FieldType.BOOLEAN),
    ),
    max_rows=4,
)
MIXED = InputContract(
    fields=(
        FieldSpec("age", FieldType.NUMBER),
        FieldSpec("region", FieldType.STRING, nullable=True),
    ),
    max_rows=4,
)


def tensor(name: str, shape: list[int], datatype: str, data: list[Any]) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def per_field(**overrides: Any) -> dict[str, Any]:
    """A valid layout-1 request for NUMERIC (2 rows)."""
    body: dict[str, Any] = {
        "id": "req-1",
        "inputs": [
            tensor("age", [2], "FP64", [30.5, 41.0]),
            tensor("n_items", [2, 1], "INT64", [[3], [0]]),
            tensor("member", [2], "BOOL", [True, False]),
        ],
    }
    body.update(overrides)
    return body


def matrix_request(data: list[Any], shape: list[int] | None = None, dt: str = "FP32") -> Any:
    return {"inputs": [tensor("input-0", shape or [2, 3], dt, data)]}


# ---------------------------------------------------------------------- layout 1


def test_one_tensor_per_field() -> None:
    request_id, columns = decode_request(per_field(), NUMERIC)
    assert request_id == "req-1"
    assert columns == {"age": [30.5, 41.0], "n_items": [3, 0], "member": [True, False]}
    batch = NUMERIC.validate_columns(columns)
    np.testing.assert_array_equal(batch.matrix(np.float64), [[30.5, 3.0, 1.0], [41.0, 0.0, 0.0]])


def test_strings_and_nulls_pass_through_to_the_contract() -> None:
    body = {
        "inputs": [
            tensor("age", [3, 1], "FP32", [1.5, 2, 3.25]),
            tensor("region", [3], "BYTES", ["n", None, "s"]),
        ]
    }
    request_id, columns = decode_request(body, MIXED)
    assert request_id is None
    assert columns == {"age": [1.5, 2, 3.25], "region": ["n", None, "s"]}
    assert MIXED.validate_columns(columns).columns["region"].tolist() == ["n", None, "s"]


def test_values_stay_python_values_so_the_contract_judges_them() -> None:
    body = per_field(
        inputs=[
            tensor("age", [2], "FP64", [math.nan, None]),
            tensor("n_items", [2], "FP64", [2.5, 1]),
            tensor("member", [2], "INT8", [1, 2]),  # 1 → True; 2 is left for the contract
        ]
    )
    _, columns = decode_request(body, NUMERIC)
    assert columns["member"] == [True, 2]
    with pytest.raises(ContractViolation) as info:
        NUMERIC.validate_columns(columns)
    assert [(v.row, v.field, v.code) for v in info.value.violations] == [
        (0, "age", "contract.not_finite"),
        (0, "n_items", "contract.wrong_type"),
        (1, "age", "contract.null"),
        (1, "member", "contract.wrong_type"),
    ]


def test_missing_and_ragged_field_tensors_are_contract_violations() -> None:
    body = per_field(inputs=[tensor("age", [2], "FP64", [30.0, 31.0])])
    _, columns = decode_request(body, NUMERIC)
    with pytest.raises(ContractViolation) as info:
        NUMERIC.validate_columns(columns)
    assert {v.code for v in info.value.violations} == {"contract.missing_field"}
    body = per_field()
    body["inputs"][0] = tensor("age", [1], "FP64", [30.0])
    _, columns = decode_request(body, NUMERIC)
    with pytest.raises(ContractViolation) as info:
        NUMERIC.validate_columns(columns)
    assert [v.code for v in info.value.violations] == ["contract.ragged"]


def test_integral_floats_in_integer_tensors_become_ints() -> None:
    body = per_field()
    body["inputs"][1] = tensor("n_items", [2], "INT32", [3.0, -4])
    _, columns = decode_request(body, NUMERIC)
    assert columns["n_items"] == [3, -4]
    assert all(type(v) is int for v in columns["n_items"])


# ---------------------------------------------------------------------- layout 2


@pytest.mark.parametrize(
    "data",
    [[30.5, 3, 1, 41.0, 0, 0], [[30.5, 3, 1], [41.0, 0, 0]]],
    ids=["flat", "nested"],
)
def test_single_matrix_tensor(data: list[Any]) -> None:
    _, columns = decode_request(matrix_request(data), NUMERIC)
    assert columns == {"age": [30.5, 41.0], "n_items": [3, 0], "member": [True, False]}
    np.testing.assert_array_equal(
        NUMERIC.validate_columns(columns).matrix(np.float64),
        [[30.5, 3.0, 1.0], [41.0, 0.0, 0.0]],
    )


def test_matrix_of_booleans() -> None:
    flags = InputContract(
        fields=(FieldSpec("a", FieldType.BOOLEAN), FieldSpec("b", FieldType.BOOLEAN))
    )
    _, columns = decode_request(matrix_request([True, False], [1, 2], "BOOL"), flags)
    assert columns == {"a": [True], "b": [False]}


@pytest.mark.parametrize(
    ("body", "contract", "needle"),
    [
        (matrix_request([1.0] * 4, [2, 2]), NUMERIC, "single [N, 3] tensor"),
        (matrix_request([1.0] * 6, [6]), NUMERIC, "single [N, 3] tensor"),
        (matrix_request(["a"] * 6, dt="BYTES"), NUMERIC, "cannot be BYTES"),
        (matrix_request([True] * 6, dt="BOOL"), NUMERIC, "BOOL only fits"),
        (matrix_request([1.0] * 4, [2, 2]), MIXED, "string fields"),
    ],
)
def test_matrix_rejections(body: Any, contract: InputContract, needle: str) -> None:
    with pytest.raises(V2Invalid) as info:
        decode_request(body, contract)
    assert info.value.code == "v2.invalid"
    assert needle in info.value.message


# ---------------------------------------------------------------------- rejections


def _with(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    target: Any = body
    *parents, last = path.split(".")
    for p in parents:
        target = target[int(p)] if isinstance(target, list) else target[p]
    key: Any = int(last) if isinstance(target, list) else last
    if value is ...:
        del target[key]
    else:
        target[key] = value
    return body


BASE = per_field()

REJECTED = {
    # the envelope
    "body-list": ([BASE], "JSON object"),
    "body-string": ("{}", "JSON object"),
    "unknown-key": (_with(BASE, "model_name", "m"), "unknown key"),
    "no-inputs": (_with(BASE, "inputs", ...), "inputs must be"),
    "inputs-empty": (_with(BASE, "inputs", []), "inputs must be"),
    "inputs-object": (_with(BASE, "inputs", {"age": [1]}), "inputs must be"),
    "id-number": (_with(BASE, "id", 7), "id must be"),
    "id-too-long": (_with(BASE, "id", "x" * 257), "id must be"),
    "parameters-list": (_with(BASE, "parameters", []), "parameters must be"),
    "outputs-object": (_with(BASE, "outputs", {"name": "p"}), "outputs must be"),
    "output-string": (_with(BASE, "outputs", ["p"]), "outputs[0]"),
    "output-no-name": (_with(BASE, "outputs", [{}]), "outputs[0].name"),
    "output-unknown-key": (_with(BASE, "outputs", [{"name": "p", "x": 1}]), "unknown key"),
    # tensors
    "tensor-not-object": (_with(BASE, "inputs.0", "age"), "inputs[0] must be"),
    "tensor-unknown-key": (_with(BASE, "inputs.0.unit", "y"), "unknown key"),
    "tensor-no-name": (_with(BASE, "inputs.0.name", ...), "has no name"),
    "tensor-no-shape": (_with(BASE, "inputs.0.shape", ...), "has no shape"),
    "tensor-no-datatype": (_with(BASE, "inputs.0.datatype", ...), "has no datatype"),
    "tensor-no-data": (_with(BASE, "inputs.0.data", ...), "has no data"),
    "tensor-name-empty": (_with(BASE, "inputs.0.name", ""), "name must be"),
    "tensor-name-number": (_with(BASE, "inputs.0.name", 1), "name must be"),
    "tensor-parameters": (_with(BASE, "inputs.0.parameters", 1), "parameters must be"),
    "duplicate-name": (_with(BASE, "inputs.1.name", "age"), "appears twice"),
    "unknown-name": (_with(BASE, "inputs.1.name", "items"), "unknown input tensor"),
    # shapes
    "shape-not-list": (_with(BASE, "inputs.0.shape", 2), "shape must be"),
    "shape-float": (_with(BASE, "inputs.0.shape", [2.0]), "shape must be"),
    "shape-bool": (_with(BASE, "inputs.0.shape", [True]), "shape must be"),
    "shape-negative": (_with(BASE, "inputs.0.shape", [-2]), "negative"),
    "shape-scalar": (_with(BASE, "inputs.0.shape", []), "[N] or [N, 1]"),
    "shape-rank-3": (_with(BASE, "inputs.0.shape", [2, 1, 1]), "[N] or [N, 1]"),
    "shape-2-wide": (_with(BASE, "inputs.0.shape", [1, 2]), "[N] or [N, 1]"),
    "shape-product": (_with(BASE, "inputs.0.shape", [3]), "holds 3 elements, data has 2"),
    "data-short": (_with(BASE, "inputs.0.data", [1.0]), "holds 2 elements, data has 1"),
    "data-not-list": (_with(BASE, "inputs.0.data", "1,2"), "data must be a list"),
    "ragged": (_with(BASE, "inputs.1.data", [[3], [0, 1]]), "ragged"),
    "nested-mixed": (_with(BASE, "inputs.1.data", [[3], 0]), "nested data"),
    "nested-rank-1": (_with(BASE, "inputs.0.data", [[30.5], [41.0]]), "nested data"),
    "nested-deep": (_with(BASE, "inputs.1.data", [[[3]], [[0]]]), "deeper"),
    # datatypes
    "datatype-unknown": (_with(BASE, "inputs.0.datatype", "FLOAT32"), "datatype must be"),
    "datatype-lower": (_with(BASE, "inputs.0.datatype", "fp64"), "datatype must be"),
    "datatype-list": (_with(BASE, "inputs.0.datatype", ["FP64"]), "datatype must be"),
    "datatype-null": (_with(BASE, "inputs.0.datatype", None), "datatype must be"),
    "bytes-for-number": (
        _with(_with(BASE, "inputs.0.datatype", "BYTES"), "inputs.0.data", ["1", "2"]),
        "cannot be BYTES",
    ),
    "bool-for-number": (
        _with(_with(BASE, "inputs.0.datatype", "BOOL"), "inputs.0.data", [True, False]),
        "cannot be BOOL",
    ),
    # elements that do not fit the datatype
    "string-in-fp64": (
        _with(BASE, "inputs.0.data", ["30.5", 41.0]),
        "0 does not fit FP64: it is a JSON string",
    ),
    "bool-in-fp64": (
        _with(BASE, "inputs.0.data", [30.5, True]),
        "1 does not fit FP64: it is a JSON boolean",
    ),
    "object-in-fp64": (
        _with(BASE, "inputs.0.data", [{}, 1.0]),
        "0 does not fit FP64: it is a JSON object",
    ),
    "bool-in-int64": (
        _with(BASE, "inputs.1.data", [True, 1]),
        "0 does not fit INT64: it is a JSON boolean",
    ),
    "fraction-in-int64": (_with(BASE, "inputs.1.data", [3, 0.5]), "element 1 is not an integer"),
    "nan-in-int64": (_with(BASE, "inputs.1.data", [3, math.nan]), "element 1 is not an integer"),
    "int-in-bool": (
        _with(BASE, "inputs.2.data", [1, False]),
        "0 does not fit BOOL: it is a JSON number",
    ),
    "string-in-bool": (
        _with(BASE, "inputs.2.data", [True, "no"]),
        "1 does not fit BOOL: it is a JSON string",
    ),
    "fp32-overflow": (
        _with(_with(BASE, "inputs.0.datatype", "FP32"), "inputs.0.data", [1.0, 1e39]),
        "element 1 is outside the FP32 range",
    ),
    "fp16-overflow": (
        _with(_with(BASE, "inputs.0.datatype", "FP16"), "inputs.0.data", [70000, 1.0]),
        "element 0 is outside the FP16 range",
    ),
    "fp64-huge-int": (_with(BASE, "inputs.0.data", [1.0, 10**400]), "outside the FP64 range"),
}
for _dt, _bad in (
    ("INT8", 128),
    ("INT8", -129),
    ("INT16", 2**15),
    ("INT32", -(2**31) - 1),
    ("INT64", 2**63),
    ("UINT8", 256),
    ("UINT8", -1),
    ("UINT16", 2**16),
    ("UINT32", 2**32),
    ("UINT64", 2**64),
):
    REJECTED[f"{_dt}-{_bad}"] = (
        _with(_with(BASE, "inputs.1.datatype", _dt), "inputs.1.data", [0, _bad]),
        f"element 1 is outside the {_dt} range",
    )


@pytest.mark.parametrize(("body", "needle"), list(REJECTED.values()), ids=list(REJECTED))
def test_rejections(body: Any, needle: str) -> None:
    with pytest.raises(V2Invalid) as info:
        decode_request(body, NUMERIC)
    assert isinstance(info.value, InvalidInput)
    assert info.value.code == "v2.invalid"
    assert needle in info.value.message


def test_integer_range_edges_are_accepted() -> None:
    for dt, lo, hi in (("INT8", -128, 127), ("UINT8", 0, 255), ("UINT64", 0, 2**64 - 1)):
        body = _with(_with(BASE, "inputs.1.datatype", dt), "inputs.1.data", [lo, hi])
        assert decode_request(body, NUMERIC)[1]["n_items"] == [lo, hi]
    body = _with(_with(BASE, "inputs.0.datatype", "FP32"), "inputs.0.data", [3.4e38, math.inf])
    assert decode_request(body, NUMERIC)[1]["age"] == [3.4e38, math.inf]  # inf: contract's call


@pytest.mark.parametrize("n", [2, 100], ids=["python-loop", "numpy"])
def test_float_ranges_small_and_large(n: int) -> None:
    wide = InputContract(fields=(FieldSpec("x", FieldType.NUMBER),), max_rows=100)
    ok = [1.0] * (n - 2) + [math.nan, -math.inf]  # non-finite is the contract's business
    for dt in ("FP16", "FP32", "FP64"):
        body = {"inputs": [tensor("x", [n], dt, ok)]}
        out = decode_request(body, wide)[1]["x"]
        assert len(out) == n
        assert math.isnan(out[-2])
        assert out[-1] == -math.inf
    for dt, bad in (("FP16", -65520.0), ("FP32", 1e39), ("FP64", -(10**400))):
        data: list[Any] = [1.0] * n
        data[n - 1] = bad
        with pytest.raises(V2Invalid, match=f"element {n - 1} is outside the {dt} range"):
            decode_request({"inputs": [tensor("x", [n], dt, data)]}, wide)


def test_string_field_needs_bytes() -> None:
    body = {
        "inputs": [
            tensor("age", [1], "FP64", [1.0]),
            tensor("region", [1], "INT64", [3]),
        ]
    }
    with pytest.raises(V2Invalid, match="needs datatype BYTES"):
        decode_request(body, MIXED)
    body["inputs"][1] = tensor("region", [1], "BYTES", [3])
    with pytest.raises(V2Invalid, match="does not fit BYTES: it is a JSON number"):
        decode_request(body, MIXED)


def test_too_many_rows_is_refused_from_the_shape() -> None:
    # max_rows is 4; the data is not even looked at.
    for body in (
        _with(BASE, "inputs.0", tensor("age", [5], "FP64", [1.0])),
        matrix_request([], [5, 3]),
    ):
        with pytest.raises(ContractViolation) as info:
            decode_request(body, NUMERIC)
        assert [v.code for v in info.value.violations] == ["contract.too_many_rows"]
    # The row count is checked before the elements are.
    body = _with(BASE, "inputs.0", tensor("age", [5], "FP64", ["x"] * 5))
    with pytest.raises(ContractViolation):
        decode_request(body, NUMERIC)


# ---------------------------------------------------------------------- encoding


@pytest.mark.parametrize(
    ("array", "datatype", "data"),
    [
        (np.array([0.25, 1.5]), "FP64", [0.25, 1.5]),
        (np.array([[0.5], [2.0]], dtype=np.float32), "FP32", [0.5, 2.0]),
        (np.array([1.5], dtype=np.float16), "FP16", [1.5]),
        (np.array([1, -2], dtype=np.int32), "INT64", [1, -2]),
        (np.array([7], dtype=np.uint8), "INT64", [7]),
        (np.array([2**64 - 1], dtype=np.uint64), "UINT64", [2**64 - 1]),
        (np.array([[True, False]]), "BOOL", [True, False]),
        (np.array(["cat", "dog"]), "BYTES", ["cat", "dog"]),
        (np.array([b"cat"]), "BYTES", ["cat"]),
        (np.array(["a", "b"], dtype=object), "BYTES", ["a", "b"]),
        (np.array([1, 0], dtype=object), "INT64", [1, 0]),
        (np.float64(3.5), "FP64", [3.5]),
    ],
)
def test_encode_tensor(array: np.ndarray, datatype: str, data: list[Any]) -> None:
    out = encode_tensor("predict", array)
    assert out == {
        "name": "predict",
        "shape": list(np.asarray(array).shape),
        "datatype": datatype,
        "data": data,
    }
    assert all(type(a) is type(b) for a, b in zip(out["data"], data, strict=True))


def test_encode_tensor_refuses_types_without_a_v2_datatype() -> None:
    for array in (np.array([1 + 2j]), np.array([b"\xff"]), np.array([None, 1], dtype=object)):
        with pytest.raises(BastionError) as info:
            encode_tensor("out", array)
        assert info.value.code == "v2.unsupported_dtype"
        assert not isinstance(info.value, InvalidInput)  # our fault, not the caller's


def test_encoded_columns_decode_back() -> None:
    rng = np.random.default_rng(7)
    columns = {
        "age": rng.uniform(18, 95, size=4),
        "n_items": rng.integers(0, 40, size=4),
        "member": rng.random(4) < 0.5,
    }
    body = {"inputs": [encode_tensor(name, col) for name, col in columns.items()]}
    _, decoded = decode_request(body, NUMERIC)
    for name, col in columns.items():
        assert decoded[name] == col.tolist()
    # And the matrix layout: a [N, F] float32 matrix, as MLServer clients send it.
    matrix = np.column_stack([c.astype(np.float32) for c in columns.values()])
    _, decoded = decode_request({"inputs": [encode_tensor("input-0", matrix)]}, NUMERIC)
    batch = NUMERIC.validate_columns(decoded)
    np.testing.assert_array_equal(batch.matrix(np.float32), matrix)


def test_encode_response() -> None:
    body = encode_response(
        model_name="churn",
        model_version="3",
        request_id="req-1",
        outputs={"predict": np.array([1, 0])},
        parameters={"receipt": "abc"},
    )
    assert body == {
        "model_name": "churn",
        "model_version": "3",
        "id": "req-1",
        "parameters": {"receipt": "abc"},
        "outputs": [{"name": "predict", "shape": [2], "datatype": "INT64", "data": [1, 0]}],
    }
    assert "id" not in encode_response(
        model_name="m", model_version="1", request_id=None, outputs={}
    )


def test_request_ids_fit_the_receipt() -> None:
    body = per_field()
    body["id"] = "r" * 128
    assert decode_request(body, NUMERIC)[0] == "r" * 128
    body["id"] = "r" * 129
    with pytest.raises(V2Invalid):
        decode_request(body, NUMERIC)
