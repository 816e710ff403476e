"""Content sniffing and the checks for the non-pickle formats: `.npy`, safetensors, ONNX.

`sniff` decides what a stream is from its first bytes only; a file's name never matters
(modelscan and picklescan route by extension, which CVE-2025-1889 and CVE-2025-10155 bypassed
by renaming). The format checkers read through a `ChunkReader`, so every byte they skip still
reaches the digest and the secret scanner, and they report problems through `Emit` with the
offset where the rule looked. None of them deserializes objects: `.npy` headers are parsed as
Python literals (as numpy itself does), safetensors headers as JSON, ONNX as protobuf.
"""

from __future__ import annotations

import ast
import json
import posixpath
import struct
import zlib
from collections.abc import Callable
from enum import Enum
from typing import Any

import numpy as np

from bastion.supplychain.scan.streams import ChunkReader, Truncated

Emit = Callable[[str, str, "int | None"], None]


class Kind(Enum):
    """What the first bytes say a stream is."""

    ZIP = "zip"
    NUMPY = "numpy"
    PICKLE = "pickle"  # starts with PROTO 2..5
    COMPRESSED = "compressed"  # gzip, zlib, bz2, xz, lzma: joblib's compressors
    LZ4 = "lz4"
    JOBLIB_COMPAT = "joblib-compat"  # joblib < 0.10 "ZF" zlib files
    SAFETENSORS = "safetensors"
    ONNX_CANDIDATE = "onnx-candidate"  # protobuf field 1 varint: maybe ONNX
    TAR = "tar"  # legacy torch.save (< 1.6) tar checkpoints: pickles inside
    OTHER = "other"  # text, protocol 0/1 pickles, anything else


# How many leading bytes `sniff` wants: a tar header is 512 bytes, and deciding whether a
# stream with a zlib header really is zlib takes a trial decompression of a few KiB.
SNIFF_BYTES = 4096


NUMPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
# joblib.numpy_pickle_utils._detect_compressor, in its order.
COMPRESSOR_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ", "xz"),
    (b"]\x00\x00", "lzma"),
)
LZ4_MAGIC = b"\x04\x22\x4d\x18"


def _zlib_header(head: bytes) -> bool:
    """What joblib calls zlib: the first byte is `x` (its `_ZLIB_PREFIX`: deflate with a
    32 KiB window), and the RFC 1950 check bits make CMF·256+FLG a multiple of 31. Other
    RFC 1950 headers are not zlib to joblib, which would hand the raw bytes to the
    unpickler; several of them (`(`, `8`, `H`, `X`, `h`) are pickle opcodes, so they must be
    walked as pickles, not decompressed."""
    if len(head) < 2:
        return False
    cmf, flg = head[0], head[1]
    return cmf == 0x78 and (cmf * 256 + flg) % 31 == 0


def _zlib_yields(head: bytes) -> bool:
    """Whether a zlib decompressor given `head` (a stream's first `SNIFF_BYTES`, or all of
    it when shorter) hands a loader any data.

    One two-byte prefix in 1 000 passes `_zlib_header` (`x `, `80`, `(S`, ...), so plenty of
    text does. A stream that breaks before yielding a byte cannot be loaded through zlib
    (joblib's reader raises before its unpickler sees anything), so it is not treated as
    compressed; one that yields data is, even if it breaks later, since what it yielded would
    already have been unpickled. Asking for a single output byte makes zlib stop as soon as
    there is one, so an error means nothing (at most that byte) came out first."""
    decoder = zlib.decompressobj()
    try:
        out = decoder.decompress(head, 1)
    except zlib.error:
        return False
    # No output and no error: the stream is still inside its first block header, which
    # yields nothing if `head` is the whole stream.
    return bool(out) or decoder.eof or len(head) >= SNIFF_BYTES


def _tar_header(head: bytes) -> bool:
    """A first 512-byte block whose checksum field matches, as `tarfile` decides (PyTorch's
    legacy loader tries `tarfile` on every file that is not a zip)."""
    if len(head) < 512:
        return False
    field = head[148:156]
    if field[0] in (0o200, 0o377):  # base-256, as tarfile.nti decodes it
        value = int.from_bytes(field[1:], "big")
        if field[0] == 0o377:
            value -= 256 ** (len(field) - 1)
    else:
        digits = field.split(b"\0", 1)[0].strip()
        if not digits or any(c not in b"01234567" for c in digits):
            return False
        value = int(digits, 8)
    unsigned = 256 + sum(head[:148]) + sum(head[156:512])
    signed = 256 + sum(struct.unpack_from("148b8x356b", head))
    return value in (unsigned, signed)


def sniff(head: bytes) -> tuple[Kind, str | None]:
    """(kind, codec) from the first `SNIFF_BYTES` of a stream (fewer only when the stream is
    shorter). Safetensors is recognised over the whole header range its loader accepts; the
    scanner's own, possibly lower, bound is then a finding, never a reason to look away."""
    if head[:4] in ZIP_MAGICS:
        return Kind.ZIP, None
    if _tar_header(head):
        return Kind.TAR, None
    if head.startswith(NUMPY_MAGIC):
        return Kind.NUMPY, None
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return Kind.PICKLE, None
    if head.startswith(b"ZF"):
        return Kind.JOBLIB_COMPAT, None
    for magic, codec in COMPRESSOR_MAGICS:
        if head.startswith(magic):
            return Kind.COMPRESSED, codec
    if head.startswith(LZ4_MAGIC):
        return Kind.LZ4, None
    if _zlib_header(head) and _zlib_yields(head[:SNIFF_BYTES]):
        return Kind.COMPRESSED, "zlib"
    if len(head) >= 9:
        (size,) = struct.unpack("<Q", head[:8])
        if 2 <= size <= SAFETENSORS_MAX_HEADER and head[8:9] == b"{":
            return Kind.SAFETENSORS, None
    if head[:1] == b"\x08":
        return Kind.ONNX_CANDIDATE, None
    return Kind.OTHER, None


# -- .npy ------------------------------------------------------------------------------------

NPY_MAX_HEADER = 10_000  # numpy.lib.format's default max_header_size


class NpyHeader:
    __slots__ = ("dtype", "fortran", "nbytes", "shape")

    def __init__(self, dtype: np.dtype[Any], fortran: bool, shape: tuple[int, ...]) -> None:
        self.dtype = dtype
        self.fortran = fortran
        self.shape = shape
        count = 1
        for dim in shape:
            count *= dim
        self.nbytes = count * dtype.itemsize


def read_npy_header(reader: ChunkReader, emit: Emit) -> NpyHeader | None:
    """Parse a `.npy` header (format versions 1 to 3) the way `numpy.lib.format` does, with
    `ast.literal_eval` and no imports. None (after emitting a finding) when it is invalid."""
    start = reader.tell()
    try:
        magic = reader.read(8)
        if magic[:6] != NUMPY_MAGIC or magic[6] not in (1, 2, 3) or magic[7] != 0:
            emit("numpy.malformed", f"unsupported .npy version {magic[6]}.{magic[7]}", start)
            return None
        width = 2 if magic[6] == 1 else 4
        (length,) = struct.unpack("<H" if width == 2 else "<I", reader.read(width))
        if length > NPY_MAX_HEADER:
            emit(
                "numpy.limit_exceeded",
                f".npy header of {length} bytes exceeds {NPY_MAX_HEADER}",
                start,
            )
            return None
        raw = reader.read(length)
    except Truncated:
        emit("numpy.truncated", "the .npy header is cut short", start)
        return None
    try:
        text = raw.decode("utf-8" if magic[6] == 3 else "latin-1")
        header = ast.literal_eval(text)
    except (UnicodeDecodeError, ValueError, SyntaxError, MemoryError, RecursionError):
        emit("numpy.malformed", "the .npy header is not a Python literal", start)
        return None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        emit("numpy.malformed", "the .npy header needs exactly descr, fortran_order, shape", start)
        return None
    shape = header["shape"]
    if not (
        isinstance(shape, tuple)
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        and isinstance(header["fortran_order"], bool)
    ):
        emit("numpy.malformed", "the .npy shape or fortran_order is invalid", start)
        return None
    try:
        dtype = np.lib.format.descr_to_dtype(header["descr"])
    except (TypeError, ValueError, KeyError, IndexError):
        emit("numpy.malformed", "the .npy descr is not a valid dtype", start)
        return None
    result = NpyHeader(dtype, header["fortran_order"], shape)
    if result.nbytes >= 1 << 63:
        emit("numpy.malformed", "the .npy array size is out of range", start)
        return None
    return result


# -- safetensors -----------------------------------------------------------------------------

# The safetensors loader refuses headers longer than this (`MAX_HEADER_SIZE` in its Rust
# crate), so nothing longer is a safetensors file; `ScanLimits.max_header_bytes` may be lower.
SAFETENSORS_MAX_HEADER = 100_000_000

# dtype → bytes per element, as in the safetensors format specification.
SAFETENSORS_DTYPES: dict[str, int] = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
    "C64": 8,
}


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def check_safetensors(reader: ChunkReader, emit: Emit, *, max_header_bytes: int) -> None:
    """Validate a safetensors file: a u64 header length, a JSON header whose tensors each
    have a known dtype, a shape and `data_offsets` that match dtype x shape, tile the data
    region exactly (no gaps, overlaps or trailing bytes), and string-only metadata."""
    try:
        (length,) = struct.unpack("<Q", reader.read(8))
        if length > max_header_bytes:
            emit("safetensors.limit_exceeded", f"header of {length} bytes is too large", 0)
            reader.drain()
            return
        raw = reader.read(length)
    except Truncated:
        emit("safetensors.truncated", "the file ends inside the header", 0)
        return
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        emit("safetensors.malformed", f"header is not valid JSON ({error})"[:200], 8)
        reader.drain()
        return
    if not isinstance(header, dict):
        emit("safetensors.malformed", "header is not a JSON object", 8)
        reader.drain()
        return
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                emit("safetensors.malformed", "__metadata__ must map strings to strings", 8)
            continue
        shown = name if len(name) <= 100 else name[:100] + "..."
        if not (
            isinstance(entry, dict)
            and set(entry) == {"dtype", "shape", "data_offsets"}
            and entry["dtype"] in SAFETENSORS_DTYPES
            and isinstance(entry["shape"], list)
            and all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in entry["shape"]
            )
            and isinstance(entry["data_offsets"], list)
            and len(entry["data_offsets"]) == 2
            and all(
                isinstance(o, int) and not isinstance(o, bool) and o >= 0
                for o in entry["data_offsets"]
            )
        ):
            emit("safetensors.malformed", f"tensor {shown!r} has an invalid description", 8)
            continue
        begin, end = entry["data_offsets"]
        count = 1
        for dim in entry["shape"]:
            count *= dim
        if end < begin or end - begin != count * SAFETENSORS_DTYPES[entry["dtype"]]:
            emit(
                "safetensors.malformed",
                f"tensor {shown!r}: data_offsets do not match its dtype and shape",
                8,
            )
            continue
        spans.append((begin, end, shown))
    position = 0
    for begin, end, shown in sorted(spans):
        if begin != position:
            what = "overlaps the previous tensor" if begin < position else "leaves a gap"
            emit("safetensors.bad_layout", f"tensor {shown!r} {what}", 8 + length + begin)
        position = max(position, end)
    data_start = reader.tell()
    try:
        reader.skip(position)
    except Truncated:
        emit("safetensors.truncated", "the file ends before the tensor data does", data_start)
        return
    trailing = reader.drain()
    if trailing:
        emit(
            "safetensors.trailing_data",
            f"{trailing} bytes after the last tensor",
            data_start + position,
        )


# -- ONNX ------------------------------------------------------------------------------------

# Operator domains ONNX Runtime's CPU provider implements. Anything else needs a custom-op
# library loaded into the runtime, which Bastion never does.
ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "ai.onnx.preview.training"})


def parse_onnx(data: bytes) -> Any | None:
    """An `onnx.ModelProto` when `data` really is one (it parses, names an IR version and has
    a graph and an opset), else None: plenty of binary files start with byte 0x08."""
    import onnx
    from google.protobuf.message import DecodeError

    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError):
        return None
    if not (0 < model.ir_version < 100 and model.HasField("graph") and model.opset_import):
        return None
    return model


def _external_tensors(model: Any) -> list[Any]:
    """Every tensor stored outside the model file (initializers, sparse initializers and
    tensor attributes, dense or sparse, in every subgraph and function)."""
    import onnx

    found: list[Any] = []

    def tensor(t: Any) -> None:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            found.append(t)

    def sparse(s: Any) -> None:
        tensor(s.values)
        tensor(s.indices)

    def graph(g: Any) -> None:
        for t in g.initializer:
            tensor(t)
        for s in g.sparse_initializer:
            sparse(s)
        for node in g.node:
            nodes(node)

    def nodes(node: Any) -> None:
        for attr in node.attribute:
            if attr.HasField("t"):
                tensor(attr.t)
            for t in attr.tensors:
                tensor(t)
            if attr.HasField("sparse_tensor"):
                sparse(attr.sparse_tensor)
            for s in attr.sparse_tensors:
                sparse(s)
            if attr.HasField("g"):
                graph(attr.g)
            for g in attr.graphs:
                graph(g)

    graph(model.graph)
    for function in model.functions:
        for node in function.node:
            nodes(node)
    return found


def _location(t: Any) -> str:
    return str({e.key: e.value for e in t.external_data}.get("location", ""))


def _for_checker(model: Any, external: list[Any]) -> Any:
    """A copy of `model` that `onnx.checker` can judge without touching the file system.

    Given a `ModelProto`, the checker resolves external data locations against the process's
    working directory and fails when no such file is there: every model with external data
    would be refused (or accepted, depending on where the scanner runs), and the checker
    would `stat` paths an uploader chose. The scanner checks locations itself, against the
    files of the scan; the checker gets each external tensor as an empty one instead (dims
    do not matter to it without shape inference, which `check_model` does not run)."""
    import onnx

    if not external:
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for t in _external_tensors(copy):
        t.data_location = onnx.TensorProto.DEFAULT
        del t.external_data[:]
        del t.dims[:]
        t.dims.append(0)
    return copy


def check_onnx(model: Any, emit: Emit, *, directory: str, siblings: frozenset[str] | None) -> None:
    """ONNX checks: the model passes `onnx.checker`; only ONNX Runtime's own operator domains
    (or the model's local functions); external tensor data only in plain relative files next
    to the model that are part of the same scan (no `..`, absolute paths or missing files).
    `siblings` None means the files around the model are unknown (not checked)."""
    import onnx

    external = _external_tensors(model)
    try:
        onnx.checker.check_model(_for_checker(model, external))
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as error:
        emit("onnx.invalid", f"onnx.checker rejects the model: {str(error)[:200]}", None)
    local = {f.domain for f in model.functions}
    for opset in model.opset_import:
        if opset.domain not in ONNX_DOMAINS and opset.domain not in local:
            emit(
                "onnx.custom_domain",
                f"operator domain {opset.domain[:100]!r} needs a custom-op library",
                None,
            )
    for location in sorted({_location(t) for t in external}):
        if (
            not location
            or "\\" in location
            or "*" in location  # ONNX Runtime reads "*/_ORT_MEM_ADDR_/*" as a memory address
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in location)
            or location.startswith("/")
            or (len(location) > 1 and location[1] == ":")
            or posixpath.normpath(location) != location
            or ".." in location.split("/")
        ):
            emit(
                "onnx.external_data_escape",
                f"external data location {location[:100]!r} is not a plain relative path",
                None,
            )
            continue
        target = posixpath.join(directory, location) if directory else location
        if siblings is not None and target not in siblings:
            emit(
                "onnx.external_data_missing",
                f"external data file {location[:100]!r} is not part of the artifact",
                None,
            )
