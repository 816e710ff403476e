"""Model loaders: turn a version's verified in-memory bytes into a `Predictor`.

The gateway decrypts a model version's files into memory, checks every file's SHA-256 against
the registry and the version's OpenSSF signature over those digests, and only then calls
`load_predictor` with the same `bytes` objects. Nothing here reads a file: a model is
deserialized from exactly the bytes that were verified, so there is no gap between check and
load for an attacker to swap a file in.

Choosing the artifact. Every file but the ML-BOM is run through the allow-list `Scanner`,
whose `FileReport.format` is decided from content, never from the name. Candidates are ranked
ONNX, then skops, then joblib/pickle (one tier); the first tier with a candidate must hold
exactly one (`serving.ambiguous_artifact`), and none at all is `serving.no_loadable_artifact`.
`prefer` forces a tier. The chosen file must scan clean (`serving.scan_rejected`), so an ONNX
model with external data or custom operator domains, a skops file with an unknown type or a
pickle importing anything off the allow-list never reaches a deserializer.

Loaders, safest and fastest first:

* ONNX Runtime, CPU provider chosen explicitly (the default provider list of the PyPI wheel
  includes Azure), one intra-op and one inter-op thread (the gateway serves many requests on
  few cores; a single row takes microseconds and a thread pool only adds hand-off latency).
  The model's inputs are mapped onto the `InputContract` once, at load: either one `[N, F]`
  tensor fed with `Batch.matrix`, or one `[N, 1]` tensor per contract field. Anything else is
  `serving.input_mismatch`. A ZipMap output (a list of dicts per row) is refused: convert with
  `zipmap=False` (`bastion.serving.convert` does).
* skops: every type `skops.io.get_untrusted_types` reports must be on the allow-list
  (`serving.untrusted_type`); only that audited list is passed as `trusted`.
* pickle and joblib, only when the static scanner passes those exact bytes; pickles are then
  loaded by an `Unpickler` whose `find_class` resolves allow-listed globals only (belt and
  braces: the scan already walked every opcode). joblib files go through `joblib.load`, which
  has no public hook for `find_class`; the scan (joblib mode, compressed payloads included) is
  their guard.

Predictions come back as a `Prediction`: `label` and `probabilities` for classifiers, `value`
for regressors, with the class labels in probability-column order.

Imports `bastion.registry` (the input contract), `bastion.supplychain` and `bastion.core`;
heavy runtimes (onnxruntime, skops, joblib, scikit-learn) are imported when first needed.
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from bastion.core.errors import BastionError, ConfigError, InvalidInput
from bastion.registry.contract import FieldType
from bastion.supplychain.scan import AllowList, ArtifactFormat, FileReport, Scanner

if TYPE_CHECKING:
    from bastion.registry.contract import Batch, InputContract

__all__ = [
    "KINDS",
    "METADATA_CLASSES",
    "METADATA_FIELDS",
    "METADATA_PROBABILITIES",
    "METADATA_TASK",
    "MLBOM_NAME",
    "ModelField",
    "OnnxPredictor",
    "Prediction",
    "Predictor",
    "SklearnPredictor",
    "fields_of",
    "load_predictor",
    "onnx_predictor",
]

MLBOM_NAME = "bastion.mlbom.cdx.json"
"""The ML-BOM every version carries: metadata, never a model."""

METADATA_CLASSES = "bastion.classes"
"""ONNX `metadata_props` key: JSON list of class labels in probability-column order."""
METADATA_FIELDS = "bastion.contract_fields"
"""ONNX `metadata_props` key: JSON list of the contract field names the model was built for."""
METADATA_TASK = "bastion.task"
"""ONNX `metadata_props` key: `classification` or `regression`."""
METADATA_PROBABILITIES = "bastion.probabilities"
"""ONNX `metadata_props` key: `true` when the `probabilities` output holds probabilities
(`predict_proba`), `false` when it holds decision scores (LinearSVC, RidgeClassifier)."""

KINDS = ("onnx", "skops", "joblib", "pickle")
_TIERS: tuple[frozenset[str], ...] = (
    frozenset({"onnx"}),
    frozenset({"skops"}),
    frozenset({"joblib", "pickle"}),
)
_KIND_OF_FORMAT: Mapping[ArtifactFormat, str] = MappingProxyType(
    {
        ArtifactFormat.ONNX: "onnx",
        ArtifactFormat.SKOPS: "skops",
        ArtifactFormat.JOBLIB: "joblib",
        ArtifactFormat.PICKLE: "pickle",
    }
)

# ONNX tensor element types the loader can feed, by ORT type string.
_ELEMENT: Mapping[str, str] = MappingProxyType(
    {
        "tensor(float)": "float",
        "tensor(double)": "double",
        "tensor(int64)": "int64",
        "tensor(string)": "string",
        "tensor(bool)": "bool",
    }
)
_NUMPY_OF_ELEMENT: Mapping[str, type[np.generic]] = MappingProxyType(
    {"float": np.float32, "double": np.float64, "int64": np.int64, "bool": np.bool_}
)
# KServe V2 datatypes of ORT tensor types.
_V2_OF_ORT: Mapping[str, str] = MappingProxyType(
    {
        "tensor(float)": "FP32",
        "tensor(double)": "FP64",
        "tensor(float16)": "FP16",
        "tensor(int64)": "INT64",
        "tensor(int32)": "INT32",
        "tensor(int16)": "INT16",
        "tensor(int8)": "INT8",
        "tensor(uint64)": "UINT64",
        "tensor(uint32)": "UINT32",
        "tensor(uint16)": "UINT16",
        "tensor(uint8)": "UINT8",
        "tensor(string)": "BYTES",
        "tensor(bool)": "BOOL",
    }
)
_INT64_LIMIT = float(2**63)


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Prediction:
    """One batch's model outputs.

    `outputs` holds `label` `(N,)` and, when the model has them, `probabilities` `(N, C)` for
    classifiers; `value` `(N,)` (or `(N, k)` for multi-output regressors) for regressors.
    `classes` are the class labels in probability-column order, `None` when unknown.
    """

    outputs: dict[str, np.ndarray]
    classes: tuple[Any, ...] | None

    def primary(self) -> np.ndarray:
        """The label for classifiers, the value for regressors: what shadow comparison and
        prediction receipts digest first."""
        if "label" in self.outputs:
            return self.outputs["label"]
        return self.outputs["value"]


class Predictor(Protocol):
    """A loaded model. Implementations are immutable after load and safe to share between
    threads (ONNX Runtime sessions and fitted scikit-learn estimators are)."""

    kind: str  # "onnx" | "skops" | "pickle" | "joblib"
    task: str  # "classification" | "regression"

    def predict(self, batch: Batch) -> Prediction: ...

    def describe(self) -> dict[str, Any]: ...


class ModelField(NamedTuple):
    """A contract field as a model sees it: its name, and whether it carries text."""

    name: str
    text: bool


def fields_of(contract: InputContract) -> tuple[ModelField, ...]:
    """The contract's fields in contract order, as models see them."""
    return tuple(ModelField(spec.name, spec.type is FieldType.STRING) for spec in contract.fields)


# -- choosing and loading --------------------------------------------------------------------


def load_predictor(
    files: Mapping[str, bytes],
    contract: InputContract,
    *,
    allowlist: AllowList,
    prefer: str | None = None,
    threads: int = 1,
) -> Predictor:
    """Load the one model among a version's verified files (path → bytes).

    `prefer` forces a kind (`onnx`, `skops`, `joblib` or `pickle`; the last two select the
    pickle tier, and the file's content decides which loader runs). `threads` is ONNX
    Runtime's intra-op thread count (0 = its default, one per core).

    Raises `InvalidInput` with code `serving.no_loadable_artifact`,
    `serving.ambiguous_artifact`, `serving.unknown_kind`, `serving.scan_rejected`,
    `serving.untrusted_type`, `serving.untrusted_global`, `serving.input_mismatch`,
    `serving.output_mismatch`, `serving.zipmap_output`, `serving.bad_metadata`,
    `serving.not_a_model` or `serving.load_failed`.
    """
    if prefer is not None and prefer not in KINDS:
        raise InvalidInput(
            f"unknown model kind {prefer!r}; expected one of {', '.join(KINDS)}",
            code="serving.unknown_kind",
            details={"prefer": prefer[:100], "kinds": list(KINDS)},
        )
    scanner = Scanner(allowlist)
    blobs = {path: _frozen(data) for path, data in files.items()}
    reports = {
        path: scanner.scan_bytes(data, path)
        for path, data in sorted(blobs.items())
        if PurePosixPath(path).name != MLBOM_NAME
    }
    path, report = _choose(reports, prefer)
    data = blobs[path]
    kind = _KIND_OF_FORMAT[report.format]
    fields = fields_of(contract)
    # The explicit skops audit first, so a refused type is reported as such.
    trusted = _check_skops_types(data, path, allowlist) if kind == "skops" else []
    if report.findings:
        raise InvalidInput(
            f"{path} does not pass the artifact scan; it is not loaded",
            code="serving.scan_rejected",
            details={
                "path": path,
                "format": report.format.value,
                "findings": sorted({f.code for f in report.findings}),
            },
        )
    if kind == "onnx":
        return onnx_predictor(data, fields, path=path, threads=threads)
    estimator = _deserialize(kind, data, path, allowlist, trusted)
    return SklearnPredictor(estimator, fields, kind=kind, path=path)


def _frozen(data: bytes) -> bytes:
    # A bytearray or memoryview could change between the digest check and the load.
    return data if type(data) is bytes else bytes(data)


def _choose(reports: Mapping[str, FileReport], prefer: str | None) -> tuple[str, FileReport]:
    found = {path: r.format.value for path, r in reports.items()}
    tiers = _TIERS if prefer is None else tuple(t for t in _TIERS if prefer in t)
    for tier in tiers:
        candidates = [
            (path, report)
            for path, report in reports.items()
            if _KIND_OF_FORMAT.get(report.format) in tier
        ]
        if len(candidates) > 1:
            raise InvalidInput(
                f"{len(candidates)} {'/'.join(sorted(tier))} artifacts in the version "
                f"({', '.join(p for p, _ in candidates)}); exactly one model file is loadable",
                code="serving.ambiguous_artifact",
                details={"candidates": [p for p, _ in candidates]},
            )
        if candidates:
            return candidates[0]
    wanted = f"no {prefer} artifact" if prefer else "no ONNX, skops, joblib or pickle artifact"
    raise InvalidInput(
        f"{wanted} among the version's files",
        code="serving.no_loadable_artifact",
        details={"files": found, **({"prefer": prefer} if prefer else {})},
    )


def _check_skops_types(data: bytes, path: str, allowlist: AllowList) -> list[str]:
    from skops.io import get_untrusted_types

    try:
        untrusted = [str(t) for t in get_untrusted_types(data=data)]
    except Exception as error:  # skops raises many types; any means "cannot audit"
        raise InvalidInput(
            f"skops cannot audit {path} ({type(error).__name__})",
            code="serving.load_failed",
            details={"path": path, "error": type(error).__name__},
        ) from error
    refused = sorted(t for t in untrusted if not allowlist.allows_skops_type(t))
    if refused:
        raise InvalidInput(
            f"{path} needs types that are not on the allow-list: {', '.join(refused)[:500]}",
            code="serving.untrusted_type",
            details={"path": path, "types": refused},
        )
    return untrusted


def _deserialize(
    kind: str, data: bytes, path: str, allowlist: AllowList, trusted: list[str]
) -> Any:
    """Deserialize a clean artifact; `trusted` is the audited skops type list."""
    try:
        if kind == "skops":
            from skops.io import loads

            return loads(data, trusted=trusted)
        if kind == "pickle":
            return _unpickle_restricted(data, allowlist)
        import joblib  # type: ignore[import-untyped]

        return joblib.load(io.BytesIO(data))
    except BastionError:
        raise
    except _RefusedGlobal as refused:
        raise InvalidInput(
            f"{path} references {refused.module}.{refused.name}, which is not allow-listed",
            code="serving.untrusted_global",
            details={"path": path, "global": f"{refused.module}.{refused.name}"[:300]},
        ) from None
    except Exception as error:  # deserializers raise anything; all mean "cannot load"
        raise InvalidInput(
            f"{path} cannot be loaded as {kind} ({type(error).__name__})",
            code="serving.load_failed",
            details={"path": path, "kind": kind, "error": type(error).__name__},
        ) from error


class _RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name} is not allow-listed")
        self.module = module
        self.name = name


class _AllowListUnpickler(pickle.Unpickler):
    """Resolves only allow-listed globals; persistent ids and out-of-band buffers are refused
    by `pickle.Unpickler` itself (no `persistent_load`, no `buffers`)."""

    def __init__(self, file: io.BytesIO, allowlist: AllowList) -> None:
        super().__init__(file)
        self._allowlist = allowlist

    def find_class(self, module: str, name: str) -> Any:
        if not self._allowlist.allows_global(module, name):
            raise _RefusedGlobal(module, name)
        return super().find_class(module, name)


def _unpickle_restricted(data: bytes, allowlist: AllowList) -> Any:
    """Unpickle with allow-listed globals only. Raises `_RefusedGlobal` before any refused
    global is imported or called."""
    stream = io.BytesIO(data)
    value = _AllowListUnpickler(stream, allowlist).load()
    if stream.read(1):
        raise pickle.UnpicklingError("bytes follow STOP")
    return value


# -- ONNX Runtime ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Feed:
    """How one model input is built from a batch: the whole matrix or one field's column."""

    name: str
    element: str
    fields: tuple[ModelField, ...]
    matrix: bool


def onnx_predictor(
    data: bytes, fields: Sequence[ModelField], *, path: str = "model.onnx", threads: int = 1
) -> OnnxPredictor:
    """An ONNX Runtime session on `data` (CPU provider only), its inputs mapped onto
    `fields`. Refusals as in `load_predictor`."""
    if not 0 <= threads <= 64:
        raise ConfigError(
            f"ONNX Runtime threads must be 0 (its default) to 64, not {threads}",
            code="serving.bad_threads",
        )
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    # Bytes are an ONNX protobuf, never ORT's flatbuffer format (which the scanner cannot read).
    options.add_session_config_entry("session.load_model_format", "ONNX")
    try:
        session = ort.InferenceSession(
            data, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # ORT raises its own pybind types
        raise InvalidInput(
            f"ONNX Runtime cannot load {path} ({type(error).__name__}: {str(error)[:300]})",
            code="serving.load_failed",
            details={"path": path, "kind": "onnx", "error": type(error).__name__},
        ) from error
    if list(session.get_providers()) != ["CPUExecutionProvider"]:
        raise InvalidInput(
            f"ONNX Runtime chose providers {session.get_providers()} for {path}",
            code="serving.load_failed",
            details={"path": path, "providers": list(session.get_providers())},
        )
    return OnnxPredictor(session, tuple(fields), path=path)


def _metadata_list(meta: Mapping[str, str], key: str, path: str) -> list[Any] | None:
    raw = meta.get(key)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(
        isinstance(v, str | int | float | bool) for v in value
    ):
        raise InvalidInput(
            f"{path}: metadata {key} is not a JSON list of scalars",
            code="serving.bad_metadata",
            details={"path": path, "key": key},
        )
    return value


def _shape(dims: Sequence[Any]) -> list[int]:
    """ORT dims (int, symbolic str or None) in V2 terms: -1 for anything not fixed."""
    return [d if isinstance(d, int) and d >= 0 else -1 for d in dims]


def _describe_arg(name: str, ort_type: str, dims: Sequence[Any]) -> dict[str, Any]:
    shape = _shape(dims)
    if shape:
        shape[0] = -1
    return {"name": name, "datatype": _V2_OF_ORT.get(ort_type, ort_type), "shape": shape}


class OnnxPredictor:
    """A model served by ONNX Runtime. Inputs and outputs are mapped once, at construction."""

    kind = "onnx"

    def __init__(self, session: Any, fields: tuple[ModelField, ...], *, path: str) -> None:
        self.path = path
        self._session = session
        self._fields = fields
        meta: Mapping[str, str] = dict(session.get_modelmeta().custom_metadata_map)
        self._feeds = self._map_inputs(meta)
        self.task, self._fetch, classes = self._map_outputs(meta)
        self.classes = classes

    # -- inputs --

    def _mismatch(self, why: str) -> InvalidInput:
        model = [
            {"name": i.name, "type": i.type, "shape": _shape(i.shape)}
            for i in self._session.get_inputs()
        ]
        contract = [{"name": f.name, "text": f.text} for f in self._fields]
        takes = ", ".join(f"{m['name']} {m['type']}{m['shape']}" for m in model)
        return InvalidInput(
            f"{self.path}: the model's inputs do not fit the input contract: {why}. The model "
            f"takes {takes[:400]}; "
            f"the contract has {len(self._fields)} fields "
            f"({', '.join(f.name for f in self._fields)[:400]}). Expected one [N, "
            f"{len(self._fields)}] tensor or one [N, 1] tensor per field.",
            code="serving.input_mismatch",
            details={"path": self.path, "model_inputs": model, "contract_fields": contract},
        )

    def _map_inputs(self, meta: Mapping[str, str]) -> tuple[_Feed, ...]:
        inputs = list(self._session.get_inputs())
        names = [f.name for f in self._fields]
        declared = _metadata_list(meta, METADATA_FIELDS, self.path)
        if not self._fields:
            raise self._mismatch("the contract has no fields")
        for arg in inputs:
            if len(arg.shape) != 2:
                raise self._mismatch(f"input {arg.name} is not a 2-D tensor")
            if isinstance(arg.shape[0], int) and arg.shape[0] >= 0:
                raise self._mismatch(f"input {arg.name} has a fixed batch size {arg.shape[0]}")
            if arg.type not in _ELEMENT:
                raise self._mismatch(f"input {arg.name} has unsupported element type {arg.type}")
        by_name = {f.name: f for f in self._fields}
        if (
            len(inputs) == 1
            and inputs[0].shape[1] == len(self._fields)
            and not (len(self._fields) == 1 and inputs[0].name in by_name)
        ):
            arg = inputs[0]
            element = _ELEMENT[arg.type]
            if declared is not None and declared != names:
                raise self._mismatch(f"the model was converted for fields {declared} in that order")
            self._check_element(element, self._fields, arg.name)
            return (_Feed(arg.name, element, self._fields, matrix=True),)
        if {a.name for a in inputs} != set(names) or len(inputs) != len(names):
            raise self._mismatch("input names differ from the contract's field names")
        if declared is not None and sorted(map(str, declared)) != sorted(names):
            raise self._mismatch(f"the model was converted for fields {declared}")
        feeds = []
        for arg in inputs:
            if arg.shape[1] != 1:
                raise self._mismatch(f"input {arg.name} is not an [N, 1] tensor")
            element = _ELEMENT[arg.type]
            field = by_name[arg.name]
            self._check_element(element, (field,), arg.name)
            feeds.append(_Feed(arg.name, element, (field,), matrix=False))
        return tuple(feeds)

    def _check_element(self, element: str, fields: Sequence[ModelField], name: str) -> None:
        wrong = [f.name for f in fields if f.text != (element == "string")]
        if wrong:
            kind = "string" if element == "string" else "numeric"
            raise self._mismatch(
                f"input {name} is a {kind} tensor but field(s) {', '.join(wrong)[:200]} "
                f"are {'numeric' if element == 'string' else 'text'}"
            )

    # -- outputs --

    def _map_outputs(
        self, meta: Mapping[str, str]
    ) -> tuple[str, tuple[tuple[str, str], ...], tuple[Any, ...] | None]:
        outputs = {o.name: o for o in self._session.get_outputs()}
        maps = sorted(n for n, o in outputs.items() if not str(o.type).startswith("tensor("))
        if maps:
            raise InvalidInput(
                f"{self.path}: output(s) {', '.join(maps)} are sequences of maps (a ZipMap); "
                "convert the classifier with zipmap=False (bastion.serving.convert does)",
                code="serving.zipmap_output",
                details={"path": self.path, "outputs": {n: outputs[n].type for n in maps}},
            )
        classes_list = _metadata_list(meta, METADATA_CLASSES, self.path)
        classes = tuple(classes_list) if classes_list is not None else None
        probabilities = meta.get(METADATA_PROBABILITIES, "true") != "false"
        task_hint = meta.get(METADATA_TASK)
        if "label" in outputs and task_hint != "regression":
            fetch: list[tuple[str, str]] = [("label", "label")]
            if "probabilities" in outputs and probabilities:
                proba = outputs["probabilities"]
                if len(proba.shape) != 2:
                    raise self._output_mismatch("probabilities is not an [N, C] tensor")
                width = proba.shape[1]
                if classes is not None and isinstance(width, int) and width != len(classes):
                    raise InvalidInput(
                        f"{self.path}: {len(classes)} classes in the metadata but {width} "
                        "probability columns",
                        code="serving.bad_metadata",
                        details={"path": self.path, "classes": len(classes), "columns": width},
                    )
                fetch.append(("probabilities", "probabilities"))
            return "classification", tuple(fetch), classes
        if "variable" in outputs:
            return "regression", (("variable", "value"),), None
        if len(outputs) == 1:
            (name,) = outputs
            return "regression", ((name, "value"),), None
        raise self._output_mismatch(
            "expected label (and probabilities) for a classifier or variable for a regressor"
        )

    def _output_mismatch(self, why: str) -> InvalidInput:
        outputs = {o.name: o.type for o in self._session.get_outputs()}
        return InvalidInput(
            f"{self.path}: unusable outputs {outputs}: {why}",
            code="serving.output_mismatch",
            details={"path": self.path, "outputs": outputs},
        )

    # -- serving --

    def predict(self, batch: Batch) -> Prediction:
        _check_rows(batch)
        feeds = {feed.name: _feed_value(feed, batch) for feed in self._feeds}
        try:
            results = self._session.run([name for name, _ in self._fetch], feeds)
        except Exception as error:  # ORT raises its own pybind types
            raise BastionError(
                f"the model failed to predict ({type(error).__name__})",
                code="serving.predict_failed",
                details={"path": self.path, "error": type(error).__name__},
            ) from error
        outputs: dict[str, np.ndarray] = {}
        for (_, key), value in zip(self._fetch, results, strict=True):
            array = np.asarray(value)
            if key == "value" and array.ndim == 2 and array.shape[1] == 1:
                array = array.reshape(-1)
            outputs[key] = array
        return Prediction(outputs=outputs, classes=self.classes)

    def describe(self) -> dict[str, Any]:
        outputs = {o.name: o for o in self._session.get_outputs()}
        described = []
        for name, key in self._fetch:
            out = _describe_arg(key, outputs[name].type, outputs[name].shape)
            if key in ("label", "value") and len(out["shape"]) == 2 and out["shape"][1] == 1:
                out["shape"] = [-1]
            described.append(out)
        return {
            "platform": "onnxruntime",
            "inputs": [_describe_arg(i.name, i.type, i.shape) for i in self._session.get_inputs()],
            "outputs": described,
        }


def _check_rows(batch: Batch) -> None:
    if batch.rows < 1:
        raise InvalidInput("the batch has no rows", code="serving.empty_batch")


def _feed_value(feed: _Feed, batch: Batch) -> np.ndarray:
    if feed.matrix and feed.element in ("float", "double"):
        return np.ascontiguousarray(batch.matrix(dtype=_NUMPY_OF_ELEMENT[feed.element]))
    columns = [_column(batch, f, feed.element) for f in feed.fields]
    if len(columns) == 1:
        return columns[0].reshape(-1, 1)
    return np.stack(columns, axis=1)


def _column(batch: Batch, field: ModelField, element: str) -> np.ndarray:
    """One field's column as the element type an ONNX input wants; refuses values that
    cannot be represented (null or fractional values for an integer input, ...)."""
    values = np.asarray(batch.columns[field.name])
    if element == "string":
        if values.dtype.kind not in "OU" or not all(isinstance(v, str) for v in values):
            raise InvalidInput(
                f"field {field.name}: the model needs a string for every row (no nulls)",
                code="serving.input_conversion",
                details={"field": field.name},
            )
        return values.astype(object)
    numbers = values.astype(np.float64)
    if element in ("float", "double"):
        return numbers.astype(_NUMPY_OF_ELEMENT[element])
    if element == "bool":
        if not np.all((numbers == 0.0) | (numbers == 1.0)):
            raise InvalidInput(
                f"field {field.name}: the model needs true/false in every row (no nulls)",
                code="serving.input_conversion",
                details={"field": field.name},
            )
        return numbers.astype(np.bool_)
    if not (
        np.all(np.isfinite(numbers))
        and np.all(np.abs(numbers) < _INT64_LIMIT)
        and np.all(numbers == np.trunc(numbers))
    ):
        raise InvalidInput(
            f"field {field.name}: the model needs an integer in every row (no nulls)",
            code="serving.input_conversion",
            details={"field": field.name},
        )
    return numbers.astype(np.int64)


# -- scikit-learn estimators -------------------------------------------------------------------


def _v2_of_values(values: np.ndarray) -> str:
    kind = values.dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return "INT64"
    if kind == "f":
        return "FP64"
    return "BYTES"


def _natives(values: Any) -> tuple[Any, ...]:
    listed = np.asarray(values).tolist()
    return tuple(listed) if isinstance(listed, list) else (listed,)


class SklearnPredictor:
    """A fitted scikit-learn estimator (or pipeline) from skops, pickle or joblib bytes."""

    def __init__(
        self, estimator: Any, fields: Sequence[ModelField], *, kind: str, path: str
    ) -> None:
        self.kind = kind
        self.path = path
        self._estimator = estimator
        self._fields = tuple(fields)
        self._text = any(f.text for f in self._fields)
        predict = callable(getattr(estimator, "predict", None))
        proba = callable(getattr(estimator, "predict_proba", None))
        if not (predict or proba):
            raise InvalidInput(
                f"{path} holds a {type(estimator).__name__}, which has neither predict nor "
                "predict_proba",
                code="serving.not_a_model",
                details={"path": path, "type": type(estimator).__name__[:200]},
            )
        self._check_fitted()
        raw_classes = getattr(estimator, "classes_", None)
        if not predict and raw_classes is None:
            raise InvalidInput(
                f"{path} holds a {type(estimator).__name__} with predict_proba but neither "
                "predict nor classes_",
                code="serving.not_a_model",
                details={"path": path, "type": type(estimator).__name__[:200]},
            )
        self._predict = predict
        self._proba = proba
        self.task = "classification" if proba or raw_classes is not None else "regression"
        self.classes = _natives(raw_classes) if raw_classes is not None else None
        self._label_type = (
            _v2_of_values(np.asarray(raw_classes)) if raw_classes is not None else "FP64"
        )
        width = getattr(estimator, "n_features_in_", None)
        if isinstance(width, int) and width != len(self._fields):
            raise InvalidInput(
                f"{path}: the estimator was fitted on {width} features; the contract has "
                f"{len(self._fields)} fields",
                code="serving.input_mismatch",
                details={"path": path, "n_features_in": width, "fields": len(self._fields)},
            )

    def _check_fitted(self) -> None:
        from sklearn.base import BaseEstimator  # type: ignore[import-untyped]
        from sklearn.exceptions import NotFittedError  # type: ignore[import-untyped]
        from sklearn.utils.validation import check_is_fitted  # type: ignore[import-untyped]

        if not isinstance(self._estimator, BaseEstimator):
            return
        try:
            check_is_fitted(self._estimator)
        except NotFittedError:
            raise InvalidInput(
                f"{self.path} holds an unfitted {type(self._estimator).__name__}",
                code="serving.not_a_model",
                details={"path": self.path, "type": type(self._estimator).__name__[:200]},
            ) from None

    def matrix(self, batch: Batch) -> np.ndarray:
        """The estimator's input: `float64` for numeric contracts, else an object array of
        the columns in contract order (numbers as floats, text as str)."""
        if not self._text:
            return batch.matrix(dtype=np.float64)
        out = np.empty((batch.rows, len(self._fields)), dtype=object)
        for j, field in enumerate(self._fields):
            out[:, j] = np.asarray(batch.columns[field.name], dtype=object)
        return out

    def predict(self, batch: Batch) -> Prediction:
        _check_rows(batch)
        x = self.matrix(batch)
        outputs: dict[str, np.ndarray] = {}
        try:
            if self.task == "classification":
                probabilities = self._estimator.predict_proba(x) if self._proba else None
                if self._predict:
                    outputs["label"] = np.asarray(self._estimator.predict(x))
                else:
                    assert probabilities is not None
                    assert self.classes is not None
                    outputs["label"] = np.asarray(self.classes)[np.argmax(probabilities, 1)]
                if probabilities is not None:
                    outputs["probabilities"] = np.asarray(probabilities)
            else:
                value = np.asarray(self._estimator.predict(x))
                outputs["value"] = (
                    value.reshape(-1) if value.ndim == 2 and value.shape[1] == 1 else value
                )
        except BastionError:
            raise
        except Exception as error:  # estimators raise anything
            raise BastionError(
                f"the model failed to predict ({type(error).__name__})",
                code="serving.predict_failed",
                details={"path": self.path, "error": type(error).__name__},
            ) from error
        return Prediction(outputs=outputs, classes=self.classes)

    def describe(self) -> dict[str, Any]:
        n = len(self._fields)
        if self._text:
            inputs = [
                {"name": f.name, "datatype": "BYTES" if f.text else "FP64", "shape": [-1, 1]}
                for f in self._fields
            ]
        else:
            inputs = [{"name": "input", "datatype": "FP64", "shape": [-1, n]}]
        outputs: list[dict[str, Any]]
        if self.task == "classification":
            outputs = [{"name": "label", "datatype": self._label_type, "shape": [-1]}]
            if self._proba:
                width = len(self.classes) if self.classes is not None else -1
                outputs.append({"name": "probabilities", "datatype": "FP64", "shape": [-1, width]})
        else:
            outputs_n = getattr(self._estimator, "n_outputs_", 1)
            shape = [-1] if not isinstance(outputs_n, int) or outputs_n == 1 else [-1, outputs_n]
            outputs = [{"name": "value", "datatype": "FP64", "shape": shape}]
        return {"platform": "sklearn", "inputs": inputs, "outputs": outputs}
