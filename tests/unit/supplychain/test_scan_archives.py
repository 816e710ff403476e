"""Zip containers: the structure checks (every view of the archive must agree), generic zips
and their members, PyTorch `torch.save` zips, and skops files.

Hostile archives are assembled byte by byte with `_Zip` so each test breaks exactly one rule;
benign ones come from `zipfile`, numpy, skops and a hand-made PyTorch layout (torch itself is
not installed: its globals are faked in `sys.modules` only while a pickle is written).
Nothing is ever unpickled or loaded.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import struct
import sys
import types
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from bastion.supplychain.scan import ArtifactFormat, FileReport, ScanLimits, Scanner


class _Hostile:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned",))


HOSTILE = pickle.dumps(_Hostile(), protocol=4)
BENIGN = pickle.dumps({"lr": 0.1, "layers": [4, 4]}, protocol=4)


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner()


def codes(report: FileReport) -> set[str]:
    return {f.code for f in report.findings}


def located(report: FileReport) -> set[tuple[str, str]]:
    return {(f.path, f.code) for f in report.findings}


def pickle_paths(report: FileReport) -> set[str]:
    return {f.path for f in report.findings if f.code.startswith("pickle.")}


def zip_bytes(
    members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED, comment: bytes = b""
) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as archive:
        for name, data in members:
            archive.writestr(name, data)
        archive.comment = comment
    return out.getvalue()


# -- a zip writer that can lie -----------------------------------------------------------------


@dataclass
class _Member:
    name: str
    data: bytes
    method: int = 0  # the data is stored as given, whatever the method says
    flags: int = 0
    local_flags: int | None = None
    local_name: str | None = None
    crc: int | None = None
    usize: int | None = None
    local_offset: int | None = None  # where the central directory says the header is
    descriptor: bytes = b""
    after: bytes = b""  # bytes written after this member's data
    local_extra: bytes = b""
    central_extra: bytes = b""


@dataclass
class _Zip:
    members: list[_Member]
    before: bytes = b""  # data before the archive (offsets stay relative to the archive)
    before_cd: bytes = b""
    comment: bytes = b""
    trailing: bytes = b""
    count: int | None = None
    offsets: list[int] = field(default_factory=list)

    def build(self) -> bytes:
        body = bytearray()
        for m in self.members:
            self.offsets.append(len(body))
            crc = zlib.crc32(m.data) if m.crc is None else m.crc
            name = (m.local_name if m.local_name is not None else m.name).encode()
            flags = m.flags if m.local_flags is None else m.local_flags
            usize = len(m.data) if m.usize is None else m.usize
            body += struct.pack(
                "<4s5H3L2H", b"PK\x03\x04", 20, flags, m.method, 0, 0x21, crc, len(m.data),
                usize, len(name), len(m.local_extra),
            )  # fmt: skip
            body += name + m.local_extra + m.data + m.descriptor + m.after
        body += self.before_cd
        cd_offset = len(body)
        for m, offset in zip(self.members, self.offsets, strict=True):
            crc = zlib.crc32(m.data) if m.crc is None else m.crc
            name = m.name.encode()
            usize = len(m.data) if m.usize is None else m.usize
            at = offset if m.local_offset is None else m.local_offset
            body += struct.pack(
                "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, m.flags, m.method, 0, 0x21, crc,
                len(m.data), usize, len(name), len(m.central_extra), 0, 0, 0, 0, at,
            )  # fmt: skip
            body += name + m.central_extra
        n = len(self.members) if self.count is None else self.count
        body += struct.pack(
            "<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(body) - cd_offset, cd_offset,
            len(self.comment),
        )  # fmt: skip
        return self.before + bytes(body) + self.comment + self.trailing


def _two(**kw: Any) -> _Zip:
    return _Zip([_Member("a.txt", b"hello world"), _Member("b.txt", b"second member")], **kw)


def test_hand_built_zip_is_clean(scanner: Scanner) -> None:
    data = _two().build()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:  # really a zip zipfile reads
        assert archive.read("b.txt") == b"second member"
    report = scanner.scan_bytes(data, "outer.zip")
    assert (report.format, report.findings) == (ArtifactFormat.ZIP, ())


# -- 2. generic zips -------------------------------------------------------------------------


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2])
def test_benign_zip_of_benign_files(scanner: Scanner, method: int) -> None:
    data = zip_bytes(
        [("readme.txt", b"notes"), ("cfg/config.json", b"{}"), ("inner.pkl", BENIGN)], method
    )
    report = scanner.scan_bytes(data, "outer.zip")
    assert (report.format, report.findings) == (ArtifactFormat.ZIP, ())


def test_zip_with_directory_entries(scanner: Scanner) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.mkdir("cfg")
        archive.writestr("cfg/a.json", b"{}")
    assert scanner.scan_bytes(out.getvalue(), "outer.zip").clean


def test_empty_zip(scanner: Scanner) -> None:
    report = scanner.scan_bytes(zip_bytes([]), "empty.zip")
    assert (report.format, report.findings) == (ArtifactFormat.ZIP, ())


def test_zip_with_hostile_pickle(scanner: Scanner) -> None:
    report = scanner.scan_bytes(zip_bytes([("ok.txt", b"x"), ("inner.pkl", HOSTILE)]), "outer.zip")
    assert report.format is ArtifactFormat.ZIP
    assert pickle_paths(report) == {"outer.zip!inner.pkl"}
    (finding,) = [f for f in report.findings if f.code == "pickle.global_not_allowed"]
    assert finding.offset == HOSTILE.index(b"\x93")  # offset inside the member


def test_zip_member_names_never_route(scanner: Scanner) -> None:
    report = scanner.scan_bytes(zip_bytes([("weights.safetensors", HOSTILE)]), "outer.zip")
    assert pickle_paths(report) == {"outer.zip!weights.safetensors"}


def _nest(levels: int, inner: bytes = HOSTILE) -> bytes:
    data = zip_bytes([("inner.pkl", inner)])
    for level in range(1, levels):
        data = zip_bytes([(f"l{level}.zip", data)])
    return data


def test_nested_zips_within_the_depth_limit(scanner: Scanner) -> None:
    report = scanner.scan_bytes(_nest(3), "outer.zip")  # outer > l2 > l1 > inner.pkl
    assert pickle_paths(report) == {"outer.zip!l2.zip!l1.zip!inner.pkl"}


def test_nested_zips_beyond_the_depth_limit(scanner: Scanner) -> None:
    report = scanner.scan_bytes(_nest(5), "outer.zip")
    assert located(report) == {("outer.zip!l4.zip!l3.zip!l2.zip", "zip.nesting_exceeded")}


@pytest.mark.parametrize(("depth", "levels", "ok"), [(1, 1, True), (1, 2, False), (0, 1, False)])
def test_nesting_limit_is_configurable(depth: int, levels: int, ok: bool) -> None:
    scanner = Scanner(limits=ScanLimits(max_nesting_depth=depth))
    report = scanner.scan_bytes(_nest(levels, BENIGN), "outer.zip")
    assert report.clean is ok
    assert ok or codes(report) == {"zip.nesting_exceeded"}


def test_nesting_limit_holds_for_every_layout(scanner: Scanner) -> None:
    """skops files may hold `.npz` members that are skops files again: the depth bound used
    to apply to generic zips only, and a few hundred such layers exhausted the recursion."""
    data = b""
    for _ in range(200):
        members = [("schema.json", b"{}")] + ([("x.npz", data)] if data else [])
        data = zip_bytes(members, zipfile.ZIP_STORED)
    report = scanner.scan_bytes(data, "m.skops")
    assert "zip.nesting_exceeded" in codes(report)
    assert max(f.path.count("!") for f in report.findings) <= 3


def test_bad_crc_in_a_stored_member(scanner: Scanner) -> None:
    data = bytearray(zip_bytes([("a.txt", b"hello world, stored"), ("b.txt", b"x")], 0))
    data[data.index(b"hello")] ^= 0x01
    report = scanner.scan_bytes(bytes(data), "outer.zip")
    assert located(report) == {("outer.zip!a.txt", "zip.bad_crc")}


def test_bad_crc_does_not_hide_the_member(scanner: Scanner) -> None:
    """CVE-2025-10156: a bad CRC stopped picklescan, while PyTorch loads the member anyway.
    The member is still walked, and the CRC is a finding of its own."""
    data = _Zip([_Member("inner.pkl", HOSTILE, crc=0xDEADBEEF)]).build()
    report = scanner.scan_bytes(data, "outer.zip")
    assert ("outer.zip!inner.pkl", "zip.bad_crc") in located(report)
    assert pickle_paths(report) == {"outer.zip!inner.pkl"}


@pytest.mark.parametrize("where", ["local", "central"])
def test_local_and_central_names_disagree(scanner: Scanner, where: str) -> None:
    """CVE-2025-1944: the scanner reads one name, the loader the other."""
    member = (
        _Member("archive/data.pkl", HOSTILE, local_name="archive/data.pkX")
        if where == "local"
        else _Member("archive/data.pkX", HOSTILE, local_name="archive/data.pkl")
    )
    report = scanner.scan_bytes(_Zip([member]).build(), "model.pt")
    assert located(report) == {("model.pt", "zip.header_mismatch")}
    assert report.findings[0].offset == 0


@pytest.mark.parametrize(
    ("central", "local", "expected"),
    [
        (0x0001, 0x0001, {"zip.encrypted"}),
        (0x0000, 0x0001, {"zip.header_mismatch"}),
        (0x0001, 0x0000, {"zip.encrypted", "zip.header_mismatch"}),
        (0x0040, 0x0040, {"zip.encrypted"}),
        (0x0000, 0x0040, {"zip.header_mismatch"}),
        (0x2000, 0x2000, {"zip.encrypted"}),
        (0x0020, 0x0020, {"zip.unsupported_compression"}),
        (0x0800, 0x0000, {"zip.header_mismatch"}),
        (0x0000, 0x0008, {"zip.header_mismatch"}),
        (0x0002, 0x0000, {"zip.header_mismatch"}),
    ],
    ids=[
        "encrypted",
        "encrypted-local-only",
        "encrypted-central-only",
        "strong-encryption",
        "strong-encryption-local-only",
        "masked-headers",
        "patched-data",
        "utf8-central-only",
        "descriptor-local-only",
        "option-bits-differ",
    ],
)
def test_flag_bits(scanner: Scanner, central: int, local: int, expected: set[str]) -> None:
    """CVE-2025-1945: flag bits that make one reader refuse a member another reads."""
    data = _Zip([_Member("inner.pkl", BENIGN, flags=central, local_flags=local)]).build()
    assert codes(scanner.scan_bytes(data, "outer.zip")) == expected


def test_data_descriptor_agreeing_with_the_directory(scanner: Scanner) -> None:
    crc = zlib.crc32(BENIGN)
    descriptor = struct.pack("<4s3L", b"PK\x07\x08", crc, len(BENIGN), len(BENIGN))
    member = _Member("inner.pkl", BENIGN, flags=0x8, descriptor=descriptor)
    assert scanner.scan_bytes(_Zip([member]).build(), "outer.zip").clean
    unsigned = _Member("inner.pkl", BENIGN, flags=0x8, descriptor=descriptor[4:])
    assert scanner.scan_bytes(_Zip([unsigned]).build(), "outer.zip").clean


def test_data_descriptor_disagreeing_with_the_directory(scanner: Scanner) -> None:
    descriptor = struct.pack("<4s3L", b"PK\x07\x08", 0, len(BENIGN), len(BENIGN))
    member = _Member("inner.pkl", BENIGN, flags=0x8, descriptor=descriptor)
    report = scanner.scan_bytes(_Zip([member]).build(), "outer.zip")
    assert codes(report) == {"zip.header_mismatch"}
    assert "descriptor" in report.findings[0].reason


def test_real_streamed_zip_with_descriptors_is_clean(scanner: Scanner) -> None:
    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            self.data += b
            return len(b)

    sink = Unseekable()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:  # type: ignore[arg-type]
        archive.writestr("inner.pkl", BENIGN)
        archive.writestr("b.txt", b"text" * 100)
        with archive.open("c.bin", "w", force_zip64=True) as member:
            member.write(b"\1\2\3" * 1000)
    data = bytes(sink.data)
    with zipfile.ZipFile(io.BytesIO(data)) as check:
        assert all(i.flag_bits & 0x8 for i in check.infolist())
    assert scanner.scan_bytes(data, "outer.zip").clean


def test_zip64_member_is_clean(scanner: Scanner) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        with archive.open("inner.pkl", "w", force_zip64=True) as member:
            member.write(BENIGN)
        archive.writestr("b.txt", b"text")
    assert scanner.scan_bytes(out.getvalue(), "outer.zip").clean


def _unicode_path(name: str, header_name: str) -> bytes:
    data = b"\x01" + struct.pack("<L", zlib.crc32(header_name.encode())) + name.encode()
    return struct.pack("<HH", 0x7075, len(data)) + data


def test_unicode_path_field_agreeing_with_the_name(scanner: Scanner) -> None:
    field = _unicode_path("weights/a.bin", "weights/a.bin")
    member = _Member("weights/a.bin", b"x", local_extra=field, central_extra=field)
    assert scanner.scan_bytes(_Zip([member]).build(), "outer.zip").clean


@pytest.mark.parametrize("where", ["local", "central", "both"])
def test_unicode_path_field_naming_another_file(scanner: Scanner, where: str) -> None:
    """unzip and 7-Zip extract under the Info-ZIP Unicode Path name, zipfile and PyTorch
    under the header name: what is checked would not be what lands on disk."""
    field = _unicode_path("../../home/user/.bashrc", "weights/a.bin")
    member = _Member(
        "weights/a.bin",
        b"echo pwned",
        local_extra=field if where != "central" else b"",
        central_extra=field if where != "local" else b"",
    )
    report = scanner.scan_bytes(_Zip([member]).build(), "outer.zip")
    assert codes(report) == {"zip.header_mismatch"}


def _zip64_end(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """An archive with zip64 end records (zipfile writes them past 65 535 members; the limit
    is lowered so three members are enough)."""
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 2)
    data = zip_bytes([("a.txt", b"a"), ("b.pkl", BENIGN), ("c.txt", b"c")])
    monkeypatch.undo()
    assert b"PK\x06\x06" in data
    assert b"PK\x06\x07" in data
    return data


def test_zip64_end_records(scanner: Scanner, monkeypatch: pytest.MonkeyPatch) -> None:
    report = scanner.scan_bytes(_zip64_end(monkeypatch), "outer.zip")
    assert (report.format, report.findings) == (ArtifactFormat.ZIP, ())


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_zip64_everything(scanner: Scanner, monkeypatch: pytest.MonkeyPatch, method: int) -> None:
    """What a checkpoint over 4 GiB looks like: zip64 sizes in local and central headers,
    0xFFFFFFFF in the end record. The zip64 locator's signature used to be spelled
    backwards, so every such archive was refused as malformed."""
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 16)
    data = zip_bytes([("a.bin", bytes(100)), ("b.pkl", BENIGN), ("c.pkl", HOSTILE)], method)
    monkeypatch.undo()
    with zipfile.ZipFile(io.BytesIO(data)) as check:
        assert check.read("b.pkl") == BENIGN
    assert b"PK\x06\x06" in data  # zip64 end record
    report = scanner.scan_bytes(data, "outer.zip")
    assert {f.path for f in report.findings} == {"outer.zip!c.pkl"}
    # as a > 4 GiB archive has it: the 32-bit end record defers to the zip64 one
    patched = bytearray(data)
    struct.pack_into("<LL", patched, patched.rindex(b"PK\x05\x06") + 12, 0xFFFFFFFF, 0xFFFFFFFF)
    with zipfile.ZipFile(io.BytesIO(bytes(patched))) as check:
        assert check.read("b.pkl") == BENIGN
    report = scanner.scan_bytes(bytes(patched), "outer.zip")
    assert {f.path for f in report.findings} == {"outer.zip!c.pkl"}


def test_zip64_locator_pointing_elsewhere(
    scanner: Scanner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """zipfile reads the record just before the locator; other readers follow the locator."""
    data = bytearray(_zip64_end(monkeypatch))
    locator = data.rindex(b"PK\x06\x07")
    struct.pack_into("<Q", data, locator + 8, 0)
    assert codes(scanner.scan_bytes(bytes(data), "outer.zip")) == {"zip.malformed"}


def test_duplicate_member_names(scanner: Scanner) -> None:
    data = _Zip([_Member("inner.pkl", BENIGN), _Member("inner.pkl", HOSTILE)]).build()
    report = scanner.scan_bytes(data, "outer.zip")
    assert codes(report) == {"zip.duplicate_member"}


@pytest.mark.parametrize(
    "name",
    ["../evil.pkl", "/abs/evil.pkl", "a\\b.pkl", "C:evil.pkl", "a//b.pkl", "./a.pkl",
     "a/../b.pkl", "a/./b.pkl", "ok\x01.pkl", "", "a/.."],
)  # fmt: skip
def test_bad_member_names(scanner: Scanner, name: str) -> None:
    report = scanner.scan_bytes(_Zip([_Member(name, BENIGN)]).build(), "outer.zip")
    assert codes(report) == {"zip.bad_member_name"}


def test_directory_entry_with_content(scanner: Scanner) -> None:
    report = scanner.scan_bytes(_Zip([_Member("dir/", HOSTILE)]).build(), "outer.zip")
    assert codes(report) == {"zip.bad_member_name"}


def test_data_before_the_archive_that_is_not_a_zip_header(scanner: Scanner) -> None:
    report = scanner.scan_bytes(b"JUNK" + zip_bytes([("inner.pkl", HOSTILE)]), "outer.zip")
    assert report.format is ArtifactFormat.UNKNOWN
    assert codes(report) == {"polyglot.zip"}


def test_data_before_the_archive_that_starts_like_one(scanner: Scanner) -> None:
    data = _two(before=b"PK\x03\x04" + b"\0" * 40).build()
    report = scanner.scan_bytes(data, "outer.zip")
    assert report.format is ArtifactFormat.ZIP
    assert "zip.hidden_data" in codes(report)


def test_data_between_members(scanner: Scanner) -> None:
    archive = _Zip([_Member("a.txt", b"hello", after=HOSTILE), _Member("b.txt", b"world")])
    report = scanner.scan_bytes(archive.build(), "outer.zip")
    assert codes(report) == {"zip.hidden_data"}
    assert report.findings[0].offset == 30 + len("a.txt") + len("hello")


def test_data_before_the_central_directory(scanner: Scanner) -> None:
    report = scanner.scan_bytes(_two(before_cd=HOSTILE).build(), "outer.zip")
    assert codes(report) == {"zip.hidden_data"}


def test_data_after_the_end_record(scanner: Scanner) -> None:
    data = _two(trailing=b"TRAILING").build()
    report = scanner.scan_bytes(data, "outer.zip")
    assert codes(report) == {"zip.trailing_data"}
    assert report.findings[0].offset == len(data) - 8 - 22


def test_archive_comment(scanner: Scanner) -> None:
    data = zip_bytes([("a.txt", b"x")], comment=b"a comment")
    report = scanner.scan_bytes(data, "outer.zip")
    assert codes(report) == {"zip.comment"}
    assert report.findings[0].offset == len(data) - len(b"a comment")


def test_overlapping_members(scanner: Scanner) -> None:
    """Member b's local header and data sit inside member a's data: two names, one range."""
    inner = _Zip([_Member("b.txt", b"payload")])
    raw = inner.build()
    local_b = raw[: raw.index(b"PK\x01\x02")]
    archive = _Zip(
        [
            _Member("a.bin", local_b),
            _Member("b.txt", b"payload", local_offset=30 + len("a.bin")),
        ]
    )
    data = archive.build()
    with zipfile.ZipFile(io.BytesIO(data)) as check:
        assert check.read("b.txt") == b"payload"
    report = scanner.scan_bytes(data, "outer.zip")
    assert "zip.overlapping_members" in codes(report)


def test_member_running_into_the_central_directory(scanner: Scanner) -> None:
    data = bytearray(_Zip([_Member("a.txt", b"hello")]).build())
    # local header and directory agree: 13 bytes of data, but only 5 precede the directory
    struct.pack_into("<L", data, 18, 13)
    cd = data.index(b"PK\x01\x02")
    struct.pack_into("<L", data, cd + 20, 13)
    report = scanner.scan_bytes(bytes(data), "outer.zip")
    assert [(f.code, f.offset) for f in report.findings] == [("zip.overlapping_members", cd)]


def test_end_record_member_count_disagrees(scanner: Scanner) -> None:
    report = scanner.scan_bytes(_two(count=1).build(), "outer.zip")
    assert codes(report) == {"zip.malformed"}


@pytest.mark.parametrize("method", [1, 6, 9, 93, 95, 98, 99])
def test_unsupported_compression(scanner: Scanner, method: int) -> None:
    data = _Zip([_Member("a.pkl", HOSTILE, method=method)]).build()
    assert located(scanner.scan_bytes(data, "outer.zip")) == {
        ("outer.zip", "zip.unsupported_compression")
    }


def test_data_that_is_not_what_its_method_says(scanner: Scanner) -> None:
    data = _Zip([_Member("a.txt", b"hello world", method=zipfile.ZIP_LZMA)]).build()
    assert located(scanner.scan_bytes(data, "outer.zip")) == {("outer.zip!a.txt", "zip.bad_crc")}


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_corrupt_compressed_member_is_a_finding(scanner: Scanner, method: int) -> None:
    """Corrupt deflate/bzip2 data used to escape as zlib.error / OSError (a crash from
    `scan_bytes`, "could not scan" from `scan_path`) instead of a finding."""
    payload = np.random.default_rng(1).bytes(3000).hex().encode()
    data = bytearray(zip_bytes([("a.txt", payload)], method))
    start = 30 + len("a.txt") + 8
    data[start : start + 40] = bytes(b ^ 0xFF for b in data[start : start + 40])
    report = scanner.scan_bytes(bytes(data), "outer.zip")
    assert {f.path for f in report.findings} == {"outer.zip!a.txt"}
    assert codes(report) <= {"zip.malformed", "zip.bad_crc"}


def test_too_many_members() -> None:
    data = zip_bytes([(f"f{i}.txt", b"x") for i in range(20)])
    report = Scanner(limits=ScanLimits(max_zip_members=10)).scan_bytes(data, "outer.zip")
    assert codes(report) == {"zip.limit_exceeded"}
    assert Scanner(limits=ScanLimits(max_zip_members=20)).scan_bytes(data, "outer.zip").clean


def test_ratio_bomb() -> None:
    data = zip_bytes([("zeros.bin", bytes(5 << 20))])
    assert len(data) < 10_000
    report = Scanner(limits=ScanLimits(max_zip_ratio=100)).scan_bytes(data, "outer.zip")
    assert codes(report) == {"zip.ratio_exceeded"}
    assert Scanner().scan_bytes(data, "outer.zip").clean  # about 1000x: under the default


def test_declared_size_beyond_the_budget() -> None:
    data = zip_bytes([("a.bin", bytes(700_000)), ("b.bin", bytes(700_000))])
    report = Scanner(limits=ScanLimits(max_decompressed_bytes=1 << 20)).scan_bytes(data, "o.zip")
    assert codes(report) == {"zip.limit_exceeded"}


def test_budget_is_shared_by_nested_archives() -> None:
    """Each level declares less than the budget; together they read more."""
    inner = zip_bytes([("big.bin", bytes(600_000))], zipfile.ZIP_STORED)
    outer = zip_bytes([("inner.zip", inner)], zipfile.ZIP_STORED)
    report = Scanner(limits=ScanLimits(max_decompressed_bytes=1 << 20)).scan_bytes(outer, "o.zip")
    assert located(report) == {("o.zip!inner.zip!big.bin", "zip.limit_exceeded")}


def test_lying_sizes_do_not_escape_the_budget(scanner: Scanner) -> None:
    """A member whose deflate stream expands far beyond its declared size is read only up to
    the declared size, and then fails its CRC."""
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = bomb.compress(bytes(50 << 20)) + bomb.flush()
    data = _Zip([_Member("a.bin", stream, method=8, crc=0, usize=1000)]).build()
    report = scanner.scan_bytes(data, "outer.zip")
    assert report.findings
    assert codes(report) <= {"zip.bad_crc", "zip.malformed"}


@pytest.mark.parametrize("cut", [10, 22, 60, 150])
def test_truncated_zip(scanner: Scanner, cut: int) -> None:
    data = zip_bytes([("inner.pkl", BENIGN), ("b.txt", b"x" * 100)])
    report = scanner.scan_bytes(data[:-cut], "outer.zip")
    assert report.findings
    assert codes(report) <= {"zip.malformed", "zip.bad_local_header", "zip.header_mismatch"}


def test_truncated_to_its_first_bytes(scanner: Scanner) -> None:
    report = scanner.scan_bytes(zip_bytes([("a", b"x" * 1000)])[:50], "outer.zip")
    assert codes(report) == {"zip.malformed"}


@pytest.mark.parametrize("first", [HOSTILE, BENIGN], ids=["hostile", "benign"])
def test_pickle_with_a_zip_appended(scanner: Scanner, first: bytes) -> None:
    report = scanner.scan_bytes(first + zip_bytes([("data.pkl", HOSTILE)]), "model.pkl")
    assert report.format is ArtifactFormat.PICKLE
    assert {"polyglot.zip", "pickle.trailing_data"} <= codes(report)


def test_npy_with_a_zip_appended(scanner: Scanner) -> None:
    npy = io.BytesIO()
    np.save(npy, np.arange(4))
    report = scanner.scan_bytes(npy.getvalue() + zip_bytes([("a", HOSTILE)]), "a.npy")
    assert {"polyglot.zip", "numpy.trailing_data"} <= codes(report)


@pytest.mark.parametrize(
    "prefix", [b"just text\n", b"\x08\x01junk", b""], ids=["text", "bin", "no"]
)
def test_member_that_is_also_a_zip(scanner: Scanner, prefix: bytes) -> None:
    """A member with a zip appended (or prefixed with junk) opens with `zipfile` (skops.io
    does), but used to be checked only by its first bytes: the hidden archive went unseen."""
    hidden = zip_bytes([("schema.json", b"{}"), ("evil.pkl", HOSTILE)])
    report = scanner.scan_bytes(zip_bytes([("model.skops", prefix + hidden)]), "bundle.zip")
    if prefix:
        assert ("bundle.zip!model.skops", "polyglot.zip") in located(report)
    else:  # a plain nested archive: opened and checked
        assert "bundle.zip!model.skops!evil.pkl" in {f.path for f in report.findings}


def test_member_with_pk_bytes_is_not_a_polyglot(scanner: Scanner) -> None:
    data = b"PK\x05\x06" + bytes(18) + b"and then text"
    assert scanner.scan_bytes(zip_bytes([("notes.txt", b"notes " + data)]), "b.zip").clean


# -- 3. PyTorch zips ---------------------------------------------------------------------------


@dataclass
class _Storage:
    key: str
    numel: int


class _Torch:
    """Writes data.pkl the way torch.save does (protocol 2, storages as persistent ids),
    with `torch.FloatStorage` and `torch._utils._rebuild_tensor_v2` faked for the pickler."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        torch = types.ModuleType("torch")
        utils = types.ModuleType("torch._utils")
        storage = type("FloatStorage", (), {"__module__": "torch"})
        other = type("Linear", (), {"__module__": "torch"})

        def _rebuild_tensor_v2(*args: Any) -> None:  # never called
            raise AssertionError

        _rebuild_tensor_v2.__module__ = "torch._utils"
        _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
        torch.FloatStorage = storage  # type: ignore[attr-defined]
        torch.Linear = other  # type: ignore[attr-defined]
        torch._utils = utils  # type: ignore[attr-defined]
        utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "torch", torch)
        monkeypatch.setitem(sys.modules, "torch._utils", utils)
        self.storage_type: Any = storage
        self.other_type: Any = other
        self.rebuild = _rebuild_tensor_v2

    def tensor(self, key: str, shape: tuple[int, ...]) -> Any:
        numel = int(np.prod(shape))
        stride = tuple(int(np.prod(shape[i + 1 :])) for i in range(len(shape)))
        rebuild = self.rebuild
        storage = _Storage(key, numel)

        class Tensor:
            def __reduce__(self) -> tuple[Any, ...]:
                return (rebuild, (storage, 0, shape, stride, False, collections.OrderedDict()))

        return Tensor()

    def dumps(self, obj: Any, pid: Callable[[_Storage], Any] | None = None) -> bytes:
        storage_type = self.storage_type

        def default(s: _Storage) -> Any:
            return ("storage", storage_type, s.key, "cpu", s.numel)

        make = pid or default

        class Pickler(pickle.Pickler):
            def persistent_id(self, obj: Any) -> Any:
                return make(obj) if isinstance(obj, _Storage) else None

        out = io.BytesIO()
        Pickler(out, protocol=2).dump(obj)
        return out.getvalue()

    def checkpoint(self, **extra: bytes) -> dict[str, bytes]:
        state = collections.OrderedDict(
            weight=self.tensor("0", (2, 3)), bias=self.tensor("1", (3,))
        )
        members = {
            "archive/data.pkl": self.dumps(state),
            "archive/byteorder": b"little",
            "archive/data/0": bytes(24),
            "archive/data/1": bytes(12),
            "archive/version": b"3\n",
            "archive/.data/serialization_id": b"1234567890",
        }
        members.update(extra)
        return members


@pytest.fixture
def torch(monkeypatch: pytest.MonkeyPatch) -> _Torch:
    return _Torch(monkeypatch)


def _pt(members: dict[str, bytes]) -> bytes:
    return zip_bytes(list(members.items()), zipfile.ZIP_STORED)


def test_benign_torch_checkpoint(scanner: Scanner, torch: _Torch) -> None:
    report = scanner.scan_bytes(_pt(torch.checkpoint()), "model.bin")
    assert (report.format, report.findings) == (ArtifactFormat.PYTORCH_ZIP, ())


def test_torch_checkpoint_under_another_prefix(scanner: Scanner, torch: _Torch) -> None:
    members = {k.replace("archive/", "resnet/"): v for k, v in torch.checkpoint().items()}
    report = scanner.scan_bytes(_pt(members), "model.pt")
    assert (report.format, report.findings) == (ArtifactFormat.PYTORCH_ZIP, ())


def test_hostile_data_pkl(scanner: Scanner, torch: _Torch) -> None:
    members = torch.checkpoint()
    members["archive/data.pkl"] = torch.dumps({"w": torch.tensor("0", (2, 3)), "x": _Hostile()})
    del members["archive/data/1"]
    report = scanner.scan_bytes(_pt(members), "model.pt")
    assert report.format is ArtifactFormat.PYTORCH_ZIP
    assert pickle_paths(report) == {"model.pt!archive/data.pkl"}


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("archive/extra.txt", "zip.unexpected_member"),
        ("archive/data/7", "zip.unexpected_member"),
        ("archive/code/__torch__/model.py", "pytorch.torchscript"),
        ("archive/constants.pkl", "pytorch.torchscript"),
        ("archive/extra/meta.json", "pytorch.torchscript"),
        ("archive/.data/ts_code/0/data.pkl", "pytorch.torchscript"),
    ],
)
def test_torch_members_that_do_not_belong(
    scanner: Scanner, torch: _Torch, name: str, code: str
) -> None:
    report = scanner.scan_bytes(_pt(torch.checkpoint(**{name: b"x"})), "model.pt")
    assert located(report) == {(f"model.pt!{name}", code)}


def test_torch_missing_storage(scanner: Scanner, torch: _Torch) -> None:
    members = torch.checkpoint()
    del members["archive/data/1"]
    report = scanner.scan_bytes(_pt(members), "model.pt")
    assert located(report) == {("model.pt", "pytorch.missing_storage")}
    assert "'1'" in report.findings[0].reason


def test_torch_storage_is_raw_bytes_but_secret_scanned(scanner: Scanner, torch: _Torch) -> None:
    members = torch.checkpoint()
    members["archive/data/0"] = HOSTILE[:24]  # bytes a loader never unpickles
    assert scanner.scan_bytes(_pt(members), "model.pt").clean
    members["archive/data/0"] = b"ghp_" + b"A1b2C3d4" * 4 + b"wxyz"
    report = scanner.scan_bytes(_pt(members), "model.pt")
    assert ("model.pt!archive/data/0", "secret.github_token") in located(report)


@pytest.mark.parametrize(
    "pid",
    [
        lambda t, s: ("storage", t, s.key, "cpu"),
        lambda t, s: ("storage", t, s.key, "cpu", s.numel, 0),
        lambda t, s: ("module", t, s.key, "cpu", s.numel),
        lambda t, s: ("storage", dict, s.key, "cpu", s.numel),
        lambda t, s: ("storage", "FloatStorage", s.key, "cpu", s.numel),
        lambda t, s: ("storage", t, 0, "cpu", s.numel),
        lambda t, s: ["storage", t, s.key, "cpu", s.numel],
        lambda t, s: s.key,
    ],
    ids=["short", "long", "not-storage", "not-a-storage-type", "type-as-str", "int-key",
         "list", "str"],
)  # fmt: skip
def test_torch_persistent_id_of_the_wrong_shape(
    scanner: Scanner, torch: _Torch, pid: Callable[[Any, _Storage], Any]
) -> None:
    members = torch.checkpoint()
    storage_type = torch.storage_type
    members["archive/data.pkl"] = torch.dumps(
        {"w": torch.tensor("0", (2, 3))}, lambda s: pid(storage_type, s)
    )
    del members["archive/data/1"]
    report = scanner.scan_bytes(_pt(members), "model.pt")
    assert report.findings
    assert {f.path for f in report.findings} <= {
        "model.pt!archive/data.pkl",
        "model.pt!archive/data/0",
    }
    assert "pytorch.bad_persistent_id" in codes(report)


def test_torch_storage_type_that_is_not_allowed(scanner: Scanner, torch: _Torch) -> None:
    members = torch.checkpoint()
    other = torch.other_type
    members["archive/data.pkl"] = torch.dumps(
        {"w": torch.tensor("0", (2, 3))}, lambda s: ("storage", other, s.key, "cpu", s.numel)
    )
    del members["archive/data/1"]
    report = scanner.scan_bytes(_pt(members), "model.pt")
    assert {"pickle.global_not_allowed", "pytorch.bad_persistent_id"} <= codes(report)
    assert "torch.Linear" in " ".join(f.reason for f in report.findings)


def test_torch_layout_with_two_prefixes_is_a_plain_zip(scanner: Scanner, torch: _Torch) -> None:
    """Not a PyTorch layout: members are checked as files, so BINPERSID is a finding."""
    report = scanner.scan_bytes(_pt(torch.checkpoint(**{"other/x.txt": b"x"})), "model.pt")
    assert report.format is ArtifactFormat.ZIP
    assert "pickle.persistent_id" in codes(report)


def test_torch_mismatched_name_cannot_smuggle_data_pkl(scanner: Scanner, torch: _Torch) -> None:
    members = torch.checkpoint()
    hostile = torch.dumps({"x": _Hostile()})
    archive = _Zip(
        [_Member(k, v) for k, v in members.items() if k != "archive/data.pkl"]
        + [_Member("archive/data.pkl", members["archive/data.pkl"], local_name="archive/data.pkx")]
        + [_Member("archive/data.pkx", hostile, local_name="archive/data.pkl")]
    )
    report = scanner.scan_bytes(archive.build(), "model.pt")
    assert "zip.header_mismatch" in codes(report)


# -- 4. skops ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def skops_files() -> dict[str, bytes]:
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    forest = RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0).fit(x, y)
    return {
        "pipeline": sio.dumps(pipeline),
        "forest": sio.dumps(forest),
        "custom": sio.dumps(_CustomScaler().fit(x)),
    }


def _custom_base() -> type:
    from sklearn.preprocessing import StandardScaler

    return StandardScaler


class _CustomScaler(_custom_base()):  # type: ignore[misc]
    """A type skops does not trust (its module is this test module)."""


def _rewrite(
    data: bytes,
    schema: Callable[[bytes], bytes] = lambda s: s,
    extra: tuple[tuple[str, bytes], ...] = (),
) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in source.namelist():
            content = source.read(name)
            archive.writestr(name, schema(content) if name == "schema.json" else content)
        for name, content in extra:
            archive.writestr(name, content)
    return out.getvalue()


def test_skops_pipeline_is_clean(scanner: Scanner, skops_files: dict[str, bytes]) -> None:
    report = scanner.scan_bytes(skops_files["pipeline"], "model.bin")
    assert (report.format, report.findings) == (ArtifactFormat.SKOPS, ())


def test_skops_forest_with_an_allow_listed_type_is_clean(
    scanner: Scanner, skops_files: dict[str, bytes]
) -> None:
    import skops.io as sio

    assert "sklearn.tree._tree.Tree" in sio.get_untrusted_types(data=skops_files["forest"])
    assert scanner.allowlist.allows_skops_type("sklearn.tree._tree.Tree")
    report = scanner.scan_bytes(skops_files["forest"], "forest.skops")
    assert (report.format, report.findings) == (ArtifactFormat.SKOPS, ())


@pytest.mark.parametrize(
    ("module", "cls"), [("os", "system"), ("__main__", "Evil"), ("builtins", "eval")]
)
def test_skops_schema_naming_an_untrusted_type(
    scanner: Scanner, skops_files: dict[str, bytes], module: str, cls: str
) -> None:
    def retype(raw: bytes) -> bytes:
        schema = json.loads(raw)
        schema["__module__"], schema["__class__"] = module, cls
        return json.dumps(schema).encode()

    report = scanner.scan_bytes(_rewrite(skops_files["pipeline"], retype), "m.skops")
    assert report.format is ArtifactFormat.SKOPS
    assert codes(report) == {"skops.untrusted_type"}
    assert f"{module}.{cls}" in report.findings[0].reason


def test_skops_dump_of_a_custom_class(scanner: Scanner, skops_files: dict[str, bytes]) -> None:
    report = scanner.scan_bytes(skops_files["custom"], "m.skops")
    assert codes(report) == {"skops.untrusted_type"}
    assert "_CustomScaler" in report.findings[0].reason


@pytest.mark.parametrize("name", ["evil.pkl", "sub/a.npy", "code.py", "schema.json.bak"])
def test_skops_unexpected_member(
    scanner: Scanner, skops_files: dict[str, bytes], name: str
) -> None:
    data = _rewrite(skops_files["pipeline"], extra=((name, b"x"),))
    report = scanner.scan_bytes(data, "m.skops")
    assert located(report) == {(f"m.skops!{name}", "zip.unexpected_member")}


def test_skops_member_holding_a_pickle(scanner: Scanner, skops_files: dict[str, bytes]) -> None:
    data = _rewrite(skops_files["pipeline"], extra=(("123.npy", HOSTILE),))
    report = scanner.scan_bytes(data, "m.skops")
    assert pickle_paths(report) == {"m.skops!123.npy"}


@pytest.mark.parametrize(
    "schema",
    [
        lambda s: s[:-5],
        lambda s: b"[1, 2]",
        lambda s: b'{"a": 1}',
        lambda s: b"\xff\xfe",
        lambda s: json.dumps({**json.loads(s), "protocol": 999}).encode(),
    ],
    ids=["cut", "list", "no-nodes", "binary", "protocol"],
)
def test_skops_corrupt_schema(
    scanner: Scanner, skops_files: dict[str, bytes], schema: Callable[[bytes], bytes]
) -> None:
    report = scanner.scan_bytes(_rewrite(skops_files["pipeline"], schema), "m.skops")
    assert report.format is ArtifactFormat.SKOPS
    assert codes(report) == {"skops.malformed"}


def test_skops_too_large(skops_files: dict[str, bytes]) -> None:
    data = skops_files["pipeline"]
    report = Scanner(limits=ScanLimits(max_skops_bytes=1000)).scan_bytes(data, "m.skops")
    assert codes(report) == {"skops.limit_exceeded"}
