"""What the registry hands out (frozen records) and the input checks every entry point shares.

Records carry ids, names and digests only; never artifact bytes or key material.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from bastion.core.errors import InvalidInput

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
ALIAS = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
TAG_KEY = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")
PURPOSE = re.compile(r"^[a-z][a-z0-9_.-]{0,127}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
MLBOM_PATH = "bastion.mlbom.cdx.json"
MAX_JSON_BYTES = 64 * 1024
MAX_PATH = 1024


class Classification(StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"


class LineageRole(StrEnum):
    TRAINING = "training"
    EVALUATION = "evaluation"
    VALIDATION = "validation"


class VersionStatus(StrEnum):
    """Where a version is in its life. Later lifecycle stages (approved, deployed) are set by
    the policy and deploy layers; the registry itself moves only between these."""

    REGISTERED = "registered"
    DEPRECATED = "deprecated"
    ARCHIVED = "archived"


@dataclass(frozen=True, slots=True)
class Dataset:
    id: str
    name: str
    version: int
    owner: str
    description: str
    purposes: tuple[str, ...]
    classification: Classification
    retention_days: int | None
    expires_at: datetime | None
    legal_hold: bool
    schema: tuple[Mapping[str, Any], ...]
    digest: str
    size: int | None
    source: str | None
    stored: bool
    status: str
    created_at: datetime
    created_by: str
    tags: Mapping[str, str]

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    name: str
    owner: str
    custodian: str | None
    description: str
    intended_use: str
    purpose: str | None
    created_at: datetime
    created_by: str
    aliases: Mapping[str, int]
    tags: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ArtifactFile:
    path: str
    role: str
    format: str
    size: int
    digest: str


@dataclass(frozen=True, slots=True)
class LineageLink:
    """One edge of the lineage graph: model version ← dataset version, in a role."""

    model: str
    model_version: int
    version_id: str
    dataset: str
    dataset_version: int
    dataset_id: str
    dataset_digest: str
    role: LineageRole
    classification: Classification


@dataclass(frozen=True, slots=True)
class ModelVersion:
    id: str
    model: str
    model_id: str
    version: int
    status: VersionStatus
    format: str
    artifact_digest: str
    artifact_size: int
    files: tuple[ArtifactFile, ...]
    description: str
    metrics: Mapping[str, float]
    parameters: Mapping[str, Any]
    code_ref: str | None
    environment: Mapping[str, Any]
    input_contract: Mapping[str, Any] | None
    output_contract: Mapping[str, Any] | None
    model_card: Mapping[str, Any]
    scan: Mapping[str, Any]
    mlbom_digest: str
    lineage: tuple[LineageLink, ...]
    aliases: tuple[str, ...]
    tags: Mapping[str, str]
    signed: bool
    created_at: datetime
    created_by: str
    # The training data's bins and label distribution (`bastion.registry.profile`), or None.
    reference_profile: Mapping[str, Any] | None = None

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.version}"


@dataclass(frozen=True, slots=True)
class SignerKey:
    id: str
    team: str
    name: str
    fingerprint: str
    public_key_pem: str
    added_at: datetime
    added_by: str
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class SignatureRecord:
    id: str
    version_id: str
    key_fingerprint: str
    signer_key_id: str
    team: str
    signed_at: datetime
    signed_by: str


@dataclass(frozen=True, slots=True)
class VerificationResult:
    """Outcome of `bastion model verify`: the stored bytes re-hashed and the bundle checked
    against a trusted, unrevoked signer key."""

    valid: bool
    model: str
    version: int
    signature_id: str | None
    signer_team: str | None
    key_fingerprint: str | None
    files_checked: int
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DatasetRef:
    """`name@version:role` as given on a command line or in a request."""

    name: str
    version: int | None
    role: LineageRole

    @classmethod
    def parse(cls, text: str) -> DatasetRef:
        """`iris`, `iris@2`, `iris@2:evaluation`, `iris:validation`."""
        body, _, role_text = text.partition(":")
        name, _, version_text = body.partition("@")
        check_name(name, "dataset")
        version = None
        if version_text:
            if not version_text.isdigit() or int(version_text) < 1:
                raise InvalidInput(
                    f"bad dataset reference {text!r}: version must be a positive integer",
                    code="registry.bad_reference",
                )
            version = int(version_text)
        return cls(name=name, version=version, role=lineage_role(role_text or "training"))


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidInput(
            f"bad {what} name {name!r}: 1-128 of a-z 0-9 . _ -, starting alphanumeric",
            code="registry.bad_name",
        )
    return name


def check_alias(alias: str) -> str:
    if not ALIAS.match(alias) or alias.isdigit():
        raise InvalidInput(
            f"bad alias {alias!r}: 1-64 of a-z 0-9 -, starting with a letter",
            code="registry.bad_alias",
        )
    return alias


def check_text(value: str | None, what: str, limit: int = 2000) -> str:
    text = value or ""
    if len(text) > limit or any(ord(c) < 32 and c not in "\n\t" for c in text):
        raise InvalidInput(
            f"{what}: at most {limit} printable characters", code="registry.bad_text"
        )
    return text


def classification(value: str) -> Classification:
    try:
        return Classification(value)
    except ValueError:
        raise InvalidInput(
            f"classification must be one of {', '.join(c.value for c in Classification)}, "
            f"not {value!r}",
            code="registry.bad_classification",
        ) from None


def lineage_role(value: str) -> LineageRole:
    try:
        return LineageRole(value)
    except ValueError:
        raise InvalidInput(
            f"dataset role must be one of {', '.join(r.value for r in LineageRole)}, not {value!r}",
            code="registry.bad_reference",
        ) from None


def check_purposes(purposes: Sequence[str]) -> list[str]:
    result = sorted(set(purposes))
    if not result or len(result) > 32 or not all(PURPOSE.match(p) for p in result):
        raise InvalidInput(
            "purposes: 1-32 of a-z 0-9 _ . -, starting with a letter (e.g. fraud-detection)",
            code="registry.bad_purpose",
        )
    return result


def check_digest(value: str) -> str:
    if not DIGEST.match(value):
        raise InvalidInput(
            f"bad digest {value!r}: expected sha256:<64 lowercase hex>", code="registry.bad_digest"
        )
    return value


def check_tags(tags: Mapping[str, str]) -> dict[str, str]:
    if len(tags) > 64:
        raise InvalidInput("at most 64 tags", code="registry.bad_tag")
    for key, value in tags.items():
        if not TAG_KEY.match(key) or not isinstance(value, str) or len(value) > 256:
            raise InvalidInput(
                f"bad tag {key!r}: key of a-z 0-9 _ . : - (max 64), value up to 256 characters",
                code="registry.bad_tag",
            )
    return dict(tags)


def check_json(value: Mapping[str, Any] | None, what: str) -> dict[str, Any] | None:
    """A JSON object of bounded size (metrics, parameters, contracts, environment)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{what} must be a JSON object", code="registry.bad_metadata")
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidInput(
            f"{what} is not plain JSON: {error}", code="registry.bad_metadata"
        ) from None
    if len(encoded) > MAX_JSON_BYTES:
        raise InvalidInput(
            f"{what} is {len(encoded)} bytes of JSON; the limit is {MAX_JSON_BYTES}",
            code="registry.bad_metadata",
        )
    result: dict[str, Any] = json.loads(encoded)
    return result


def check_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    checked = check_json(metrics, "metrics") or {}
    for key, value in checked.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(
                f"metric {key!r} must be a number, not {type(value).__name__}",
                code="registry.bad_metadata",
            )
    return {key: float(value) for key, value in checked.items()}


def check_artifact_path(path: str) -> str:
    """A relative posix path inside a model directory; anything that could escape it, or
    that different filesystems would read differently, is refused."""
    bad = (
        not path
        or len(path) > MAX_PATH
        or path.startswith("/")
        or "\\" in path
        or any(ord(c) < 32 or ord(c) == 127 for c in path)
        or any(part in ("", ".", "..") for part in path.split("/"))
        or any(len(part.encode()) > 255 for part in path.split("/"))
        or (len(path) > 1 and path[1] == ":")
    )
    if bad:
        raise InvalidInput(
            f"bad artifact path {path!r}: relative, '/'-separated, no '.', '..' or empty "
            "parts, no control characters",
            code="registry.bad_path",
        )
    if path == MLBOM_PATH:
        raise InvalidInput(
            f"{MLBOM_PATH} is reserved for the ML-BOM Bastion generates",
            code="registry.bad_path",
        )
    return path
