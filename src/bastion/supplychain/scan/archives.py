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
_EOCD64_LOCATOR = b"PK\x07\x06"
_EOCD64 = b"PK\x06\x06"
_LOCAL = b"PK\x03\x04"
_DESCRIPTOR = b"PK\x07\x08"
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_SUPPORTED_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
_MAX_TAIL = 22 + 0xFFFF


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


def _end_records(f: BinaryIO, size: int, emit: Emit) -> tuple[int, int, int] | None:
    """(central directory offset as recorded, its size, where the directory must end)."""
    take = min(size, _MAX_TAIL)
    f.seek(size - take)
    tail = f.read(take)
    at = tail.rfind(_EOCD)
    if at < 0 or at + 22 > len(tail):
        emit("zip.malformed", "no end-of-central-directory record", None)
        return None
    _, _, _, _, _, cd_size, cd_offset, comment = struct.unpack("<4s4H2LH", tail[at : at + 22])
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
    if cd_offset == 0xFFFFFFFF or cd_size == 0xFFFFFFFF:
        if at < 20 or tail[at - 20 : at - 16] != _EOCD64_LOCATOR:
            emit("zip.malformed", "zip64 sizes without a zip64 locator", eocd)
            return None
        (record,) = struct.unpack("<Q", tail[at - 12 : at - 4])
        f.seek(record)
        raw = f.read(56)
        if len(raw) < 56 or raw[:4] != _EOCD64:
            emit("zip.malformed", "the zip64 end record is missing", record)
            return None
        cd_size, cd_offset = struct.unpack("<QQ", raw[40:56])
        cd_end = record
    return cd_offset, cd_size, cd_end


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
    cd_offset, cd_size, cd_end = ends
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
        if info.flag_bits & 0x1:
            emit("zip.encrypted", f"member {shown!r} is encrypted", info.header_offset)
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
    if ok and cd_offset + concat != position:
        emit(
            "zip.hidden_data",
            f"{cd_offset + concat - position} unlisted bytes before the central directory",
            position,
        )
        ok = False
    return ok


def _local_header(f: BinaryIO, info: zipfile.ZipInfo, shown: str, emit: Emit) -> int | None:
    """Compare a member's local header with its central-directory entry; return where the
    member (data and any data descriptor) ends."""
    f.seek(info.header_offset)
    raw = f.read(_LOCAL_HEADER.size)
    if len(raw) < _LOCAL_HEADER.size or raw[:4] != _LOCAL:
        emit("zip.bad_local_header", f"no local header for {shown!r}", info.header_offset)
        return None
    _, _, flags, method, _, _, crc, csize, usize, nlen, xlen = _LOCAL_HEADER.unpack(raw)
    name = f.read(nlen)
    local_name = name.decode("utf-8" if flags & 0x800 else "cp437", "replace")
    problems = []
    if local_name != info.orig_filename:
        problems.append("name")
    if method != info.compress_type:
        problems.append("compression method")
    if (flags ^ info.flag_bits) & 0x1:
        problems.append("encryption flag")
    if not flags & 0x8 and 0xFFFFFFFF not in (csize, usize):
        if crc != info.CRC:
            problems.append("CRC")
        if csize != info.compress_size or usize != info.file_size:
            problems.append("sizes")
    if problems:
        emit(
            "zip.header_mismatch",
            f"local header of {shown!r} disagrees with the central directory on "
            + ", ".join(problems),
            info.header_offset,
        )
        return None
    end: int = info.header_offset + _LOCAL_HEADER.size + nlen + xlen + info.compress_size
    if flags & 0x8:
        f.seek(end)
        zip64 = info.file_size >= 0xFFFFFFFF or info.compress_size >= 0xFFFFFFFF
        end += (20 if zip64 else 12) + (4 if f.read(4) == _DESCRIPTOR else 0)
    return end
