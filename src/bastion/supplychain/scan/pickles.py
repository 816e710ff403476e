"""Static pickle analysis: walk the opcodes, never unpickle.

`PickleWalker` reads a pickle stream opcode by opcode from a `ChunkReader` and keeps a
*symbolic* stack and memo that mirror CPython's unpickler closely enough to know, for every
import and every call, where its operands came from:

* every global that could be imported (GLOBAL, INST, STACK_GLOBAL) must be on the allow-list
  by exact module and exact (possibly dotted) name; STACK_GLOBAL operands must be string
  constants known statically (directly or through the memo);
* a call (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST) is only allowed on a value that came directly
  from a global, never on the result of another call, so allowed constructors cannot be
  chained into gadgets; the few allowed callables that take callables or encodings as
  arguments are further restricted to the argument shapes real files use;
* BUILD and the container mutators must target an object created by a call, never a global
  (which would monkey-patch a class), EXT opcodes (the copyreg registry), persistent ids
  (except PyTorch storages), and out-of-band buffers are findings;
* anything the real unpickler would reject (unknown opcode, truncation, stack underflow,
  missing MARK or memo entry, bad arguments) is reported with its offset and ends the walk,
  as it would end a real load; inconsistencies the C and Python unpicklers treat differently
  (a FRAME whose length does not match where its opcodes end, PROTO not first, memo slots
  overwritten, leftover stack or marks at STOP) are findings too;
* resource bounds (opcodes, stack depth, memo size, line length) fail closed.

Large payloads (BINBYTES8, BYTEARRAY8, BINUNICODE8, ...) are skipped, not read: they still
stream through the digest and secret scanner but are never copied, which is how a 500 MB
pickle of arrays is walked at the speed of reading it.

In JOBLIB mode the walker also understands joblib's `NumpyArrayWrapper`: after the BUILD
that gives a wrapper its state, joblib reads the array's raw bytes straight from the stream
(or, for object arrays, a nested pickle). The walker derives the exact byte count from the
wrapper's shape and dtype (only dtypes it can verify statically) and skips exactly that; an
object array's nested pickle is walked with the plain-pickle rules. Because the same file may
later be opened with plain `pickle.load`, which would read those array bytes as opcodes, the
walker checks that they cannot be (joblib's alignment padding byte is never an opcode).
"""

from __future__ import annotations

import codecs
import importlib.util
import pickletools
import re
import struct
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from types import MappingProxyType

import numpy as np

from bastion.supplychain.scan.allowlist import AllowList
from bastion.supplychain.scan.model import ScanLimits
from bastion.supplychain.scan.streams import ChunkReader, Truncated

Emit = Callable[[str, str, "int | None"], None]

KEEP = 4096  # strings and bytes up to this size are kept as constants
# Tuples and dicts up to this many items keep them (a structured dtype's names and fields
# must be known to be verified, and real ones can have hundreds of fields).
SMALL = 1024

_NAMES: Mapping[int, str] = MappingProxyType({ord(op.code): op.name for op in pickletools.opcodes})
OPCODE_BYTES = frozenset(_NAMES)
_FRAME = 0x95  # pickletools.code2op["\x95"] is FRAME (protocol 4)
_HIGHEST_PROTOCOL = 5

WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
_NUMPY_DTYPE = ("numpy", "dtype")
_ARRAY_CLASSES = frozenset({("numpy", "ndarray"), ("numpy", "matrix")})
_BITGEN_CTOR = ("numpy.random._pickle", "__bit_generator_ctor")
_BITGEN_NAMES = frozenset({"MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64"})
_BITGEN_CLASSES = frozenset(
    {
        ("numpy.random._mt19937", "MT19937"),
        ("numpy.random._pcg64", "PCG64"),
        ("numpy.random._pcg64", "PCG64DXSM"),
        ("numpy.random._philox", "Philox"),
        ("numpy.random._sfc64", "SFC64"),
    }
)
_ORDERED_DICT = ("collections", "OrderedDict")
_REBUILD_TENSOR = ("torch._utils", "_rebuild_tensor_v2")
_TYPESTR = re.compile(r"([biufcmMO])(\d{1,2})|([SUV])(\d{1,9})")


class Mode(Enum):
    """Which loader will read the stream, which decides how a few opcodes behave."""

    JOBLIB = "joblib"  # a top-level stream: joblib.load or pickle.load
    PLAIN = "plain"  # a nested pickle read by a plain Unpickler (joblib object arrays)
    TORCH = "torch"  # data.pkl in a PyTorch zip: persistent ids name storages


class _Opaque:
    """A value the walker tracks only by kind (lists, sets, long strings, arrays, ...)."""

    __slots__ = ("label",)

    def __init__(self, label: str) -> None:
        self.label = label

    def __repr__(self) -> str:
        return self.label


ANY = _Opaque("a value")
LONG_STR = _Opaque("a long string")
BLOB = _Opaque("a bytes payload")
LIST = _Opaque("a list")
SET = _Opaque("a set")
BIG_TUPLE = _Opaque("a long tuple")
ARRAY = _Opaque("an array")


@dataclass(slots=True, eq=False)
class Global:
    module: str
    name: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.module, self.name)


@dataclass(slots=True, eq=False)
class Call:
    """The result of calling an allowed global. `sealed` marks an object handed to a
    constrained call whose later mutation would defeat the constraint (torch hook dicts).
    For a `numpy.dtype`, `plain` caches whether it provably holds no objects, and `relied`
    marks one another dtype's check depended on (so it may not change afterwards)."""

    callee: Global
    args: object
    kind: str
    state: object = None
    builds: int = 0
    mutated: bool = False
    sealed: bool = False
    plain: bool | None = None
    relied: bool = False


@dataclass(slots=True, eq=False)
class Dct:
    """A dict; `pairs` is None once it grows past `SMALL` items (contents no longer tracked)."""

    pairs: list[tuple[object, object]] | None


@dataclass(slots=True, eq=False)
class Persistent:
    key: str


@dataclass(slots=True)
class WalkResult:
    """What one walk learned, beyond the findings it emitted."""

    reached_stop: bool = False
    dangerous: bool = False
    hard_error: bool = False
    truncated: bool = False
    wrappers: int = 0
    storage_keys: set[str] = field(default_factory=set)
    stop_offset: int | None = None
    open_frame_end: int | None = None


class _Stop(Exception):
    """Where the real unpickler would raise: report and end the walk."""

    def __init__(self, code: str, reason: str, offset: int | None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.offset = offset


class _Halt(Exception):
    """The walk cannot continue meaningfully; the finding was already emitted."""


def show(text: str) -> str:
    """A name as it may appear in a reason: printable, bounded."""
    shown = text if text.isprintable() else ascii(text)[1:-1]
    return shown if len(shown) <= 200 else shown[:200] + "..."


def describe(value: object) -> str:
    if isinstance(value, Global):
        return f"the global {show(value.module)}.{show(value.name)}"
    if isinstance(value, Call):
        return f"the result of calling {show(value.callee.module)}.{show(value.callee.name)}"
    if isinstance(value, Persistent):
        return "a persistent object"
    if isinstance(value, _Opaque):
        return value.label
    if isinstance(value, Dct):
        return "a dict"
    return f"a {type(value).__name__} constant"


def _dotted(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


@lru_cache(maxsize=4096)
def _importable(module: str) -> bool:
    """Whether a loader could import `module`: a dotted name whose top-level package is in
    the standard library (of any platform) or installed here. Only decides whether a stream
    without PROTO is a pickle at all: `cat\\ndog\\n` (a label file) names module `at`, which
    no loader can import, so it stays text. `find_spec` of a top-level name runs no module
    code; an error while looking counts as importable (fail closed)."""
    if not _dotted(module):
        return False
    top = module.partition(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return True
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return True


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- argument constraints for allowed-but-sharp callables -------------------------------------


def _bitgen_ctor(kind: str, args: object) -> str | None:
    if kind == "REDUCE" and isinstance(args, tuple) and len(args) <= 1:
        if not args:
            return None
        arg = args[0]
        if isinstance(arg, str) and arg in _BITGEN_NAMES:
            return None
        if isinstance(arg, Global) and arg.key in _BITGEN_CLASSES:
            return None
    return "an argument other than one of numpy's BitGenerator classes or names"


def _rng_ctor(kind: str, args: object) -> str | None:
    if kind == "REDUCE" and isinstance(args, tuple):
        if not args:
            return None
        first = args[0]
        named = isinstance(first, str) and first in _BITGEN_NAMES
        if len(args) == 1 and (
            named or (isinstance(first, Call) and first.callee.key == _BITGEN_CTOR)
        ):
            return None
        if len(args) == 2 and named and isinstance(args[1], Global) and args[1].key == _BITGEN_CTOR:
            return None
    return "a bit-generator constructor other than numpy's own"


def _codecs_encode(kind: str, args: object) -> str | None:
    if (
        kind == "REDUCE"
        and isinstance(args, tuple)
        and len(args) == 2
        and (isinstance(args[0], str) or args[0] is LONG_STR)
        and args[1] == "latin1"
        and isinstance(args[1], str)
    ):
        return None
    return "arguments other than (text, 'latin1') as the pickler writes for bytes"


def _hooks(value: object) -> bool:
    if (
        isinstance(value, Call)
        and value.callee.key == _ORDERED_DICT
        and value.args == ()
        and not value.mutated
        and value.builds == 0
    ):
        value.sealed = True
        return True
    return False


def _rebuild_tensor(kind: str, args: object) -> str | None:
    if (
        kind == "REDUCE"
        and isinstance(args, tuple)
        and len(args) in (6, 7)
        and isinstance(args[0], Persistent)
        and _hooks(args[5])
    ):
        return None
    return "arguments other than (storage, offset, size, stride, grad, OrderedDict())"


def _rebuild_parameter(kind: str, args: object) -> str | None:
    if (
        kind == "REDUCE"
        and isinstance(args, tuple)
        and len(args) == 3
        and isinstance(args[0], Call)
        and args[0].callee.key == _REBUILD_TENSOR
        and _hooks(args[2])
    ):
        return None
    return "arguments other than (tensor, requires_grad, OrderedDict())"


_CONSTRAINTS: Mapping[tuple[str, str], Callable[[str, object], str | None]] = MappingProxyType(
    {
        _BITGEN_CTOR: _bitgen_ctor,
        ("numpy.random._pickle", "__randomstate_ctor"): _rng_ctor,
        ("numpy.random._pickle", "__generator_ctor"): _rng_ctor,
        ("_codecs", "encode"): _codecs_encode,
        _REBUILD_TENSOR: _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }
)


# -- joblib array sizes --------------------------------------------------------------------


def _shape(value: object) -> tuple[int, ...] | None:
    if isinstance(value, tuple) and all(_is_int(x) and x >= 0 for x in value):
        return value
    return None


def _product(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def dtype_info(
    value: object,
    depth: int = 0,
    seen: dict[int, tuple[int, bool] | None] | None = None,
) -> tuple[int, bool] | None:
    """(itemsize, hasobject) of a pickled `numpy.dtype`, or None if it cannot be verified.

    Mirrors how numpy rebuilds a dtype: the type string fixes the kind; flexible kinds
    (S, U, V) take their size from the state, whose value must agree with the type string;
    object-ness comes from the kind and from every field and sub-array base. The state's
    flags must agree with that, so it does not matter whether numpy trusts them.

    Each dtype object is checked once per call (`seen`): the memo lets a pickle reuse one
    structured dtype as every field of the next, 64 wide and 16 deep, which a plain recursion
    would walk 64**16 times. A dtype met again while it is being checked (a cycle) fails.
    """
    if seen is None:
        seen = {}
    key = id(value)
    if key in seen:
        return seen[key]
    seen[key] = None  # a cycle back to this dtype cannot be verified
    info = _dtype_info(value, depth, seen)
    seen[key] = info
    return info


def _dtype_info(
    value: object, depth: int, seen: dict[int, tuple[int, bool] | None]
) -> tuple[int, bool] | None:
    if depth > 16 or not isinstance(value, Call) or value.callee.key != _NUMPY_DTYPE:
        return None
    args = value.args
    if not (
        value.kind == "REDUCE"
        and isinstance(args, tuple)
        and len(args) == 3
        and isinstance(args[0], str)
        and isinstance(args[1], bool)
        and isinstance(args[2], bool)
        and value.builds <= 1
        and not value.mutated
    ):
        return None
    match = _TYPESTR.fullmatch(args[0])
    if match is None:
        return None
    if match.group(1):
        kind, flexible = match.group(1), False
        try:
            itemsize = np.dtype(args[0]).itemsize  # a validated short type string
        except TypeError:
            return None
    else:
        kind, flexible = match.group(3), True
        itemsize = int(match.group(4)) * (4 if kind == "U" else 1)
    hasobject = kind == "O"
    if value.builds == 0:
        return itemsize, hasobject
    state = value.state
    if not isinstance(state, tuple) or len(state) not in (8, 9):
        return None
    version, order, sub, names, fields, elsize, _alignment, flags = state[:8]
    if not (
        version in (3, 4)
        and order in ("<", ">", "|", "=")
        and all(_is_int(x) for x in (version, elsize, _alignment, flags))
    ):
        return None
    if (flexible and elsize != itemsize) or (not flexible and elsize != -1):
        return None
    if sub is not None:
        if kind != "V" or not isinstance(sub, tuple) or len(sub) != 2:
            return None
        base, shape = dtype_info(sub[0], depth + 1, seen), _shape(sub[1])
        if base is None or shape is None or base[0] * _product(shape) != itemsize:
            return None
        hasobject = hasobject or base[1]
    if names is not None or fields is not None:
        if not (
            kind == "V"
            and isinstance(names, tuple)
            and isinstance(fields, Dct)
            and fields.pairs is not None
        ):
            return None
        keys = set()
        for key, entry in fields.pairs:
            if not isinstance(key, str) or not isinstance(entry, tuple) or len(entry) not in (2, 3):
                return None
            info = dtype_info(entry[0], depth + 1, seen)
            offset = entry[1]
            if info is None or not _is_int(offset) or offset < 0 or offset + info[0] > itemsize:
                return None
            hasobject = hasobject or info[1]
            keys.add(key)
        if not all(isinstance(n, str) and n in keys for n in names):
            return None
    if _object_flags(flags) != hasobject:
        return None
    return itemsize, hasobject


# numpy's dtype flags NPY_ITEM_REFCOUNT (references to release) and NPY_LIST_PICKLE (pickled as
# a list of objects): numpy sets both for a dtype that holds objects and neither otherwise.
_OBJECT_FLAGS = 0x03


def _object_flags(flags: int) -> bool | None:
    """Whether dtype flags say "holds objects"; None for a mix numpy never writes."""
    bits = flags & _OBJECT_FLAGS
    if bits == _OBJECT_FLAGS:
        return True
    return False if bits == 0 else None


def _no_objects(value: object, depth: int = 0) -> bool:
    """Whether a pickled `numpy.dtype` provably holds no object field at any depth (the
    fields and sub-array base as written, each a dtype built from allowed constructors).

    The answer is kept on the dtype (`plain`), so a dtype shared through the memo by many
    fields is looked at once, and the dtype is marked `relied` on: changing it later would
    change what a dtype already checked holds."""
    if not isinstance(value, Call) or value.callee.key != _NUMPY_DTYPE:
        return False
    value.relied = True
    if value.plain is None:
        value.plain = depth <= 16 and _dtype_plain(value, depth)
    return value.plain


def _state_parts(state: object) -> tuple[int, object, object, int | None] | None:
    """(version, sub-array, fields, flags) of a dtype BUILD state in each layout numpy's
    `__setstate__` accepts (5 to 9 items); flags None when the layout has none."""
    if not isinstance(state, tuple) or not 5 <= len(state) <= 9 or not _is_int(state[0]):
        return None
    if len(state) >= 7:
        flags = state[7] if len(state) >= 8 else None
        if flags is not None and not _is_int(flags):
            return None
        return state[0], state[2], state[4], flags
    return state[0], state[2], state[3] if len(state) == 6 else None, None


def _dtype_plain(value: Call, depth: int) -> bool:
    args = value.args
    if not (isinstance(args, tuple) and args and isinstance(args[0], str)):
        return False
    # Only the short type strings numpy's own __reduce__ writes: "i4,O", "(2,)O" or "object"
    # are dtypes with objects too.
    match = _TYPESTR.fullmatch(args[0])
    if match is None or match.group(1) == "O":
        return False
    if value.builds == 0:
        return True
    parts = _state_parts(value.state)
    if parts is None:
        return False
    _version, sub, fields, _flags = parts
    if sub is not None and not (
        isinstance(sub, tuple) and len(sub) == 2 and _no_objects(sub[0], depth + 1)
    ):
        return False
    if fields is None:
        return True
    if not isinstance(fields, Dct) or fields.pairs is None:
        return False
    return all(
        isinstance(entry, tuple) and bool(entry) and _no_objects(entry[0], depth + 1)
        for _key, entry in fields.pairs
    )


def dtype_state_problem(value: Call) -> str | None:
    """Why numpy would trust a lie in this dtype's BUILD state, or None.

    From state version 3 on numpy takes the flags as given (as 0 when the layout has no flags
    item), and they decide whether an array's pickled data is a list of objects or raw bytes.
    A dtype with an object field whose flags say "no objects" (or either flag alone) turns raw
    bytes from the file into object pointers numpy later dereferences or releases: arbitrary
    memory. Flags that say "objects" are safe, since numpy then insists on a list. Before
    version 3 numpy works the flags out itself; other states it refuses.
    """
    parts = _state_parts(value.state)
    if parts is None:
        if isinstance(value.state, tuple) and len(value.state) >= 8:
            return "has non-integer flags"
        return None
    version, _sub, _fields, flags = parts
    if not 3 <= version <= 4:
        return None
    if flags is None:
        flags = 0
    declared = _object_flags(flags)
    if declared is None:
        return f"flags 0x{flags:x} mix the object flags in a way numpy never writes"
    if not declared and not _no_objects(value):
        return "flags say it holds no objects, but a field or its base may be an object"
    return None


# -- the walker ------------------------------------------------------------------------------


Handler = Callable[["PickleWalker", int], bool]


class PickleWalker:
    """One walk over one pickle stream. Not reusable; not thread-safe."""

    def __init__(
        self,
        reader: ChunkReader,
        *,
        allow: AllowList,
        limits: ScanLimits,
        mode: Mode,
        emit: Emit,
    ) -> None:
        self._r = reader
        self._allow = allow
        self._limits = limits
        self._mode = mode
        self._emit = emit
        self._stack: list[object] = []
        self._marks: list[int] = []
        self._memo: dict[int, object] = {}
        self._count = 0
        self._frame_end: int | None = None
        self._start = 0
        self._op = "?"
        self.result = WalkResult()

    # -- driving --

    def run(self) -> WalkResult:
        r = self._r
        table = _TABLE
        stack = self._stack
        marks = self._marks
        max_ops = self._limits.max_opcodes
        max_stack = self._limits.max_stack_depth
        result = self.result
        try:
            while True:
                start = r.tell()
                op = r.byte()
                if op < 0:
                    result.truncated = True
                    raise _Stop("pickle.truncated", "the stream ends before STOP", start)
                handler = table[op]
                self._count += 1
                if handler is None:
                    raise _Stop("pickle.unknown_opcode", f"unknown opcode 0x{op:02x}", start)
                if self._count > max_ops:
                    raise _Stop("pickle.limit_exceeded", f"more than {max_ops} opcodes", start)
                self._start = start
                self._op = _NAMES[op]
                if handler(self, start):
                    break
                if self._frame_end is not None and op != _FRAME:
                    end = r.tell()
                    if end >= self._frame_end:
                        if end > self._frame_end:
                            self._emit(
                                "pickle.frame_mismatch",
                                f"{self._op} runs {end - self._frame_end} bytes past the end "
                                "of its FRAME (the C and Python unpicklers disagree here)",
                                start,
                            )
                        self._frame_end = None
                if len(stack) + len(marks) > max_stack:
                    raise _Stop(
                        "pickle.limit_exceeded",
                        f"stack deeper than {max_stack} items and marks",
                        start,
                    )
        except _Stop as stop:
            self._emit(stop.code, stop.reason, stop.offset)
            result.hard_error = True
            if stop.code == "pickle.limit_exceeded":
                # The real unpickler has no such bound and would go on to whatever follows,
                # so a stream that is only probed (protocol 0/1) must not be dismissed as text.
                result.dangerous = True
        except Truncated:
            self._emit(
                "pickle.truncated",
                f"{self._op} needs more bytes than the stream holds",
                self._start,
            )
            result.hard_error = True
            result.truncated = True
        except _Halt:
            result.hard_error = True
        return result

    # -- reading arguments --

    def _uint(self, size: int) -> int:
        return int.from_bytes(self._r.read(size), "little")

    def _int4(self) -> int:
        return int.from_bytes(self._r.read(4), "little", signed=True)

    def _line(self) -> bytes:
        line = self._r.readline(self._limits.max_line_bytes)
        if line is None:
            raise _Stop(
                "pickle.limit_exceeded",
                f"{self._op} argument line is longer than {self._limits.max_line_bytes} bytes",
                self._start,
            )
        return line

    def _malformed(self, what: str) -> _Stop:
        return _Stop("pickle.malformed", f"{self._op}: {what}", self._start)

    def _number(self, text: bytes, base: int = 10) -> int:
        try:
            return int(text, base)
        except ValueError:
            raise self._malformed("argument is not an integer") from None

    def _text(self, line: bytes, encoding: str) -> str:
        try:
            return line.decode(encoding)
        except UnicodeDecodeError:
            raise self._malformed(f"argument is not valid {encoding}") from None

    def _bytes_payload(self, n: int) -> object:
        if n > KEEP:
            self._r.skip(n)
            return BLOB
        return self._r.read(n)

    def _str_payload(self, n: int) -> object:
        if n > KEEP:
            self._r.skip(n)
            return LONG_STR
        data = self._r.read(n)
        try:
            return data.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise self._malformed("string payload is not valid UTF-8") from None

    # -- the stack --

    def _fence(self) -> int:
        return self._marks[-1] if self._marks else 0

    def _pop(self) -> object:
        if len(self._stack) <= self._fence():
            raise _Stop(
                "pickle.stack_underflow", f"{self._op} pops from an empty stack", self._start
            )
        return self._stack.pop()

    def _top(self) -> object:
        if len(self._stack) <= self._fence():
            raise _Stop(
                "pickle.stack_underflow", f"{self._op} needs a value on the stack", self._start
            )
        return self._stack[-1]

    def _pop_mark(self) -> list[object]:
        if not self._marks:
            raise _Stop("pickle.mark_mismatch", f"{self._op} without a MARK", self._start)
        k = self._marks.pop()
        items = self._stack[k:]
        del self._stack[k:]
        return items

    @staticmethod
    def _tuple(items: list[object]) -> object:
        return tuple(items) if len(items) <= SMALL else BIG_TUPLE

    def _pairs(self, items: list[object]) -> list[tuple[object, object]]:
        if len(items) % 2:
            raise self._malformed("odd number of items for a dict")
        return [(items[i], items[i + 1]) for i in range(0, len(items), 2)]

    # -- the rules --

    def _module_line(self) -> str:
        """The module line of GLOBAL / INST. Both unpicklers import the module before they
        look the name up (and the Python one takes whatever precedes the end of the stream
        as the name), so importing alone runs a module's top-level code (`unittest.__main__`
        runs test discovery): a plausible module name makes the stream a pickle."""
        module = self._text(self._line(), "utf-8")
        if _importable(module):
            self.result.dangerous = True
        return module

    def _global(self, module: str, name: str, how: str) -> Global:
        value = Global(module, name)
        if _importable(module):
            self.result.dangerous = True
        if (module, name) == WRAPPER and self._mode is not Mode.JOBLIB:
            self._emit(
                "pickle.global_not_allowed",
                f"{how} {module}.{name} is only valid in a top-level joblib stream",
                self._start,
            )
        elif not self._allow.allows_global(module, name):
            self._emit(
                "pickle.global_not_allowed",
                f"{how} {show(module)}.{show(name)} is not on the allow-list",
                self._start,
            )
        return value

    def _allowed(self, value: Global) -> bool:
        return self._allow.allows_global(value.module, value.name) and (
            value.key != WRAPPER or self._mode is Mode.JOBLIB
        )

    def _call(self, kind: str, func: object, args: object) -> object:
        if not isinstance(func, Global):
            self._emit(
                "pickle.call_on_result",
                f"{kind} calls {describe(func)}, which did not come directly from an "
                "allow-listed global",
                self._start,
            )
            return ANY
        call = Call(func, args, kind)
        if self._allowed(func):
            rule = _CONSTRAINTS.get(func.key)
            problem = rule(kind, args) if rule is not None else None
            if problem is not None:
                self._emit(
                    "pickle.call_args_not_allowed",
                    f"{kind} calls {func.module}.{func.name} with {problem}",
                    self._start,
                )
        return call

    def _mutate(self, target: object) -> None:
        if isinstance(target, Global):
            self._emit(
                "pickle.mutates_global",
                f"{self._op} modifies {describe(target)} itself",
                self._start,
            )
        elif isinstance(target, Call):
            if target.sealed:
                self._emit(
                    "pickle.call_args_not_allowed",
                    f"{self._op} modifies a dict after it was passed to a constrained call",
                    self._start,
                )
            if target.builds:
                # APPEND(S) and ADDITEMS look `append` / `extend` / `add` up on the instance,
                # which its state may have replaced; picklers add items before the BUILD.
                self._emit(
                    "pickle.bad_build",
                    f"{self._op} modifies {describe(target)} after its BUILD (the state can "
                    "replace the append/extend/add method it would call)",
                    self._start,
                )
            target.mutated = True

    def _put(self, index: int) -> None:
        value = self._top()
        memo = self._memo
        limit = self._limits.max_memo_entries
        if index >= limit or (index not in memo and len(memo) >= limit):
            raise _Stop("pickle.limit_exceeded", f"memo larger than {limit} entries", self._start)
        if index in memo:
            self._emit(
                "pickle.memo_overwrite", f"{self._op} overwrites memo slot {index}", self._start
            )
        memo[index] = value

    def _get(self, index: int) -> None:
        try:
            self._stack.append(self._memo[index])
        except KeyError:
            raise _Stop(
                "pickle.memo_missing", f"{self._op} of unset memo slot {index}", self._start
            ) from None

    # -- opcodes: constants --

    def _op_INT(self, start: int) -> bool:
        line = self._line()
        value: object = {b"00": False, b"01": True}.get(line)
        self._stack.append(self._number(line, 0) if value is None else value)
        return False

    def _op_BININT(self, start: int) -> bool:
        self._stack.append(self._int4())
        return False

    def _op_BININT1(self, start: int) -> bool:
        self._stack.append(self._uint(1))
        return False

    def _op_BININT2(self, start: int) -> bool:
        self._stack.append(self._uint(2))
        return False

    def _op_LONG(self, start: int) -> bool:
        line = self._line()
        self._stack.append(self._number(line[:-1] if line.endswith(b"L") else line, 0))
        return False

    def _op_LONG1(self, start: int) -> bool:
        n = self._uint(1)
        self._stack.append(int.from_bytes(self._r.read(n), "little", signed=True))
        return False

    def _op_LONG4(self, start: int) -> bool:
        n = self._int4()
        if n < 0:
            raise self._malformed("negative byte count")
        if n > KEEP:
            self._r.skip(n)
            self._stack.append(ANY)
        else:
            self._stack.append(int.from_bytes(self._r.read(n), "little", signed=True))
        return False

    def _op_STRING(self, start: int) -> bool:
        line = self._line()
        if len(line) < 2 or line[0] != line[-1] or line[0] not in b"\"'":
            raise self._malformed("argument must be quoted")
        try:
            data = codecs.escape_decode(line[1:-1])[0]
        except ValueError:
            raise self._malformed("bad escape in string") from None
        self._stack.append(data.decode("latin-1") if len(data) <= KEEP else LONG_STR)
        return False

    def _op_BINSTRING(self, start: int) -> bool:
        n = self._int4()
        if n < 0:
            raise self._malformed("negative byte count")
        value = self._bytes_payload(n)
        self._stack.append(value.decode("latin-1") if isinstance(value, bytes) else LONG_STR)
        return False

    def _op_SHORT_BINSTRING(self, start: int) -> bool:
        self._stack.append(self._r.read(self._uint(1)).decode("latin-1"))
        return False

    def _op_BINBYTES(self, start: int) -> bool:
        self._stack.append(self._bytes_payload(self._uint(4)))
        return False

    def _op_SHORT_BINBYTES(self, start: int) -> bool:
        self._stack.append(self._r.read(self._uint(1)))
        return False

    def _op_BINBYTES8(self, start: int) -> bool:
        self._stack.append(self._bytes_payload(self._uint(8)))
        return False

    def _op_BYTEARRAY8(self, start: int) -> bool:
        self._stack.append(self._bytes_payload(self._uint(8)))
        return False

    def _op_UNICODE(self, start: int) -> bool:
        text = self._text(self._line(), "raw-unicode-escape")
        self._stack.append(text if len(text) <= KEEP else LONG_STR)
        return False

    def _op_SHORT_BINUNICODE(self, start: int) -> bool:
        self._stack.append(self._str_payload(self._uint(1)))
        return False

    def _op_BINUNICODE(self, start: int) -> bool:
        self._stack.append(self._str_payload(self._uint(4)))
        return False

    def _op_BINUNICODE8(self, start: int) -> bool:
        self._stack.append(self._str_payload(self._uint(8)))
        return False

    def _op_FLOAT(self, start: int) -> bool:
        try:
            self._stack.append(float(self._line()))
        except ValueError:
            raise self._malformed("argument is not a float") from None
        return False

    def _op_BINFLOAT(self, start: int) -> bool:
        self._stack.append(struct.unpack(">d", self._r.read(8))[0])
        return False

    def _op_NONE(self, start: int) -> bool:
        self._stack.append(None)
        return False

    def _op_NEWTRUE(self, start: int) -> bool:
        self._stack.append(True)
        return False

    def _op_NEWFALSE(self, start: int) -> bool:
        self._stack.append(False)
        return False

    def _op_NEXT_BUFFER(self, start: int) -> bool:
        self._emit(
            "pickle.out_of_band_buffer",
            "NEXT_BUFFER refers to out-of-band data that is not in the file",
            start,
        )
        self._stack.append(BLOB)
        return False

    def _op_READONLY_BUFFER(self, start: int) -> bool:
        self._top()
        self._emit(
            "pickle.out_of_band_buffer", "READONLY_BUFFER (protocol 5 out-of-band data)", start
        )
        return False

    # -- opcodes: containers --

    def _op_EMPTY_LIST(self, start: int) -> bool:
        self._stack.append(LIST)
        return False

    def _op_APPEND(self, start: int) -> bool:
        self._pop()
        self._mutate(self._top())
        return False

    def _op_APPENDS(self, start: int) -> bool:
        self._pop_mark()
        self._mutate(self._top())
        return False

    def _op_LIST(self, start: int) -> bool:
        self._pop_mark()
        self._stack.append(LIST)
        return False

    def _op_EMPTY_TUPLE(self, start: int) -> bool:
        self._stack.append(())
        return False

    def _op_TUPLE(self, start: int) -> bool:
        self._stack.append(self._tuple(self._pop_mark()))
        return False

    def _op_TUPLE1(self, start: int) -> bool:
        self._stack.append((self._pop(),))
        return False

    def _op_TUPLE2(self, start: int) -> bool:
        second = self._pop()
        self._stack.append((self._pop(), second))
        return False

    def _op_TUPLE3(self, start: int) -> bool:
        third = self._pop()
        second = self._pop()
        self._stack.append((self._pop(), second, third))
        return False

    def _op_EMPTY_DICT(self, start: int) -> bool:
        self._stack.append(Dct([]))
        return False

    def _op_DICT(self, start: int) -> bool:
        pairs = self._pairs(self._pop_mark())
        self._stack.append(Dct(pairs if len(pairs) <= SMALL else None))
        return False

    def _add_pairs(self, target: object, pairs: list[tuple[object, object]]) -> None:
        if isinstance(target, Dct) and target.pairs is not None:
            if len(target.pairs) + len(pairs) <= SMALL:
                target.pairs.extend(pairs)
            else:
                target.pairs = None
        self._mutate(target)

    def _op_SETITEM(self, start: int) -> bool:
        value = self._pop()
        key = self._pop()
        self._add_pairs(self._top(), [(key, value)])
        return False

    def _op_SETITEMS(self, start: int) -> bool:
        pairs = self._pairs(self._pop_mark())
        self._add_pairs(self._top(), pairs)
        return False

    def _op_EMPTY_SET(self, start: int) -> bool:
        self._stack.append(SET)
        return False

    def _op_ADDITEMS(self, start: int) -> bool:
        self._pop_mark()
        self._mutate(self._top())
        return False

    def _op_FROZENSET(self, start: int) -> bool:
        self._pop_mark()
        self._stack.append(SET)
        return False

    # -- opcodes: stack and memo --

    def _op_POP(self, start: int) -> bool:
        if len(self._stack) > self._fence():
            self._stack.pop()
        elif self._marks:
            self._marks.pop()  # the Python unpickler's POP on an empty stack pops the mark
        else:
            raise _Stop("pickle.stack_underflow", "POP from an empty stack", start)
        return False

    def _op_DUP(self, start: int) -> bool:
        self._stack.append(self._top())
        return False

    def _op_MARK(self, start: int) -> bool:
        self._marks.append(len(self._stack))
        return False

    def _op_POP_MARK(self, start: int) -> bool:
        self._pop_mark()
        return False

    def _op_GET(self, start: int) -> bool:
        self._get(self._number(self._line()))
        return False

    def _op_BINGET(self, start: int) -> bool:
        self._get(self._uint(1))
        return False

    def _op_LONG_BINGET(self, start: int) -> bool:
        self._get(self._uint(4))
        return False

    def _op_PUT(self, start: int) -> bool:
        index = self._number(self._line())
        if index < 0:
            raise self._malformed("negative memo index")
        self._put(index)
        return False

    def _op_BINPUT(self, start: int) -> bool:
        self._put(self._uint(1))
        return False

    def _op_LONG_BINPUT(self, start: int) -> bool:
        self._put(self._uint(4))
        return False

    def _op_MEMOIZE(self, start: int) -> bool:
        self._put(len(self._memo))
        return False

    # -- opcodes: imports, calls, state --

    def _op_EXT1(self, start: int) -> bool:
        return self._ext(self._uint(1))

    def _op_EXT2(self, start: int) -> bool:
        return self._ext(self._uint(2))

    def _op_EXT4(self, start: int) -> bool:
        return self._ext(self._int4())

    def _ext(self, code: int) -> bool:
        self.result.dangerous = True
        self._emit(
            "pickle.ext_opcode",
            f"{self._op} {code} imports through the copyreg extension registry",
            self._start,
        )
        self._stack.append(ANY)
        return False

    def _op_GLOBAL(self, start: int) -> bool:
        module = self._module_line()
        name = self._text(self._line(), "utf-8")
        self._stack.append(self._global(module, name, "GLOBAL"))
        return False

    def _op_STACK_GLOBAL(self, start: int) -> bool:
        name = self._pop()
        module = self._pop()
        self.result.dangerous = True
        if isinstance(module, str) and isinstance(name, str):
            self._stack.append(self._global(module, name, "STACK_GLOBAL"))
        else:
            self._emit(
                "pickle.dynamic_global",
                f"STACK_GLOBAL operands are not string constants ({describe(module)}, "
                f"{describe(name)})",
                start,
            )
            self._stack.append(ANY)
        return False

    def _op_INST(self, start: int) -> bool:
        module = self._module_line()
        name = self._text(self._line(), "utf-8")
        cls = self._global(module, name, "INST")  # the real unpickler imports before MARK
        args = self._tuple(self._pop_mark())
        self._stack.append(self._call("INST", cls, args))
        return False

    def _op_OBJ(self, start: int) -> bool:
        items = self._pop_mark()
        if not items:
            raise _Stop("pickle.stack_underflow", "OBJ without a class", start)
        self._stack.append(self._call("OBJ", items[0], self._tuple(items[1:])))
        return False

    def _op_REDUCE(self, start: int) -> bool:
        args = self._pop()
        func = self._pop()
        self._stack.append(self._call("REDUCE", func, args))
        return False

    def _op_NEWOBJ(self, start: int) -> bool:
        args = self._pop()
        cls = self._pop()
        self._stack.append(self._call("NEWOBJ", cls, args))
        return False

    def _op_NEWOBJ_EX(self, start: int) -> bool:
        self._pop()  # kwargs
        args = self._pop()
        cls = self._pop()
        self._stack.append(self._call("NEWOBJ_EX", cls, args))
        return False

    def _op_BUILD(self, start: int) -> bool:
        state = self._pop()
        target = self._top()
        if isinstance(target, Call):
            if target.sealed:
                self._emit(
                    "pickle.call_args_not_allowed",
                    "BUILD modifies an object after it was passed to a constrained call",
                    start,
                )
            if target.builds:
                # The first state may have put `__setstate__` in the instance dict (an
                # estimator's own __setstate__ updates __dict__), and an instance attribute
                # wins over the class method: this BUILD would call whatever value that was.
                self._emit(
                    "pickle.bad_build",
                    f"BUILD sets the state of {describe(target)} again (its first state can "
                    "replace __setstate__ with any value, which this BUILD would call)",
                    start,
                )
            target.builds += 1
            target.state = state
            if target.callee.key == _NUMPY_DTYPE and target.builds == 1:
                if target.relied:
                    self._emit(
                        "pickle.bad_dtype",
                        "BUILD changes a numpy.dtype after another dtype was made from it",
                        start,
                    )
                target.plain = None
                problem = dtype_state_problem(target)
                if problem is not None:
                    self._emit("pickle.bad_dtype", f"numpy.dtype state {problem}", start)
            if self._mode is Mode.JOBLIB and target.callee.key == WRAPPER:
                self._joblib_array(target, state)
        elif isinstance(target, Global):
            self._mutate(target)
        else:
            self._emit("pickle.bad_build", f"BUILD on {describe(target)}", start)
        return False

    def _op_PERSID(self, start: int) -> bool:
        self._text(self._line(), "ascii")
        if self._mode is Mode.TORCH:
            self._emit("pytorch.bad_persistent_id", "text PERSID in a PyTorch data.pkl", start)
        else:
            self._emit("pickle.persistent_id", "PERSID asks the loader for an object", start)
        self._stack.append(ANY)
        return False

    def _op_BINPERSID(self, start: int) -> bool:
        pid = self._pop()
        if self._mode is not Mode.TORCH:
            self._emit("pickle.persistent_id", "BINPERSID asks the loader for an object", start)
            self._stack.append(ANY)
            return False
        if (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] == "storage"
            and isinstance(pid[1], Global)
            and pid[1].name.endswith("Storage")
            and self._allowed(pid[1])
            and isinstance(pid[2], str)
            and isinstance(pid[3], str)
            and _is_int(pid[4])
        ):
            self.result.storage_keys.add(pid[2])
            self._stack.append(Persistent(pid[2]))
        else:
            self._emit(
                "pytorch.bad_persistent_id",
                "persistent id is not ('storage', <allowed storage type>, key, location, numel)",
                start,
            )
            self._stack.append(ANY)
        return False

    # -- opcodes: framing --

    def _op_PROTO(self, start: int) -> bool:
        version = self._r.byte()
        if version < 0:
            raise Truncated(start)
        if self._count != 1:
            self._emit("pickle.bad_protocol", "PROTO is not the first opcode", start)
        if version > _HIGHEST_PROTOCOL:
            # A stream that announces a protocol nobody can verify is refused, not taken for
            # text: a later Python may well load it.
            self.result.dangerous = True
            raise _Stop("pickle.bad_protocol", f"unsupported pickle protocol {version}", start)
        return False

    def _op_FRAME(self, start: int) -> bool:
        size = self._uint(8)
        if self._frame_end is not None and start < self._frame_end:
            self._emit(
                "pickle.frame_mismatch",
                "a new FRAME starts before the previous frame's declared end",
                start,
            )
        self._frame_end = self._r.tell() + size
        return False

    def _op_STOP(self, start: int) -> bool:
        self._pop()
        end = self._r.tell()
        if self._marks or self._stack:
            self._emit(
                "pickle.unbalanced_stack",
                "STOP leaves values or marks on the stack",
                start,
            )
        if self._frame_end is not None and self._frame_end != end:
            self._emit(
                "pickle.frame_mismatch",
                f"the last FRAME declares {self._frame_end - end} bytes beyond STOP",
                start,
            )
            self.result.open_frame_end = self._frame_end
        self.result.reached_stop = True
        self.result.stop_offset = end
        return True

    # -- joblib --

    def _joblib_array(self, wrapper: Call, state: object) -> None:
        start = self._start

        def bad(why: str) -> _Halt:
            self._emit("joblib.bad_wrapper", f"NumpyArrayWrapper {why}", start)
            return _Halt()

        if wrapper.kind != "NEWOBJ" or wrapper.args != () or wrapper.builds != 1:
            raise bad("was not created the way joblib writes it")
        if not isinstance(state, Dct) or state.pairs is None:
            raise bad("state is not a small dict")
        fields: dict[str, object] = {}
        for key, value in state.pairs:
            if not isinstance(key, str) or key in fields:
                raise bad("state has a non-string or repeated key")
            fields[key] = value
        required = {"subclass", "shape", "order", "dtype", "allow_mmap"}
        if not required <= set(fields) <= required | {"numpy_array_alignment_bytes"}:
            raise bad(f"state has unexpected keys {sorted(fields)}")
        subclass = fields["subclass"]
        if not isinstance(subclass, Global) or subclass.key not in _ARRAY_CLASSES:
            raise bad("subclass is not numpy.ndarray or numpy.matrix")
        shape = _shape(fields["shape"])
        if shape is None:
            raise bad("shape is not a tuple of non-negative integers")
        if fields["order"] not in ("C", "F") or not isinstance(fields["allow_mmap"], bool):
            raise bad("order or allow_mmap is invalid")
        align = fields.get("numpy_array_alignment_bytes")
        if align is not None and (not _is_int(align) or align != 16):
            raise bad("alignment is not 16")
        info = dtype_info(fields["dtype"])
        if info is None:
            raise bad("dtype cannot be verified statically")
        itemsize, hasobject = info
        count = _product(shape)
        nbytes = count * itemsize
        if itemsize == 0 or count >= 1 << 63 or nbytes >= 1 << 63:
            raise bad("array size is out of range")
        if self._frame_end is not None:
            if self._frame_end != self._r.tell():
                self._emit(
                    "pickle.frame_mismatch",
                    "a FRAME continues past a NumpyArrayWrapper, so joblib and the opcode "
                    "stream disagree on where the array data is",
                    start,
                )
                raise _Halt
            self._frame_end = None
        self.result.wrappers += 1
        self._stack[-1] = ARRAY
        if hasobject:
            nested = PickleWalker(
                self._r,
                allow=self._allow,
                limits=self._limits,
                mode=Mode.PLAIN,
                emit=self._emit,
            )
            outcome = nested.run()
            self.result.dangerous = self.result.dangerous or outcome.dangerous
            if not outcome.reached_stop or outcome.open_frame_end is not None:
                raise _Halt
            return
        if align is not None:
            pad = self._r.byte()
            if pad < 0:
                raise Truncated(start)
            if not 1 <= pad <= align:
                raise bad(f"padding length {pad} is not between 1 and {align}")
            if self._r.read(pad).strip(b"\xff"):
                raise bad("padding bytes are not 0xff")
        elif nbytes:
            first = self._r.peek(1)
            if first and first[0] in OPCODE_BYTES:
                self._emit(
                    "joblib.pickle_differential",
                    "unaligned array data starts with a pickle opcode: pickle.load would run "
                    "it as opcodes while joblib reads it as data",
                    start,
                )
        self._r.skip(nbytes)


_TABLE: tuple[Handler | None, ...] = tuple(
    getattr(PickleWalker, f"_op_{_NAMES[code]}", None) if code in _NAMES else None
    for code in range(256)
)
assert all(_TABLE[code] is not None for code in _NAMES), "every opcode needs a handler"
