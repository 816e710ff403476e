"""Report types: what was scanned, what was found, under which allow-list version.

These are plain frozen data so the registry can store `ScanReport.to_dict()` next to a model
version and a later reader sees exactly what the decision was based on. Findings carry a
stable machine code and a human reason; a reason names the offending global, member or
secret *kind* and never contains a secret value.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ArtifactFormat(StrEnum):
    """What a file is, decided from its content only (never its name)."""

    ONNX = "onnx"
    SKOPS = "skops"
    SAFETENSORS = "safetensors"
    PICKLE = "pickle"
    JOBLIB = "joblib"
    PYTORCH_ZIP = "pytorch-zip"
    NUMPY = "numpy"
    NUMPY_ZIP = "numpy-zip"
    ZIP = "zip"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Finding:
    """One reason to refuse an artifact.

    `path` is the relative posix name of the file; a member of an archive is named
    `outer.zip!inner/data.pkl` (nested archives chain further `!`). `offset` is the byte
    offset in the stream the rule looked at: the file itself, the decompressed member, or the
    decompressed payload of a compressed joblib file; `None` when the finding concerns the
    whole file or member.
    """

    path: str
    code: str
    reason: str
    offset: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "code": self.code, "reason": self.reason, "offset": self.offset}


@dataclass(frozen=True, slots=True)
class FileReport:
    """One scanned file. `digest` is `sha256:<hex>` of the file bytes, computed on the read
    that was scanned; it is empty for entries that were deliberately not read (symlinks,
    special files)."""

    path: str
    format: ArtifactFormat
    size: int
    digest: str
    findings: tuple[Finding, ...]

    @property
    def clean(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format.value,
            "size": self.size,
            "digest": self.digest,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(frozen=True, slots=True)
class ScanReport:
    """Every file under the scanned path, in sorted order, and the allow-list version used."""

    files: tuple[FileReport, ...]
    allowlist_version: str

    @property
    def clean(self) -> bool:
        """True only when no file has any finding: the registry refuses anything else."""
        return all(f.clean for f in self.files)

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(finding for f in self.files for finding in f.findings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (plain dicts, lists, strings and ints) for storage and `--json`."""
        return {
            "allowlist_version": self.allowlist_version,
            "clean": self.clean,
            "files": [f.to_dict() for f in self.files],
        }


@dataclass(frozen=True, slots=True)
class ScanLimits:
    """Bounds that keep a scan finite in time and memory on hostile input.

    Hitting a bound inside an artifact is a finding (`*.limit_exceeded`): the scanner fails
    closed rather than guessing. Defaults are generous for real models (a 500 MB pickle of
    arrays needs a few dozen opcodes); an operator with unusual artifacts can raise them.
    """

    chunk_size: int = 8 * 1024 * 1024
    max_stack_depth: int = 1_000_000
    max_memo_entries: int = 1_000_000
    max_opcodes: int = 100_000_000
    max_line_bytes: int = 1 << 20
    max_decompressed_bytes: int = 64 * 1024**3
    max_zip_members: int = 10_000
    max_zip_ratio: int = 2_000
    max_nesting_depth: int = 3
    max_header_bytes: int = 100_000_000
    max_onnx_bytes: int = 2 * 1024**3
    max_skops_bytes: int = 1024**3
    max_findings_per_file: int = 1_000
    max_files: int = 1_000_000
