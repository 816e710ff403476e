"""Assemble raw pickle byte streams opcode by opcode, for payloads `pickle.dumps` never writes.

Every opcode method appends one opcode (and its argument) and returns the forge, so a payload
reads like a disassembly::

    f = Forge(proto=4)
    f.at("import").global_("os", "system").str_("id").tuple1().at("call").reduce().stop()
    f.data, f.marks["import"]

`at(label)` remembers the offset of the next opcode, which is what a finding's `offset`
should point at. Nothing here imports, calls or unpickles anything.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Iterable

OP = pickle  # opcode constants (pickle.GLOBAL, pickle.REDUCE, ...) are bytes of length 1


class Forge:
    def __init__(self, proto: int | None = 4) -> None:
        self.buf = bytearray()
        self.marks: dict[str, int] = {}
        self.proto_version = proto
        if proto is not None and proto >= 2:
            self.proto(proto)

    # -- plumbing --

    @property
    def data(self) -> bytes:
        return bytes(self.buf)

    def __len__(self) -> int:
        return len(self.buf)

    def at(self, label: str) -> Forge:
        self.marks[label] = len(self.buf)
        return self

    def raw(self, data: bytes) -> Forge:
        self.buf += data
        return self

    def op(self, code: bytes, arg: bytes = b"") -> Forge:
        assert len(code) == 1
        self.buf += code + arg
        return self

    def _text_proto(self) -> bool:
        return self.proto_version is None or self.proto_version < 1

    # -- framing --

    def proto(self, version: int) -> Forge:
        return self.op(OP.PROTO, bytes([version]))

    def frame(self, size: int) -> Forge:
        return self.op(OP.FRAME, struct.pack("<Q", size))

    def stop(self) -> Forge:
        return self.op(OP.STOP)

    # -- constants --

    def none(self) -> Forge:
        return self.op(OP.NONE)

    def true(self) -> Forge:
        return self.op(OP.NEWTRUE) if not self._text_proto() else self.op(OP.INT, b"01\n")

    def false(self) -> Forge:
        return self.op(OP.NEWFALSE) if not self._text_proto() else self.op(OP.INT, b"00\n")

    def int_(self, value: int) -> Forge:
        if self._text_proto():
            return self.op(OP.INT, str(value).encode() + b"\n")
        if 0 <= value < 256:
            return self.op(OP.BININT1, bytes([value]))
        if 0 <= value < 65536:
            return self.op(OP.BININT2, struct.pack("<H", value))
        if -(2**31) <= value < 2**31:
            return self.op(OP.BININT, struct.pack("<i", value))
        body = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
        return self.op(OP.LONG1, bytes([len(body)]) + body)

    def float_(self, value: float) -> Forge:
        if self._text_proto():
            return self.op(OP.FLOAT, repr(value).encode() + b"\n")
        return self.op(OP.BINFLOAT, struct.pack(">d", value))

    def str_(self, text: str) -> Forge:
        """A str constant in the form the protocol would use."""
        if self._text_proto():
            return self.op(OP.UNICODE, text.encode("raw-unicode-escape") + b"\n")
        body = text.encode("utf-8", "surrogatepass")
        if len(body) < 256 and (self.proto_version or 0) >= 4:
            return self.op(OP.SHORT_BINUNICODE, bytes([len(body)]) + body)
        return self.op(OP.BINUNICODE, struct.pack("<I", len(body)) + body)

    def string(self, text: str) -> Forge:
        """Protocol 0 STRING (quoted, escaped): a str under the default ASCII decoding."""
        return self.op(OP.STRING, repr(text.encode("latin-1"))[1:].encode() + b"\n")

    def bytes_(self, data: bytes) -> Forge:
        if len(data) < 256:
            return self.op(OP.SHORT_BINBYTES, bytes([len(data)]) + data)
        return self.op(OP.BINBYTES, struct.pack("<I", len(data)) + data)

    # -- containers --

    def mark(self) -> Forge:
        return self.op(OP.MARK)

    def empty_tuple(self) -> Forge:
        return self.op(OP.EMPTY_TUPLE)

    def tuple_(self) -> Forge:
        return self.op(OP.TUPLE)

    def tuple1(self) -> Forge:
        return self.op(OP.TUPLE1)

    def tuple2(self) -> Forge:
        return self.op(OP.TUPLE2)

    def tuple3(self) -> Forge:
        return self.op(OP.TUPLE3)

    def empty_dict(self) -> Forge:
        return self.op(OP.EMPTY_DICT)

    def dict_(self) -> Forge:
        return self.op(OP.DICT)

    def empty_list(self) -> Forge:
        return self.op(OP.EMPTY_LIST)

    def list_(self) -> Forge:
        return self.op(OP.LIST)

    def empty_set(self) -> Forge:
        return self.op(OP.EMPTY_SET)

    def setitem(self) -> Forge:
        return self.op(OP.SETITEM)

    def setitems(self) -> Forge:
        return self.op(OP.SETITEMS)

    def append(self) -> Forge:
        return self.op(OP.APPEND)

    def appends(self) -> Forge:
        return self.op(OP.APPENDS)

    def additems(self) -> Forge:
        return self.op(OP.ADDITEMS)

    # -- stack and memo --

    def pop(self) -> Forge:
        return self.op(OP.POP)

    def pop_mark(self) -> Forge:
        return self.op(OP.POP_MARK)

    def dup(self) -> Forge:
        return self.op(OP.DUP)

    def put(self, index: int) -> Forge:
        if self._text_proto():
            return self.op(OP.PUT, str(index).encode() + b"\n")
        if index < 256:
            return self.op(OP.BINPUT, bytes([index]))
        return self.op(OP.LONG_BINPUT, struct.pack("<I", index))

    def get(self, index: int) -> Forge:
        if self._text_proto():
            return self.op(OP.GET, str(index).encode() + b"\n")
        if index < 256:
            return self.op(OP.BINGET, bytes([index]))
        return self.op(OP.LONG_BINGET, struct.pack("<I", index))

    def memoize(self) -> Forge:
        return self.op(OP.MEMOIZE)

    # -- imports, calls, state --

    def global_(self, module: str, name: str) -> Forge:
        return self.op(OP.GLOBAL, module.encode() + b"\n" + name.encode() + b"\n")

    def stack_global(self) -> Forge:
        return self.op(OP.STACK_GLOBAL)

    def import_(self, module: str, name: str) -> Forge:
        """GLOBAL below protocol 4, STACK_GLOBAL (with its two strings) from 4 on; the label
        'import' marks the opcode that names the global."""
        if (self.proto_version or 0) >= 4:
            self.str_(module).str_(name)
            return self.at("import").stack_global()
        return self.at("import").global_(module, name)

    def inst(self, module: str, name: str) -> Forge:
        return self.op(OP.INST, module.encode() + b"\n" + name.encode() + b"\n")

    def obj(self) -> Forge:
        return self.op(OP.OBJ)

    def reduce(self) -> Forge:
        return self.op(OP.REDUCE)

    def newobj(self) -> Forge:
        return self.op(OP.NEWOBJ)

    def newobj_ex(self) -> Forge:
        return self.op(OP.NEWOBJ_EX)

    def build(self) -> Forge:
        return self.op(OP.BUILD)

    def ext1(self, code: int) -> Forge:
        return self.op(OP.EXT1, bytes([code]))

    def ext2(self, code: int) -> Forge:
        return self.op(OP.EXT2, struct.pack("<H", code))

    def ext4(self, code: int) -> Forge:
        return self.op(OP.EXT4, struct.pack("<i", code))

    def persid(self, pid: str) -> Forge:
        return self.op(OP.PERSID, pid.encode("ascii") + b"\n")

    def binpersid(self) -> Forge:
        return self.op(OP.BINPERSID)

    def next_buffer(self) -> Forge:
        return self.op(OP.NEXT_BUFFER)

    def readonly_buffer(self) -> Forge:
        return self.op(OP.READONLY_BUFFER)

    # -- composites --

    def value(self, v: object) -> Forge:
        """A plain constant (None, bool, int, float, str, bytes, or a tuple or dict of those)."""
        if v is None:
            return self.none()
        if v is True:
            return self.true()
        if v is False:
            return self.false()
        if isinstance(v, int):
            return self.int_(v)
        if isinstance(v, float):
            return self.float_(v)
        if isinstance(v, str):
            return self.string(v) if self._text_proto() else self.str_(v)
        if isinstance(v, bytes):
            return self.bytes_(v)
        if isinstance(v, tuple):
            return self.args(v)
        if isinstance(v, dict):
            self.mark()
            for key, item in v.items():
                self.value(key).value(item)
            return self.dict_()
        raise TypeError(type(v))

    def args(self, values: Iterable[object]) -> Forge:
        self.mark()
        for v in values:
            self.value(v)
        return self.tuple_()

    def call(self, module: str, name: str, *args: object) -> Forge:
        """`module.name(*args)` through REDUCE; labels 'import' and 'call'."""
        self.import_(module, name)
        self.args(args)
        return self.at("call").reduce()


def call_pickle(module: str, name: str, *args: object, proto: int | None = 4) -> Forge:
    """A complete pickle whose only effect is `module.name(*args)`."""
    return Forge(proto).call(module, name, *args).stop()


# -- joblib NumpyArrayWrapper streams ----------------------------------------------------------


def dtype_ops(
    f: Forge,
    typestr: str,
    *,
    order: str = "<",
    elsize: int = -1,
    flags: int = 0,
    build: bool = True,
    kind: str = "REDUCE",
) -> Forge:
    """`numpy.dtype(typestr, False, True)` plus the BUILD state numpy's `__reduce__` writes."""
    f.import_("numpy", "dtype")
    f.mark().str_(typestr).false().true().tuple_()
    f.reduce() if kind == "REDUCE" else f.newobj()
    if build:
        f.mark().int_(3).str_(order).none().none().none().int_(elsize).int_(-1).int_(flags)
        f.tuple_().build()
    return f


def wrapper_head(
    f: Forge,
    *,
    shape: tuple[int, ...],
    typestr: str = "<f8",
    align: int | None = 16,
    subclass: tuple[str, str] = ("numpy", "ndarray"),
    order: str = "C",
    extra: dict[str, object] | None = None,
    dtype: bool = True,
) -> Forge:
    """The opcodes joblib writes for one NumpyArrayWrapper, up to and including its BUILD;
    the array bytes (padding and data) come next. Label 'build' marks the BUILD."""
    f.import_("joblib.numpy_pickle", "NumpyArrayWrapper")
    f.empty_tuple().newobj()
    wrapper_state(
        f,
        shape=shape,
        typestr=typestr,
        align=align,
        subclass=subclass,
        order=order,
        extra=extra,
        dtype=dtype,
    )
    return f.at("build").build()


def wrapper_state(
    f: Forge,
    *,
    shape: tuple[int, ...],
    typestr: str = "<f8",
    align: int | None = 16,
    subclass: tuple[str, str] = ("numpy", "ndarray"),
    order: str = "C",
    extra: dict[str, object] | None = None,
    dtype: bool = True,
) -> Forge:
    """The state dict joblib gives a NumpyArrayWrapper (what its BUILD applies)."""
    f.empty_dict().mark()
    f.str_("subclass").import_(*subclass)
    f.str_("shape").args(shape)
    f.str_("order").str_(order)
    if dtype:
        f.str_("dtype")
        kind = typestr.lstrip("<>|=")[0]
        size = int(typestr.lstrip("<>|=")[1:])
        flexible = kind in "SUV"
        elsize = size * (4 if kind == "U" else 1) if flexible else -1
        dtype_ops(f, typestr.lstrip("<>|="), order=typestr[0], elsize=elsize, flags=0)
    f.str_("allow_mmap").true()
    if align is not None:
        f.str_("numpy_array_alignment_bytes").int_(align)
    for key, value in (extra or {}).items():
        f.str_(key).value(value)
    return f.setitems()


def padding_for(offset: int, align: int = 16) -> bytes:
    """joblib's padding: a length byte then that many 0xff, so the data starts aligned."""
    length = align - ((offset + 1) % align)
    return bytes([length]) + b"\xff" * length


class Point:
    """A benign custom class (pickled as its global, NEWOBJ and a BUILD of its `__dict__`),
    for tests of operator allow-list files."""

    def __init__(self, x: float, y: float) -> None:
        self.x = x
        self.y = y
