"""The allow-list: which pickle globals and skops types an artifact may reference.

It is data (`allowlist.json`, shipped in the package), versioned, and matched by *exact*
module and *exact* qualified name: `numpy.dtype` does not allow `numpy.core.dtype`, and a
dotted name (`Bdb.run`, `__builtins__.eval`) is only allowed if that dotted string itself is
listed. Every listed callable was vetted to be a pure data constructor that is safe to call
with arbitrary arguments; the few that are not safe with *every* argument (numpy's random
state constructors, `_codecs.encode`, torch's tensor rebuilders) are additionally constrained
by argument-shape checks in `pickles.py`, which an operator file cannot relax.

An operator may *add* names with a JSON or TOML file of the same shape; the resulting version
string records the file's digest, so a stored report says exactly which list decided it.
Names that are never acceptable (process, file, network, import and eval gadgets) are refused
even from an operator file.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from bastion.core.errors import ErrorKind
from bastion.supplychain.scan.errors import ScanError

# Modules whose every member is an execution, import, file, process or network gadget (or an
# unpickler, or a way to call something else). An operator file naming any of them, or a
# submodule, is refused. The C modules behind them (`_io`, `_operator`, `_functools`, ...) are
# listed too: `io.open` and `_io.open` are the same function.
_FORBIDDEN_MODULES = frozenset(
    {
        "__main__",
        "_aix_support",
        "_bootlocale",
        "_ctypes",
        "_frozen_importlib",
        "_frozen_importlib_external",
        "_functools",
        "_imp",
        "_interpreters",
        "_io",
        "_multiprocessing",
        "_operator",
        "_osx_support",
        "_pickle",
        "_posixshmem",
        "_posixsubprocess",
        "_pyrepl",
        "_signal",
        "_socket",
        "_sqlite3",
        "_ssl",
        "_thread",
        "_winapi",
        "_xxinterpchannels",
        "_xxsubinterpreters",
        "aiohttp",
        "asyncio",
        "atexit",
        "bdb",
        "boto3",
        "botocore",
        "bz2",
        "cloudpickle",
        "code",
        "codecs",
        "codeop",
        "commands",
        "compileall",
        "concurrent",
        "copy_reg",
        "copyreg",
        "cProfile",
        "ctypes",
        "dbm",
        "dill",
        "distutils",
        "doctest",
        "ensurepip",
        "fileinput",
        "fsspec",
        "ftplib",
        "functools",
        "gc",
        "glob",
        "gzip",
        "http",
        "httpx",
        "huggingface_hub",
        "idlelib",
        "imaplib",
        "imp",
        "importlib",
        "inspect",
        "io",
        "jinja2",
        "joblib",
        "lib2to3",
        "linecache",
        "logging",
        "lzma",
        "mailbox",
        "mailcap",
        "marshal",
        "mmap",
        "multiprocessing",
        "nntplib",
        "nt",
        "numpy._pytesttester",
        "numpy.ctypeslib",
        "numpy.distutils",
        "numpy.f2py",
        "numpy.lib._datasource",
        "numpy.lib._npyio_impl",
        "numpy.lib.format",
        "numpy.lib.npyio",
        "numpy.testing",
        "operator",
        "os",
        "pandas.io",
        "pathlib",
        "pdb",
        "pickle",
        "pip",
        "pkgutil",
        "platform",
        "poplib",
        "posix",
        "profile",
        "pty",
        "py_compile",
        "pydoc",
        "requests",
        "runpy",
        "scipy.io",
        "setuptools",
        "shelve",
        "shutil",
        "signal",
        "site",
        "sklearn.datasets",
        "skops",
        "smtplib",
        "socket",
        "socketserver",
        "sqlite3",
        "ssl",
        "subprocess",
        "sys",
        "tarfile",
        "telnetlib",
        "tempfile",
        "threading",
        "timeit",
        "tkinter",
        "torch.distributed",
        "torch.hub",
        "torch.jit",
        "torch.multiprocessing",
        "torch.package",
        "torch.utils.collect_env",
        "torch.utils.cpp_extension",
        "trace",
        "turtle",
        "types",
        "unittest",
        "urllib",
        "urllib3",
        "uuid",
        "venv",
        "webbrowser",
        "wsgiref",
        "xmlrpc",
        "yaml",
        "zipfile",
        "zipimport",
    }
)
# Members of otherwise useful modules that must never be callable from a pickle.
_FORBIDDEN_NAMES = frozenset(
    {
        ("copyreg", "_reconstructor"),
        ("copy_reg", "_reconstructor"),
        ("functools", "partial"),
        ("functools", "reduce"),
        ("operator", "attrgetter"),
        ("operator", "itemgetter"),
        ("operator", "methodcaller"),
        ("numpy", "DataSource"),
        ("numpy", "apply_along_axis"),
        ("numpy", "apply_over_axes"),
        ("numpy", "fromfile"),
        ("numpy", "fromfunction"),
        ("numpy", "frompyfunc"),
        ("numpy", "fromregex"),
        ("numpy", "genfromtxt"),
        ("numpy", "info"),
        ("numpy", "load"),
        ("numpy", "loadtxt"),
        ("numpy", "lookfor"),
        ("numpy", "memmap"),
        ("numpy", "piecewise"),
        ("numpy", "save"),
        ("numpy", "savetxt"),
        ("numpy", "savez"),
        ("numpy", "savez_compressed"),
        ("numpy", "show_config"),
        ("numpy", "source"),
        ("numpy", "test"),
        ("numpy", "vectorize"),
        ("numpy.lib.stride_tricks", "as_strided"),
        ("numpy.lib._stride_tricks_impl", "as_strided"),
        ("numpy._core._ufunc_config", "seterrcall"),
        ("numpy._core", "_ufunc_reconstruct"),
        ("numpy.core", "_ufunc_reconstruct"),
        ("torch", "load"),
        ("torch.serialization", "load"),
        ("pandas", "eval"),
        ("pandas", "read_pickle"),
    }
)
_BUILTIN_MODULES = frozenset({"builtins", "__builtin__"})
# Builtins that execute, import, reflect, touch files or call what they are given (`map`,
# `filter` and `iter(callable, sentinel)` turn a constructor call into a call of any value);
# the rest (set, slice, complex, ...) are data constructors.
_FORBIDDEN_BUILTINS = frozenset(
    {
        "__build_class__",
        "__import__",
        "apply",
        "breakpoint",
        "compile",
        "copyright",
        "credits",
        "delattr",
        "dir",
        "eval",
        "exec",
        "execfile",
        "exit",
        "file",
        "filter",
        "getattr",
        "globals",
        "hasattr",
        "help",
        "input",
        "iter",
        "license",
        "locals",
        "map",
        "next",
        "object",
        "open",
        "print",
        "quit",
        "raw_input",
        "reduce",
        "reload",
        "setattr",
        "super",
        "type",
        "vars",
    }
)
# Attribute names that turn any object into a gadget when resolved as a dotted name (in the
# module path or the name), and name prefixes of loaders, writers and runners.
_FORBIDDEN_PARTS = frozenset(
    {
        "__base__",
        "__bases__",
        "__builtins__",
        "__call__",
        "__class__",
        "__closure__",
        "__code__",
        "__defaults__",
        "__dict__",
        "__func__",
        "__getattr__",
        "__getattribute__",
        "__globals__",
        "__import__",
        "__init__",
        "__init_subclass__",
        "__kwdefaults__",
        "__loader__",
        "__main__",
        "__mro__",
        "__new__",
        "__reduce__",
        "__reduce_ex__",
        "__self__",
        "__setattr__",
        "__setstate__",
        "__spec__",
        "__subclasses__",
        "__wrapped__",
        "f_back",
        "f_globals",
        "f_locals",
        "func_globals",
        "gi_frame",
        "mro",
        "tb_frame",
    }
)
_FORBIDDEN_PREFIXES = (
    "dump",
    "eval",
    "exec",
    "fetch_",
    "load",
    "popen",
    "read_",
    "run",
    "save",
    "spawn",
    "system",
)
_KEYS = frozenset({"version", "globals", "skops_types", "notes"})


def _invalid(message: str) -> ScanError:
    return ScanError(message, code="scan.allowlist_invalid", kind=ErrorKind.INVALID)


def _dotted(value: object) -> bool:
    return (
        isinstance(value, str)
        and bool(value)
        and all(part.isidentifier() for part in value.split("."))
    )


def _forbidden(module: str, name: str) -> bool:
    parts = module.split(".")
    if any(".".join(parts[: i + 1]) in _FORBIDDEN_MODULES for i in range(len(parts))):
        return True
    if module in _BUILTIN_MODULES and name.split(".")[0] in _FORBIDDEN_BUILTINS:
        return True
    names = name.split(".")
    return (
        (module, name) in _FORBIDDEN_NAMES
        or any(p in _FORBIDDEN_PARTS for p in parts + names)
        or any(p.startswith(_FORBIDDEN_PREFIXES) for p in names)
    )


def _parse(
    document: Any, *, source: str, operator: bool
) -> tuple[str | None, frozenset[tuple[str, str]], frozenset[str]]:
    """Validate the shape `{"version", "globals": {module: [names]}, "skops_types", "notes"}`."""
    if not isinstance(document, Mapping):
        raise _invalid(f"{source}: the allow-list must be an object/table")
    unknown = set(document) - _KEYS
    if unknown:
        raise _invalid(f"{source}: unknown keys {sorted(unknown)}")
    version = document.get("version")
    if version is not None and not isinstance(version, str):
        raise _invalid(f"{source}: version must be a string")
    raw_globals = document.get("globals", {})
    if not isinstance(raw_globals, Mapping):
        raise _invalid(f"{source}: globals must map module names to lists of names")
    pairs: set[tuple[str, str]] = set()
    for module, names in raw_globals.items():
        if not _dotted(module) or not isinstance(names, list):
            raise _invalid(f"{source}: globals[{module!r}] must be a list of names")
        for name in names:
            if not _dotted(name):
                raise _invalid(f"{source}: globals[{module!r}] has a bad name {name!r}")
            if operator and _forbidden(module, name):
                raise _invalid(f"{source}: {module}.{name} can never be allow-listed")
            pairs.add((module, name))
    raw_types = document.get("skops_types", [])
    if not isinstance(raw_types, list) or not all(_dotted(t) for t in raw_types):
        raise _invalid(f"{source}: skops_types must be a list of dotted type names")
    return version, frozenset(pairs), frozenset(raw_types)


@dataclass(frozen=True, slots=True)
class AllowList:
    """Immutable, versioned allow-list data."""

    version: str
    globals: frozenset[tuple[str, str]]
    skops_types: frozenset[str]

    @classmethod
    def default(cls) -> AllowList:
        """The list shipped with this release (`allowlist.json`)."""
        raw = resources.files(__package__).joinpath("allowlist.json").read_bytes()
        version, pairs, types = _parse(json.loads(raw), source="allowlist.json", operator=False)
        if version is None:
            raise _invalid("allowlist.json: missing version")
        return cls(version=version, globals=pairs, skops_types=types)

    @classmethod
    def load(cls, extra: Path | None = None) -> AllowList:
        """The default list, plus an operator file (JSON or TOML, same shape) if given.

        The operator can only add. A malformed or unreadable file, or one naming a gadget
        that is never acceptable, raises `ScanError` (`scan.allowlist_invalid`).
        """
        base = cls.default()
        if extra is None:
            return base
        try:
            raw = extra.read_bytes()
        except OSError as error:
            raise _invalid(f"cannot read allow-list file {extra}: {error.strerror}") from error
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise _invalid(f"{extra}: not UTF-8 text") from error
        document: Any
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            try:
                document = tomllib.loads(text)
            except tomllib.TOMLDecodeError as error:
                raise _invalid(f"{extra}: neither JSON nor TOML ({error})") from error
        _, pairs, types = _parse(document, source=str(extra), operator=True)
        digest = hashlib.sha256(raw).hexdigest()[:16]
        return cls(
            version=f"{base.version}+operator-sha256:{digest}",
            globals=base.globals | pairs,
            skops_types=base.skops_types | types,
        )

    def allows_global(self, module: str, name: str) -> bool:
        return (module, name) in self.globals

    def allows_skops_type(self, name: str) -> bool:
        return name in self.skops_types

    def modules(self) -> dict[str, list[str]]:
        """Module → sorted names, for reports and documentation."""
        out: dict[str, list[str]] = {}
        for module, name in sorted(self.globals):
            out.setdefault(module, []).append(name)
        return out
