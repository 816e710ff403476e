"""Open Inference Protocol (KServe V2) tensors, in and out of the input contract.

A V2 request carries tensors::

    {"id": "r1", "parameters": {...},
     "inputs": [{"name": "age", "shape": [2], "datatype": "FP64", "data": [31.0, 47.5]}],
     "outputs": [{"name": "predict"}]}

`decode_request` turns it into `{field: [values...]}` for `InputContract.validate_columns`, so
the contract (not this module) decides types, nulls, NaN and ranges. Two layouts are accepted,
which covers the MLServer and Triton clients in use:

1. one tensor per contract field, named by the field, shape `[N]` or `[N, 1]`;
2. a single `[N, F]` tensor (any name, e.g. `input-0`) whose F columns are the contract's fields
   in contract order; only when no field is a string.

This module rejects (`V2Invalid`, code `v2.invalid`, HTTP 422) what is wrong with the tensors
themselves: the envelope (not an object, unknown keys, missing `inputs`, a bad `id`), tensor
names (unknown, duplicated), shapes (negative, wrong rank, product not matching the data,
ragged nested data), datatypes (not a V2 datatype, BYTES for a numeric field or a numeric
datatype for a string field) and elements that do not fit the declared datatype (a string or
boolean in FP32, a fraction in INT64, 300 in UINT8, 1e39 in FP32). More rows than the
contract's `max_rows` is a `ContractViolation` (`contract.too_many_rows`), checked from the
shape before any data is read, as in the other request formats.

Elements stay Python values (ints, floats, bools, strings, `None`); for a boolean field sent as
a numeric tensor, exactly 0 and 1 become False and True (numeric matrices often carry flags);
anything else is left for the contract to reject.

`encode_tensor` goes the other way for outputs: numpy array → `{"name", "shape", "datatype",
"data"}` with row-major flat data. Non-finite floats stay NaN/inf in `data`; the JSON encoder
in front of the client decides how they are written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import chain
from typing import Any, Final

import numpy as np

from bastion.core.errors import BastionError, InvalidInput
from bastion.registry.contract import (
    TOO_MANY_ROWS,
    ContractViolation,
    FieldType,
    InputContract,
    Violation,
)

MAX_ID_LENGTH: Final = 128  # a receipt keeps it as client_request_id (1-128)

_INT_RANGES: Final[Mapping[str, tuple[int, int]]] = {
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
}
_FLOAT_LIMITS: Final[Mapping[str, float]] = {
    "FP16": float(np.finfo(np.float16).max),
    "FP32": float(np.finfo(np.float32).max),
    "FP64": float(np.finfo(np.float64).max),
}
DATATYPES: Final = frozenset({"BOOL", "BYTES", *_INT_RANGES, *_FLOAT_LIMITS})
NUMERIC_DATATYPES: Final = frozenset({*_INT_RANGES, *_FLOAT_LIMITS})

_REQUEST_KEYS: Final = frozenset({"id", "parameters", "inputs", "outputs"})
_TENSOR_KEYS: Final = frozenset({"name", "shape", "datatype", "data", "parameters"})
_TENSOR_REQUIRED: Final = frozenset({"name", "shape", "datatype", "data"})
_INT_ONLY: Final = frozenset({int})
_OUTPUT_KEYS: Final = frozenset({"name", "parameters"})
_NONE_TYPE: Final = type(None)
# Reading an enum member off its class costs ~0.1 µs on 3.11; these are read once.
_BOOLEAN: Final = FieldType.BOOLEAN
_STRING: Final = FieldType.STRING
_NUMPY_MIN: Final = 64  # below this many elements a Python loop beats numpy's call overhead


class V2Invalid(InvalidInput):
    """The V2 request is malformed (envelope, names, shapes, datatypes, elements)."""

    default_code = "v2.invalid"


def decode_request(body: Any, contract: InputContract) -> tuple[str | None, dict[str, list[Any]]]:
    """A V2 inference request → (request id, columns for `contract.validate_columns`)."""
    if type(body) is not dict and not isinstance(body, Mapping):
        raise V2Invalid("a V2 inference request must be a JSON object")
    if not body.keys() <= _REQUEST_KEYS:
        _only_keys(body, _REQUEST_KEYS, "request")
    request_id = body.get("id")
    if request_id is not None and (
        not isinstance(request_id, str) or len(request_id) > MAX_ID_LENGTH
    ):
        raise V2Invalid(f"id must be a string of at most {MAX_ID_LENGTH} characters")
    if body.get("parameters") is not None and not isinstance(body["parameters"], Mapping):
        raise V2Invalid("parameters must be a JSON object")
    _check_outputs(body.get("outputs"))
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise V2Invalid("inputs must be a non-empty list of tensors")
    tensors = [_Tensor.parse(t, i) for i, t in enumerate(inputs)]
    seen: set[str] = set()
    for t in tensors:
        if t.name in seen:
            raise V2Invalid(f"tensor {t.name!r} appears twice", details={"tensor": t.name})
        seen.add(t.name)
    specs = {spec.name: spec.type for spec in contract.fields}
    unknown = [t.name for t in tensors if t.name not in specs]
    if not unknown:
        return request_id, {t.name: _field_column(t, specs[t.name], contract) for t in tensors}
    if len(tensors) == 1:
        return request_id, _matrix_columns(tensors[0], contract)
    raise V2Invalid(
        f"unknown input tensor(s) {', '.join(map(repr, unknown[:10]))}: send one tensor per "
        "contract field, named by the field, or a single [N, F] tensor",
        details={"unknown": unknown[:100], "fields": list(contract.names[:100])},
    )


def encode_tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    """A numpy array → a V2 output tensor with row-major flat `data`."""
    values = np.asarray(array)
    datatype, data = _encode_data(name, values)
    return {"name": name, "shape": list(values.shape), "datatype": datatype, "data": data}


def encode_response(
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: Mapping[str, np.ndarray],
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The V2 response body around `encode_tensor` outputs (id omitted when None)."""
    body: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        body["id"] = request_id
    if parameters:
        body["parameters"] = dict(parameters)
    body["outputs"] = [encode_tensor(name, value) for name, value in outputs.items()]
    return body


# ---------------------------------------------------------------------- requests


class _Tensor:
    __slots__ = ("data", "datatype", "name", "shape")

    def __init__(self, name: str, shape: list[int], datatype: str, data: list[Any]) -> None:
        self.name = name
        self.shape = shape
        self.datatype = datatype
        self.data = data

    @classmethod
    def parse(cls, doc: Any, i: int) -> _Tensor:
        if type(doc) is not dict and not isinstance(doc, Mapping):
            raise V2Invalid(f"inputs[{i}] must be a JSON object")
        keys = doc.keys()
        if not keys <= _TENSOR_KEYS:
            _only_keys(doc, _TENSOR_KEYS, f"inputs[{i}]")
        if not keys >= _TENSOR_REQUIRED:
            missing = next(k for k in ("name", "shape", "datatype", "data") if k not in keys)
            raise V2Invalid(f"inputs[{i}] has no {missing}")
        name = doc["name"]
        if type(name) is not str or not name:
            raise V2Invalid(f"inputs[{i}].name must be a non-empty string")
        shown = _clip(name)
        shape = doc["shape"]
        if type(shape) is not list or not set(map(type, shape)) <= _INT_ONLY:
            raise V2Invalid(f"tensor {shown!r}: shape must be a list of integers")
        if shape and min(shape) < 0:
            raise V2Invalid(f"tensor {shown!r}: shape {shape} has a negative dimension")
        datatype = doc["datatype"]
        if type(datatype) is not str or datatype not in DATATYPES:
            raise V2Invalid(
                f"tensor {shown!r}: datatype must be one of {', '.join(sorted(DATATYPES))}"
            )
        data = doc["data"]
        if type(data) is not list:
            raise V2Invalid(f"tensor {shown!r}: data must be a list")
        parameters = doc.get("parameters")
        if parameters is not None and not isinstance(parameters, Mapping):
            raise V2Invalid(f"tensor {shown!r}: parameters must be a JSON object")
        return cls(shown, shape, datatype, data)

    def rows(self, contract: InputContract) -> int:
        rows = self.shape[0]
        if rows > contract.max_rows:
            raise ContractViolation(
                [
                    Violation(
                        None,
                        None,
                        TOO_MANY_ROWS,
                        f"{rows} rows; this model accepts at most {contract.max_rows} per request",
                    )
                ]
            )
        return rows

    def flat(self) -> list[Any]:
        """Row-major elements; nested data must match the shape exactly."""
        data = self.data
        expected = math.prod(self.shape)
        types = set(map(type, data))
        if list in types:
            if len(self.shape) != 2 or types != {list}:
                raise V2Invalid(f"tensor {self.name!r}: nested data does not match shape")
            rows, width = self.shape
            if len(data) != rows or set(map(len, data)) - {width}:
                raise V2Invalid(
                    f"tensor {self.name!r}: nested data is ragged or does not match "
                    f"shape {self.shape}"
                )
            data = list(chain.from_iterable(data))
            if list in set(map(type, data)):
                raise V2Invalid(f"tensor {self.name!r}: data is nested deeper than its shape")
        if len(data) != expected:
            raise V2Invalid(
                f"tensor {self.name!r}: shape {self.shape} holds {expected} elements, "
                f"data has {len(data)}",
                details={"tensor": self.name, "expected": expected, "got": len(data)},
            )
        return _elements(self.name, self.datatype, data)


def _field_column(tensor: _Tensor, kind: FieldType, contract: InputContract) -> list[Any]:
    """Layout 1: the tensor named after a field, shape [N] or [N, 1]."""
    if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
        raise V2Invalid(
            f"tensor {tensor.name!r}: a field tensor has shape [N] or [N, 1], not {tensor.shape}"
        )
    tensor.rows(contract)
    datatype = tensor.datatype
    if kind is _STRING:
        if datatype != "BYTES":
            raise V2Invalid(f"tensor {tensor.name!r}: a string field needs datatype BYTES")
    elif datatype == "BYTES":
        raise V2Invalid(f"tensor {tensor.name!r}: a {kind.value} field cannot be BYTES")
    elif datatype == "BOOL" and kind is not _BOOLEAN:
        raise V2Invalid(f"tensor {tensor.name!r}: a {kind.value} field cannot be BOOL")
    values = tensor.flat()
    if kind is _BOOLEAN and datatype != "BOOL":
        values = _flags(values)
    return values


def _matrix_columns(tensor: _Tensor, contract: InputContract) -> dict[str, list[Any]]:
    """Layout 2: one [N, F] tensor, columns in contract order."""
    width = len(contract.fields)
    if len(tensor.shape) != 2 or tensor.shape[1] != width:
        raise V2Invalid(
            f"unknown input tensor {tensor.name!r}: send one tensor per contract field, named "
            f"by the field, or a single [N, {width}] tensor (shape here: {tensor.shape})",
            details={"unknown": [tensor.name], "fields": list(contract.names[:100])},
        )
    strings = [spec.name for spec in contract.fields if spec.type is _STRING]
    if strings:
        raise V2Invalid(
            f"the contract has string fields ({', '.join(strings[:5])}); "
            "send one tensor per field instead of a single matrix"
        )
    if tensor.datatype == "BYTES":
        raise V2Invalid(f"tensor {tensor.name!r}: a feature matrix cannot be BYTES")
    if tensor.datatype == "BOOL" and any(s.type is not _BOOLEAN for s in contract.fields):
        raise V2Invalid(f"tensor {tensor.name!r}: BOOL only fits a contract of boolean fields")
    tensor.rows(contract)
    flat = tensor.flat()
    columns: dict[str, list[Any]] = {}
    for j, spec in enumerate(contract.fields):
        column = flat[j::width]
        if spec.type is _BOOLEAN and tensor.datatype != "BOOL":
            column = _flags(column)
        columns[spec.name] = column
    return columns


def _flags(values: list[Any]) -> list[Any]:
    """Exactly 0 and 1 become False and True; anything else is left for the contract."""
    return [
        (v == 1) if (type(v) is int or type(v) is float) and (v == 0 or v == 1) else v
        for v in values
    ]


def _elements(name: str, datatype: str, data: list[Any]) -> list[Any]:
    """Check every element against the datatype (JSON null passes, for nullable fields)."""
    types = set(map(type, data))
    types.discard(_NONE_TYPE)
    if datatype == "BYTES":
        if types <= {str}:
            return data
        raise _bad_element(name, datatype, data, lambda v: isinstance(v, str))
    if datatype == "BOOL":
        if types <= {bool}:
            return data
        raise _bad_element(name, datatype, data, lambda v: isinstance(v, bool))
    if not types <= {int, float}:
        raise _bad_element(
            name,
            datatype,
            data,
            lambda v: type(v) is int or type(v) is float,
        )
    if datatype in _INT_RANGES:
        return _integers(name, datatype, data, float in types)
    return _floats(name, datatype, data, int in types)


def _integers(name: str, datatype: str, data: list[Any], has_float: bool) -> list[Any]:
    lo, hi = _INT_RANGES[datatype]
    if has_float:
        for i, v in enumerate(data):
            if type(v) is float and not v.is_integer():
                raise V2Invalid(
                    f"tensor {name!r}: element {i} is not an integer ({datatype})",
                    details={"tensor": name, "index": i},
                )
        data = [int(v) if type(v) is float else v for v in data]
    present = [v for v in data if v is not None] if None in data else data
    if present and (min(present) < lo or max(present) > hi):
        i = next(i for i, v in enumerate(data) if v is not None and not lo <= v <= hi)
        raise V2Invalid(
            f"tensor {name!r}: element {i} is outside the {datatype} range",
            details={"tensor": name, "index": i},
        )
    return data


def _floats(name: str, datatype: str, data: list[Any], has_int: bool) -> list[Any]:
    """Finite values must fit the datatype (NaN/inf pass: the contract refuses them)."""
    if datatype == "FP64" and not has_int:
        return data  # every Python float is an FP64
    limit = _FLOAT_LIMITS[datatype]
    if len(data) >= _NUMPY_MIN:
        try:
            array = np.array(data, dtype=np.float64)  # None → NaN
        except OverflowError:
            pass  # an int beyond float64: the loop below names it
        else:
            finite = np.abs(array[np.isfinite(array)])
            if not finite.size or finite.max() <= limit:
                return data
    for i, v in enumerate(data):
        if v is None:
            continue
        try:
            magnitude = abs(float(v))  # NaN compares false below: it passes
            fits = not limit < magnitude < math.inf
        except OverflowError:  # an int beyond float64
            fits = False
        if not fits:
            raise V2Invalid(
                f"tensor {name!r}: element {i} is outside the {datatype} range",
                details={"tensor": name, "index": i},
            )
    return data


def _bad_element(name: str, datatype: str, data: list[Any], ok: Any) -> V2Invalid:
    i = next(i for i, v in enumerate(data) if v is not None and not ok(v))
    got = data[i]
    kind = (
        "boolean"
        if isinstance(got, bool)
        else "number"
        if isinstance(got, (int, float))
        else "string"
        if isinstance(got, str)
        else "object"
        if isinstance(got, Mapping)
        else type(got).__name__
    )
    return V2Invalid(
        f"tensor {name!r}: element {i} does not fit {datatype}: it is a JSON {kind}",
        details={"tensor": name, "index": i},
    )


def _check_outputs(outputs: Any) -> None:
    if outputs is None:
        return
    if not isinstance(outputs, list):
        raise V2Invalid("outputs must be a list")
    for i, out in enumerate(outputs):
        if not isinstance(out, Mapping):
            raise V2Invalid(f"outputs[{i}] must be a JSON object")
        _only_keys(out, _OUTPUT_KEYS, f"outputs[{i}]")
        if not isinstance(out.get("name"), str):
            raise V2Invalid(f"outputs[{i}].name must be a string")
        if out.get("parameters") is not None and not isinstance(out["parameters"], Mapping):
            raise V2Invalid(f"outputs[{i}].parameters must be a JSON object")


def _only_keys(doc: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = [str(k) for k in doc if k not in allowed]
    if unknown:
        raise V2Invalid(
            f"{where}: unknown key(s) {', '.join(repr(_clip(k)) for k in unknown[:5])}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _clip(text: str, limit: int = 128) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


# ---------------------------------------------------------------------- responses


def _encode_data(name: str, values: np.ndarray) -> tuple[str, list[Any]]:
    kind = values.dtype.kind
    flat = values.reshape(-1)
    if kind == "b":
        return "BOOL", flat.tolist()
    if kind == "i":
        return "INT64", flat.tolist()
    if kind == "u":
        return ("UINT64" if values.dtype.itemsize == 8 else "INT64"), flat.tolist()
    if kind == "f":
        if values.dtype == np.float32:
            return "FP32", flat.tolist()
        if values.dtype == np.float16:
            return "FP16", flat.tolist()
        return "FP64", flat.astype(np.float64).tolist()
    if kind == "U":
        return "BYTES", flat.tolist()
    if kind == "S":
        return "BYTES", [_utf8(name, b) for b in flat.tolist()]
    if kind == "O":
        items = flat.tolist()
        if all(isinstance(v, str) for v in items):
            return "BYTES", items
        if all(isinstance(v, bytes) for v in items):
            return "BYTES", [_utf8(name, b) for b in items]
        inferred = np.array(items)
        if inferred.dtype.kind in "biuf":
            return _encode_data(name, inferred)
    raise BastionError(
        f"output {name!r}: numpy dtype {values.dtype} has no V2 datatype",
        code="v2.unsupported_dtype",
    )


def _utf8(name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BastionError(
            f"output {name!r}: BYTES output is not UTF-8 text", code="v2.unsupported_dtype"
        ) from exc


__all__ = [
    "DATATYPES",
    "NUMERIC_DATATYPES",
    "V2Invalid",
    "decode_request",
    "encode_response",
    "encode_tensor",
]
