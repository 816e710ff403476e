"""The allow-list data (`allowlist.json`) and operator files that extend it.

Every packaged name must resolve (the way the unpickler resolves it: import, then attribute
lookup, with Python 2 names mapped) to a class or function of an installed release; torch is
not installed here, so its names are skipped. Operator files (JSON or TOML) can only add,
change the version, and are refused when they name a gadget or are malformed.
"""

from __future__ import annotations

import _compat_pickle
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import pickle
import sys
import types
import warnings
from importlib import resources
from pathlib import Path

import pytest

from bastion.supplychain.scan import AllowList, ArtifactFormat, ScanError, Scanner
from unit.supplychain.pickle_forge import Point, call_pickle

PACKAGED = json.loads(
    resources.files("bastion.supplychain.scan").joinpath("allowlist.json").read_bytes()
)
GLOBALS: dict[str, list[str]] = PACKAGED["globals"]
# Modules that only exist under another name: Python 2 builtins (mapped by the unpickler for
# protocols < 3) and the Cython alias scikit-learn's loss types pickle under.
_ALIAS_IMPORTS = {"_loss": "sklearn._loss._loss"}


def _resolve(module: str, name: str) -> object:
    """What `pickle.Unpickler.find_class` returns for (module, name) at protocol 2."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy.core aliases
        if module in _ALIAS_IMPORTS:
            importlib.import_module(_ALIAS_IMPORTS[module])
            assert module in sys.modules, f"{module} is not registered by its extension"
        else:
            importlib.import_module(module)
        obj: object = sys.modules[module]
        for part in name.split("."):
            obj = getattr(obj, part)
    return obj


def _installed(module: str) -> bool:
    top = _ALIAS_IMPORTS.get(module, module).split(".")[0]
    return top in ("__builtin__",) or importlib.util.find_spec(top) is not None


@pytest.mark.parametrize("module", sorted(GLOBALS))
def test_every_packaged_name_resolves_to_a_class_or_function(module: str) -> None:
    if not _installed(module):
        assert module.split(".")[0] == "torch", f"{module} is not installed"
        pytest.skip("torch is not installed")
    assert GLOBALS[module] == sorted(GLOBALS[module]), "names are kept sorted"
    for name in GLOBALS[module]:
        obj = _resolve(module, name)
        assert not isinstance(obj, types.ModuleType), f"{module}.{name} is a module"
        assert isinstance(obj, type) or inspect.isroutine(obj) or callable(obj), (
            f"{module}.{name} is a {type(obj).__name__}, not a class or function"
        )


def test_packaged_modules_are_sorted_and_the_list_loads() -> None:
    assert list(GLOBALS) == sorted(GLOBALS)
    allow = AllowList.default()
    assert allow.version == PACKAGED["version"]
    assert len(allow.globals) == sum(len(names) for names in GLOBALS.values())
    assert allow.allows_global("numpy", "dtype")
    assert not allow.allows_global("numpy", "load")
    assert not allow.allows_global("numpy.core", "dtype")  # exact module, never a prefix


def test_python2_names_written_below_protocol_3_are_allowed() -> None:
    """A protocol 0-2 pickler writes `__builtin__.xrange` for `range` (and so on); those
    names must be allowed exactly when the name they map back to is."""
    allow = AllowList.default()
    for module, name in allow.globals:
        py2 = _compat_pickle.REVERSE_NAME_MAPPING.get((module, name))
        if py2 is None and module in _compat_pickle.REVERSE_IMPORT_MAPPING:
            py2 = (_compat_pickle.REVERSE_IMPORT_MAPPING[module], name)
        if py2 is not None:
            assert allow.allows_global(*py2), f"{module}.{name} is written as {py2}"
    for module, name in allow.globals:
        mapped = _compat_pickle.NAME_MAPPING.get((module, name))
        if mapped is not None:  # the unpickler rewrites it: the target must be allowed too
            assert allow.allows_global(*mapped), f"{module}.{name} maps to {mapped}"


def test_packaged_list_passes_the_operator_rules(tmp_path: Path) -> None:
    """Every packaged name but joblib's array wrapper (which the walker handles itself) is
    acceptable in an operator file too: the shipped list holds no gadget."""
    document = {
        "globals": {
            module: names for module, names in GLOBALS.items() if module != "joblib.numpy_pickle"
        }
    }
    path = tmp_path / "same.json"
    path.write_text(json.dumps(document))
    assert AllowList.load(path).globals == AllowList.default().globals


# -- operator files ----------------------------------------------------------------------------

POINT = (Point.__module__, Point.__qualname__)


def _point_pickles() -> dict[int, bytes]:
    return {proto: pickle.dumps(Point(1, 2.5), protocol=proto) for proto in range(6)}


@pytest.mark.parametrize("kind", ["json", "toml"])
def test_operator_file_adds_names_and_changes_the_version(tmp_path: Path, kind: str) -> None:
    module, name = POINT
    if kind == "json":
        text = json.dumps({"version": "ops-1", "globals": {module: [name]}, "notes": ["x"]})
    else:
        text = f'version = "ops-1"\nnotes = ["x"]\n[globals]\n"{module}" = ["{name}"]\n'
    path = tmp_path / f"extra.{kind}"
    path.write_text(text)
    base = AllowList.default()
    allow = AllowList.load(path)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    assert allow.version == f"{base.version}+operator-sha256:{digest}"
    assert allow.globals == base.globals | {POINT}
    assert allow.skops_types == base.skops_types
    assert AllowList.load(None) == base


def test_operator_file_adds_skops_types(tmp_path: Path) -> None:
    path = tmp_path / "extra.toml"
    path.write_text('skops_types = ["mypkg.models.Custom"]\n')
    allow = AllowList.load(path)
    assert allow.allows_skops_type("mypkg.models.Custom")
    assert "+operator-sha256:" in allow.version


def test_operator_added_class_becomes_accepted(tmp_path: Path) -> None:
    pickles = _point_pickles()
    default = Scanner()
    for proto, data in pickles.items():
        report = default.scan_bytes(data, "point.pkl")
        assert [f.code for f in report.findings][:1] == ["pickle.global_not_allowed"], proto
    path = tmp_path / "extra.json"
    path.write_text(json.dumps({"globals": {POINT[0]: [POINT[1]]}}))
    extended = Scanner(AllowList.load(path))
    for proto in (2, 3, 4, 5):
        report = extended.scan_bytes(pickles[proto], "point.pkl")
        assert (report.format, report.findings) == (ArtifactFormat.PICKLE, ()), proto
    # protocols 0 and 1 build such objects through copyreg._reconstructor: still refused
    for proto in (0, 1):
        report = extended.scan_bytes(pickles[proto], "point.pkl")
        reasons = [f.reason for f in report.findings]
        assert any("copy_reg._reconstructor" in r for r in reasons), reasons
    # adding a class never lets it be called on a call result or monkey-patched
    report = extended.scan_bytes(call_pickle("os", "system", "id").data)
    assert not report.clean


FORBIDDEN = (
    ("os", "system"),
    ("posix", "system"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "getattr"),
    ("builtins", "map"),
    ("builtins", "iter"),
    ("__builtin__", "eval"),
    ("builtins", "eval.__self__"),
    ("subprocess", "Popen"),
    ("subprocess.foo", "Popen"),
    ("numpy", "load"),
    ("numpy", "loadtxt"),
    ("numpy", "savez"),
    ("numpy", "vectorize"),
    ("numpy.lib.npyio", "load"),
    ("numpy.lib.format", "read_array"),
    ("numpy.ctypeslib", "load_library"),
    ("numpy.lib.stride_tricks", "as_strided"),
    ("numpy", "__builtins__"),
    ("numpy", "__builtins__.eval"),
    ("numpy", "ndarray.__reduce__"),
    ("numpy", "dtype.__new__"),
    ("collections", "OrderedDict.__class__"),
    ("sklearn.pipeline", "Pipeline.__init__"),
    ("numpy.__builtins__", "eval"),
    ("unittest.__main__", "main"),
    ("idlelib.idle", "x"),
    ("pkgutil", "resolve_name"),
    ("importlib", "import_module"),
    ("_frozen_importlib", "_call_with_frames_removed"),
    ("_io", "open"),
    ("io", "FileIO"),
    ("codecs", "open"),
    ("_operator", "attrgetter"),
    ("operator", "call"),
    ("_functools", "partial"),
    ("functools", "partial"),
    ("copyreg", "__newobj__"),
    ("copyreg", "_reconstructor"),
    ("marshal", "loads"),
    ("types", "FunctionType"),
    ("ctypes", "CDLL"),
    ("_ctypes", "dlopen"),
    ("torch", "load"),
    ("torch.hub", "load"),
    ("torch.utils.cpp_extension", "load_inline"),
    ("pandas", "read_pickle"),
    ("pandas", "read_csv"),
    ("pandas.io.parsers", "read_csv"),
    ("sklearn.datasets", "fetch_openml"),
    ("mypkg", "load_model"),
    ("mypkg.io", "run_script"),
    ("joblib", "load"),
    ("joblib.numpy_pickle", "NumpyArrayWrapper"),
    ("dill", "loads"),
    ("yaml", "unsafe_load"),
    ("logging.config", "listen"),
    ("atexit", "register"),
    ("gzip", "open"),
    ("zipfile", "ZipFile"),
    ("webbrowser", "open"),
    ("uuid", "_get_command_stdout"),
    ("_osx_support", "_read_output"),
    ("_aix_support", "_read_cmd_output"),
    ("imaplib", "IMAP4_stream"),
    ("__main__", "Model"),
)


@pytest.mark.parametrize(("module", "name"), FORBIDDEN, ids=[f"{m}.{n}" for m, n in FORBIDDEN])
def test_operator_file_naming_a_gadget_is_refused(tmp_path: Path, module: str, name: str) -> None:
    path = tmp_path / "extra.json"
    path.write_text(json.dumps({"globals": {"collections": ["deque"], module: [name]}}))
    with pytest.raises(ScanError) as raised:
        AllowList.load(path)
    assert raised.value.code == "scan.allowlist_invalid"
    assert f"{module}.{name}" in str(raised.value)


MALFORMED: dict[str, bytes] = {
    "unknown-key": b'{"globals": {}, "trusted": true}',
    "not-an-object": b'[["os", "system"]]',
    "globals-not-a-map": b'{"globals": [["collections", "deque"]]}',
    "names-not-a-list": b'{"globals": {"collections": "deque"}}',
    "name-not-a-string": b'{"globals": {"collections": [1]}}',
    "empty-name": b'{"globals": {"collections": [""]}}',
    "name-with-space": b'{"globals": {"collections": ["OrderedDict x"]}}',
    "name-with-dot-at-end": b'{"globals": {"collections": ["OrderedDict."]}}',
    "name-with-newline": b'{"globals": {"collections": ["deque\\nsystem"]}}',
    "bad-module": b'{"globals": {"my-pkg": ["X"]}}',
    "empty-module": b'{"globals": {"": ["X"]}}',
    "version-not-a-string": b'{"version": 3}',
    "skops-types-not-a-list": b'{"skops_types": "a.B"}',
    "skops-type-bad": b'{"skops_types": ["a b"]}',
    "not-utf8": b'{"globals": {"collections": ["deque"]}, "notes": ["\xff\xfe"]}',
    "neither-json-nor-toml": b"globals: {collections: [deque]}\n",
    "toml-bad-shape": b'[globals]\ncollections = "deque"\n',
}


@pytest.mark.parametrize("label", MALFORMED)
def test_malformed_operator_file_is_refused(tmp_path: Path, label: str) -> None:
    path = tmp_path / "extra.json"
    path.write_bytes(MALFORMED[label])
    with pytest.raises(ScanError) as raised:
        AllowList.load(path)
    assert raised.value.code == "scan.allowlist_invalid"


@pytest.mark.parametrize("kind", ["missing", "directory", "unreadable"])
def test_unreadable_operator_file_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "extra.json"
    if kind == "directory":
        path.mkdir()
    elif kind == "unreadable":
        if os.geteuid() == 0:
            path = tmp_path / "dangling.json"
            path.symlink_to(tmp_path / "nowhere" / "x.json")
        else:
            path.write_text("{}")
            path.chmod(0)
    with pytest.raises(ScanError) as raised:
        AllowList.load(path)
    assert raised.value.code == "scan.allowlist_invalid"
    assert "cannot read" in str(raised.value)
