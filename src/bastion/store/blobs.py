"""Blob stores: the `BlobStore` interface, `LocalBlobStore` (a directory), and
`open_blob_store(url)`, which picks the implementation by URL scheme (`file://` only, for now).

Blob keys are relative POSIX paths of `[A-Za-z0-9._-]` segments joined by "/". Anything else,
and anything that resolves (through symlinks too) outside the store's root, is refused with
`StoreError` `store.path_escape` before any file is touched. Writes are atomic: a blob is
either fully there or absent, never half-written.

Blob stores hold bytes as given; `bastion.store.sealed` adds encryption on top.

Imports only `bastion.core`, `bastion.crypto`, and the standard library; nothing above the
store layer.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit
from urllib.request import url2pathname

from bastion.core.errors import ConfigError, ErrorKind, NotFound, StoreError, TooLarge
from bastion.core.ids import Digest

MAX_KEY_LENGTH = 1024
_COPY_CHUNK = 1024 * 1024
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")


class ByteSource(Protocol):
    """Anything with `read(size)`: open files, `io.BytesIO`, `EncryptingReader`."""

    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """A stored blob: its key, size in bytes, and `sha256:` digest of its bytes."""

    key: str
    size: int
    digest: Digest


class BlobStore(Protocol):
    """Named byte blobs. Implementations must make `put` atomic and validate every key."""

    def put(self, key: str, src: ByteSource | bytes, *, max_bytes: int | None = None) -> BlobInfo:
        """Store all of `src` under `key`, replacing any blob there, atomically.

        Raises `StoreError` (`store.path_escape`) for a bad key, `TooLarge`
        (`store.blob_too_large`) past `max_bytes` (nothing is stored), and whatever `src` raises.
        """
        ...

    def open(self, key: str) -> BinaryIO:
        """A readable stream of the blob. Raises `NotFound` (`store.blob_not_found`)."""
        ...

    def get(self, key: str) -> bytes:
        """The blob's bytes. Raises `NotFound` (`store.blob_not_found`)."""
        ...

    def exists(self, key: str) -> bool:
        """Whether a blob is stored under `key` (still raises for a bad key)."""
        ...

    def delete(self, key: str) -> None:
        """Remove the blob. Raises `NotFound` (`store.blob_not_found`) if there is none."""
        ...

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with `prefix` (a plain string prefix), in sorted order."""
        ...


def validate_key(key: str) -> str:
    """Return `key` if it is a safe blob key; raises `StoreError` (`store.path_escape`)."""
    if not isinstance(key, str):
        raise _escape(repr(type(key)), "keys are strings")
    if not key or len(key) > MAX_KEY_LENGTH:
        raise _escape(key, f"keys are 1-{MAX_KEY_LENGTH} characters")
    if key.startswith("/") or "\\" in key or "\x00" in key:
        raise _escape(key, "absolute paths, backslashes and NUL are not allowed")
    for segment in key.split("/"):
        if segment in ("", ".", "..") or not _SEGMENT.fullmatch(segment):
            raise _escape(key, "each segment must be [A-Za-z0-9._-]+ and not '.' or '..'")
    return key


class LocalBlobStore:
    """A `BlobStore` in a local directory (created with mode 0700; blob files are 0600).

    Thread- and process-safe for whole-blob operations: each `put` writes a private temp file
    in the target directory and renames it into place. `max_bytes` is a default limit for
    every `put` (a per-call `max_bytes` can only lower it).
    """

    def __init__(self, root: Path, *, max_bytes: int | None = None) -> None:
        """Raises `StoreError` (`store.unavailable`) if `root` cannot be created."""
        if max_bytes is not None and max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        with _os_errors(str(root)):
            _make_private_dirs(root)
            os.chmod(root, 0o700)
            self._root = root.resolve(strict=True)
        self._max_bytes = max_bytes

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self._root)!r})"

    @property
    def root(self) -> Path:
        return self._root

    def put(self, key: str, src: ByteSource | bytes, *, max_bytes: int | None = None) -> BlobInfo:
        """See `BlobStore.put`. A failure at any point (bad source, limit, disk full) removes
        the temp file, so nothing of this write remains; the previous blob, if any, is intact.
        """
        path = self._path(key)
        limit = _tighter(self._max_bytes, max_bytes)
        if isinstance(src, bytes | bytearray | memoryview):
            if limit is not None and len(src) > limit:
                raise _too_large(key, limit)
            source: ByteSource = io.BytesIO(src)
        else:
            source = src
        with _os_errors(key):
            _make_private_dirs(path.parent, stop_at=self._root)
            # '#' is not allowed in keys, so a temp name can never collide with a blob or be
            # listed by keys().
            tmp = path.parent / f".#{path.name}.{secrets.token_hex(8)}.tmp"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(tmp, flags, 0o600)
        digest = hashlib.sha256()
        size = 0
        try:
            try:
                while True:
                    # Only our own I/O is translated: the source's errors reach the caller as
                    # they were raised.
                    data = source.read(_COPY_CHUNK)
                    if not data:
                        break
                    size += len(data)
                    if limit is not None and size > limit:
                        raise _too_large(key, limit)
                    digest.update(data)
                    with _os_errors(key):
                        _write_all(fd, data)
                with _os_errors(key):
                    os.fsync(fd)
            finally:
                os.close(fd)
            with _os_errors(key):
                os.replace(tmp, path)
                _fsync_dir(path.parent)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return BlobInfo(key=key, size=size, digest=Digest("sha256:" + digest.hexdigest()))

    def open(self, key: str) -> BinaryIO:
        """See `BlobStore.open`. The caller closes the stream."""
        path = self._path(key)
        with _os_errors(key):
            try:
                handle = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise _not_found(key) from None
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                handle.close()
                raise _not_found(key)
            return handle

    def get(self, key: str) -> bytes:
        """See `BlobStore.get`."""
        with self.open(key) as handle, _os_errors(key):
            return handle.read()

    def exists(self, key: str) -> bool:
        """See `BlobStore.exists`."""
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """See `BlobStore.delete`."""
        path = self._path(key)
        with _os_errors(key):
            if not path.is_file():
                raise _not_found(key)
            try:
                path.unlink()
            except FileNotFoundError:
                raise _not_found(key) from None
            _fsync_dir(path.parent)

    def keys(self, prefix: str = "") -> Iterator[str]:
        """See `BlobStore.keys`. Symlinks, temp files and names that are not valid keys are
        skipped."""
        with _os_errors(prefix):
            yield from self._walk(self._root, "", prefix)

    def _walk(self, directory: Path, rel: str, prefix: str) -> Iterator[str]:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda e: e.name)
        for entry in entries:
            if not _SEGMENT.fullmatch(entry.name) or entry.name in (".", ".."):
                continue
            name = rel + entry.name
            if entry.is_dir(follow_symlinks=False):
                # Descend only where keys could still start with the prefix.
                sub = name + "/"
                if sub.startswith(prefix) or prefix.startswith(sub):
                    yield from self._walk(Path(entry.path), sub, prefix)
            elif entry.is_file(follow_symlinks=False) and name.startswith(prefix):
                yield name

    def _path(self, key: str) -> Path:
        """The real path for `key`, after checking it stays inside the root."""
        validate_key(key)
        # realpath follows every symlink that exists, so a link planted inside the root that
        # points outside is caught here, not at open time.
        resolved = Path(os.path.realpath(self._root / key))
        if resolved == self._root or self._root not in resolved.parents:
            raise _escape(key, "it resolves outside the store root")
        return resolved


def open_blob_store(url: str, *, max_bytes: int | None = None) -> BlobStore:
    """The blob store a URL names: `file:///abs/path` → `LocalBlobStore`.

    Raises `ConfigError` for any other scheme or a malformed file URL.
    """
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(
                f"file blob url must be local (file:///path), got host {parts.netloc!r}"
            )
        path = Path(url2pathname(parts.path))
        if not path.is_absolute():
            raise ConfigError("file blob url must have an absolute path (file:///path)")
        return LocalBlobStore(path, max_bytes=max_bytes)
    raise ConfigError(
        f"unsupported blob url scheme {parts.scheme!r} (supported: file://)",
        details={"scheme": parts.scheme},
    )


def _tighter(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _make_private_dirs(path: Path, *, stop_at: Path | None = None) -> None:
    missing: list[Path] = []
    probe = path
    while not probe.is_dir() and probe != stop_at and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made by a concurrent put: fine, and not ours to chmod
        os.chmod(directory, 0o700)  # the umask may have filtered mkdir's mode


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _escape(key: str, why: str) -> StoreError:
    shown = key if len(key) <= 80 else key[:77] + "..."
    return StoreError(
        f"blob key {shown!r} is not a safe relative key: {why}",
        code="store.path_escape",
        kind=ErrorKind.INVALID,
    )


def _not_found(key: str) -> NotFound:
    return NotFound(f"no blob {key!r}", code="store.blob_not_found", details={"key": key})


def _too_large(key: str, limit: int) -> TooLarge:
    return TooLarge(
        f"blob {key!r} is larger than the {limit}-byte limit; nothing was stored",
        code="store.blob_too_large",
        details={"key": key, "limit": limit},
    )


@contextlib.contextmanager
def _os_errors(key: str) -> Iterator[None]:
    """One coded error for I/O failures; our own errors pass through untouched."""
    try:
        yield
    except OSError as exc:
        raise StoreError(
            f"blob store I/O failed for {key!r}: {exc.strerror or exc}",
            code="store.unavailable",
        ) from exc
