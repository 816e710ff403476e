"""Staged uploads: model files arrive one at a time; only a commit turns them into a version.

Why staging: a directory of files cannot arrive in one atomic request, a scan needs random
access (zip central directories sit at the end), and an interrupted upload must leave no
partial version. Files land in `BASTION_HOME/staging/<upload>/tree/<path>` (directories 0700,
files 0600), each written to a temporary name and renamed only when complete, with the digest
computed as the bytes arrive. Limits (total bytes, file count) hold while writing, not after.

The staged plaintext lives only until commit, abort or expiry; `sweep` removes expired uploads
and any directory no upload row owns (e.g. after a crash). Sealing into the encrypted blob
store happens at commit (`bastion.registry.models`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bastion.core.clock import Clock
from bastion.core.errors import Conflict, InvalidInput, NotFound, TooLarge
from bastion.core.ids import new_id
from bastion.crypto.masterkey import ensure_private_dir
from bastion.identity import Authorizer, Caller, Permission
from bastion.registry.records import check_artifact_path
from bastion.store.db import Database
from bastion.store.tables import ArtifactUploadRow

CHUNK = 1024 * 1024
OPEN = "open"


@dataclass(frozen=True, slots=True)
class StagedFile:
    path: str
    size: int
    digest: str


@dataclass(frozen=True, slots=True)
class Upload:
    id: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    state: str
    total_bytes: int
    files: tuple[StagedFile, ...]
    max_bytes: int
    max_files: int


@dataclass(frozen=True, slots=True)
class StagedTree:
    """A claimed upload, ready to scan and seal: `root/<path>` for every file."""

    upload_id: str
    root: Path
    files: tuple[StagedFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


class StagedFileWriter:
    """Receives one file's bytes; `finish` publishes it into the upload, `abort` drops it."""

    def __init__(self, staging: Staging, upload_id: str, path: str, tmp: Path, limit: int):
        self._staging = staging
        self._upload_id = upload_id
        self._path = path
        self._tmp = tmp
        self._limit = limit
        self._hash = hashlib.sha256()
        self._size = 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        if self._file is None:
            raise Conflict("file writer is closed", code="registry.upload_closed")
        self._size += len(chunk)
        if self._size > self._limit:
            self.abort()
            raise TooLarge(
                f"upload exceeds the {self._limit}-byte limit left for this upload",
                code="registry.upload_too_large",
            )
        self._hash.update(chunk)
        self._file.write(chunk)

    def finish(self) -> StagedFile:
        if self._file is None:
            raise Conflict("file writer is closed", code="registry.upload_closed")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        staged = StagedFile(self._path, self._size, f"sha256:{self._hash.hexdigest()}")
        try:
            self._staging._publish(self._upload_id, staged, self._tmp)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        return staged

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)


class Staging:
    def __init__(
        self,
        *,
        database: Database,
        authorizer: Authorizer,
        clock: Clock,
        root: Path,
        max_bytes: int,
        max_files: int,
        ttl: timedelta,
    ) -> None:
        self._db = database
        self._authz = authorizer
        self._clock = clock
        self._root = root
        self.max_bytes = max_bytes
        self.max_files = max_files
        self._ttl = ttl

    # -- lifecycle ------------------------------------------------------------------------

    def create(self, caller: Caller) -> Upload:
        self._authz.authorize(caller, Permission.ARTIFACT_UPLOAD)
        self.sweep()
        now = self._clock.now()
        row = ArtifactUploadRow(
            id=new_id("upl"),
            created_by=caller.principal_id,
            created_at=now,
            expires_at=now + self._ttl,
            state=OPEN,
            total_bytes=0,
            files={},
        )
        ensure_private_dir(self._root)
        ensure_private_dir(self._dir(row.id) / "tree")
        ensure_private_dir(self._dir(row.id) / "tmp")
        with self._db.transaction() as session:
            session.add(row)
        return self._upload(row)

    def get(self, caller: Caller, upload_id: str) -> Upload:
        self._authz.authorize(caller, Permission.ARTIFACT_UPLOAD)
        with self._db.read() as session:
            return self._upload(self._owned(session, caller, upload_id))

    def writer(self, caller: Caller, upload_id: str, path: str) -> StagedFileWriter:
        """Start receiving `path` into the upload. Writing a path again replaces it."""
        self._authz.authorize(caller, Permission.ARTIFACT_UPLOAD)
        check_artifact_path(path)
        with self._db.read() as session:
            row = self._open(session, caller, upload_id)
            previous = int((row.files.get(path) or {}).get("size", 0))
            if path not in row.files and len(row.files) >= self.max_files:
                raise TooLarge(
                    f"an upload holds at most {self.max_files} files",
                    code="registry.too_many_files",
                )
            limit = self.max_bytes - row.total_bytes + previous
        tmp = self._dir(upload_id) / "tmp" / secrets.token_hex(8)
        return StagedFileWriter(self, upload_id, path, tmp, limit)

    def add_file(self, caller: Caller, upload_id: str, path: str, src: BinaryIO) -> StagedFile:
        writer = self.writer(caller, upload_id, path)
        try:
            while chunk := src.read(CHUNK):
                writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        return writer.finish()

    def add_tree(self, caller: Caller, upload_id: str, local: Path) -> list[StagedFile]:
        """Stage a local file (under its own name) or every file under a local directory.

        Symlinks and special files are refused, not followed: what is staged must be what
        the directory holds, not what a link points at.
        """
        try:
            mode = local.lstat().st_mode
        except OSError as error:
            raise InvalidInput(
                f"cannot read {local}: {error.strerror}", code="registry.bad_source"
            ) from None
        if stat.S_ISREG(mode):
            with local.open("rb") as src:
                return [self.add_file(caller, upload_id, local.name, src)]
        if not stat.S_ISDIR(mode):
            raise InvalidInput(
                f"{local} is neither a regular file nor a directory", code="registry.bad_source"
            )
        staged = []
        for rel, full in _walk(local):
            with full.open("rb") as src:
                staged.append(self.add_file(caller, upload_id, rel, src))
        if not staged:
            raise InvalidInput(f"{local} holds no files", code="registry.empty_upload")
        return staged

    def abort(self, caller: Caller, upload_id: str) -> None:
        self._authz.authorize(caller, Permission.ARTIFACT_UPLOAD)
        with self._db.transaction() as session:
            row = self._open(session, caller, upload_id)
            row.state = "aborted"
        self._remove(upload_id)

    def claim(self, caller: Caller, upload_id: str) -> StagedTree:
        """The upload's files for a commit (the caller must own it and it must be open)."""
        with self._db.read() as session:
            row = self._open(session, caller, upload_id)
            files = _files(row)
        if not files:
            raise InvalidInput(f"upload {upload_id} holds no files", code="registry.empty_upload")
        return StagedTree(upload_id, self._dir(upload_id) / "tree", files)

    def close(self, session: Session, upload_id: str, state: str) -> None:
        """Mark an upload committed or rejected inside the caller's transaction; its files
        are removed by `discard` once that transaction has committed."""
        row = session.get(ArtifactUploadRow, upload_id, with_for_update=True)
        if row is None or row.state != OPEN:
            raise Conflict(
                f"upload {upload_id} was already used or aborted", code="registry.upload_closed"
            )
        row.state = state

    def discard(self, upload_id: str) -> None:
        self._remove(upload_id)

    def sweep(self) -> int:
        """Remove expired uploads and staging directories no open upload owns."""
        now = self._clock.now()
        with self._db.transaction() as session:
            session.execute(
                sa.update(ArtifactUploadRow)
                .where(ArtifactUploadRow.state == OPEN, ArtifactUploadRow.expires_at < now)
                .values(state="expired")
            )
            live = set(
                session.scalars(
                    sa.select(ArtifactUploadRow.id).where(ArtifactUploadRow.state == OPEN)
                )
            )
        removed = 0
        if self._root.is_dir():
            for child in self._root.iterdir():
                if child.name not in live:
                    shutil.rmtree(child, ignore_errors=True)
                    removed += 1
        return removed

    # -- internals ------------------------------------------------------------------------

    def _publish(self, upload_id: str, staged: StagedFile, tmp: Path) -> None:
        with self._db.transaction() as session:
            row = session.get(ArtifactUploadRow, upload_id, with_for_update=True)
            if row is None or row.state != OPEN or row.expires_at <= self._clock.now():
                raise Conflict(
                    f"upload {upload_id} is no longer open", code="registry.upload_closed"
                )
            files = dict(row.files)
            files[staged.path] = {"size": staged.size, "digest": staged.digest}
            total = sum(int(f["size"]) for f in files.values())
            if total > self.max_bytes:
                raise TooLarge(
                    f"upload would hold {total} bytes; the limit is {self.max_bytes}",
                    code="registry.upload_too_large",
                )
            if len(files) > self.max_files:
                raise TooLarge(
                    f"an upload holds at most {self.max_files} files",
                    code="registry.too_many_files",
                )
            _conflicting_parent(staged.path, files)
            target = self._dir(upload_id) / "tree" / staged.path
            for parent in reversed(target.relative_to(self._dir(upload_id)).parents):
                if str(parent) != ".":
                    (self._dir(upload_id) / parent).mkdir(mode=0o700, exist_ok=True)
            os.replace(tmp, target)
            row.files = files
            row.total_bytes = total

    def _dir(self, upload_id: str) -> Path:
        return self._root / upload_id

    def _remove(self, upload_id: str) -> None:
        shutil.rmtree(self._dir(upload_id), ignore_errors=True)

    def _owned(self, session: Session, caller: Caller, upload_id: str) -> ArtifactUploadRow:
        row = session.get(ArtifactUploadRow, upload_id)
        if row is None or row.created_by != caller.principal_id:
            # Someone else's upload is indistinguishable from a missing one.
            raise NotFound(f"no upload {upload_id}", code="registry.upload_not_found")
        return row

    def _open(self, session: Session, caller: Caller, upload_id: str) -> ArtifactUploadRow:
        row = self._owned(session, caller, upload_id)
        if row.state != OPEN or row.expires_at <= self._clock.now():
            raise Conflict(
                f"upload {upload_id} is {row.state if row.state != OPEN else 'expired'}",
                code="registry.upload_closed",
            )
        return row

    def _upload(self, row: ArtifactUploadRow) -> Upload:
        return Upload(
            id=row.id,
            created_by=row.created_by,
            created_at=row.created_at,
            expires_at=row.expires_at,
            state=row.state,
            total_bytes=row.total_bytes,
            files=_files(row),
            max_bytes=self.max_bytes,
            max_files=self.max_files,
        )


def _files(row: ArtifactUploadRow) -> tuple[StagedFile, ...]:
    return tuple(
        StagedFile(path, int(meta["size"]), str(meta["digest"]))
        for path, meta in sorted(row.files.items())
    )


def _conflicting_parent(path: str, files: dict[str, object]) -> None:
    """`a` and `a/b` cannot both be files of one model directory."""
    parts = path.split("/")
    prefixes = {"/".join(parts[:i]) for i in range(1, len(parts))}
    if prefixes & files.keys() or any(other.startswith(path + "/") for other in files):
        raise InvalidInput(
            f"{path!r} clashes with another staged path (a file cannot also be a directory)",
            code="registry.bad_path",
        )


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        base = Path(dirpath)
        for name in [*dirnames]:
            if (base / name).is_symlink():
                raise InvalidInput(
                    f"{base / name} is a symlink; symlinks are not uploaded",
                    code="registry.bad_source",
                )
        for name in sorted(filenames):
            full = base / name
            mode = full.lstat().st_mode
            if not stat.S_ISREG(mode):
                raise InvalidInput(
                    f"{full} is not a regular file (symlinks and special files are refused)",
                    code="registry.bad_source",
                )
            yield full.relative_to(root).as_posix(), full
