"""The scanner's format layer: sniffing by content, `.npy`/`.npz`, safetensors, ONNX, and
joblib's compressed containers. The pickle walker itself is tested in test_scan_pickles.py;
here it only has to be reached (or not) for the right bytes.

Every artifact is generated in the test; nothing is ever unpickled or loaded.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import pickle
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bastion.supplychain.scan import ArtifactFormat, FileReport, ScanLimits, Scanner


class _Hostile:
    """Pickles as a call to os.system (the classic payload). Never unpickled."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned",))


HOSTILE = pickle.dumps(_Hostile(), protocol=4)
HOSTILE_P0 = pickle.dumps(_Hostile(), protocol=0)
BENIGN = pickle.dumps({"weights": [1.0, 2.5], "name": "model", "shape": (2, 3)}, protocol=4)
CSV = b"id,score\n" + b"".join(b"%d,%d\n" % (i, i * 7 % 13) for i in range(200))


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner()


def codes(report: FileReport) -> set[str]:
    return {f.code for f in report.findings}


def only(report: FileReport, code: str) -> list[int | None]:
    """Offsets of the findings with `code`, asserting there is at least one."""
    offsets = [f.offset for f in report.findings if f.code == code]
    assert offsets, f"no {code} in {report.findings}"
    return offsets


def pickle_findings(report: FileReport) -> list[str]:
    return [f.code for f in report.findings if f.code.startswith("pickle.")]


# -- 1. sniffing by content, never by name ----------------------------------------------------


@pytest.mark.parametrize("name", ["model.onnx", "weights.safetensors", "README.md", "x.npy"])
def test_hostile_pickle_is_walked_whatever_its_name(scanner: Scanner, name: str) -> None:
    report = scanner.scan_bytes(HOSTILE, name)
    assert report.format is ArtifactFormat.PICKLE
    assert pickle_findings(report)
    assert any("system" in f.reason for f in report.findings)


@pytest.mark.parametrize("name", ["model.onnx", "weights.safetensors", "README.md"])
def test_benign_pickle_under_another_name_is_clean(scanner: Scanner, name: str) -> None:
    report = scanner.scan_bytes(BENIGN, name)
    assert (report.format, report.findings) == (ArtifactFormat.PICKLE, ())


def test_protocol_0_pickle_named_like_text_is_walked(scanner: Scanner) -> None:
    report = scanner.scan_bytes(HOSTILE_P0, "README.md")
    assert report.format is ArtifactFormat.PICKLE
    assert pickle_findings(report)


def test_npy_named_pkl_is_numpy(scanner: Scanner) -> None:
    report = scanner.scan_bytes(_npy(np.arange(12, dtype=np.int64).reshape(3, 4)), "x.pkl")
    assert (report.format, report.findings) == (ArtifactFormat.NUMPY, ())


@pytest.mark.parametrize(
    "data",
    [
        b"just some notes\nabout the model\n",
        b"",
        b"\n",
        json.dumps({"hidden_size": 768, "layers": [1, 2], "act": "gelu"}, indent=2).encode(),
        CSV,
    ],
    ids=["text", "empty", "newline", "json", "csv"],
)
def test_plain_files_are_unknown_and_clean(scanner: Scanner, data: bytes) -> None:
    report = scanner.scan_bytes(data, "config.json")
    assert (report.format, report.findings) == (ArtifactFormat.UNKNOWN, ())
    assert report.size == len(data)


@pytest.mark.parametrize(
    "data",
    [b"x = 1\nprint(x)\n", b"80,90\n1,2\n", b"x ", b"(r'a' is a note)\n", b"Xf\n", b"x\x9c"],
)
def test_text_that_starts_like_a_zlib_header_is_not_compressed(
    scanner: Scanner, data: bytes
) -> None:
    """One two-byte prefix in a thousand passes the RFC 1950 header check (`x `, `80`,
    `(r`...). Such text used to be decompressed and reported `compressed.corrupt`."""
    report = scanner.scan_bytes(data, "notes.txt")
    assert (report.format, report.findings) == (ArtifactFormat.UNKNOWN, ())


def test_pickle_that_starts_like_a_zlib_header_is_walked(scanner: Scanner) -> None:
    """`(S` (MARK, STRING) is also a valid zlib header: the pickle must still be walked."""
    data = b"(S'junk'\n0cos\nsystem\n(S'echo pwned'\ntR."
    assert (data[0] * 256 + data[1]) % 31 == 0  # really a zlib-looking start
    report = scanner.scan_bytes(data, "notes.txt")
    assert report.format is ArtifactFormat.PICKLE
    assert "pickle.global_not_allowed" in codes(report)


def test_digest_and_size_are_of_the_bytes(scanner: Scanner) -> None:
    import hashlib

    report = scanner.scan_bytes(CSV, "a.csv")
    assert report.digest == "sha256:" + hashlib.sha256(CSV).hexdigest()
    assert report.size == len(CSV)


# -- 5. .npy / .npz ---------------------------------------------------------------------------


def _npy(array: Any, **kw: Any) -> bytes:
    out = io.BytesIO()
    np.save(out, array, **kw)
    return out.getvalue()


def _npy_header(text: str, version: int = 1) -> bytes:
    raw = text.encode("latin-1")
    width = 2 if version == 1 else 4
    raw += b" " * ((-(6 + 2 + width + len(raw) + 1)) % 64) + b"\n"
    size = struct.pack("<H" if width == 2 else "<I", len(raw))
    return b"\x93NUMPY" + bytes([version, 0]) + size + raw


@pytest.mark.parametrize(
    "array",
    [
        np.arange(10, dtype=np.int8),
        np.zeros((3, 4), np.float32),
        np.ones(5, np.complex128),
        np.array([True, False, True]),
        np.array(["ab", "cde"]),
        np.array([b"x", b"yz"]),
        np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        np.zeros((0, 5), np.float64),
        np.float64(3.5),
        np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]),
        np.array(["2020-01-01", "2021-06-30"], dtype="datetime64[D]"),
        np.arange(4, dtype=">u2"),
        np.arange(8, dtype=np.float16),
    ],
    ids=lambda a: f"{a.dtype.str}{a.shape}",
)
def test_benign_npy_arrays_are_clean(scanner: Scanner, array: Any) -> None:
    report = scanner.scan_bytes(_npy(array), "a.npy")
    assert (report.format, report.findings) == (ArtifactFormat.NUMPY, ())


def test_npy_header_versions_2_and_3(scanner: Scanner) -> None:
    for version in (2, 3):
        data = _npy_header("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", version)
        report = scanner.scan_bytes(data + b"\0" * 8, "a.npy")
        assert (report.format, report.findings) == (ArtifactFormat.NUMPY, ())


def test_benign_object_array_is_clean(scanner: Scanner) -> None:
    array = np.array([1, "a", None, (1, 2), 2.5], dtype=object)
    report = scanner.scan_bytes(_npy(array, allow_pickle=True), "a.npy")
    assert (report.format, report.findings) == (ArtifactFormat.NUMPY, ())


def test_hostile_object_array_is_rejected(scanner: Scanner) -> None:
    array = np.empty(2, dtype=object)
    array[0] = _Hostile()
    array[1] = 3
    data = _npy(array, allow_pickle=True)
    report = scanner.scan_bytes(data, "a.npy")
    assert report.format is ArtifactFormat.NUMPY
    (offset,) = only(report, "pickle.global_not_allowed")
    # a file offset, past the header, at the STACK_GLOBAL that imports posix.system
    assert offset is not None
    assert offset > data.index(b"\n")
    assert data[offset : offset + 1] == b"\x93"
    assert data[:offset].endswith(b"system\x94")


def test_object_dtype_with_garbage_instead_of_a_pickle(scanner: Scanner) -> None:
    data = _npy_header("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }")
    report = scanner.scan_bytes(data + b"\0" * 16, "a.npy")
    assert pickle_findings(report)


def test_npy_truncated_data(scanner: Scanner) -> None:
    data = _npy(np.arange(10, dtype=np.int32))
    report = scanner.scan_bytes(data[:-3], "a.npy")
    assert only(report, "numpy.truncated") == [len(data) - 40]


def test_npy_truncated_header(scanner: Scanner) -> None:
    report = scanner.scan_bytes(_npy(np.arange(3))[:20], "a.npy")
    assert only(report, "numpy.truncated") == [0]


def test_npy_trailing_data(scanner: Scanner) -> None:
    data = _npy(np.arange(10, dtype=np.int32))
    report = scanner.scan_bytes(data + b"xyz", "a.npy")
    assert only(report, "numpy.trailing_data") == [len(data)]


def test_npy_with_a_pickle_hidden_after_the_data(scanner: Scanner) -> None:
    data = _npy_header("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }")
    report = scanner.scan_bytes(data + b"\0" * 8 + HOSTILE, "a.npy")
    assert codes(report) == {"numpy.trailing_data"}


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("not a literal", "numpy.malformed"),
        ("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), 'x': 1}", "numpy.malformed"),
        ("{'descr': '<i4', 'fortran_order': False}", "numpy.malformed"),
        ("['descr', 'fortran_order', 'shape']", "numpy.malformed"),
        ("{'descr': '<i4', 'fortran_order': False, 'shape': (-2,), }", "numpy.malformed"),
        ("{'descr': '<i4', 'fortran_order': False, 'shape': (2.0,), }", "numpy.malformed"),
        ("{'descr': '<i4', 'fortran_order': False, 'shape': [2], }", "numpy.malformed"),
        ("{'descr': '<i4', 'fortran_order': 0, 'shape': (2,), }", "numpy.malformed"),
        ("{'descr': 'zz', 'fortran_order': False, 'shape': (2,), }", "numpy.malformed"),
        ("{'descr': '<i4', 'fortran_order': False, 'shape': (2**40,), }", "numpy.malformed"),
        (
            "{'descr': '<i8', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }",
            "numpy.malformed",
        ),
        ("{'descr': __import__('os'), 'fortran_order': False, 'shape': (2,)}", "numpy.malformed"),
    ],
    ids=[
        "not-literal",
        "extra-key",
        "missing-key",
        "not-a-dict",
        "negative-shape",
        "float-shape",
        "list-shape",
        "int-fortran",
        "bad-descr",
        "expression",
        "size-overflow",
        "call",
    ],
)
def test_npy_malformed_headers(scanner: Scanner, header: str, code: str) -> None:
    report = scanner.scan_bytes(_npy_header(header) + b"\0" * 8, "a.npy")
    assert report.format is ArtifactFormat.NUMPY
    assert only(report, code) == [0]


def test_npy_unknown_version(scanner: Scanner) -> None:
    data = _npy_header("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }")
    report = scanner.scan_bytes(data[:6] + b"\x09\x00" + data[8:] + b"\0" * 8, "a.npy")
    assert codes(report) == {"numpy.malformed"}


@pytest.mark.parametrize("version", [1, 2])
def test_npy_header_too_long(scanner: Scanner, version: int) -> None:
    width = b"<H" if version == 1 else b"<I"
    data = b"\x93NUMPY" + bytes([version, 0]) + struct.pack(width.decode(), 20_000) + b" " * 20_000
    assert codes(scanner.scan_bytes(data, "a.npy")) == {"numpy.limit_exceeded"}


def _npz(compressed: bool = False, **arrays: Any) -> bytes:
    out = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(out, **arrays)
    return out.getvalue()


@pytest.mark.parametrize("compressed", [False, True])
def test_benign_npz(scanner: Scanner, compressed: bool) -> None:
    data = _npz(compressed, a=np.arange(3), b=np.zeros((2, 2), np.float32), c=np.array(["x"]))
    report = scanner.scan_bytes(data, "a.npz")
    assert (report.format, report.findings) == (ArtifactFormat.NUMPY_ZIP, ())


@pytest.mark.parametrize("compressed", [False, True])
def test_hostile_npz(scanner: Scanner, compressed: bool) -> None:
    hostile = np.empty(1, dtype=object)
    hostile[0] = _Hostile()
    report = scanner.scan_bytes(_npz(compressed, a=np.arange(3), o=hostile), "a.npz")
    assert report.format is ArtifactFormat.NUMPY_ZIP
    assert {f.path for f in report.findings if f.code.startswith("pickle.")} == {"a.npz!o.npy"}


def test_npz_member_that_is_not_npy(scanner: Scanner) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("a.npy", _npy(np.arange(3)))
        archive.writestr("b.npy", HOSTILE)
    report = scanner.scan_bytes(out.getvalue(), "a.npz")
    assert [(f.path, f.code) for f in report.findings] == [("a.npz!b.npy", "zip.unexpected_member")]


# -- 6. safetensors -----------------------------------------------------------------------------


def _st(header: Any, data: bytes = b"", *, raw: bytes | None = None) -> bytes:
    text = json.dumps(header).encode() if raw is None else raw
    return struct.pack("<Q", len(text)) + text + data


GOOD_HEADER = {
    "__metadata__": {"format": "pt"},
    "weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
    "bias": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]},
    "scale": {"dtype": "BF16", "shape": [], "data_offsets": [24, 26]},
}


@pytest.mark.parametrize(
    "data",
    [
        _st(GOOD_HEADER, bytes(range(26))),
        _st({}),
        _st(None, raw=b"{}      "),
        _st({"e": {"dtype": "U8", "shape": [0, 3], "data_offsets": [0, 0]}}),
        _st({"x": {"dtype": "F64", "shape": [3], "data_offsets": [0, 24]}}, b"\1" * 24),
    ],
    ids=["tensors", "empty", "padded", "empty-tensor", "one"],
)
def test_valid_safetensors(scanner: Scanner, data: bytes) -> None:
    report = scanner.scan_bytes(data, "model.bin")
    assert (report.format, report.findings) == (ArtifactFormat.SAFETENSORS, ())


def _tensor(dtype: str, shape: list[Any], offsets: list[Any]) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": offsets}


@pytest.mark.parametrize(
    ("header", "data", "code"),
    [
        ({"a": _tensor("X9", [1], [0, 4])}, 4, "safetensors.malformed"),
        ({"a": _tensor("F32", [2], [0, 4])}, 4, "safetensors.malformed"),
        ({"a": _tensor("F32", [1], [4, 0])}, 4, "safetensors.malformed"),
        ({"a": _tensor("F32", [-1], [0, 4])}, 4, "safetensors.malformed"),
        ({"a": _tensor("F32", [True], [0, 4])}, 4, "safetensors.malformed"),
        ({"a": _tensor("F32", [1], [0.0, 4])}, 4, "safetensors.malformed"),
        ({"a": _tensor("F32", [1], [0, 4, 8])}, 4, "safetensors.malformed"),
        ({"a": {**_tensor("F32", [1], [0, 4]), "extra": 1}}, 4, "safetensors.malformed"),
        ({"a": [1, 2]}, 0, "safetensors.malformed"),
        ({"__metadata__": {"x": 1}}, 0, "safetensors.malformed"),
        ({"__metadata__": ["x"]}, 0, "safetensors.malformed"),
        ({"a": _tensor("F32", [1], [4, 8])}, 8, "safetensors.bad_layout"),
        (
            {"a": _tensor("F32", [2], [0, 8]), "b": _tensor("F32", [1], [4, 8])},
            8,
            "safetensors.bad_layout",
        ),
        ({"a": _tensor("F32", [1], [0, 4])}, 10, "safetensors.trailing_data"),
        ({"a": _tensor("F32", [4], [0, 16])}, 10, "safetensors.truncated"),
    ],
    ids=[
        "bad-dtype",
        "offsets-vs-shape",
        "offsets-reversed",
        "negative-dim",
        "bool-dim",
        "float-offset",
        "three-offsets",
        "extra-key",
        "not-an-object",
        "metadata-non-string",
        "metadata-not-a-dict",
        "gap",
        "overlap",
        "trailing",
        "truncated",
    ],
)
def test_bad_safetensors(scanner: Scanner, header: Any, data: int, code: str) -> None:
    report = scanner.scan_bytes(_st(header, b"\0" * data), "model.safetensors")
    assert report.format is ArtifactFormat.SAFETENSORS
    assert code in codes(report)


def test_safetensors_layout_offsets_point_into_the_file(scanner: Scanner) -> None:
    header = {"a": _tensor("F32", [1], [0, 4]), "b": _tensor("F32", [1], [8, 12])}
    data = _st(header, b"\0" * 12)
    start = len(data) - 12
    report = scanner.scan_bytes(data, "m.safetensors")
    assert only(report, "safetensors.bad_layout") == [start + 8]
    report = scanner.scan_bytes(_st(header, b"\0" * 20), "m.safetensors")
    assert only(report, "safetensors.trailing_data") == [start + 12]


def test_safetensors_duplicate_keys(scanner: Scanner) -> None:
    entry = b'{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}'
    raw = b'{"a": ' + entry + b', "a": ' + entry + b"}"
    report = scanner.scan_bytes(_st(None, b"\0" * 4, raw=raw), "m.safetensors")
    assert codes(report) == {"safetensors.malformed"}
    assert "duplicate" in report.findings[0].reason
    raw = b'{"__metadata__": {"a": "b"}, "__metadata__": {}}'
    assert codes(scanner.scan_bytes(_st(None, raw=raw), "m")) == {"safetensors.malformed"}


@pytest.mark.parametrize(
    "raw", [b'{"a": 1', b'{"a": NaN}', b"{\xff}", b"{" + b"[" * 100_000 + b"]" * 100_000 + b"}"]
)
def test_safetensors_header_that_is_not_json(scanner: Scanner, raw: bytes) -> None:
    report = scanner.scan_bytes(_st(None, raw=raw), "m.safetensors")
    assert report.format is ArtifactFormat.SAFETENSORS
    assert report.findings
    assert codes(report) <= {"safetensors.malformed", "safetensors.truncated"}


def test_safetensors_truncated_header(scanner: Scanner) -> None:
    data = _st(GOOD_HEADER, bytes(26))
    report = scanner.scan_bytes(data[:30], "m.safetensors")
    assert only(report, "safetensors.truncated") == [0]


def test_safetensors_header_above_the_configured_limit() -> None:
    """A header longer than `max_header_bytes` is a finding. It used to make the file
    "unknown" and clean: the sniffer gave up on it before the check could run."""
    data = _st(GOOD_HEADER, bytes(26))
    report = Scanner(limits=ScanLimits(max_header_bytes=64)).scan_bytes(data, "m.safetensors")
    assert report.format is ArtifactFormat.SAFETENSORS
    assert only(report, "safetensors.limit_exceeded") == [0]


def test_safetensors_header_above_the_format_limit_is_not_safetensors(scanner: Scanner) -> None:
    # The safetensors loader refuses headers over 100 MB, so this is not one.
    data = struct.pack("<Q", 100_000_001) + b'{"a": 1}'
    report = scanner.scan_bytes(data, "m.safetensors")
    assert (report.format, report.findings) == (ArtifactFormat.UNKNOWN, ())


# -- 7. ONNX ------------------------------------------------------------------------------------


def _onnx_model(
    *, domain: str = "", weight: Any = None, extra_nodes: list[Any] | None = None
) -> onnx.ModelProto:
    weight = np.ones(4, np.float32) if weight is None else weight
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [weight.size])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [weight.size])
    nodes = [helper.make_node("Add", ["X", "W"], ["S"]), helper.make_node("Relu", ["S"], ["Y"])]
    opsets = [helper.make_opsetid("", 17)]
    if domain:
        nodes.append(helper.make_node("Evil", ["Y"], ["Z"], domain=domain))
        opsets.append(helper.make_opsetid(domain, 1))
        y = helper.make_tensor_value_info("Z", TensorProto.FLOAT, [weight.size])
    nodes += extra_nodes or []
    graph = helper.make_graph(nodes, "g", [x], [y], [numpy_helper.from_array(weight, "W")])
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def _external(directory: Path, name: str = "model.onnx", location: str = "weights.bin") -> Path:
    """A model whose initializer lives in `location`, written under `directory`."""
    (directory / location).parent.mkdir(parents=True, exist_ok=True)
    model = _onnx_model(weight=np.arange(256, dtype=np.float32))
    path = directory / name
    onnx.save_model(model, path, save_as_external_data=True, location=location, size_threshold=0)
    return path


def _relocate(path: Path, location: str) -> bytes:
    model = onnx.load(path, load_external_data=False)
    (entry,) = (e for e in model.graph.initializer[0].external_data if e.key == "location")
    entry.value = location
    return model.SerializeToString()


def test_valid_onnx_model(scanner: Scanner) -> None:
    data = _onnx_model().SerializeToString()
    assert data[:1] == b"\x08"
    report = scanner.scan_bytes(data, "model.bin")
    assert (report.format, report.findings) == (ArtifactFormat.ONNX, ())


def test_onnx_external_data_present_in_the_scan_is_clean(
    scanner: Scanner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnx.checker resolves external data against the working directory when handed a
    ModelProto: this model used to be `onnx.invalid` unless the scan ran from its folder."""
    _external(tmp_path / "artifact")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    report = scanner.scan_path(tmp_path / "artifact")
    assert [(f.path, f.format, f.findings) for f in report.files] == [
        ("model.onnx", ArtifactFormat.ONNX, ()),
        ("weights.bin", ArtifactFormat.UNKNOWN, ()),
    ]


def test_onnx_external_data_in_a_subdirectory(scanner: Scanner, tmp_path: Path) -> None:
    _external(tmp_path / "m", location="data/w.bin")
    assert scanner.scan_path(tmp_path).clean
    # relative to the model's folder, not to the scan root
    (tmp_path / "m" / "model.onnx").rename(tmp_path / "model.onnx")
    report = scanner.scan_path(tmp_path)
    assert {(f.path, c) for f in report.files for c in codes(f)} == {
        ("model.onnx", "onnx.external_data_missing")
    }


def test_onnx_external_data_missing(scanner: Scanner, tmp_path: Path) -> None:
    path = _external(tmp_path / "artifact")
    (tmp_path / "artifact" / "weights.bin").unlink()
    report = scanner.scan_path(tmp_path / "artifact")
    assert codes(report.files[0]) == {"onnx.external_data_missing"}
    assert report.files[0].findings[0].path == "model.onnx"
    # Alone, a model's external data is never part of the scan.
    assert codes(scanner.scan_path(path).files[0]) == {"onnx.external_data_missing"}
    assert codes(scanner.scan_bytes(path.read_bytes(), "model.onnx")) == {
        "onnx.external_data_missing"
    }


def test_onnx_external_data_must_be_a_regular_file_of_the_scan(
    scanner: Scanner, tmp_path: Path
) -> None:
    _external(tmp_path / "artifact")
    target = tmp_path / "artifact" / "weights.bin"
    target.rename(tmp_path / "outside.bin")
    target.symlink_to(tmp_path / "outside.bin")
    report = scanner.scan_path(tmp_path / "artifact")
    assert {(f.path, c) for f in report.files for c in codes(f)} == {
        ("model.onnx", "onnx.external_data_missing"),
        ("weights.bin", "path.symlink"),
    }


@pytest.mark.parametrize(
    "location",
    [
        "../secret",
        "/etc/passwd",
        "a\\b.bin",
        "./weights.bin",
        "sub/../weights.bin",
        "sub//weights.bin",
        "",
        "*/_ORT_MEM_ADDR_/*",
        "C:/weights.bin",
        "weights\x00.bin",
        "weights\n.bin",
    ],
)
def test_onnx_external_data_escape(scanner: Scanner, tmp_path: Path, location: str) -> None:
    data = _relocate(_external(tmp_path), location)
    report = scanner.scan_bytes(data, "model.onnx")
    assert report.format is ArtifactFormat.ONNX
    assert codes(report) == {"onnx.external_data_escape"}


def test_onnx_sparse_attribute_external_data_is_checked(scanner: Scanner) -> None:
    values = numpy_helper.from_array(np.ones(2, np.float32), "v")
    indices = numpy_helper.from_array(np.array([0, 3], np.int64), "i")
    sparse = helper.make_sparse_tensor(values, indices, [4])
    constant = helper.make_node("Constant", [], ["C"], sparse_value=sparse)
    model = _onnx_model(extra_nodes=[constant])
    assert scanner.scan_bytes(model.SerializeToString(), "m.onnx").clean
    tensor = model.graph.node[-1].attribute[0].sparse_tensor.values
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.external_data.add(key="location", value="../../etc/shadow")
    report = scanner.scan_bytes(model.SerializeToString(), "m.onnx")
    assert "onnx.external_data_escape" in codes(report)


def test_onnx_custom_domain(scanner: Scanner) -> None:
    report = scanner.scan_bytes(_onnx_model(domain="evil.ops").SerializeToString(), "m.onnx")
    assert report.format is ArtifactFormat.ONNX
    assert "onnx.custom_domain" in codes(report)
    assert "evil.ops" in next(f.reason for f in report.findings if f.code == "onnx.custom_domain")


@pytest.mark.parametrize("domain", ["ai.onnx.ml", "com.microsoft"])
def test_onnx_runtime_domains_are_not_custom(scanner: Scanner, domain: str) -> None:
    model = _onnx_model()
    model.opset_import.append(helper.make_opsetid(domain, 1))
    assert "onnx.custom_domain" not in codes(scanner.scan_bytes(model.SerializeToString(), "m"))


def test_onnx_local_function_domain_is_not_custom(scanner: Scanner) -> None:
    function = helper.make_function(
        "my.funcs",
        "Double",
        ["A"],
        ["B"],
        [helper.make_node("Add", ["A", "A"], ["B"])],
        [helper.make_opsetid("", 17)],
    )
    model = _onnx_model(extra_nodes=[helper.make_node("Double", ["Y"], ["Z"], domain="my.funcs")])
    model.graph.output[0].name = "Z"
    model.functions.append(function)
    model.opset_import.append(helper.make_opsetid("my.funcs", 1))
    report = scanner.scan_bytes(model.SerializeToString(), "m.onnx")
    assert (report.format, report.findings) == (ArtifactFormat.ONNX, ())


@pytest.mark.parametrize("breakage", ["unknown-op", "unsorted", "duplicate-metadata"])
def test_onnx_checker_rejects(scanner: Scanner, breakage: str) -> None:
    model = _onnx_model()
    if breakage == "unknown-op":
        model.graph.node[0].op_type = "NoSuchOp"
    elif breakage == "unsorted":
        model.graph.node[0].input[0] = "undefined"
    else:
        helper.set_model_props(model, {"a": "1"})
        model.metadata_props.add(key="a", value="2")
    report = scanner.scan_bytes(model.SerializeToString(), "m.onnx")
    assert report.format is ArtifactFormat.ONNX
    assert codes(report) == {"onnx.invalid"}


@pytest.mark.parametrize("data", [b"\x08", b"\x08\x07", b"\x08" + bytes(range(256)) * 4])
def test_bytes_starting_with_0x08_that_are_not_onnx(scanner: Scanner, data: bytes) -> None:
    report = scanner.scan_bytes(data, "model.onnx")
    assert (report.format, report.findings) == (ArtifactFormat.UNKNOWN, ())


def test_random_bytes_starting_with_0x08(scanner: Scanner) -> None:
    data = b"\x08" + np.random.default_rng(8).bytes(5000)
    report = scanner.scan_bytes(data, "model.onnx")
    assert (report.format, report.findings) == (ArtifactFormat.UNKNOWN, ())


def test_onnx_model_inside_a_zip_checks_external_data_against_members(
    scanner: Scanner, tmp_path: Path
) -> None:
    path = _external(tmp_path)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("m/model.onnx", path.read_bytes())
        archive.writestr("m/weights.bin", (tmp_path / "weights.bin").read_bytes())
    assert scanner.scan_bytes(out.getvalue(), "bundle.zip").clean
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("m/model.onnx", path.read_bytes())
        archive.writestr("weights.bin", (tmp_path / "weights.bin").read_bytes())
    report = scanner.scan_bytes(out.getvalue(), "bundle.zip")
    assert [(f.path, f.code) for f in report.findings] == [
        ("bundle.zip!m/model.onnx", "onnx.external_data_missing")
    ]


# -- 8. compressed pickles (joblib) -------------------------------------------------------------

CODECS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zlib": zlib.compress,
    "lzma": lambda data: lzma.compress(data, format=lzma.FORMAT_ALONE),
}


@pytest.mark.parametrize("codec", CODECS)
def test_compressed_benign_pickle_is_joblib(scanner: Scanner, codec: str) -> None:
    report = scanner.scan_bytes(CODECS[codec](BENIGN), "model.joblib")
    assert (report.format, report.findings) == (ArtifactFormat.JOBLIB, ())


@pytest.mark.parametrize("codec", CODECS)
def test_compressed_hostile_pickle_is_rejected(scanner: Scanner, codec: str) -> None:
    report = scanner.scan_bytes(CODECS[codec](HOSTILE), "model.txt")
    assert report.format is ArtifactFormat.JOBLIB
    assert [f.path for f in report.findings if f.code.startswith("pickle.")] == ["model.txt"]
    # protocol 0 (no PROTO opcode) too
    report = scanner.scan_bytes(CODECS[codec](HOSTILE_P0), "model.txt")
    assert pickle_findings(report)


@pytest.mark.parametrize("codec", CODECS)
def test_compressed_csv_is_unknown_and_clean(scanner: Scanner, codec: str) -> None:
    report = scanner.scan_bytes(CODECS[codec](CSV), "data.csv.gz")
    assert (report.format, report.findings) == (ArtifactFormat.UNKNOWN, ())


@pytest.mark.parametrize(
    "compress", [0, 3, ("zlib", 3), ("gzip", 3), ("bz2", 3), ("lzma", 3), ("xz", 3)]
)
def test_real_joblib_dumps_are_clean(scanner: Scanner, tmp_path: Path, compress: Any) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(
        {"w": np.arange(100.0), "i": np.arange(7, dtype=np.int32), "n": "x"}, path, compress
    )
    report = scanner.scan_path(path).files[0]
    assert (report.format, report.findings) == (ArtifactFormat.JOBLIB, ())


def test_concatenated_compressed_streams_are_all_read(scanner: Scanner) -> None:
    """joblib's readers continue into a following stream, so must the scanner."""
    report = scanner.scan_bytes(gzip.compress(BENIGN) + gzip.compress(HOSTILE), "m.joblib")
    assert "pickle.trailing_data" in codes(report)


@pytest.mark.parametrize("codec", CODECS)
def test_corrupt_compressed_stream(scanner: Scanner, codec: str) -> None:
    data = bytearray(CODECS[codec](BENIGN * 4))
    middle = len(data) // 2
    data[middle : middle + 4] = bytes(b ^ 0xA5 for b in data[middle : middle + 4])
    report = scanner.scan_bytes(bytes(data), "m.joblib")
    assert report.findings
    assert codes(report) & {"compressed.corrupt", "compressed.truncated"} or pickle_findings(report)


@pytest.mark.parametrize("codec", CODECS)
def test_truncated_compressed_stream(scanner: Scanner, codec: str) -> None:
    data = CODECS[codec](BENIGN)
    report = scanner.scan_bytes(data[: len(data) - 8], "m.joblib")
    (offset,) = only(report, "compressed.truncated")
    assert offset is not None
    assert 0 < offset <= len(BENIGN)


def test_lz4_is_refused(scanner: Scanner) -> None:
    report = scanner.scan_bytes(b"\x04\x22\x4d\x18" + bytes(64), "m.joblib")
    assert report.format is ArtifactFormat.JOBLIB
    assert only(report, "joblib.unsupported_compression") == [0]


def test_joblib_legacy_zfile_is_refused(scanner: Scanner) -> None:
    report = scanner.scan_bytes(b"ZF0x%x\n" % len(BENIGN) + zlib.compress(BENIGN), "m.pkl")
    assert report.format is ArtifactFormat.JOBLIB
    assert only(report, "joblib.legacy_format") == [0]


@pytest.mark.parametrize(
    "payload", [bytes(3 << 20), pickle.dumps(bytes(3 << 20), protocol=4)], ids=["raw", "pickle"]
)
def test_decompression_budget(payload: bytes) -> None:
    limited = Scanner(limits=ScanLimits(max_decompressed_bytes=1 << 20))
    data = gzip.compress(payload)
    assert codes(limited.scan_bytes(data, "m.gz")) == {"compressed.limit_exceeded"}
    assert Scanner().scan_bytes(data, "m.gz").clean


# -- tar: PyTorch's legacy format ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_tar_archives_are_refused(scanner: Scanner, fmt: int) -> None:
    """torch.load tries `tarfile` on every non-zip file (the pre-1.6 torch.save layout) and
    unpickles its `pickle` member; the scanner used to call such a tar "unknown", clean."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name in ("storages", "tensors", "pickle"):
            info = tarfile.TarInfo(name)
            info.size = len(HOSTILE)
            tar.addfile(info, io.BytesIO(HOSTILE))
    report = scanner.scan_bytes(out.getvalue(), "old.pt")
    assert only(report, "tar.unsupported") == [0]


def test_tar_inside_a_zip_is_refused(scanner: Scanner) -> None:
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        info = tarfile.TarInfo("pickle")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"hi"))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("old.pt", tar.getvalue())
    report = scanner.scan_bytes(out.getvalue(), "bundle.zip")
    assert [(f.path, f.code) for f in report.findings] == [("bundle.zip!old.pt", "tar.unsupported")]


def test_block_of_zeros_is_not_a_tar(scanner: Scanner) -> None:
    assert scanner.scan_bytes(bytes(10240), "zeros.bin").clean
