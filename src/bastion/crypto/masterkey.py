"""The master key that wraps the local key store, and the private-file helpers it shares.

The master key comes from `BASTION_MASTER_KEY` (base64url, 32 bytes) or from
`BASTION_HOME/master.key` (mode 0600, written by `bastion init`). It only ever wraps
key-encryption keys (see `bastion.crypto.keystore`); data never meets it directly.

`write_private_file` and `ensure_private_dir` are the one place the crypto layer writes
secret-bearing files: atomically (temp file in the same directory, fsync, rename, fsync the
directory), mode 0600 in 0700 directories, so a crash leaves either the old file or the new
one and never a half-written key.

Imports only `bastion.core`, the standard library and `cryptography`; never `bastion.store`
or anything above it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import NoReturn

from bastion.core.errors import ConfigError, CryptoError, ErrorKind
from bastion.core.settings import Settings

MASTER_KEY_BYTES = 32
MASTER_KEY_FILE = "master.key"

# Group/other bits: any of them set means someone besides the owner may read or change the file.
_LOOSE_BITS = stat.S_IRWXG | stat.S_IRWXO


class MasterKey:
    """32 secret bytes. The repr and str never show them; compare keys with the check value."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        """Raises `ConfigError` (`crypto.bad_master_key`) unless `key` is exactly 32 bytes."""
        if not isinstance(key, bytes | bytearray) or len(key) != MASTER_KEY_BYTES:
            raise ConfigError(
                f"master key must be exactly {MASTER_KEY_BYTES} bytes",
                code="crypto.bad_master_key",
            )
        self._key = bytes(key)

    @classmethod
    def generate(cls) -> MasterKey:
        """A fresh random master key from the OS CSPRNG."""
        return cls(secrets.token_bytes(MASTER_KEY_BYTES))

    @classmethod
    def from_b64(cls, text: str) -> MasterKey:
        """Parse base64url text (padding optional, surrounding whitespace ignored).

        Raises `ConfigError` (`crypto.bad_master_key`) if the text is not base64url or does not
        decode to exactly 32 bytes. The message never echoes the text.
        """
        body = text.strip()
        if not body or any(c not in _B64URL_ALPHABET for c in body.rstrip("=")):
            raise ConfigError(
                "master key is not base64url text (expected 43 characters, e.g. from "
                "`bastion init` or generate_master_key_b64())",
                code="crypto.bad_master_key",
            )
        unpadded = body.rstrip("=")
        try:
            raw = base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
        except (binascii.Error, ValueError) as exc:
            raise ConfigError(
                "master key is not valid base64url", code="crypto.bad_master_key"
            ) from exc
        if len(raw) != MASTER_KEY_BYTES:
            raise ConfigError(
                f"master key decodes to {len(raw)} bytes; it must be {MASTER_KEY_BYTES}",
                code="crypto.bad_master_key",
            )
        return cls(raw)

    def to_b64(self) -> str:
        """Unpadded base64url text of the key, the form `from_b64` and the env var accept."""
        return base64.urlsafe_b64encode(self._key).rstrip(b"=").decode("ascii")

    def secret_bytes(self) -> bytes:
        """The raw key. Only the key store should call this."""
        return self._key

    def __repr__(self) -> str:
        return "MasterKey(<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        # Refuse pickling: a pickled master key would be the raw secret on disk or a wire.
        raise TypeError("MasterKey cannot be pickled")


_B64URL_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def generate_master_key_b64() -> str:
    """A new random master key as unpadded base64url text (for `BASTION_MASTER_KEY`)."""
    return MasterKey.generate().to_b64()


def resolve_master_key(settings: Settings, *, create: bool) -> MasterKey:
    """The master key for `settings`: `BASTION_MASTER_KEY` if set, else `home/master.key`.

    With `create=True` a missing key file is generated and written atomically (mode 0600,
    directories 0700); if another process wins the race, its key is used.

    Raises:
        ConfigError: `crypto.bad_master_key` if the value is malformed;
            `crypto.master_key_permissions` if the key file is a symlink, not a regular file,
            or readable/writable by group or others.
        CryptoError: `crypto.keystore_missing` if there is no key and `create` is false.
    """
    if settings.master_key is not None:
        return MasterKey.from_b64(settings.master_key.get_secret_value())
    path = settings.home / MASTER_KEY_FILE
    try:
        return _read_master_key_file(path)
    except FileNotFoundError:
        if not create:
            raise CryptoError(
                f"no master key: {path} does not exist and BASTION_MASTER_KEY is not set; "
                "run `bastion init` or set BASTION_MASTER_KEY",
                code="crypto.keystore_missing",
                kind=ErrorKind.UNAVAILABLE,
                details={"path": str(path)},
            ) from None
    ensure_private_dir(settings.home)
    key = MasterKey.generate()
    if write_private_file(path, (key.to_b64() + "\n").encode("ascii"), exclusive=True):
        return key
    # Lost a race with another `init`: theirs is now the master key, so use it.
    return _read_master_key_file(path)


def _read_master_key_file(path: Path) -> MasterKey:
    """Raises `FileNotFoundError` if absent; `ConfigError` for unsafe modes or bad content."""
    # O_NOFOLLOW: a symlink here could point the key store at a file someone else controls.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ConfigError(
            f"cannot open master key file {path} (symlinks are refused): {exc.strerror}",
            code="crypto.master_key_permissions",
            details={"path": str(path)},
        ) from exc
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(
                f"master key path {path} is not a regular file",
                code="crypto.master_key_permissions",
                details={"path": str(path)},
            )
        if info.st_mode & _LOOSE_BITS:
            raise ConfigError(
                f"master key file {path} has mode {stat.S_IMODE(info.st_mode):04o}; it must be "
                f"0600 or stricter (run: chmod 600 {path})",
                code="crypto.master_key_permissions",
                details={"path": str(path), "mode": f"{stat.S_IMODE(info.st_mode):04o}"},
            )
        text = fh.read(4096).decode("ascii", errors="replace")
    return MasterKey.from_b64(text)


def ensure_private_dir(path: Path, *, tighten: bool = False) -> None:
    """Create `path` and any missing parents with mode 0700.

    An existing `path` keeps its mode unless `tighten` is set (for directories Bastion owns
    outright, such as the key store); a user's existing BASTION_HOME is left as it is, since
    every secret file in it is 0600 anyway. Raises `OSError` if a directory cannot be made.
    """
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
        # mkdir's mode is filtered by the umask; chmod states it exactly.
        os.chmod(directory, 0o700)
    if tighten:
        os.chmod(path, 0o700)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry change (create, rename, unlink) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private_file(path: Path, data: bytes, *, exclusive: bool = False) -> bool:
    """Write `data` to `path` atomically with mode 0600. The parent directory must exist.

    The bytes go to a temp file in the same directory, are fsynced, then renamed over `path`
    (or, with `exclusive=True`, hard-linked to `path` so an existing file is never replaced),
    and the directory is fsynced. A crash leaves the old file or the new one, never a mix.

    Returns False only when `exclusive` is set and `path` already exists (nothing written).
    Raises `OSError` on any I/O failure, after removing the temp file.
    """
    directory = path.parent
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
        else:
            os.replace(tmp, path)
        fsync_dir(directory)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
