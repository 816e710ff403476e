"""The scanner: one pass over each file decides its format, checks it, and finds secrets.

For every regular file under the scanned path, `Scanner` reads the bytes once, in large
chunks, through a `ChunkReader` whose sinks hash them (the digest the registry seals against)
and look for credentials, and hands the stream to the checker for the format its first bytes
announce (`formats.sniff`; never the file name):

* pickle (PROTO 2 to 5), or a protocol 0/1 pickle found by a probe walk: `pickles.PickleWalker`
  with the allow-list; joblib's `NumpyArrayWrapper` arrays are understood; anything after STOP
  is a finding;
* joblib-compressed pickles (gzip, zlib, bz2, xz, lzma): decompressed within a byte budget and
  walked the same way (lz4 and joblib < 0.10 files cannot be verified and are refused);
* zip: the structure checks of `archives`, then by layout — skops (`schema.json`; its
  untrusted-type list must be empty or allow-listed), PyTorch (`<dir>/data.pkl` walked with
  PyTorch's persistent ids; only the members PyTorch writes), numpy `.npz` (every member a
  `.npy`), or any other zip, whose members are scanned like files (nested up to a depth);
* `.npy`: header checked, data length exact, object arrays walked as pickles;
* safetensors: header and data layout; ONNX: `onnx.checker`, operator domains, external data;
* tar archives (PyTorch's legacy `torch.save` format, whose members are unpickled) cannot be
  verified and are refused;
* anything else (text, config, unknown binaries) is only secret-scanned, and a file or archive
  member that is also a valid zip (a polyglot) is refused.

Findings never stop the scan of other files, so a report lists everything wrong at once.
`ScanError` is only for a path that cannot be read at all.
"""

from __future__ import annotations

import copy
import hashlib
import lzma
import os
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from bastion.core.errors import ErrorKind
from bastion.supplychain.scan import archives, formats
from bastion.supplychain.scan.allowlist import AllowList
from bastion.supplychain.scan.credentials import SecretScanner
from bastion.supplychain.scan.errors import ScanError
from bastion.supplychain.scan.formats import Kind
from bastion.supplychain.scan.model import (
    ArtifactFormat,
    FileReport,
    Finding,
    ScanLimits,
    ScanReport,
)
from bastion.supplychain.scan.pickles import OPCODE_BYTES, Mode, PickleWalker, WalkResult
from bastion.supplychain.scan.streams import (
    Budget,
    ChunkReader,
    CorruptStream,
    CountingReader,
    DecompressingReader,
    LimitExceeded,
    TailKeeper,
    Truncated,
)

_HEAD = formats.SNIFF_BYTES
_TORCH_FIXED = frozenset(
    {
        "version",
        ".data/version",
        "byteorder",
        ".data/serialization_id",
        ".format_version",
        ".storage_alignment",
    }
)
_TORCHSCRIPT = ("code/", "constants.pkl", "extra/", ".data/ts_code/")
_SKOPS_MEMBER_SUFFIXES = (".npy", ".bin", ".npz", ".json")


class _Findings:
    """Findings of one top-level file (its members included), capped."""

    def __init__(self, cap: int) -> None:
        self.items: list[Finding] = []
        self._cap = cap
        self.dropped = 0

    def add(self, path: str, code: str, reason: str, offset: int | None) -> None:
        if len(self.items) < self._cap:
            self.items.append(Finding(path, code, reason, offset))
        else:
            self.dropped += 1

    def emitter(self, path: str) -> Callable[[str, str, int | None], None]:
        def emit(code: str, reason: str, offset: int | None) -> None:
            self.add(path, code, reason, offset)

        return emit

    def done(self, path: str) -> tuple[Finding, ...]:
        if self.dropped:
            self.items.append(
                Finding(
                    path,
                    "scan.too_many_findings",
                    f"{self.dropped} more findings were not listed",
                    None,
                )
            )
        return tuple(self.items)


class _Stream:
    """What the checkers need to know about one stream: its name in findings, its nesting
    depth, the budget of the top-level file, and where its siblings are (ONNX external data)."""

    __slots__ = ("budget", "depth", "directory", "emit", "findings", "name", "siblings")

    def __init__(
        self,
        findings: _Findings,
        name: str,
        depth: int,
        budget: Budget,
        *,
        directory: str = "",
        siblings: frozenset[str] | None = None,
    ) -> None:
        self.findings = findings
        self.name = name
        self.depth = depth
        self.budget = budget
        self.directory = directory
        self.siblings = siblings
        self.emit = findings.emitter(name)

    def member(self, name: str) -> _Stream:
        return _Stream(self.findings, f"{self.name}!{name}", self.depth + 1, self.budget)


class Scanner:
    """Static allow-list scanner. Stateless between calls; safe to share across threads."""

    def __init__(
        self,
        allowlist: AllowList | None = None,
        *,
        limits: ScanLimits | None = None,
        scratch: Path | None = None,
    ) -> None:
        self.allowlist = allowlist or AllowList.default()
        self.limits = limits or ScanLimits()
        self._scratch = scratch

    # -- entry points --------------------------------------------------------------------

    def scan_path(self, path: Path) -> ScanReport:
        """Scan a file or every file under a directory (symlinks and special files are
        findings, never followed). Raises `ScanError` when the path cannot be read."""
        path = Path(path)
        try:
            info = path.lstat()
        except FileNotFoundError:
            raise ScanError(f"{path} does not exist", code="scan.not_found") from None
        except OSError as error:
            raise ScanError(
                f"cannot read {path}: {error.strerror}", code="scan.unreadable"
            ) from error
        if stat.S_ISDIR(info.st_mode):
            entries = sorted(self._walk(path, ""), key=lambda e: e[0])
            siblings = frozenset(rel for rel, kind in entries if kind == "file")
            files = tuple(
                self._scan_entry(path / rel, rel, kind, siblings) for rel, kind in entries
            )
        elif stat.S_ISREG(info.st_mode):
            files = (self.scan_file(path, path.name, siblings=frozenset({path.name})),)
        elif stat.S_ISLNK(info.st_mode):
            raise ScanError(
                f"{path} is a symlink; scan what it points to", code="scan.unsupported_path"
            )
        else:
            raise ScanError(
                f"{path} is neither a regular file nor a directory",
                code="scan.unsupported_path",
            )
        return ScanReport(files=files, allowlist_version=self.allowlist.version)

    def scan_file(
        self, path: Path, name: str, *, siblings: frozenset[str] | None = None
    ) -> FileReport:
        """Scan one regular file (opened without following symlinks) reported as `name`.
        `siblings` are the names of the files scanned with it (ONNX external data must be one
        of them); None when unknown."""
        # O_NONBLOCK: a FIFO swapped in after the directory walk must not hang the open.
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags)
        except OSError as error:
            raise ScanError(
                f"cannot open {name}: {error.strerror}", code="scan.unreadable"
            ) from error
        with os.fdopen(fd, "rb", buffering=0) as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ScanError(f"{name} is not a regular file", code="scan.unsupported_path")
            try:
                return self._scan_top(f, name, siblings)
            except OSError as error:
                raise ScanError(
                    f"I/O error while scanning {name}: {error.strerror}", code="scan.io_error"
                ) from error

    def scan_bytes(self, data: bytes, name: str = "data") -> FileReport:
        """Scan an in-memory artifact (tests, API callers holding bytes) on its own: nothing
        else is part of the scan (ONNX external data is then missing)."""
        import io

        return self._scan_top(io.BytesIO(data), name, frozenset({name}))

    # -- the directory walk ----------------------------------------------------------------

    def _walk(self, root: Path, prefix: str) -> Iterator[tuple[str, str]]:
        count = 0
        stack = [(root, prefix)]
        while stack:
            directory, rel = stack.pop()
            try:
                with os.scandir(directory) as it:
                    entries = list(it)
            except OSError as error:
                raise ScanError(
                    f"cannot list {rel or directory}: {error.strerror}", code="scan.unreadable"
                ) from error
            for entry in entries:
                name = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_symlink():
                    kind = "symlink"
                elif entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), name))
                    continue
                elif entry.is_file(follow_symlinks=False):
                    kind = "file"
                else:
                    kind = "special"
                count += 1
                if count > self.limits.max_files:
                    raise ScanError(
                        f"more than {self.limits.max_files} files under {root}",
                        code="scan.too_many_files",
                        kind=ErrorKind.TOO_LARGE,
                    )
                yield name, kind

    def _scan_entry(self, path: Path, rel: str, kind: str, siblings: frozenset[str]) -> FileReport:
        if kind == "file":
            return self.scan_file(path, rel, siblings=siblings)
        code, what = (
            ("path.symlink", "is a symlink (never followed)")
            if kind == "symlink"
            else ("path.special_file", "is not a regular file")
        )
        return FileReport(
            path=rel,
            format=ArtifactFormat.UNKNOWN,
            size=0,
            digest="",
            findings=(Finding(rel, code, f"{rel} {what}", None),),
        )

    # -- one top-level file ----------------------------------------------------------------

    def _scan_top(self, f: BinaryIO, name: str, siblings: frozenset[str] | None) -> FileReport:
        findings = _Findings(self.limits.max_findings_per_file)
        digest = hashlib.sha256()
        size = 0

        def count(data: bytes) -> None:
            nonlocal size
            size += len(data)

        secrets = SecretScanner(findings.emitter(name), self.limits.max_findings_per_file)
        directory = name.rpartition("/")[0]
        stream = _Stream(
            findings,
            name,
            0,
            Budget(self.limits.max_decompressed_bytes),
            directory=directory,
            siblings=siblings,
        )
        reader = ChunkReader(f, (digest.update, count, secrets), self.limits.chunk_size)
        fmt = self._dispatch(f, reader, stream)
        reader.drain()
        if fmt not in _ZIP_FORMATS and size >= 22:
            f.seek(0)
            if zipfile.is_zipfile(f):
                stream.emit(
                    "polyglot.zip",
                    f"the {fmt.value} file is also a valid zip archive: a loader that opens "
                    "it as a zip would read different content",
                    None,
                )
        return FileReport(
            path=name,
            format=fmt,
            size=size,
            digest=f"sha256:{digest.hexdigest()}",
            findings=findings.done(name),
        )

    # -- dispatch --------------------------------------------------------------------------

    def _dispatch(self, f: BinaryIO | None, reader: ChunkReader, s: _Stream) -> ArtifactFormat:
        """Check one stream. `f` is a seekable handle on the same bytes when one exists (a
        top-level file or a spooled member); without it, random-access formats are spooled."""
        head = reader.peek(_HEAD)
        kind, codec = formats.sniff(head)
        if kind in (Kind.ZIP, Kind.ONNX_CANDIDATE):
            if f is None:
                with _Spool(reader, self._scratch) as spooled:
                    return self._random_access(spooled, kind, s)
            reader.drain()
            return self._random_access(f, kind, s)
        if kind is Kind.NUMPY:
            self._npy(reader, s)
            return ArtifactFormat.NUMPY
        if kind is Kind.PICKLE:
            return self._pickle(reader, s)
        if kind is Kind.COMPRESSED:
            assert codec is not None
            if head[0] not in OPCODE_BYTES:
                return self._compressed(reader, codec, s)
            # bz2's "BZh" and lzma's "]" are also pickle opcodes: joblib decompresses such a
            # file, pickle.load reads its raw bytes as opcodes. Both readings must be clean.
            if f is None:
                with _Spool(reader, self._scratch) as spooled:
                    fmt = self._compressed(self._reader(spooled), codec, s)
                    self._raw_pickle(spooled, s)
                    return fmt
            fmt = self._compressed(reader, codec, s)
            reader.drain()
            self._raw_pickle(f, s)
            return fmt
        if kind is Kind.LZ4:
            s.emit(
                "joblib.unsupported_compression",
                "lz4-compressed content cannot be inspected (the lz4 codec is not installed)",
                0,
            )
            return ArtifactFormat.JOBLIB
        if kind is Kind.JOBLIB_COMPAT:
            s.emit(
                "joblib.legacy_format",
                "joblib < 0.10 'ZF' files are not supported; re-save with a current joblib",
                0,
            )
            return ArtifactFormat.JOBLIB
        if kind is Kind.TAR:
            s.emit(
                "tar.unsupported",
                "tar archives (legacy torch.save checkpoints, whose members are unpickled) "
                "cannot be verified; re-save in a current format",
                0,
            )
            return ArtifactFormat.UNKNOWN
        if kind is Kind.SAFETENSORS:
            formats.check_safetensors(reader, s.emit, max_header_bytes=self.limits.max_header_bytes)
            return ArtifactFormat.SAFETENSORS
        return self._probe(reader, s, ArtifactFormat.PICKLE)

    def _reader(self, f: BinaryIO) -> ChunkReader:
        """A second, sink-less reader over bytes whose digest and secrets were already taken."""
        f.seek(0)
        return ChunkReader(f, (), self.limits.chunk_size)

    def _raw_pickle(self, f: BinaryIO, s: _Stream) -> None:
        """Walk the raw bytes of a compressed file as plain `pickle.load` would."""
        if self._probe(self._reader(f), s, ArtifactFormat.PICKLE) is ArtifactFormat.PICKLE:
            s.emit(
                "polyglot.pickle",
                "the compressed file is also a pickle that pickle.load would run",
                0,
            )

    def _random_access(self, f: BinaryIO, kind: Kind, s: _Stream) -> ArtifactFormat:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(0)
        if kind is Kind.ZIP:
            return self._zip(f, size, s)
        if size > self.limits.max_onnx_bytes:
            return ArtifactFormat.UNKNOWN  # protobuf cannot exceed 2 GiB: not an ONNX model
        model = formats.parse_onnx(f.read())
        if model is None:
            return ArtifactFormat.UNKNOWN
        formats.check_onnx(model, s.emit, directory=s.directory, siblings=s.siblings)
        return ArtifactFormat.ONNX

    # -- pickles ---------------------------------------------------------------------------

    def _walk_pickle(self, reader: ChunkReader, emit: formats.Emit, mode: Mode) -> WalkResult:
        return PickleWalker(
            reader, allow=self.allowlist, limits=self.limits, mode=mode, emit=emit
        ).run()

    def _pickle(self, reader: ChunkReader, s: _Stream, mode: Mode = Mode.JOBLIB) -> ArtifactFormat:
        result = self._walk_pickle(reader, s.emit, mode)
        self._after_stop(reader, result, s)
        return ArtifactFormat.JOBLIB if result.wrappers else ArtifactFormat.PICKLE

    @staticmethod
    def _after_stop(reader: ChunkReader, result: WalkResult, s: _Stream) -> None:
        if result.reached_stop and not reader.at_eof():
            s.emit(
                "pickle.trailing_data",
                "bytes follow STOP (a stacked pickle or hidden payload)",
                result.stop_offset,
            )

    def _probe(self, reader: ChunkReader, s: _Stream, fmt: ArtifactFormat) -> ArtifactFormat:
        """A stream with no PROTO may still be a protocol 0/1 pickle. Walk it: if a walk
        would import anything, or the stream is a whole pickle, it is one and every finding
        counts; otherwise (text, data) the walk's complaints are dropped."""
        first = reader.peek(1)
        if not first or first[0] not in OPCODE_BYTES:
            return ArtifactFormat.UNKNOWN
        pending: list[tuple[str, str, int | None]] = []

        def hold(code: str, reason: str, offset: int | None) -> None:
            if len(pending) < self.limits.max_findings_per_file:
                pending.append((code, reason, offset))

        dangerous = False
        segments = 0
        whole = False
        stop: int | None = None
        while True:
            result = self._walk_pickle(reader, hold, Mode.PLAIN)
            dangerous = dangerous or result.dangerous
            if not result.reached_stop:
                break
            segments += 1
            stop = stop if stop is not None else result.stop_offset
            if reader.at_eof():
                whole = True
                break
            nxt = reader.peek(1)
            if nxt[0] not in OPCODE_BYTES:
                break
        if not dangerous and not whole:
            return ArtifactFormat.UNKNOWN
        for code, reason, offset in pending:
            s.emit(code, reason, offset)
        if segments > 1 or (segments and not whole):
            s.emit("pickle.trailing_data", "bytes follow STOP (a stacked pickle)", stop)
        return fmt

    def _compressed(self, reader: ChunkReader, codec: str, s: _Stream) -> ArtifactFormat:
        inner_secrets = SecretScanner(s.findings.emitter(f"{s.name}!{codec}"))
        decompressed = DecompressingReader(
            _ReadSome(reader), codec, s.budget, chunk_size=self.limits.chunk_size
        )
        inner = ChunkReader(decompressed, (inner_secrets,), self.limits.chunk_size)
        fmt = ArtifactFormat.UNKNOWN
        try:
            head = inner.peek(2)
            if head[:1] == b"\x80":
                self._pickle(inner, s)
                fmt = ArtifactFormat.JOBLIB
            else:
                fmt = self._probe(inner, s, ArtifactFormat.JOBLIB)
            inner.drain()
        except CorruptStream as error:
            s.emit("compressed.corrupt", error.what, None)
        except Truncated as error:
            s.emit(
                "compressed.truncated",
                f"the {codec} stream ends early (decompressed offset {error.offset})",
                error.offset,
            )
        except LimitExceeded as error:
            s.emit(
                "compressed.limit_exceeded",
                f"{error.what} exceeds {self.limits.max_decompressed_bytes} bytes",
                None,
            )
        return fmt

    # -- numpy -----------------------------------------------------------------------------

    def _npy(self, reader: ChunkReader, s: _Stream) -> None:
        header = formats.read_npy_header(reader, s.emit)
        if header is None:
            return
        if header.dtype.hasobject:
            result = self._walk_pickle(reader, s.emit, Mode.PLAIN)
            self._after_stop(reader, result, s)
            return
        start = reader.tell()
        try:
            reader.skip(header.nbytes)
        except Truncated:
            s.emit("numpy.truncated", f"the array needs {header.nbytes} bytes of data", start)
            return
        extra = reader.drain()
        if extra:
            s.emit(
                "numpy.trailing_data", f"{extra} bytes after the array data", start + header.nbytes
            )

    # -- zip containers --------------------------------------------------------------------

    def _zip(self, f: BinaryIO, size: int, s: _Stream) -> ArtifactFormat:
        try:
            archive = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as error:
            s.emit("zip.malformed", f"not a readable zip archive ({error})"[:200], None)
            return ArtifactFormat.ZIP
        with archive:
            if not archives.check_structure(f, archive, size, s.emit, self.limits):
                return ArtifactFormat.ZIP
            if s.depth >= self.limits.max_nesting_depth:
                # Whatever the layout: skops files may hold `.npz` members, which may be
                # skops files again, so only a depth bound keeps nesting (and recursion) finite.
                s.emit(
                    "zip.nesting_exceeded",
                    f"archives nested deeper than {self.limits.max_nesting_depth}",
                    None,
                )
                return ArtifactFormat.ZIP
            infos = [i for i in archive.infolist() if not i.filename.endswith("/")]
            names = frozenset(i.filename for i in infos)
            if "schema.json" in names:
                return self._skops(f, archive, infos, size, s)
            prefixes = {n.split("/", 1)[0] for n in names}
            if len(prefixes) == 1 and all("/" in n for n in names):
                (prefix,) = prefixes
                if f"{prefix}/data.pkl" in names:
                    return self._torch(archive, infos, prefix, s)
            if infos and all(n.endswith(".npy") for n in names):
                for info in infos:
                    self._member(archive, info, s, expect=Kind.NUMPY)
                return ArtifactFormat.NUMPY_ZIP
            for info in infos:
                self._member(archive, info, s, siblings=names)
            return ArtifactFormat.ZIP

    def _member(
        self,
        archive: zipfile.ZipFile,
        info: zipfile.ZipInfo,
        s: _Stream,
        *,
        expect: Kind | None = None,
        check: bool = True,
        mode: Mode | None = None,
        siblings: frozenset[str] | None = None,
    ) -> WalkResult | None:
        """Read one member completely, secret-scan it, unless `check` is False check its
        content like a file (or as a pickle in `mode`), then check its CRC. `siblings` are
        the archive's member names, for ONNX external data.

        `zipfile` checks the CRC itself, raising on the very read that returns the last
        bytes, so the content of a member with a bad CRC (which PyTorch loads regardless,
        CVE-2025-10156) would never be checked. It is handed an entry without a CRC, and
        the CRC is computed here instead, so a bad one is a finding of its own."""
        m = s.member(info.filename)
        if siblings is not None:
            m.directory = info.filename.rpartition("/")[0]
            m.siblings = siblings
        secrets = SecretScanner(m.emit)
        tail = TailKeeper(archives.POLYGLOT_TAIL)
        crc = _Crc()
        unchecked = copy.copy(info)
        del unchecked.CRC  # zipfile skips its check for entries without one
        result: WalkResult | None = None
        try:
            with archive.open(unchecked) as raw:
                reader = ChunkReader(
                    CountingReader(raw, s.budget), (secrets, tail, crc), self.limits.chunk_size
                )
                if expect is not None:
                    kind, _ = formats.sniff(reader.peek(_HEAD))
                    if kind is not expect:
                        m.emit("zip.unexpected_member", f"member is not {expect.value} data", 0)
                        check = False
                if mode is not None:
                    result = self._walk_pickle(reader, m.emit, mode)
                    self._after_stop(reader, result, m)
                elif check:
                    fmt = self._dispatch(None, reader, m)
                    reader.drain()
                    if fmt not in _ZIP_FORMATS and archives.ends_like_zip(tail.tail):
                        m.emit(
                            "polyglot.zip",
                            f"the {fmt.value} member also ends like a zip archive: a loader "
                            "that opens it as a zip would read different content",
                            None,
                        )
                reader.drain()
            if crc.value != info.CRC:
                m.emit(
                    "zip.bad_crc",
                    f"the member's CRC-32 is {crc.value:08x}, its entry says {info.CRC:08x}",
                    None,
                )
        except zipfile.BadZipFile as error:
            m.emit(
                "zip.bad_crc" if "CRC" in str(error) else "zip.malformed", str(error)[:200], None
            )
        except (EOFError, zipfile.LargeZipFile, NotImplementedError, RuntimeError) as error:
            m.emit("zip.malformed", f"member cannot be read ({error})"[:200], None)
        except (zlib.error, lzma.LZMAError) as error:
            m.emit("zip.malformed", f"member data cannot be decompressed ({error})"[:200], None)
        except OSError as error:
            if error.errno is not None:
                raise  # a real I/O error on the archive: the scan cannot go on
            # bz2 reports corrupt data as an OSError without errno
            m.emit("zip.malformed", f"member data cannot be decompressed ({error})"[:200], None)
        except LimitExceeded as error:
            m.emit(
                "zip.limit_exceeded",
                f"{error.what} exceeds {self.limits.max_decompressed_bytes} bytes",
                None,
            )
        return result

    def _torch(
        self, archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], prefix: str, s: _Stream
    ) -> ArtifactFormat:
        """A PyTorch `torch.save` zip: `data.pkl` walked with storage persistent ids; storages
        are raw bytes; nothing else but PyTorch's small metadata members."""
        by_name = {i.filename: i for i in infos}
        result = self._member(archive, by_name[f"{prefix}/data.pkl"], s, mode=Mode.TORCH)
        keys = result.storage_keys if result is not None else set()
        for info in infos:
            rest = info.filename[len(prefix) + 1 :]
            if rest == "data.pkl":
                continue
            if rest.startswith(_TORCHSCRIPT):
                s.member(info.filename).emit(
                    "pytorch.torchscript",
                    "TorchScript archives carry code and are not supported",
                    None,
                )
                continue
            if rest.startswith("data/") and rest[5:] in keys:
                self._member(archive, info, s, check=False)  # raw storage bytes
                continue
            if rest in _TORCH_FIXED:
                self._member(archive, info, s, check=False)
                continue
            s.member(info.filename).emit(
                "zip.unexpected_member", "not a member a PyTorch checkpoint contains", None
            )
        for key in sorted(
            keys - {n[len(prefix) + 6 :] for n in by_name if n.startswith(f"{prefix}/data/")}
        ):
            s.emit(
                "pytorch.missing_storage", f"storage {key[:100]!r} is referenced but absent", None
            )
        return ArtifactFormat.PYTORCH_ZIP

    def _skops(
        self,
        f: BinaryIO,
        archive: zipfile.ZipFile,
        infos: list[zipfile.ZipInfo],
        size: int,
        s: _Stream,
    ) -> ArtifactFormat:
        """A skops file: members are the schema and the arrays/bytes it refers to; every type
        skops does not trust by default must be on the allow-list's `skops_types`."""
        for info in infos:
            if info.filename != "schema.json" and (
                "/" in info.filename or not info.filename.endswith(_SKOPS_MEMBER_SUFFIXES)
            ):
                s.member(info.filename).emit(
                    "zip.unexpected_member", "not a member a skops file contains", None
                )
                continue
            self._member(archive, info, s)
        if size > self.limits.max_skops_bytes:
            s.emit(
                "skops.limit_exceeded",
                f"skops file larger than {self.limits.max_skops_bytes}",
                None,
            )
            return ArtifactFormat.SKOPS
        f.seek(0)
        data = f.read()
        try:
            from skops.io import get_untrusted_types

            untrusted = get_untrusted_types(data=data)
        except Exception as error:  # noqa: BLE001 - skops raises many types; any means "cannot verify"
            s.emit("skops.malformed", f"skops cannot audit the file ({type(error).__name__})", None)
            return ArtifactFormat.SKOPS
        for name in untrusted:
            if not self.allowlist.allows_skops_type(name):
                s.emit(
                    "skops.untrusted_type",
                    f"type {name[:200]} is not trusted by skops nor on the allow-list",
                    None,
                )
        return ArtifactFormat.SKOPS


_ZIP_FORMATS = frozenset(
    {
        ArtifactFormat.ZIP,
        ArtifactFormat.SKOPS,
        ArtifactFormat.PYTORCH_ZIP,
        ArtifactFormat.NUMPY_ZIP,
    }
)


class _Crc:
    """A sink computing the CRC-32 of what flows through it."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def __call__(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)


class _ReadSome:
    """`Readable` view of a `ChunkReader` (so raw bytes keep flowing through its sinks)."""

    __slots__ = ("_reader",)

    def __init__(self, reader: ChunkReader) -> None:
        self._reader = reader

    def read(self, size: int = -1, /) -> bytes:
        return self._reader.read_some(size)


class _Spool:
    """Copy the rest of a member stream into a private temporary file for random access."""

    def __init__(self, reader: ChunkReader, scratch: Path | None) -> None:
        self._reader = reader
        self._scratch = scratch
        self._file: BinaryIO | None = None

    def __enter__(self) -> BinaryIO:
        self._file = tempfile.TemporaryFile(dir=self._scratch)
        while True:
            data = self._reader.read_some()
            if not data:
                break
            self._file.write(data)
        self._file.seek(0)
        return self._file

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
