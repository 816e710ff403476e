"""OpenSSF model signing, offline with EC keys: sign and verify models in the reference format.

The format is the one `model-signing` 1.1.1 writes for `sign key` / `verify key`: a Sigstore
bundle v0.3 (`application/vnd.dev.sigstore.bundle.v0.3+json`) holding a DSSE envelope whose
payload (`application/vnd.in-toto+json`) is an in-toto Statement v1 with predicate type
`https://model_signing/signature/v1.0`:

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": <model name>, "digest": {"sha256": <subject digest>}}],
     "predicateType": "https://model_signing/signature/v1.0",
     "predicate": {"serialization": {"method": "files", "hash_type": "sha256",
                                     "allow_symlinks": false, "ignore_paths": [...]},
                   "resources": [{"name": "d0/f00", "algorithm": "sha256", "digest": <hex>}]}}

Exactly as the reference computes them:

* resources are ordered like `pathlib.PurePosixPath` orders them, component by component
  (`a/b` sorts before `a.b`), and a model that is a single file has one resource named `.`;
* the subject digest is SHA-256 over the concatenated raw resource digests in that order;
* the DSSE signature is DER ECDSA over PAE(payloadType, payload), hashed with SHA-256,
  SHA-384 or SHA-512 for P-256, P-384 and P-521; `keyid` is empty;
* `verificationMaterial.publicKey.hint` is the hex SHA-256 of the public key's SPKI *PEM*
  bytes, and `tlogEntries` is empty;
* `ignore_paths` records what was left out: `.git`, `.gitattributes`, `.github`,
  `.gitignore` (relative to the model root only) plus caller paths such as the signature file.

Why not the reference library at run time: the registry signs manifests of digests it has
already computed and re-verified, without re-reading a directory, and the reference has
weaknesses we must not inherit (resource names such as `../x` joined onto the model path,
symlink and TOCTOU races between listing and hashing, a float `shard_size`). Here resource
names are checked before the filesystem is touched, every file is opened beneath a directory
descriptor with `O_NOFOLLOW` on each component, and any symlink or special file is refused.

Verification fails closed and reports every problem it finds (`SignatureInvalid.problems`).
Supported on verify: the `files` serialization with `sha256` (the reference default) or
`blake2b` (which the reference writes with `hashing_algorithm="blake2"` but cannot verify
itself). `shards`, `blake3` and the pre-1.0 `Digests/v0.1` predicate are refused with
`signature.unsupported`.

Imports only `bastion.core`, the standard library and `cryptography`.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import hmac
import json
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bastion.core.errors import ErrorKind, IntegrityError, InvalidInput

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "DEFAULT_IGNORE_PATHS",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "FileDigest",
    "SignatureInvalid",
    "SignedManifest",
    "Signer",
    "Verifier",
    "hash_directory",
    "hash_file",
    "is_ignored_path",
    "key_fingerprint",
    "load_private_key_pem",
    "load_public_key_pem",
    "model_name_for",
    "private_key_from_seed",
]

BUNDLE_MEDIA_TYPE: Final = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
STATEMENT_TYPE: Final = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE: Final = "https://model_signing/signature/v1.0"
_PREDICATE_TYPE_V01: Final = "https://model_signing/Digests/v0.1"

#: What the reference leaves out of a directory by default (`hashing.Config` with
#: `ignore_git_paths=True`), relative to the model root only.
DEFAULT_IGNORE_PATHS: Final[tuple[str, ...]] = (".git", ".gitattributes", ".github", ".gitignore")

#: The resource name the reference gives the only file of a single-file model.
SINGLE_FILE_NAME: Final = "."

_METHOD_FILES: Final = "files"
_SIGN_ALGORITHM: Final = "sha256"
_DIGEST_SIZES: Final[tuple[tuple[str, int], ...]] = (("sha256", 32), ("blake2b", 64))
_CURVES: Final[tuple[str, ...]] = ("secp256r1", "secp384r1", "secp521r1")
_READ_CHUNK: Final = 4 * 1024 * 1024  # large reads: hashlib releases the GIL per update
_MAX_BUNDLE_BYTES: Final = 256 * 1024 * 1024
_SEED_MIN_BYTES: Final = 32
_SEED_SALT: Final = b"bastion/supplychain/signing/p256-seed/v1"
_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_HEX: Final = re.compile(r"[0-9a-f]*")
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK


# -- values and errors --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileDigest:
    """One file of a model: its relative POSIX path inside the model and its digest.

    A model that is a single file has one `FileDigest` whose path is `"."`, as in the
    reference format.
    """

    path: str
    algorithm: str
    digest: bytes
    size: int | None = None


@dataclass(frozen=True, slots=True)
class SignedManifest:
    """What a valid bundle says: the model's name, its files and the key that signed it."""

    model_name: str
    files: tuple[FileDigest, ...]
    key_fingerprint: str
    method: str
    hash_type: str
    ignore_paths: tuple[str, ...] = ()


class SignatureInvalid(IntegrityError):
    """The signature, its statement or the model does not check out.

    `details["problems"]` lists every problem found (`changed: a.bin`, `missing: b.bin`,
    `extra: evil.py`, `path escape: ../x`, ...) so an operator sees the whole picture at once.
    Codes: `signature.invalid`, `signature.malformed` (not a bundle at all) and
    `signature.unsupported` (a valid format variant this verifier refuses to handle).
    """

    default_code = "signature.invalid"

    def __init__(
        self,
        message: str,
        *,
        problems: Sequence[str] = (),
        code: str | None = None,
        kind: ErrorKind | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Takes what `BastionError` takes, plus `problems`; `details["problems"]` is always
        a non-empty list of strings (the message alone when nothing more specific is known)."""
        merged = dict(details or {})
        if problems:
            merged["problems"] = list(problems)
        merged["problems"] = [str(p) for p in merged.get("problems") or [message]]
        super().__init__(message, code=code, kind=kind, details=merged)

    @property
    def problems(self) -> list[str]:
        """Every problem found, in a stable order."""
        return list(self.details["problems"])


# -- names and paths ----------------------------------------------------------------------------


def _show(name: str) -> str:
    """A name safe to print: control characters and odd code points are escaped."""
    return name if name.isprintable() else repr(name)


def _sort_key(name: str) -> tuple[str, ...]:
    """Order names as `PurePosixPath` does in the reference: by components, not by string."""
    return tuple(name.split("/"))


def _name_problem(name: str) -> str | None:
    """Why `name` cannot be a relative path inside the model, or None when it can.

    Checked on every resource and ignore path before any file is opened: absolute paths,
    `..`, `.`, empty components, backslashes and NUL would let a signed manifest point
    outside the model or make two spellings of one file.
    """
    if not name:
        return "path escape: ''"
    if "\x00" in name or "\\" in name or name.startswith("/"):
        return f"path escape: {_show(name)}"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return f"path escape: {_show(name)}"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return f"bad name: {_show(name)}"
    return None


def _normalise_ignore(paths: Iterable[str]) -> tuple[str, ...]:
    """Caller-supplied ignore paths as relative POSIX paths, refusing anything outside root."""
    result: list[str] = []
    for raw in paths:
        path = os.fspath(raw).rstrip("/")
        while path.startswith("./"):
            path = path[2:]
        problem = _name_problem(path)
        if problem is not None:
            raise InvalidInput(
                f"ignore path {_show(os.fspath(raw))!r} is not a relative path inside the model",
                code="signature.bad_ignore_path",
            )
        if path not in result:
            result.append(path)
    return tuple(result)


def _is_ignored(path: str, ignore: Iterable[str]) -> bool:
    """True when `path` is an ignore path or lies under one (component-wise, like the reference)."""
    return any(path == entry or path.startswith(entry + "/") for entry in ignore)


def is_ignored_path(path: str, ignore: Iterable[str] = DEFAULT_IGNORE_PATHS) -> bool:
    """Whether a signer leaves `path` out: the registry filters its stored files with this
    before `Signer.sign`, since the reference verifier always skips the git paths and would
    report such a file missing."""
    return _is_ignored(path, tuple(ignore))


def model_name_for(root: Path) -> str:
    """The subject name the reference gives a model: the last component of its path."""
    name = root.name
    if not name or name == "..":
        name = os.path.basename(root.resolve())
    return name


# -- hashing ------------------------------------------------------------------------------------


def _digest_size(algorithm: str) -> int | None:
    return dict(_DIGEST_SIZES).get(algorithm)


def _new_hash(algorithm: str) -> Any:
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "blake2b":
        return hashlib.blake2b()
    raise InvalidInput(
        f"unsupported hash algorithm {algorithm!r} (use sha256)",
        code="signature.unsupported_algorithm",
    )


def _hash_fd(fd: int, algorithm: str) -> tuple[bytes, int]:
    """Digest and length of an open regular file, read in large chunks."""
    hasher = _new_hash(algorithm)
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    buffer = bytearray(_READ_CHUNK)
    view = memoryview(buffer)
    total = 0
    with open(fd, "rb", buffering=0, closefd=False) as handle:
        while True:
            count = handle.readinto(view)
            if not count:
                break
            hasher.update(view[:count])
            total += count
    return hasher.digest(), total


def _check_regular(fd: int, shown: str) -> None:
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        raise InvalidInput(f"{shown} is not a regular file", code="signature.special_file")


def _open_beneath(root_fd: int, relpath: str) -> int:
    """Open `relpath` under `root_fd` without following a symlink at any component.

    The listing and the hashing are separate steps; walking descriptor by descriptor with
    `O_NOFOLLOW` means a directory swapped for a symlink in between cannot redirect a read
    outside the model.
    """
    parts = relpath.split("/")
    current = root_fd
    try:
        for part in parts[:-1]:
            parent = current
            current = os.open(part, _DIR_FLAGS, dir_fd=parent)
            if parent != root_fd:
                os.close(parent)
        return os.open(parts[-1], _FILE_FLAGS, dir_fd=current)
    finally:
        if current != root_fd:
            os.close(current)


def _hash_beneath(root_fd: int, relpath: str, algorithm: str) -> tuple[bytes, int]:
    fd = _open_beneath(root_fd, relpath)
    try:
        _check_regular(fd, _show(relpath))
        return _hash_fd(fd, algorithm)
    finally:
        os.close(fd)


def hash_file(path: Path, algorithm: str = "sha256") -> bytes:
    """Digest of one regular file; symlinks and special files are refused.

    Raises `InvalidInput` with `signature.symlink`, `signature.special_file`,
    `signature.unreadable` or `signature.unsupported_algorithm`.
    """
    _new_hash(algorithm)
    fd = _open_root(path)
    try:
        _check_regular(fd, str(path))
        return _hash_fd(fd, algorithm)[0]
    except OSError as error:
        raise InvalidInput(
            f"cannot read {path}: {error.strerror}", code="signature.unreadable"
        ) from error
    finally:
        os.close(fd)


def _open_root(root: Path) -> int:
    """Open the model path itself, refusing a symlink (as the reference does by default)."""
    try:
        return os.open(root, _FILE_FLAGS)
    except OSError as error:
        if os.path.islink(root):
            raise InvalidInput(
                f"{root} is a symlink; sign or verify the real path",
                code="signature.symlink",
            ) from error
        raise InvalidInput(
            f"cannot open {root}: {error.strerror}", code="signature.unreadable"
        ) from error


@dataclass(slots=True)
class _Listing:
    """A directory walk: the regular files found (with sizes) and what was refused.

    Each problem is `(path, text)` so a refused path is not also reported as missing.
    """

    files: dict[str, int]
    problems: list[tuple[str, str]]


def _list_tree(root_fd: int, ignore: Sequence[str]) -> _Listing:
    """Every regular file under `root_fd` not covered by `ignore`; symlinks etc. are problems.

    Ignored directories are not entered at all. The walk is iterative (no recursion limit)
    and reopens each directory beneath the root with `O_NOFOLLOW` on every component.
    """
    listing = _Listing(files={}, problems=[])
    pending = [""]
    while pending:
        prefix = pending.pop()
        dir_fd = root_fd if not prefix else _open_dir_beneath(root_fd, prefix, listing)
        if dir_fd is None:
            continue
        try:
            with os.scandir(dir_fd) as entries:
                for entry in entries:
                    _classify(entry, prefix, ignore, listing, pending)
        except OSError as error:
            text = f"unreadable: {_show(prefix or '.')} ({error.strerror})"
            listing.problems.append((prefix or ".", text))
        finally:
            if dir_fd != root_fd:
                os.close(dir_fd)
    return listing


def _open_dir_beneath(root_fd: int, prefix: str, listing: _Listing) -> int | None:
    current = root_fd
    try:
        for part in prefix.split("/"):
            parent = current
            current = os.open(part, _DIR_FLAGS, dir_fd=parent)
            if parent != root_fd:
                os.close(parent)
    except OSError as error:
        if current != root_fd:
            os.close(current)
        listing.problems.append((prefix, f"unreadable: {_show(prefix)} ({error.strerror})"))
        return None
    return current


def _classify(
    entry: os.DirEntry[str],
    prefix: str,
    ignore: Sequence[str],
    listing: _Listing,
    pending: list[str],
) -> None:
    relpath = f"{prefix}/{entry.name}" if prefix else entry.name
    if _is_ignored(relpath, ignore):
        return
    if _name_problem(relpath) is not None:
        listing.problems.append((relpath, f"unsupported file name: {_show(relpath)}"))
        return
    try:
        if entry.is_symlink():
            listing.problems.append((relpath, f"symlink: {_show(relpath)}"))
        elif entry.is_dir(follow_symlinks=False):
            pending.append(relpath)
        elif entry.is_file(follow_symlinks=False):
            listing.files[relpath] = entry.stat(follow_symlinks=False).st_size
        else:
            listing.problems.append((relpath, f"special file: {_show(relpath)}"))
    except OSError as error:
        listing.problems.append((relpath, f"unreadable: {_show(relpath)} ({error.strerror})"))


def _worker_count(workers: int | None, jobs: int) -> int:
    if workers is not None and workers < 1:
        raise InvalidInput("workers must be at least 1", code="input.invalid")
    wanted = workers if workers is not None else min(32, os.cpu_count() or 1)
    return max(1, min(wanted, jobs))


def _hash_many(
    root_fd: int, sizes: dict[str, int], algorithm: str, workers: int | None
) -> dict[str, tuple[bytes, int] | OSError | InvalidInput]:
    """Hash files beneath `root_fd` in threads, largest first; failures are returned, not raised."""

    def one(relpath: str) -> tuple[bytes, int] | OSError | InvalidInput:
        try:
            return _hash_beneath(root_fd, relpath, algorithm)
        except (OSError, InvalidInput) as error:
            return error

    order = sorted(sizes, key=lambda p: (-sizes[p], _sort_key(p)))
    count = _worker_count(workers, len(order))
    if count == 1:
        return {p: one(p) for p in order}
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="bastion-hash") as pool:
        return dict(zip(order, pool.map(one, order), strict=True))


def _failure_text(relpath: str, failure: OSError | InvalidInput) -> str:
    if isinstance(failure, InvalidInput):
        return f"special file: {_show(relpath)}"
    if failure.errno == errno.ELOOP:
        return f"symlink: {_show(relpath)}"
    return f"unreadable: {_show(relpath)} ({failure.strerror})"


def hash_directory(
    root: Path,
    *,
    ignore: Iterable[str] = (),
    workers: int | None = None,
    ignore_git_paths: bool = True,
) -> tuple[FileDigest, ...]:
    """SHA-256 of every regular file under `root`, in the reference's canonical order.

    `ignore` adds relative paths to leave out (a directory covers everything beneath it) to
    the reference defaults (`.git`, `.gitattributes`, `.github`, `.gitignore` at the root,
    unless `ignore_git_paths=False`). If `root` is a file, the result is its single digest
    named `"."`. Any symlink (the root included), special file or unrepresentable name is
    refused with `InvalidInput` listing every offender in `details["problems"]`.
    """
    ignored = _effective_ignore(ignore, ignore_git_paths)
    root_fd = _open_root(root)
    try:
        mode = os.fstat(root_fd).st_mode
        if stat.S_ISREG(mode):
            digest, size = _hash_fd(root_fd, _SIGN_ALGORITHM)
            return (FileDigest(SINGLE_FILE_NAME, _SIGN_ALGORITHM, digest, size),)
        if not stat.S_ISDIR(mode):
            raise InvalidInput(
                f"{root} is neither a regular file nor a directory", code="signature.special_file"
            )
        listing = _list_tree(root_fd, ignored)
        _raise_listing_problems(root, [text for _, text in listing.problems])
        results = _hash_many(root_fd, listing.files, _SIGN_ALGORITHM, workers)
    except OSError as error:
        raise InvalidInput(
            f"cannot read {root}: {error.strerror}", code="signature.unreadable"
        ) from error
    finally:
        os.close(root_fd)
    failures = [_failure_text(p, r) for p, r in results.items() if not isinstance(r, tuple)]
    _raise_listing_problems(root, failures)
    return tuple(
        FileDigest(p, _SIGN_ALGORITHM, r[0], r[1])
        for p, r in sorted(results.items(), key=lambda item: _sort_key(item[0]))
        if isinstance(r, tuple)
    )


def _effective_ignore(ignore: Iterable[str], ignore_git_paths: bool) -> tuple[str, ...]:
    extra = _normalise_ignore(ignore)
    base = DEFAULT_IGNORE_PATHS if ignore_git_paths else ()
    return tuple(dict.fromkeys((*base, *extra)))


def _raise_listing_problems(root: Path, problems: list[str]) -> None:
    if not problems:
        return
    problems = sorted(problems, key=_problem_order)
    kinds = {problem.split(":", 1)[0] for problem in problems}
    code = next(
        (
            code
            for kind, code in (
                ("symlink", "signature.symlink"),
                ("special file", "signature.special_file"),
                ("unsupported file name", "signature.bad_name"),
            )
            if kind in kinds
        ),
        "signature.unreadable",
    )
    raise InvalidInput(
        f"cannot sign {root}: {problems[0]}"
        + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
        code=code,
        details={"problems": problems},
    )


# -- keys ---------------------------------------------------------------------------------------


def _check_curve(public_key: object) -> None:
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise InvalidInput(
            "only EC keys on P-256, P-384 or P-521 are supported",
            code="signature.unsupported_key",
        )
    if public_key.curve.name not in _CURVES:
        raise InvalidInput(
            f"unsupported curve {public_key.curve.name}; use P-256, P-384 or P-521",
            code="signature.unsupported_key",
        )


def _signature_hash(public_key: ec.EllipticCurvePublicKey) -> hashes.HashAlgorithm:
    """The reference pairs each curve with a hash of matching strength."""
    size = public_key.curve.key_size
    if size == 256:
        return hashes.SHA256()
    if size == 384:
        return hashes.SHA384()
    return hashes.SHA512()


def _spki_pem(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_hint(public_key: ec.EllipticCurvePublicKey) -> str:
    """The reference's `publicKey.hint`: hex SHA-256 of the SPKI PEM text (not the DER)."""
    return hashlib.sha256(_spki_pem(public_key)).hexdigest()


def key_fingerprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """`sha256:<hex>` of the key's SubjectPublicKeyInfo DER: stable across PEM formatting."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def private_key_from_seed(seed: bytes) -> ec.EllipticCurvePrivateKey:
    """A deterministic P-256 key from at least 32 secret bytes (the key store's secret).

    HKDF-SHA256 expands the seed to 48 bytes (so reducing mod n leaves a negligible bias),
    which map to a scalar in [1, n-1]: the same secret always gives the same signing key,
    and the key store need only keep the 32-byte secret.
    """
    if not isinstance(seed, bytes | bytearray | memoryview):
        raise InvalidInput("seed must be bytes", code="signature.short_seed")
    material = bytes(seed)
    if len(material) < _SEED_MIN_BYTES:
        raise InvalidInput(
            f"seed must be at least {_SEED_MIN_BYTES} bytes, got {len(material)}",
            code="signature.short_seed",
        )
    expanded = HKDF(
        algorithm=hashes.SHA256(), length=48, salt=_SEED_SALT, info=b"ecdsa p-256 signing key"
    ).derive(material)
    scalar = int.from_bytes(expanded, "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def load_private_key_pem(data: bytes, password: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    """An EC private key (P-256/384/521) from PEM; anything else is `InvalidInput`.

    Codes: `signature.bad_key` (not a PEM private key, wrong or missing password) and
    `signature.unsupported_key` (RSA, Ed25519, other curves).
    """
    try:
        key = serialization.load_pem_private_key(data, password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise InvalidInput(
            f"not a usable PEM private key: {error}", code="signature.bad_key"
        ) from error
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidInput(
            f"unsupported key type {type(key).__name__}; use an EC key on P-256, P-384 or P-521",
            code="signature.unsupported_key",
        )
    _check_curve(key.public_key())
    return key


def load_public_key_pem(data: bytes) -> ec.EllipticCurvePublicKey:
    """An EC public key (SPKI PEM, P-256/384/521); anything else is `InvalidInput`."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise InvalidInput(
            f"not a usable PEM public key: {error}", code="signature.bad_key"
        ) from error
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InvalidInput(
            f"unsupported key type {type(key).__name__}; use an EC key on P-256, P-384 or P-521",
            code="signature.unsupported_key",
        )
    _check_curve(key)
    return key


# -- DSSE and the statement ---------------------------------------------------------------------


def _pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature actually covers."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _subject_digest(digests: Iterable[bytes]) -> str:
    """The reference's subject digest: SHA-256 over the raw resource digests, in order."""
    hasher = hashlib.sha256()
    for digest in digests:
        hasher.update(digest)
    return hasher.hexdigest()


def _statement_bytes(
    model_name: str, files: Sequence[FileDigest], ignore_paths: Sequence[str]
) -> bytes:
    serialization_args: dict[str, Any] = {
        "method": _METHOD_FILES,
        "hash_type": _SIGN_ALGORITHM,
        "allow_symlinks": False,
    }
    if ignore_paths:
        serialization_args["ignore_paths"] = sorted(ignore_paths)
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": model_name, "digest": {"sha256": _subject_digest(f.digest for f in files)}}
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": serialization_args,
            "resources": [
                {"name": f.path, "algorithm": f.algorithm, "digest": f.digest.hex()} for f in files
            ],
        },
    }
    return json.dumps(statement, indent=2, ensure_ascii=False).encode("utf-8")


class _Malformed(ValueError):
    """Internal: input that is not JSON we are willing to read."""


def _strict_json(data: bytes, what: str) -> Any:
    """Parse UTF-8 JSON refusing duplicate keys and NaN/Infinity (no parser differentials)."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                raise _Malformed(f"duplicate key {key!r} in {what}")
            result[key] = value
        return result

    def constant(name: str) -> Any:
        raise _Malformed(f"{name} is not allowed in {what}")

    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=pairs, parse_constant=constant)
    except _Malformed:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise _Malformed(f"{what} is not valid JSON: {error}") from error


def _b64(value: object, what: str, problems: list[str]) -> bytes | None:
    if not isinstance(value, str):
        problems.append(f"{what} is missing or not a string")
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        problems.append(f"{what} is not valid base64")
        return None


@dataclass(slots=True)
class _Findings:
    """Problems found so far, split so the error code says what kind of failure it was."""

    invalid: list[str]
    unsupported: list[str]

    def fail(self, message: str) -> NoReturn:
        """Raise with every problem; the code is `unsupported` only if nothing is invalid."""
        if self.invalid:
            raise SignatureInvalid(message, problems=self.invalid + self.unsupported)
        raise SignatureInvalid(message, problems=self.unsupported, code="signature.unsupported")


# -- signing ------------------------------------------------------------------------------------


class Signer:
    """Signs model manifests with an EC private key, in the reference bundle format."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key, ec.EllipticCurvePrivateKey):
            raise InvalidInput(
                "only EC private keys are supported", code="signature.unsupported_key"
            )
        public_key = private_key.public_key()
        _check_curve(public_key)
        self._key = private_key
        self._public_key = public_key
        self._hint = _key_hint(public_key)
        self._fingerprint = key_fingerprint(public_key)

    @property
    def public_key_pem(self) -> bytes:
        """The SPKI PEM public key that verifies this signer's bundles."""
        return _spki_pem(self._public_key)

    @property
    def key_fingerprint(self) -> str:
        """`sha256:<hex>` of the public key's SPKI DER."""
        return self._fingerprint

    def sign(
        self,
        model_name: str,
        files: Sequence[FileDigest],
        *,
        ignore_paths: Iterable[str] | None = None,
    ) -> bytes:
        """The bundle JSON for a manifest of precomputed digests; no file is read.

        `ignore_paths` is recorded in the statement (default: the reference's git paths) and
        verifiers leave those paths out when they re-hash a directory, so a file lying under
        one of them cannot be signed and is refused. Digests must be SHA-256.
        """
        if not isinstance(model_name, str) or not model_name or "\x00" in model_name:
            raise InvalidInput("model name must be a non-empty string", code="input.invalid")
        try:
            model_name.encode("utf-8")
        except UnicodeEncodeError as error:
            raise InvalidInput("model name is not valid text", code="input.invalid") from error
        ignored = _normalise_ignore(DEFAULT_IGNORE_PATHS if ignore_paths is None else ignore_paths)
        ordered = self._check_files(files, ignored)
        payload = _statement_bytes(model_name, ordered, ignored)
        signature = self._key.sign(
            _pae(PAYLOAD_TYPE, payload), ec.ECDSA(_signature_hash(self._public_key))
        )
        bundle = {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {"publicKey": {"hint": self._hint}, "tlogEntries": []},
            "dsseEnvelope": {
                "payload": base64.b64encode(payload).decode("ascii"),
                "payloadType": PAYLOAD_TYPE,
                "signatures": [{"sig": base64.b64encode(signature).decode("ascii"), "keyid": ""}],
            },
        }
        return json.dumps(bundle, separators=(",", ":")).encode("utf-8")

    @staticmethod
    def _check_files(files: Sequence[FileDigest], ignored: Sequence[str]) -> list[FileDigest]:
        if not files:
            raise InvalidInput("nothing to sign: the manifest is empty", code="signature.empty")
        problems: list[str] = []
        seen: set[str] = set()
        for item in files:
            if not isinstance(item, FileDigest) or not isinstance(item.path, str):
                raise InvalidInput("files must be FileDigest values", code="input.invalid")
            single = item.path == SINGLE_FILE_NAME and len(files) == 1
            problem = None if single else _name_problem(item.path)
            if problem is not None:
                problems.append(problem)
            elif item.path in seen:
                problems.append(f"duplicate: {_show(item.path)}")
            elif not single and _is_ignored(item.path, ignored):
                problems.append(f"ignored path: {_show(item.path)}")
            if item.algorithm != _SIGN_ALGORITHM:
                problems.append(f"unsupported algorithm {item.algorithm!r}: {_show(item.path)}")
            elif not isinstance(item.digest, bytes) or len(item.digest) != 32:
                problems.append(f"bad digest: {_show(item.path)}")
            seen.add(item.path)
        if problems:
            raise InvalidInput(
                f"cannot sign this manifest: {problems[0]}",
                code="signature.bad_manifest",
                details={"problems": problems},
            )
        return sorted(files, key=lambda f: _sort_key(f.path))

    def sign_directory(
        self, root: Path, *, model_name: str | None = None, ignore: Iterable[str] = ()
    ) -> bytes:
        """Hash `root` (a directory or a single file) and sign it, like `model_signing sign key`.

        The git paths and `ignore` (e.g. the signature file when it lives inside the model)
        are left out and recorded in the statement's `ignore_paths`.
        """
        ignored = _effective_ignore(ignore, True)
        files = hash_directory(root, ignore=ignored)
        return self.sign(model_name or model_name_for(root), files, ignore_paths=ignored)


# -- verification -------------------------------------------------------------------------------


class Verifier:
    """Verifies bundles against one EC public key, then the files or directory they describe."""

    def __init__(self, public_key: ec.EllipticCurvePublicKey) -> None:
        _check_curve(public_key)
        self._key = public_key
        self._hint = _key_hint(public_key)
        self._fingerprint = key_fingerprint(public_key)

    @property
    def key_fingerprint(self) -> str:
        """`sha256:<hex>` of the public key's SPKI DER."""
        return self._fingerprint

    def verify(self, bundle: bytes) -> SignedManifest:
        """Check the envelope, its one signature and the statement; touch no file.

        Raises `SignatureInvalid` listing every problem: bundle structure, key hint, signature,
        statement type, predicate, serialization, every bad resource name (path escapes are
        caught here, before any path is used), duplicates and the subject digest.
        """
        payload = self._open_envelope(bundle)
        return self._read_statement(payload)

    def verify_files(self, bundle: bytes, files: Sequence[FileDigest]) -> SignedManifest:
        """`verify`, then compare the signed digests with `files` (e.g. from the registry)."""
        manifest = self.verify(bundle)
        given: dict[str, FileDigest] = {}
        for item in files:
            if item.path in given:
                raise InvalidInput(
                    f"file {_show(item.path)} given twice", code="signature.duplicate_file"
                )
            given[item.path] = item
        problems = [text for _, text in _compare(manifest, given)]
        if problems:
            raise SignatureInvalid(
                f"files do not match the signature: {problems[0]}", problems=problems
            )
        return manifest

    def verify_directory(
        self, bundle: bytes, root: Path, *, ignore: Iterable[str] = ()
    ) -> SignedManifest:
        """`verify`, then re-hash `root` and compare: every changed, missing or extra file,
        symlink and special file is reported.

        Paths are left out if the signature's `ignore_paths` or `ignore` cover them; a signed
        file under an ignored path is reported missing, never skipped. Unusable input (no
        such path, root is a symlink) is `InvalidInput`.
        """
        manifest = self.verify(bundle)
        ignored = tuple(dict.fromkeys((*manifest.ignore_paths, *_normalise_ignore(ignore))))
        signed = {f.path: f for f in manifest.files}
        refused: list[tuple[str, str]] = []
        found: dict[str, FileDigest] = {}
        root_fd = _open_root(root)
        try:
            mode = os.fstat(root_fd).st_mode
            if stat.S_ISREG(mode):
                digest, size = _hash_fd(root_fd, manifest.hash_type)
                found[SINGLE_FILE_NAME] = FileDigest(
                    SINGLE_FILE_NAME, manifest.hash_type, digest, size
                )
            elif stat.S_ISDIR(mode):
                listing = _list_tree(root_fd, ignored)
                refused.extend(listing.problems)
                wanted = {p: s for p, s in listing.files.items() if p in signed}
                results = _hash_many(root_fd, wanted, manifest.hash_type, None)
                for path in listing.files:
                    result = results.get(path)
                    if result is None:
                        found[path] = FileDigest(path, manifest.hash_type, b"")
                    elif isinstance(result, tuple):
                        found[path] = FileDigest(path, manifest.hash_type, result[0], result[1])
                    else:
                        refused.append((path, _failure_text(path, result)))
            else:
                raise InvalidInput(
                    f"{root} is neither a regular file nor a directory",
                    code="signature.special_file",
                )
        except OSError as error:
            raise InvalidInput(
                f"cannot read {root}: {error.strerror}", code="signature.unreadable"
            ) from error
        finally:
            os.close(root_fd)
        accounted = {path for path, _ in refused}
        problems = [text for _, text in refused] + [
            text for path, text in _compare(manifest, found) if path not in accounted
        ]
        if problems:
            problems = sorted(dict.fromkeys(problems), key=_problem_order)
            raise SignatureInvalid(
                f"model does not match its signature: {problems[0]}"
                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                problems=problems,
            )
        return manifest

    # -- internals ------------------------------------------------------------------------------

    def _open_envelope(self, bundle: bytes) -> bytes:
        """Check the bundle around the payload and the signature; return the signed payload."""
        if not isinstance(bundle, bytes | bytearray | memoryview):
            raise SignatureInvalid("bundle must be bytes", code="signature.malformed")
        if len(bundle) > _MAX_BUNDLE_BYTES:
            raise SignatureInvalid(
                f"bundle is larger than {_MAX_BUNDLE_BYTES} bytes", code="signature.malformed"
            )
        try:
            document = _strict_json(bytes(bundle), "bundle")
        except _Malformed as error:
            raise SignatureInvalid(str(error), code="signature.malformed") from error
        if not isinstance(document, dict):
            raise SignatureInvalid("bundle is not a JSON object", code="signature.malformed")
        findings = _Findings(invalid=[], unsupported=[])
        media_type = document.get("mediaType")
        if media_type != BUNDLE_MEDIA_TYPE:
            findings.invalid.append(f"wrong mediaType: {media_type!r}")
        self._check_material(document.get("verificationMaterial"), findings)
        envelope = document.get("dsseEnvelope")
        if not isinstance(envelope, dict):
            findings.invalid.append("no dsseEnvelope")
            findings.fail("not a DSSE bundle")
        payload_type = envelope.get("payloadType")
        if payload_type != PAYLOAD_TYPE:
            findings.invalid.append(f"wrong payloadType: {payload_type!r}")
        payload = _b64(envelope.get("payload"), "payload", findings.invalid)
        signature = self._one_signature(envelope.get("signatures"), findings)
        if payload is not None and signature is not None and isinstance(payload_type, str):
            try:
                self._key.verify(
                    signature, _pae(payload_type, payload), ec.ECDSA(_signature_hash(self._key))
                )
            except InvalidSignature:
                findings.invalid.append("signature does not verify with the given key")
        if findings.invalid or findings.unsupported or payload is None:
            findings.fail("signature is not valid")
        return payload

    def _check_material(self, material: object, findings: _Findings) -> None:
        if not isinstance(material, dict):
            findings.invalid.append("no verificationMaterial")
            return
        public_key = material.get("publicKey")
        if public_key is None:
            findings.unsupported.append(
                "verification material is not a public key "
                "(certificate and Sigstore identity bundles are not supported)"
            )
            return
        if not isinstance(public_key, dict):
            findings.invalid.append("verificationMaterial.publicKey is not an object")
            return
        hint = public_key.get("hint")
        if hint is not None and hint != self._hint:
            findings.invalid.append(
                f"key hint mismatch: bundle names key {_show(str(hint))}, "
                f"verifying with {self._hint}"
            )

    @staticmethod
    def _one_signature(signatures: object, findings: _Findings) -> bytes | None:
        if not isinstance(signatures, list):
            findings.invalid.append("signatures is missing or not a list")
            return None
        if len(signatures) != 1:
            findings.invalid.append(f"expected exactly one signature, found {len(signatures)}")
            return None
        entry = signatures[0]
        if not isinstance(entry, dict):
            findings.invalid.append("signature entry is not an object")
            return None
        return _b64(entry.get("sig"), "signature", findings.invalid)

    def _read_statement(self, payload: bytes) -> SignedManifest:
        try:
            statement = _strict_json(payload, "statement")
        except _Malformed as error:
            raise SignatureInvalid(str(error), code="signature.malformed") from error
        if not isinstance(statement, dict):
            raise SignatureInvalid("statement is not a JSON object", code="signature.malformed")
        findings = _Findings(invalid=[], unsupported=[])
        if statement.get("_type") != STATEMENT_TYPE:
            findings.invalid.append(
                f"statement is not in-toto v1: _type={statement.get('_type')!r}"
            )
        predicate_type = statement.get("predicateType")
        if predicate_type == _PREDICATE_TYPE_V01:
            findings.unsupported.append(
                f"predicateType {_PREDICATE_TYPE_V01} (pre-1.0, no subject binding) "
                "is not supported; re-sign the model"
            )
        elif predicate_type != PREDICATE_TYPE:
            findings.invalid.append(f"predicateType mismatch: {predicate_type!r}")
        name, subject_digest = _read_subject(statement.get("subject"), findings)
        predicate = statement.get("predicate")
        if not isinstance(predicate, dict):
            findings.invalid.append("predicate is missing or not an object")
            findings.fail("statement is not valid")
        method, hash_type, ignore_paths = _read_serialization(
            predicate.get("serialization"), findings
        )
        if findings.unsupported:  # resources of another method or hash do not parse as ours
            findings.fail("signature format is not supported")
        files = _read_resources(predicate.get("resources"), hash_type, findings)
        if files is not None and subject_digest is not None:
            computed = _subject_digest(f.digest for f in files)
            if not hmac.compare_digest(computed, subject_digest):
                findings.invalid.append(
                    f"subject digest {subject_digest} does not match the resources ({computed})"
                )
        if findings.invalid or findings.unsupported or name is None or files is None:
            findings.fail("statement is not valid")
        return SignedManifest(
            model_name=name,
            files=tuple(sorted(files, key=lambda f: _sort_key(f.path))),
            key_fingerprint=self._fingerprint,
            method=method,
            hash_type=hash_type,
            ignore_paths=ignore_paths,
        )


def _read_subject(subjects: object, findings: _Findings) -> tuple[str | None, str | None]:
    if not isinstance(subjects, list) or len(subjects) != 1:
        findings.invalid.append("statement must have exactly one subject")
        return None, None
    subject = subjects[0]
    if not isinstance(subject, dict) or not isinstance(subject.get("name"), str):
        findings.invalid.append("subject has no name")
        return None, None
    digest = subject.get("digest")
    value = digest.get("sha256") if isinstance(digest, dict) else None
    if not isinstance(value, str) or len(value) != 64 or not _HEX.fullmatch(value):
        findings.invalid.append("subject has no sha256 digest")
        return subject["name"], None
    return subject["name"], value


def _read_serialization(args: object, findings: _Findings) -> tuple[str, str, tuple[str, ...]]:
    if not isinstance(args, dict):
        findings.invalid.append("predicate.serialization is missing or not an object")
        return "", "", ()
    method = args.get("method")
    hash_type = args.get("hash_type")
    if method == "shards":
        findings.unsupported.append(
            "serialization method 'shards' is not supported (model_signing 1.1.1 records "
            "shard_size as a float and cannot verify it either); sign with 'files'"
        )
    elif method != _METHOD_FILES:
        findings.unsupported.append(f"unsupported serialization method {method!r}")
    if not isinstance(hash_type, str) or _digest_size(hash_type) is None:
        findings.unsupported.append(f"unsupported hash_type {hash_type!r}")
    if not isinstance(args.get("allow_symlinks"), bool):
        findings.invalid.append("serialization.allow_symlinks is missing or not a boolean")
    raw_ignore = args.get("ignore_paths", [])
    ignore: list[str] = []
    if not isinstance(raw_ignore, list):
        findings.invalid.append("serialization.ignore_paths is not a list")
    else:
        for entry in raw_ignore:
            if not isinstance(entry, str) or _name_problem(entry) is not None:
                findings.invalid.append(f"bad ignore path: {_show(str(entry))}")
            else:
                ignore.append(entry)
    return (
        method if isinstance(method, str) else "",
        hash_type if isinstance(hash_type, str) else "",
        tuple(ignore),
    )


def _read_resources(
    resources: object, hash_type: str, findings: _Findings
) -> list[FileDigest] | None:
    if not isinstance(resources, list):
        findings.invalid.append("predicate.resources is missing or not a list")
        return None
    size = _digest_size(hash_type)
    files: list[FileDigest] = []
    seen: set[str] = set()
    complete = True
    for resource in resources:
        name = resource.get("name") if isinstance(resource, dict) else None
        algorithm = resource.get("algorithm") if isinstance(resource, dict) else None
        digest = resource.get("digest") if isinstance(resource, dict) else None
        if not isinstance(name, str):
            findings.invalid.append("resource without a name")
            complete = False
            continue
        single = name == SINGLE_FILE_NAME and len(resources) == 1
        problem = None if single else _name_problem(name)
        if problem is not None:
            findings.invalid.append(problem)
        if name in seen:
            findings.invalid.append(f"duplicate resource: {_show(name)}")
        seen.add(name)
        if size is not None and algorithm != hash_type:
            findings.invalid.append(
                f"resource {_show(name)} uses {algorithm!r}, not the hash_type {hash_type!r}"
            )
        if (
            not isinstance(digest, str)
            or not _HEX.fullmatch(digest)
            or (size is not None and len(digest) != 2 * size)
        ):
            findings.invalid.append(f"bad digest: {_show(name)}")
            complete = False
            continue
        files.append(FileDigest(name, hash_type, bytes.fromhex(digest)))
    return files if complete else None


def _compare(manifest: SignedManifest, found: dict[str, FileDigest]) -> list[tuple[str, str]]:
    """Every difference between the signed files and `found`, as `(path, text)` in path order."""
    signed = {f.path: f for f in manifest.files}
    problems: list[tuple[str, str]] = []
    for path in sorted(signed.keys() | found.keys(), key=_sort_key):
        expected, actual = signed.get(path), found.get(path)
        if actual is None:
            problems.append((path, f"missing: {_show(path)}"))
        elif expected is None:
            problems.append((path, f"extra: {_show(path)}"))
        elif actual.algorithm != expected.algorithm:
            problems.append(
                (
                    path,
                    f"cannot compare: {_show(path)} (signed {expected.algorithm}, "
                    f"given {actual.algorithm})",
                )
            )
        elif not hmac.compare_digest(actual.digest, expected.digest):
            problems.append((path, f"changed: {_show(path)}"))
    return problems


def _problem_order(problem: str) -> tuple[tuple[str, ...], str]:
    kind, _, rest = problem.partition(": ")
    return _sort_key(rest), kind
