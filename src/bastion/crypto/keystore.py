"""Key stores: the `KeyStore` interface and `LocalKeyStore`, a key store in plain files.

Three tiers of keys, each wrapped (AES-256-GCM) by the one above:

    master key (env or home/master.key)
      └── key-encryption keys (KEKs), one active at a time
            ├── data keys (DEKs): one per blob, created by the envelope cipher
            └── named keys: long-lived secrets such as the API-token hashing pepper

On disk, under `keys_dir` (every directory 0700, every file 0600, every write atomic):

    check.json                 master-key check value; open() fails fast on a wrong master key
    active                     id of the active KEK
    kek/<kek_id>.json          KEK wrapped by the master key; AAD binds the KEK id
    dek/<key_id>.json          {key_id, kek_id, created, wrapped}; AAD binds key id and KEK id
    named/<name>.json          {name, kek_id, created, wrapped}; AAD binds name and KEK id
    shredded/<key_id>.json     tombstone {key_id, kek_id, shredded_at}; no key material
    .lock                      fcntl lock shared by every process using this directory

Because each AAD binds the file's identity, swapping two wrapped files fails the GCM tag.

Crypto-shredding: `shred_data_key` writes a tombstone, overwrites the DEK file and unlinks it.
Overwriting is best effort (journaling and copy-on-write file systems and SSDs may keep old
blocks), and a copy of the wrapped DEK in an old backup stays decryptable for as long as the
KEK that wrapped it exists. `rotate_kek()` destroys the old KEK, which completes the shredding
for backups too: run a rotation after shredding when backups must also forget the key.

Imports only `bastion.core`, `bastion.crypto.masterkey`, the standard library and
`cryptography`; never `bastion.store` or anything above it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.core.clock import Clock, SystemClock
from bastion.core.errors import CryptoError, ErrorKind, IntegrityError, InvalidInput
from bastion.core.ids import KeyId, is_id, new_id
from bastion.crypto.masterkey import (
    MasterKey,
    ensure_private_dir,
    fsync_dir,
    write_private_file,
)

KEY_BYTES = 32
NONCE_BYTES = 12
FORMAT_VERSION = 1
KEY_NAME_PATTERN = re.compile(r"^[a-z0-9-]{1,64}$")

_CHECK_PLAINTEXT = b"bastion key store check value v1"
_CHECK_AAD = b"bastion/keystore/check/v1"


@dataclass(frozen=True, slots=True)
class ShredRecord:
    """Proof of a crypto-shred: which data key, when, and which KEK had wrapped it."""

    key_id: KeyId
    shredded_at: datetime
    kek_id: KeyId


@dataclass(frozen=True, slots=True)
class RotationReport:
    """What `rotate_kek` did: the new KEK, the KEKs it destroyed, and what it re-wrapped."""

    new_kek_id: KeyId
    retired_kek_ids: tuple[KeyId, ...]
    rewrapped_data_keys: int
    rewrapped_named_keys: int


class KeyStore(Protocol):
    """Where data keys and named secrets live. Implementations must be thread-safe."""

    def create_data_key(self) -> tuple[KeyId, bytes]:
        """A new random 32-byte data key, already stored (wrapped) under the returned id."""
        ...

    def data_key(self, key_id: KeyId) -> bytes:
        """The data key `key_id`.

        Raises `CryptoError` `crypto.key_not_found` / `crypto.key_shredded`, or
        `IntegrityError` `crypto.integrity` if its wrapped form was tampered with.
        """
        ...

    def shred_data_key(self, key_id: KeyId) -> ShredRecord:
        """Destroy data key `key_id` for good; every ciphertext under it becomes unreadable."""
        ...

    def named_key(self, name: str) -> bytes:
        """Get or create the long-lived 32-byte secret called `name` ([a-z0-9-]{1,64})."""
        ...

    def active_kek_id(self) -> KeyId:
        """The id of the KEK new data keys are wrapped with."""
        ...

    def rotate_kek(self) -> RotationReport:
        """Make a new KEK, re-wrap every key under it, then destroy the old KEKs."""
        ...

    def list_data_keys(self) -> list[KeyId]:
        """Ids of the live (not shredded) data keys, oldest first."""
        ...


class LocalKeyStore:
    """A `KeyStore` in files under one directory, wrapped by a `MasterKey`.

    Build it with `LocalKeyStore.create` (at init) or `LocalKeyStore.open`, not the constructor.
    Thread-safe (one `threading.Lock`) and process-safe (an fcntl lock on `keys_dir/.lock`:
    shared for reads, exclusive for writes). Unwrapped KEKs are cached in memory; data keys
    and named keys are read from disk on every call and never cached.
    """

    def __init__(self, keys_dir: Path, master: MasterKey, *, clock: Clock | None = None) -> None:
        self._dir = keys_dir
        self._master = AESGCM(master.secret_bytes())
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._keks: dict[KeyId, AESGCM] = {}

    def __repr__(self) -> str:
        return f"LocalKeyStore({str(self._dir)!r})"

    @property
    def keys_dir(self) -> Path:
        return self._dir

    # ----------------------------------------------------------------- construction

    @classmethod
    def create(
        cls, keys_dir: Path, master: MasterKey, *, clock: Clock | None = None
    ) -> LocalKeyStore:
        """Create the key store (dirs 0700, check value, first KEK) or finish a partial one.

        Idempotent: calling it again with the same master key opens the existing store.

        Raises:
            IntegrityError: `crypto.wrong_master_key` if the store exists under another key.
            CryptoError: `crypto.keystore_unavailable` if the files cannot be written.
        """
        with _os_errors(keys_dir):
            ensure_private_dir(keys_dir, tighten=True)
            for sub in ("kek", "dek", "named", "shredded"):
                ensure_private_dir(keys_dir / sub, tighten=True)
            store = cls(keys_dir, master, clock=clock)
            with store._locked(exclusive=True):
                store._sweep_temp_files()
                check = {
                    "format": FORMAT_VERSION,
                    "alg": "A256GCM",
                    "check": _wrap(store._master, _CHECK_PLAINTEXT, _CHECK_AAD),
                }
                if not write_private_file(store._check_path, _dump(check), exclusive=True):
                    store._verify_check()
                if store._active_path.exists():
                    store._kek(store._read_active())
                else:
                    store._write_active(store._new_kek())
        return store

    @classmethod
    def open(
        cls, keys_dir: Path, master: MasterKey, *, clock: Clock | None = None
    ) -> LocalKeyStore:
        """Open an existing key store and check the master key against it now.

        Raises:
            CryptoError: `crypto.keystore_missing` if there is no (complete) store here.
            IntegrityError: `crypto.wrong_master_key` if `master` is not the store's key;
                `crypto.integrity` if the active KEK file was tampered with.
        """
        if not (keys_dir / "check.json").is_file() or not (keys_dir / "active").is_file():
            raise CryptoError(
                f"no key store at {keys_dir}; run `bastion init` (and set BASTION_MASTER_KEY "
                "if the master key is not in BASTION_HOME/master.key)",
                code="crypto.keystore_missing",
                kind=ErrorKind.UNAVAILABLE,
                details={"path": str(keys_dir)},
            )
        store = cls(keys_dir, master, clock=clock)
        with _os_errors(keys_dir), store._locked(exclusive=False):
            store._verify_check()
            store._kek(store._read_active())
        return store

    # ------------------------------------------------------------------ public API

    def create_data_key(self) -> tuple[KeyId, bytes]:
        """A new random 32-byte data key wrapped by the active KEK and stored before returning.

        Raises `CryptoError` (`crypto.keystore_unavailable`) if it cannot be stored.
        """
        with _os_errors(self._dir), self._locked(exclusive=True):
            kek_id = self._read_active()
            kek = self._kek(kek_id)
            key_id = KeyId(new_id("dek"))
            key = secrets.token_bytes(KEY_BYTES)
            record = {
                "format": FORMAT_VERSION,
                "key_id": key_id,
                "kek_id": kek_id,
                "created": self._clock.now().isoformat(),
                "wrapped": _wrap(kek, key, _dek_aad(key_id, kek_id)),
            }
            if not write_private_file(self._dek_path(key_id), _dump(record), exclusive=True):
                raise CryptoError("data key id collision", code="crypto.error")
            return key_id, key

    def data_key(self, key_id: KeyId) -> bytes:
        """The data key `key_id`.

        Raises:
            CryptoError: `crypto.key_shredded` if it was shredded; `crypto.key_not_found` if it
                never existed here (or the KEK that wrapped this copy has been destroyed).
            IntegrityError: `crypto.integrity` if its file is corrupt, swapped or tampered with.
        """
        self._require_dek_id(key_id)
        with _os_errors(self._dir), self._locked(exclusive=False):
            if self._tombstone_path(key_id).exists():
                raise _shredded(key_id)
            record = self._read_dek_record(key_id)
            kek_id = _kek_id_field(record, self._dek_path(key_id))
            return _unwrap(
                self._kek(kek_id, for_key=key_id),
                _str_field(record, "wrapped", self._dek_path(key_id)),
                _dek_aad(key_id, kek_id),
                what=f"data key {key_id}",
            )

    def shred_data_key(self, key_id: KeyId) -> ShredRecord:
        """Crypto-shred `key_id`: write a tombstone, overwrite and unlink the wrapped key.

        Idempotent: shredding an already-shredded key finishes any interrupted deletion and
        returns the original record (same `shredded_at`), so a caller may safely retry.

        Raises `CryptoError` `crypto.key_not_found` if the key never existed here.
        """
        self._require_dek_id(key_id)
        with _os_errors(self._dir), self._locked(exclusive=True):
            dek_path = self._dek_path(key_id)
            tomb_path = self._tombstone_path(key_id)
            if tomb_path.exists():
                # The tombstone goes first, so it exists if any earlier shred got that far.
                _destroy_file(dek_path)
                return _shred_record(_read_json(tomb_path), tomb_path)
            record = self._read_dek_record(key_id)
            shred = ShredRecord(
                key_id=key_id,
                shredded_at=self._clock.now(),
                kek_id=_kek_id_field(record, dek_path),
            )
            tomb = {
                "format": FORMAT_VERSION,
                "key_id": shred.key_id,
                "kek_id": shred.kek_id,
                "shredded_at": shred.shredded_at.isoformat(),
            }
            write_private_file(tomb_path, _dump(tomb))
            _destroy_file(dek_path)
            return shred

    def named_key(self, name: str) -> bytes:
        """Get or create the 32-byte secret `name`; stable across processes and restarts.

        Callers on a hot path should keep the result rather than call this per request.

        Raises:
            InvalidInput: `crypto.bad_key_name` unless `name` matches [a-z0-9-]{1,64}.
            IntegrityError: `crypto.integrity` if the stored secret was tampered with.
        """
        if not isinstance(name, str) or not KEY_NAME_PATTERN.fullmatch(name):
            raise InvalidInput(
                "key names are 1-64 characters of a-z, 0-9 and '-'",
                code="crypto.bad_key_name",
            )
        path = self._dir / "named" / f"{name}.json"
        with _os_errors(self._dir):
            with self._locked(exclusive=False):
                if path.exists():
                    return self._open_named(name, _read_json(path), path)
            with self._locked(exclusive=True):
                if path.exists():  # another process created it between our two locks
                    return self._open_named(name, _read_json(path), path)
                kek_id = self._read_active()
                secret = secrets.token_bytes(KEY_BYTES)
                record = {
                    "format": FORMAT_VERSION,
                    "name": name,
                    "kek_id": kek_id,
                    "created": self._clock.now().isoformat(),
                    "wrapped": _wrap(self._kek(kek_id), secret, _named_aad(name, kek_id)),
                }
                write_private_file(path, _dump(record), exclusive=True)
                return secret

    def active_kek_id(self) -> KeyId:
        """The KEK new keys are wrapped with. Raises `IntegrityError` if `active` is corrupt."""
        with _os_errors(self._dir), self._locked(exclusive=False):
            return self._read_active()

    def rotate_kek(self) -> RotationReport:
        """Create a new KEK, re-wrap every data key and named key with it, make it active, and
        only then destroy every other KEK.

        Crash-safe and resumable: each re-wrapped file is replaced atomically and records its
        own KEK id, and old KEKs are destroyed last, so a store interrupted mid-rotation still
        opens every key; the next `rotate_kek` finishes the job (and retires any orphan KEK).
        Holds the exclusive lock throughout, so other processes wait rather than see a mix.

        A data key file left behind by an interrupted shred is destroyed, not re-wrapped.

        Raises `IntegrityError` (`crypto.integrity`) if any wrapped key fails to open; no KEK
        is destroyed in that case.
        """
        with _os_errors(self._dir), self._locked(exclusive=True):
            self._sweep_temp_files()
            new_kek_id = self._new_kek()
            new_kek = self._kek(new_kek_id)
            deks = 0
            for key_id in self._dek_ids():
                path = self._dek_path(key_id)
                if self._tombstone_path(key_id).exists():
                    _destroy_file(path)  # finish a shred that was interrupted: never re-wrap it
                    continue
                deks += self._rewrap_record(path, new_kek_id, new_kek, _dek_aad, key_id)
            named = 0
            for path in sorted((self._dir / "named").glob("*.json")):
                if KEY_NAME_PATTERN.fullmatch(path.stem):
                    named += self._rewrap_record(path, new_kek_id, new_kek, _named_aad, path.stem)
            self._write_active(new_kek_id)
            retired: list[KeyId] = []
            for kek_id in self._kek_ids():
                if kek_id != new_kek_id:
                    _destroy_file(self._kek_path(kek_id))
                    self._keks.pop(kek_id, None)
                    retired.append(kek_id)
            return RotationReport(
                new_kek_id=new_kek_id,
                retired_kek_ids=tuple(retired),
                rewrapped_data_keys=deks,
                rewrapped_named_keys=named,
            )

    def list_data_keys(self) -> list[KeyId]:
        """Ids of live data keys, oldest first (ids sort by creation time)."""
        with _os_errors(self._dir), self._locked(exclusive=False):
            return self._dek_ids()

    # -------------------------------------------------------------------- internals

    @property
    def _check_path(self) -> Path:
        return self._dir / "check.json"

    @property
    def _active_path(self) -> Path:
        return self._dir / "active"

    def _kek_path(self, kek_id: KeyId) -> Path:
        return self._dir / "kek" / f"{kek_id}.json"

    def _dek_path(self, key_id: KeyId) -> Path:
        return self._dir / "dek" / f"{key_id}.json"

    def _tombstone_path(self, key_id: KeyId) -> Path:
        return self._dir / "shredded" / f"{key_id}.json"

    @contextlib.contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        # The thread lock comes first: flock is per open file description, so two threads of
        # this process would otherwise contend on separate descriptors in surprising ways.
        with self._lock:
            fd = os.open(self._dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                yield
            finally:
                os.close(fd)  # closing the descriptor releases the flock

    def _verify_check(self) -> None:
        record = _read_json(self._check_path)
        try:
            value = _unwrap(
                self._master,
                _str_field(record, "check", self._check_path),
                _CHECK_AAD,
                what="check value",
            )
        except IntegrityError as exc:
            raise IntegrityError(
                f"the master key does not open the key store at {self._dir} (wrong "
                "BASTION_MASTER_KEY or master.key for this BASTION_HOME?)",
                code="crypto.wrong_master_key",
                details={"path": str(self._dir)},
            ) from exc
        if value != _CHECK_PLAINTEXT:
            raise IntegrityError("key store check value is wrong", code="crypto.wrong_master_key")

    def _read_active(self) -> KeyId:
        try:
            text = self._active_path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            raise CryptoError(
                f"key store at {self._dir} is incomplete (no active KEK); run `bastion init`",
                code="crypto.keystore_missing",
                kind=ErrorKind.UNAVAILABLE,
            ) from None
        except UnicodeDecodeError as exc:
            raise _corrupt(self._active_path) from exc
        if not is_id(text, "kek"):
            raise _corrupt(self._active_path)
        return KeyId(text)

    def _write_active(self, kek_id: KeyId) -> None:
        write_private_file(self._active_path, f"{kek_id}\n".encode("ascii"))

    def _new_kek(self) -> KeyId:
        kek_id = KeyId(new_id("kek"))
        secret = secrets.token_bytes(KEY_BYTES)
        record = {
            "format": FORMAT_VERSION,
            "kek_id": kek_id,
            "created": self._clock.now().isoformat(),
            "wrapped": _wrap(self._master, secret, _kek_aad(kek_id)),
        }
        write_private_file(self._kek_path(kek_id), _dump(record), exclusive=True)
        self._keks[kek_id] = AESGCM(secret)
        return kek_id

    def _kek(self, kek_id: KeyId, *, for_key: KeyId | None = None) -> AESGCM:
        cached = self._keks.get(kek_id)
        if cached is not None:
            return cached
        path = self._kek_path(kek_id)
        try:
            record = _read_json(path)
        except FileNotFoundError:
            if for_key is not None:
                # A DEK file (restored from a backup, say) wrapped by a KEK that rotation has
                # since destroyed: that copy of the key is gone for good.
                raise CryptoError(
                    f"data key {for_key} is wrapped by KEK {kek_id}, which no longer exists",
                    code="crypto.key_not_found",
                    kind=ErrorKind.NOT_FOUND,
                    details={"key_id": for_key, "kek_id": kek_id},
                ) from None
            raise _corrupt(path) from None
        if record.get("kek_id") != kek_id:
            raise _corrupt(path)
        secret = _unwrap(
            self._master,
            _str_field(record, "wrapped", path),
            _kek_aad(kek_id),
            what=f"KEK {kek_id}",
        )
        kek = AESGCM(secret)
        self._keks[kek_id] = kek
        return kek

    def _read_dek_record(self, key_id: KeyId) -> dict[str, Any]:
        path = self._dek_path(key_id)
        try:
            record = _read_json(path)
        except FileNotFoundError:
            raise CryptoError(
                f"no data key {key_id} in this key store",
                code="crypto.key_not_found",
                kind=ErrorKind.NOT_FOUND,
                details={"key_id": key_id},
            ) from None
        if record.get("key_id") != key_id:
            # A wrapped key copied over another key's file: refuse before trying to unwrap.
            raise IntegrityError(
                f"data key file for {key_id} holds another key",
                code="crypto.integrity",
                details={"key_id": key_id, "path": str(path)},
            )
        return record

    def _open_named(self, name: str, record: dict[str, Any], path: Path) -> bytes:
        if record.get("name") != name:
            raise _corrupt(path)
        kek_id = _kek_id_field(record, path)
        return _unwrap(
            self._kek(kek_id),
            _str_field(record, "wrapped", path),
            _named_aad(name, kek_id),
            what=f"named key {name}",
        )

    def _rewrap_record(
        self,
        path: Path,
        new_kek_id: KeyId,
        new_kek: AESGCM,
        aad_for: _AadFor,
        ident: str,
    ) -> int:
        """Re-wrap one key file under the new KEK; 1 if rewritten, 0 if already done."""
        record = _read_json(path)
        old_kek_id = _kek_id_field(record, path)
        if old_kek_id == new_kek_id:
            return 0
        secret = _unwrap(
            self._kek(old_kek_id),
            _str_field(record, "wrapped", path),
            aad_for(ident, old_kek_id),
            what=str(path.name),
        )
        record["kek_id"] = new_kek_id
        record["wrapped"] = _wrap(new_kek, secret, aad_for(ident, new_kek_id))
        write_private_file(path, _dump(record))
        return 1

    def _dek_ids(self) -> list[KeyId]:
        return sorted(
            KeyId(p.stem) for p in (self._dir / "dek").glob("*.json") if is_id(p.stem, "dek")
        )

    def _kek_ids(self) -> list[KeyId]:
        return sorted(
            KeyId(p.stem) for p in (self._dir / "kek").glob("*.json") if is_id(p.stem, "kek")
        )

    def _sweep_temp_files(self) -> None:
        # Only called under the exclusive lock, when no writer can be mid-write: any temp file
        # left is from a crashed process and holds nothing the committed files lack.
        for sub in ("", "kek", "dek", "named", "shredded"):
            for tmp in (self._dir / sub).glob(".*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()

    @staticmethod
    def _require_dek_id(key_id: str) -> None:
        # Key ids arrive from ciphertext headers, i.e. from outside; they also name files, so
        # anything that is not a well-formed id is refused before it gets near a path.
        if not isinstance(key_id, str) or not is_id(key_id, "dek"):
            raise CryptoError(
                "no such data key (malformed key id)",
                code="crypto.key_not_found",
                kind=ErrorKind.NOT_FOUND,
            )


class _AadFor(Protocol):
    def __call__(self, ident: str, kek_id: str, /) -> bytes: ...


def _kek_aad(kek_id: str) -> bytes:
    return b"bastion/kek/v1\x00" + kek_id.encode("ascii")


def _dek_aad(key_id: str, kek_id: str) -> bytes:
    return b"bastion/dek/v1\x00" + key_id.encode("ascii") + b"\x00" + kek_id.encode("ascii")


def _named_aad(name: str, kek_id: str) -> bytes:
    return b"bastion/named/v1\x00" + name.encode("ascii") + b"\x00" + kek_id.encode("ascii")


def _wrap(aead: AESGCM, secret: bytes, aad: bytes) -> str:
    # Random 96-bit nonces: a KEK wraps at most millions of keys, far below the 2^32 bound.
    nonce = secrets.token_bytes(NONCE_BYTES)
    return base64.urlsafe_b64encode(nonce + aead.encrypt(nonce, secret, aad)).decode("ascii")


def _unwrap(aead: AESGCM, wrapped: str, aad: bytes, *, what: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(wrapped.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise IntegrityError(f"{what}: wrapped key is not base64", code="crypto.integrity") from exc
    if len(raw) < NONCE_BYTES + 16:
        raise IntegrityError(f"{what}: wrapped key is too short", code="crypto.integrity")
    try:
        return aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)
    except InvalidTag:
        raise IntegrityError(
            f"{what}: wrapped key failed its authentication tag (tampered, swapped, or "
            "wrapped by another key)",
            code="crypto.integrity",
        ) from None


def _dump(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, sort_keys=True, indent=1) + "\n").encode("utf-8")


def _read_json(path: Path) -> dict[str, Any]:
    """Raises `FileNotFoundError` if absent, `IntegrityError` if not a JSON object."""
    data = path.read_bytes()
    try:
        record = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _corrupt(path) from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT_VERSION:
        raise _corrupt(path)
    return record


def _str_field(record: dict[str, Any], name: str, path: Path) -> str:
    value = record.get(name)
    if not isinstance(value, str):
        raise _corrupt(path)
    return value


def _kek_id_field(record: dict[str, Any], path: Path) -> KeyId:
    value = _str_field(record, "kek_id", path)
    if not is_id(value, "kek"):
        raise _corrupt(path)
    return KeyId(value)


def _shred_record(record: dict[str, Any], path: Path) -> ShredRecord:
    key_id = _str_field(record, "key_id", path)
    try:
        when = datetime.fromisoformat(_str_field(record, "shredded_at", path))
    except ValueError as exc:
        raise _corrupt(path) from exc
    return ShredRecord(key_id=KeyId(key_id), shredded_at=when, kek_id=_kek_id_field(record, path))


def _destroy_file(path: Path) -> None:
    """Overwrite a key file with zeros, then unlink it. Missing is fine (already destroyed).

    Best effort against recovery from the disk; the cryptographic guarantee comes from the
    wrapping key being destroyed too (see the module docstring).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        size = os.fstat(fd).st_size
        os.pwrite(fd, b"\x00" * size, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()
    fsync_dir(path.parent)


def _shredded(key_id: KeyId) -> CryptoError:
    return CryptoError(
        f"data key {key_id} has been shredded; data encrypted under it is unrecoverable",
        code="crypto.key_shredded",
        kind=ErrorKind.NOT_FOUND,
        details={"key_id": key_id},
    )


def _corrupt(path: Path) -> IntegrityError:
    return IntegrityError(
        f"key store file {path} is corrupt or has been tampered with",
        code="crypto.integrity",
        details={"path": str(path)},
    )


@contextlib.contextmanager
def _os_errors(keys_dir: Path) -> Iterator[None]:
    """Turn I/O failures into one coded error; our own `BastionError`s pass through."""
    try:
        yield
    except OSError as exc:
        raise CryptoError(
            f"key store at {keys_dir} is unavailable: {exc.strerror or exc}",
            code="crypto.keystore_unavailable",
            kind=ErrorKind.UNAVAILABLE,
            details={"path": str(keys_dir)},
        ) from exc
