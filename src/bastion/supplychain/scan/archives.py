"""Zip containers: the structure checks that run before any member is read.

Loaders disagree about odd zips: Python's `zipfile` trusts the central directory, PyTorch's
miniz reader and others read local headers, some accept data before the first member or after
the end record. Scanners have been bypassed through exactly these gaps (picklescan
CVE-2025-1944/-1945: name and flag bits that crash the scanner but not PyTorch; CVE-2025-10156:
bad CRCs that stop the scanner but not the loader). So a zip is accepted only when every view
agrees: each central-directory entry matches its local header (name, method, flags, sizes),
members tile the file from offset 0 to the central directory with nothing hidden between or
overlapping them, the end record is the last thing in the file, no member is encrypted, names
are plain relative paths and unique, compression is one Python reads, and declared sizes stay
within the ratio and member-count bounds. CRCs are checked later, while reading each member.
"""

from __future__ import annotations

import struct
import zipfile
from typing import BinaryIO

from bastion.supplychain.scan.formats import Emit
from bastion.supplychain.scan.model import ScanLimits

_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_LOCAL = b"PK\x03\x04"
_DESCRIPTOR = b"PK\x07\x08"
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_SUPPORTED_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
_MAX_TAIL = 22 + 0xFFFF
_ZIP64_EXTRA = 0x0001
_UNICODE_PATH_EXTRA = 0x7075  # Info-ZIP: unzip and 7-Zip extract under this name instead
_ENCRYPTION_FLAGS = 0x0001 | 0x0040 | 0x2000  # encrypted, strong encryption, masked headers
_PATCHED_FLAG = 0x0020  # "compressed patched data": zipfile refuses it, others may not
# Flag bits that change how a member is read (encryption, where sizes are, compression
# options, name encoding): a local header and its central-directory entry must agree on them.
_COMPARED_FLAGS = _ENCRYPTION_FLAGS | _PATCHED_FLAG | 0x0008 | 0x0006 | 0x0800


# How much of a member's end the scanner keeps to tell whether it is also a zip: the end
# record's search window plus 64 KiB of central directory.
POLYGLOT_TAIL = _MAX_TAIL + 0x10000


def ends_like_zip(tail: bytes) -> bool:
    """Whether a stream ending in `tail` opens as a zip archive (with data before it), as
    `zipfile` decides: its last end record, and the central directory that record describes
    starting with its signature. A directory too large for `tail` counts when the end record
    closes the stream exactly, as real archives do."""
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        return False
    count: int
    cd_size: int
    comment: int
    _, _, _, _, count, cd_size, _, comment = struct.unpack("<4s4H2LH", tail[at : at + 22])
    if at >= 20 and tail[at - 20 : at - 16] == _EOCD64_LOCATOR:
        return True
    if not count:
        return False  # an empty archive holds nothing a loader could read
    start = at - cd_size
    if start >= 0:
        return tail[start : start + 4] == b"PK\x01\x02"
    return at + 22 + comment == len(tail)


def bad_member_name(name: str) -> str | None:
    """Why `name` is not a plain relative member name, or None."""
    if not name:
        return "is empty"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "is absolute"
    if "\\" in name:
        return "contains a backslash"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "contains control characters"
    parts = name.rstrip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "has empty, '.' or '..' segments"
    return None


def _end_records(f: BinaryIO, size: int, emit: Emit) -> tuple[int, int, int, int] | None:
    """(central directory offset as recorded, its size, where the directory must end, the
    member count the end record declares).

    Like `zipfile`, a zip64 end record is used whenever its locator sits right before the end
    record; `zipfile` then reads the record just before the locator whatever the locator
    says, other readers follow the locator, so both must name the same place."""
    take = min(size, _MAX_TAIL)
    f.seek(size - take)
    tail = f.read(take)
    at = tail.rfind(_EOCD)
    if at < 0 or at + 22 > len(tail):
        emit("zip.malformed", "no end-of-central-directory record", None)
        return None
    _, _, _, _, count, cd_size, cd_offset, comment = struct.unpack("<4s4H2LH", tail[at : at + 22])
    eocd = size - take + at
    if eocd + 22 + comment != size:
        emit(
            "zip.trailing_data",
            f"{size - eocd - 22 - comment} bytes after the end record",
            eocd,
        )
    elif comment:
        emit("zip.comment", f"the archive carries a {comment}-byte comment", eocd + 22)
    cd_end = eocd
    if at >= 20 and tail[at - 20 : at - 16] == _EOCD64_LOCATOR:
        record = eocd - 20 - 56
        (pointed,) = struct.unpack("<Q", tail[at - 12 : at - 4])
        f.seek(max(record, 0))
        raw = f.read(56)
        if record < 0 or len(raw) < 56 or raw[:4] != _EOCD64 or pointed != record:
            emit(
                "zip.malformed",
                "the zip64 end record is not where its locator and zipfile expect it",
                max(record, 0),
            )
            return None
        (length,) = struct.unpack("<Q", raw[4:12])
        if length != 44:
            emit("zip.malformed", "the zip64 end record carries extensible data", record)
            return None
        count, cd_size, cd_offset = struct.unpack("<QQQ", raw[32:56])
        cd_end = record
    elif cd_offset == 0xFFFFFFFF or cd_size == 0xFFFFFFFF:
        emit("zip.malformed", "zip64 sizes without a zip64 locator", eocd)
        return None
    return cd_offset, cd_size, cd_end, count


def check_structure(
    f: BinaryIO, archive: zipfile.ZipFile, size: int, emit: Emit, limits: ScanLimits
) -> bool:
    """Run every structural check; False when the archive must not be read further."""
    infos = archive.infolist()
    if len(infos) > limits.max_zip_members:
        emit(
            "zip.limit_exceeded",
            f"{len(infos)} members (the limit is {limits.max_zip_members})",
            None,
        )
        return False
    ends = _end_records(f, size, emit)
    if ends is None:
        return False
    cd_offset, cd_size, cd_end, count = ends
    if count != len(infos):
        # zipfile reads entries until the directory's size is used up; miniz (PyTorch) and
        # others read as many entries as the end record counts.
        emit(
            "zip.malformed",
            f"the end record counts {count} members, the central directory lists {len(infos)}",
            None,
        )
        return False
    concat = cd_end - cd_size - cd_offset  # zipfile's allowance for bytes before the archive
    if concat != 0:
        emit(
            "zip.hidden_data",
            f"the central directory is displaced by {concat} bytes (data before the archive)",
            0,
        )
    ok = True
    seen: set[str] = set()
    spans: list[tuple[int, int, str]] = []
    declared = 0
    for info in infos:
        name = info.filename
        shown = name if len(name) <= 200 else name[:200] + "..."
        if name in seen:
            emit("zip.duplicate_member", f"member {shown!r} appears twice", info.header_offset)
            ok = False
        seen.add(name)
        why = bad_member_name(name)
        if why is not None:
            emit("zip.bad_member_name", f"member name {shown!r} {why}", info.header_offset)
            ok = False
        if _other_name(info.extra, name):
            emit(
                "zip.header_mismatch",
                f"member {shown!r} carries a Unicode Path field naming another member",
                info.header_offset,
            )
            ok = False
        if info.flag_bits & _ENCRYPTION_FLAGS:
            emit("zip.encrypted", f"member {shown!r} is encrypted", info.header_offset)
            ok = False
        if info.flag_bits & _PATCHED_FLAG:
            emit(
                "zip.unsupported_compression",
                f"member {shown!r} is compressed patched data (flag bit 5)",
                info.header_offset,
            )
            ok = False
        if info.compress_type not in _SUPPORTED_METHODS:
            emit(
                "zip.unsupported_compression",
                f"member {shown!r} uses compression method {info.compress_type}",
                info.header_offset,
            )
            ok = False
        if name.endswith("/") and info.file_size:
            emit("zip.bad_member_name", f"directory entry {shown!r} has content", None)
            ok = False
        declared += info.file_size
        if info.file_size > 1 << 20 and info.file_size > limits.max_zip_ratio * max(
            info.compress_size, 1
        ):
            emit(
                "zip.ratio_exceeded",
                f"member {shown!r} expands {info.file_size} / {info.compress_size} bytes "
                f"(more than {limits.max_zip_ratio}x)",
                info.header_offset,
            )
            ok = False
        end = _local_header(f, info, shown, emit)
        if end is None:
            ok = False
            continue
        spans.append((info.header_offset, end, shown))
    if declared > limits.max_decompressed_bytes:
        emit(
            "zip.limit_exceeded",
            f"members declare {declared} bytes in total (the limit is "
            f"{limits.max_decompressed_bytes})",
            None,
        )
        ok = False
    position = 0
    for begin, end, shown in sorted(spans):
        if begin > position:
            emit("zip.hidden_data", f"{begin - position} unlisted bytes before {shown!r}", position)
            ok = False
        elif begin < position:
            emit("zip.overlapping_members", f"member {shown!r} overlaps another member", begin)
            ok = False
        position = max(position, end)
    cd_start = cd_offset + concat
    if ok and position > cd_start:
        emit(
            "zip.overlapping_members",
            f"members run {position - cd_start} bytes into the central directory",
            cd_start,
        )
        ok = False
    elif ok and position < cd_start:
        emit(
            "zip.hidden_data",
            f"{cd_start - position} unlisted bytes before the central directory",
            position,
        )
        ok = False
    return ok


def _extra_field(extra: bytes, wanted: int) -> bytes | None:
    """The data of the first `wanted` field of an extra block, if any."""
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, at)
        if kind == wanted:
            return extra[at + 4 : at + 4 + length]
        at += 4 + length
    return None


def _other_name(extra: bytes, name: str) -> bool:
    """Whether an Info-ZIP Unicode Path field in `extra` names something other than `name`
    (which `zipfile` and PyTorch use, while unzip and 7-Zip extract under the field's name)."""
    field = _extra_field(extra, _UNICODE_PATH_EXTRA)
    if field is None:
        return False
    try:
        return field[5:].decode("utf-8") != name
    except UnicodeDecodeError:
        return True


def _local_header(f: BinaryIO, info: zipfile.ZipInfo, shown: str, emit: Emit) -> int | None:
    """Compare a member's local header (and data descriptor) with its central-directory
    entry; return where the member (data and any data descriptor) ends."""
    f.seek(info.header_offset)
    raw = f.read(_LOCAL_HEADER.size)
    if len(raw) < _LOCAL_HEADER.size or raw[:4] != _LOCAL:
        emit("zip.bad_local_header", f"no local header for {shown!r}", info.header_offset)
        return None
    _, _, flags, method, _, _, crc, csize, usize, nlen, xlen = _LOCAL_HEADER.unpack(raw)
    name = f.read(nlen)
    extra = f.read(xlen)
    if len(name) < nlen or len(extra) < xlen:
        emit("zip.bad_local_header", f"the local header of {shown!r} is cut short", None)
        return None
    local_name = name.decode("utf-8" if flags & 0x800 else "cp437", "replace")
    zip64 = _extra_field(extra, _ZIP64_EXTRA)
    problems = []
    if local_name != info.orig_filename or _other_name(extra, info.filename):
        problems.append("name")
    if method != info.compress_type:
        problems.append("compression method")
    if (flags ^ info.flag_bits) & _COMPARED_FLAGS:
        problems.append("flags")
    if not flags & 0x8:
        if crc != info.CRC:
            problems.append("CRC")
        sizes = [usize, csize]
        wide = zip64 or b""
        for i in (0, 1):  # the zip64 field holds, in order, the sizes that are 0xFFFFFFFF
            if sizes[i] == 0xFFFFFFFF:
                if len(wide) < 8:
                    sizes[i] = -1
                    break
                (sizes[i],) = struct.unpack("<Q", wide[:8])
                wide = wide[8:]
        if sizes != [info.file_size, info.compress_size]:
            problems.append("sizes")
    end: int = info.header_offset + _LOCAL_HEADER.size + nlen + xlen + info.compress_size
    if flags & 0x8 and not problems:
        f.seek(end)
        wide64 = zip64 is not None or max(info.file_size, info.compress_size) >= 0xFFFFFFFF
        body = struct.Struct("<LQQ" if wide64 else "<LLL")
        descriptor = f.read(4 + body.size)
        signed = descriptor[:4] == _DESCRIPTOR
        fields = descriptor[4:] if signed else descriptor[: body.size]
        if len(fields) < body.size or body.unpack(fields) != (
            info.CRC,
            info.compress_size,
            info.file_size,
        ):
            problems.append("data descriptor")
        end += (4 if signed else 0) + body.size
    if problems:
        emit(
            "zip.header_mismatch",
            f"local header of {shown!r} disagrees with the central directory on "
            + ", ".join(problems),
            info.header_offset,
        )
        return None
    return end
