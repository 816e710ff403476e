"""Policy bundles: a set of Rego modules plus one `data.json`, with a content digest.

Layout (as OPA bundles): `.rego` files at any depth and an optional `data.json` at the root,
merged into `data`. Nothing else is accepted (a stray file is more likely a mistake than an
intention), names must be plain relative paths, sizes are bounded, and the package namespace
`bastion_engine` is reserved for the engine's own wrapper modules. The digest is SHA-256 of
the RFC 8785 JSON of `{"data", "modules"}`, so it names exactly what is evaluated; it is what
every decision record carries.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from bastion.core.canonical import canonical_json
from bastion.policy.errors import PolicyError

GATES: tuple[str, ...] = (
    "dataset_register",
    "model_register",
    "model_sign",
    "approval_grant",
    "alias_set",
    "deploy",
    "rollout",
    "retention",
    "privacy_budget",
    "version_status",
    "data_release",
    "policy_change",
)
RESERVED_PACKAGE = "bastion_engine"
MAX_FILES = 500
MAX_BYTES = 4 * 1024 * 1024
_PACKAGE = re.compile(r"^\s*package\s+([A-Za-z_][\w.]*)", re.MULTILINE)
_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_TEST_RULE = re.compile(r"^(test_[A-Za-z0-9_]*)\b", re.MULTILINE)


def _invalid(message: str) -> PolicyError:
    return PolicyError(message, code="policy.invalid_bundle")


@dataclass(frozen=True, slots=True)
class PolicyBundle:
    """Immutable bundle content. Build with `from_files`, `load_dir` or `default`."""

    modules: Mapping[str, str]
    data: Mapping[str, Any]
    digest: str

    @classmethod
    def from_files(cls, files: Mapping[str, bytes | str]) -> PolicyBundle:
        """Validate and build a bundle from `{relative path: content}`."""
        if not files:
            raise _invalid("the bundle is empty")
        if len(files) > MAX_FILES:
            raise _invalid(f"a bundle holds at most {MAX_FILES} files")
        total = 0
        modules: dict[str, str] = {}
        data: dict[str, Any] = {}
        for path, raw in files.items():
            parts = path.split("/")
            if (
                not path
                or path.startswith("/")
                or any(p in ("", ".", "..") or not _SEGMENT.match(p) for p in parts)
            ):
                raise _invalid(f"bad file name {path[:200]!r} in the bundle")
            content = raw.encode("utf-8") if isinstance(raw, str) else raw
            total += len(content)
            if total > MAX_BYTES:
                raise _invalid(f"the bundle is larger than {MAX_BYTES} bytes")
            try:
                text = content.decode("utf-8")
            except UnicodeDecodeError as error:
                raise _invalid(f"{path} is not UTF-8 text") from error
            if path == "data.json":
                try:
                    loaded = json.loads(text)
                except ValueError as error:
                    raise _invalid(f"data.json is not JSON: {error}") from error
                if not isinstance(loaded, dict):
                    raise _invalid("data.json must hold a JSON object")
                data = loaded
            elif path.endswith(".rego"):
                packages = _PACKAGE.findall(text)
                if not packages:
                    raise _invalid(f"{path} declares no package")
                if any(p.split(".")[0] == RESERVED_PACKAGE for p in packages):
                    raise _invalid(f"{path}: package {RESERVED_PACKAGE} is reserved")
                modules[path] = text
            else:
                raise _invalid(f"{path}: a bundle holds only .rego files and data.json")
        if not modules:
            raise _invalid("the bundle has no .rego modules")
        try:
            digest = hashlib.sha256(canonical_json({"data": data, "modules": modules})).hexdigest()
        except Exception as error:
            raise _invalid(f"data.json cannot be canonicalized: {error}") from error
        return cls(modules=modules, data=data, digest=f"sha256:{digest}")

    @classmethod
    def load_dir(cls, root: Path) -> PolicyBundle:
        """Read a bundle directory (hidden files and directories such as `.git` are skipped;
        symlinks and special files are refused)."""
        root = Path(root)
        if not root.is_dir() or root.is_symlink():
            raise _invalid(f"{root} is not a directory")
        files: dict[str, bytes] = {}
        for directory, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                path = Path(directory) / name
                rel = path.relative_to(root).as_posix()
                info = path.lstat()
                if not stat.S_ISREG(info.st_mode):
                    raise _invalid(f"{rel} is not a regular file")
                if len(files) >= MAX_FILES:
                    raise _invalid(f"a bundle holds at most {MAX_FILES} files")
                files[rel] = path.read_bytes()
            for d in dirnames:
                if (Path(directory) / d).is_symlink():
                    raise _invalid(f"{(Path(directory) / d).relative_to(root)} is a symlink")
        return cls.from_files(files)

    @classmethod
    def default(cls) -> PolicyBundle:
        """The bundle shipped in the package (`bastion/policy/default`)."""
        base = resources.files("bastion.policy").joinpath("default")
        files: dict[str, bytes] = {}

        def walk(node: Any, prefix: str) -> None:
            for child in sorted(node.iterdir(), key=lambda c: c.name):
                rel = f"{prefix}{child.name}"
                if child.name.startswith((".", "__")):
                    continue
                if child.is_dir():
                    walk(child, rel + "/")
                elif rel == "data.json" or rel.endswith(".rego"):
                    files[rel] = child.read_bytes()

        walk(base, "")
        return cls.from_files(files)

    def files(self) -> dict[str, str]:
        """`{path: text}` with `data.json` rendered, for storage and `load_dir` round trips."""
        out = dict(self.modules)
        out["data.json"] = json.dumps(self.data, indent=2, sort_keys=True) + "\n"
        return out

    def test_rules(self) -> list[tuple[str, str, str]]:
        """(file, package, rule) of every `test_*` rule, in file order (OPA's convention)."""
        found: list[tuple[str, str, str]] = []
        for path in sorted(self.modules):
            text = self.modules[path]
            packages = _PACKAGE.findall(text)
            for name in dict.fromkeys(_TEST_RULE.findall(text)):
                found.append((path, packages[0], name))
        return found

    def policy_modules(self) -> dict[str, str]:
        """The modules decisions are made from: all but test modules (those defining `test_*`
        rules), which only `bastion policy test` loads."""
        return {p: t for p, t in self.modules.items() if not _TEST_RULE.search(t)}

    def test_modules(self) -> dict[str, str]:
        return {p: t for p, t in self.modules.items() if _TEST_RULE.search(t)}
