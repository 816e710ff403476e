"""The dataset inventory: who owns a dataset, what it may be used for, how sensitive it is,
how long it may be kept, what its bytes are (digest), and — when uploaded — a sealed copy.

Versions are numbered per name. Registering bytes identical to the latest version is refused
(`registry.dataset_unchanged`) so that lineage never points at two names for one content.
"""

from __future__ import annotations

import csv
import io
import os
import stat
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bastion.core.clock import Clock
from bastion.core.errors import Conflict, InvalidInput, NotFound, TooLarge
from bastion.core.ids import new_id
from bastion.identity import Authorizer, Caller, Permission
from bastion.ledger import AuditLog
from bastion.policy import PolicyService
from bastion.registry.records import (
    Classification,
    Dataset,
    check_digest,
    check_name,
    check_purposes,
    check_tags,
    check_text,
    classification,
)
from bastion.registry.staging import Staging
from bastion.store.datasets import dataset_doc, find_dataset
from bastion.store.db import Database
from bastion.store.sealed import SealedBlobStore
from bastion.store.tables import DatasetRow, RegistryTagRow

_TYPES = ("integer", "number", "boolean", "string")
MAX_SCHEMA_COLUMNS = 4096
_SAMPLE_ROWS = 1000


class DatasetService:
    def __init__(
        self,
        *,
        database: Database,
        audit: AuditLog,
        authorizer: Authorizer,
        blobs: SealedBlobStore,
        staging: Staging,
        clock: Clock,
        max_bytes: int,
        policy: PolicyService,
    ) -> None:
        self._policy = policy
        self._db = database
        self._audit = audit
        self._authz = authorizer
        self._blobs = blobs
        self._staging = staging
        self._clock = clock
        self._max_bytes = max_bytes

    def register(
        self,
        caller: Caller,
        name: str,
        *,
        classification_: str,
        purposes: Sequence[str],
        owner: str | None = None,
        description: str = "",
        retention_days: int | None = None,
        schema: Sequence[Mapping[str, Any]] | None = None,
        source: str | None = None,
        digest: str | None = None,
        file: Path | None = None,
        upload_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Dataset:
        """Add a dataset version. Give exactly one of `file` (a local file, sealed into the
        blob store), `upload_id` (a staged upload holding one file) or `digest` (the bytes
        live elsewhere; only their digest is recorded)."""
        self._authz.authorize(caller, Permission.DATASET_WRITE)
        check_name(name, "dataset")
        level = classification(classification_)
        purpose_list = check_purposes(purposes)
        owner_name = check_text(owner or caller.name, "owner", 128) or caller.name
        check_text(description, "description")
        check_text(source, "source", 1024)
        tag_map = check_tags(tags or {})
        if retention_days is not None and not 1 <= retention_days <= 36500:
            raise InvalidInput(
                "retention must be between 1 and 36500 days", code="registry.bad_retention"
            )
        given = [x is not None for x in (file, upload_id, digest)]
        if sum(given) != 1:
            raise InvalidInput(
                "give exactly one of a file, an upload or a digest",
                code="registry.bad_dataset_source",
            )
        checked_schema = _check_schema(schema) if schema is not None else None
        dataset_id = new_id("ds")
        blob_key = f"datasets/{dataset_id}"
        size: int | None = None
        stored = False
        try:
            if digest is not None:
                content_digest = check_digest(digest)
            else:
                path = file if file is not None else self._single_staged(caller, upload_id)
                with _open_regular(path) as src:
                    limited = LimitedReader(src, self._max_bytes, "registry.dataset_too_large")
                    sealed = self._blobs.put(blob_key, limited)
                stored = True
                content_digest, size = str(sealed.plaintext_digest), sealed.plaintext_size
                if checked_schema is None:
                    checked_schema = _infer_csv_schema(path)
            dataset = self._insert(
                caller,
                dataset_id,
                name,
                level=level,
                purposes=purpose_list,
                owner=owner_name,
                description=description,
                retention_days=retention_days,
                schema=checked_schema or [],
                source=source,
                digest=content_digest,
                size=size,
                blob_key=blob_key if stored else None,
                tags=tag_map,
                upload_id=upload_id,
            )
        except BaseException:
            if stored:
                self._blobs.shred(blob_key)
            raise
        if upload_id is not None:
            self._staging.discard(upload_id)
        return dataset

    def _single_staged(self, caller: Caller, upload_id: str | None) -> Path:
        assert upload_id is not None
        tree = self._staging.claim(caller, upload_id)
        if len(tree.files) != 1:
            raise InvalidInput(
                f"a dataset upload holds exactly one file, not {len(tree.files)}",
                code="registry.bad_dataset_source",
            )
        return tree.root / tree.files[0].path

    def _insert(
        self,
        caller: Caller,
        dataset_id: str,
        name: str,
        *,
        level: Classification,
        purposes: list[str],
        owner: str,
        description: str,
        retention_days: int | None,
        schema: list[dict[str, Any]],
        source: str | None,
        digest: str,
        size: int | None,
        blob_key: str | None,
        tags: dict[str, str],
        upload_id: str | None,
    ) -> Dataset:
        now = self._clock.now()
        with self._policy.enforcing(caller), self._db.transaction() as session:
            latest = session.scalars(
                sa.select(DatasetRow)
                .where(DatasetRow.name == name)
                .order_by(DatasetRow.version.desc())
                .limit(1)
                .with_for_update()
            ).first()
            if latest is not None and latest.digest == digest:
                raise Conflict(
                    f"dataset {name}@{latest.version} already has these bytes ({digest})",
                    code="registry.dataset_unchanged",
                    details={"version": latest.version},
                )
            row = DatasetRow(
                id=dataset_id,
                name=name,
                version=(latest.version + 1) if latest else 1,
                owner=owner,
                description=description,
                purposes=purposes,
                classification=level.value,
                retention_days=retention_days,
                expires_at=now + timedelta(days=retention_days) if retention_days else None,
                legal_hold=False,
                schema=schema,
                digest=digest,
                size=size,
                source=source,
                blob_key=blob_key,
                status="active",
                created_at=now,
                created_by=caller.principal_id,
            )
            _, decision_id = self._policy.decide(
                session,
                caller,
                "dataset_register",
                dataset_id,
                self._policy.envelope("dataset_register", caller, dataset=dataset_doc(row, now)),
            )
            session.add(row)
            session.add_all(
                RegistryTagRow(subject_id=dataset_id, key=k, value=v) for k, v in tags.items()
            )
            if upload_id is not None:
                self._staging.close(session, upload_id, "committed")
            self._audit.append(
                session,
                caller.event(
                    "registry.dataset.registered",
                    dataset_id,
                    {
                        "name": name,
                        "version": row.version,
                        "digest": digest,
                        "classification": level.value,
                        "purposes": purposes,
                        "owner": owner,
                        "retention_days": retention_days,
                        "stored": blob_key is not None,
                        "columns": len(schema),
                        "decision_id": decision_id,
                    },
                ),
            )
            session.flush()
            return dataset_record(row, tags)

    def get(self, caller: Caller, name: str, version: int | None = None) -> Dataset:
        self._authz.authorize(caller, Permission.DATASET_READ)
        with self._db.read() as session:
            return self._get(session, name, version)

    def _get(self, session: Session, name: str, version: int | None) -> Dataset:
        row = find_dataset(session, name, version)
        return dataset_record(row, _tags(session, row.id))

    def list(self, caller: Caller, *, name: str | None = None) -> list[Dataset]:
        """Latest version of every dataset, or every version of `name`."""
        self._authz.authorize(caller, Permission.DATASET_READ)
        with self._db.read() as session:
            query = sa.select(DatasetRow)
            if name is not None:
                query = query.where(DatasetRow.name == name).order_by(DatasetRow.version)
            else:
                newest = (
                    sa.select(DatasetRow.name, sa.func.max(DatasetRow.version).label("v"))
                    .group_by(DatasetRow.name)
                    .subquery()
                )
                query = query.join(
                    newest, (DatasetRow.name == newest.c.name) & (DatasetRow.version == newest.c.v)
                ).order_by(DatasetRow.name)
            rows = session.scalars(query).all()
            if name is not None and not rows:
                raise NotFound(f"no dataset {name}", code="registry.dataset_not_found")
            return [dataset_record(r, _tags(session, r.id)) for r in rows]


def dataset_record(row: DatasetRow, tags: Mapping[str, str]) -> Dataset:
    return Dataset(
        id=row.id,
        name=row.name,
        version=row.version,
        owner=row.owner,
        description=row.description,
        purposes=tuple(row.purposes),
        classification=Classification(row.classification),
        retention_days=row.retention_days,
        expires_at=row.expires_at,
        legal_hold=row.legal_hold,
        schema=tuple(row.schema),
        digest=row.digest,
        size=row.size,
        source=row.source,
        stored=row.blob_key is not None,
        status=row.status,
        created_at=row.created_at,
        created_by=row.created_by,
        tags=dict(tags),
    )


def _tags(session: Session, subject_id: str) -> dict[str, str]:
    rows = session.scalars(
        sa.select(RegistryTagRow).where(RegistryTagRow.subject_id == subject_id)
    ).all()
    return {r.key: r.value for r in sorted(rows, key=lambda r: r.key)}


class _open_regular:  # noqa: N801 - a context manager used like open()
    """Open a regular file without following a symlink at the last component."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: io.BufferedReader | None = None

    def __enter__(self) -> io.BufferedReader:
        try:
            fd = os.open(self._path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as error:
            raise InvalidInput(
                f"cannot read {self._path}: {error.strerror}", code="registry.bad_source"
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise InvalidInput(f"{self._path} is not a regular file", code="registry.bad_source")
        self._file = os.fdopen(fd, "rb")
        return self._file

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()


def _check_schema(schema: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if not isinstance(schema, Sequence) or len(schema) > MAX_SCHEMA_COLUMNS:
        raise InvalidInput(
            f"schema must be a list of at most {MAX_SCHEMA_COLUMNS} columns",
            code="registry.bad_schema",
        )
    result, seen = [], set()
    for column in schema:
        if not isinstance(column, Mapping) or set(column) - {"name", "type", "description"}:
            raise InvalidInput(
                "each schema column is {name, type[, description]}", code="registry.bad_schema"
            )
        name, kind = column.get("name"), column.get("type")
        if not isinstance(name, str) or not 0 < len(name) <= 256 or name in seen:
            raise InvalidInput(
                f"schema column names must be unique strings of 1-256 characters: {name!r}",
                code="registry.bad_schema",
            )
        if kind not in _TYPES:
            raise InvalidInput(
                f"column {name!r}: type must be one of {', '.join(_TYPES)}",
                code="registry.bad_schema",
            )
        seen.add(name)
        entry = {"name": name, "type": kind}
        if "description" in column:
            entry["description"] = check_text(str(column["description"]), "description", 1000)
        result.append(entry)
    return result


def _infer_csv_schema(path: Path) -> list[dict[str, Any]] | None:
    """Column names and types from a CSV file's header and first rows; None if not CSV."""
    try:
        with path.open("r", encoding="utf-8", newline="") as text:
            sample = text.read(64 * 1024)
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
            text.seek(0)
            reader = csv.reader(text, dialect)
            header = next(reader)
            rows = [row for _, row in zip(range(_SAMPLE_ROWS), reader, strict=False)]
    except (UnicodeDecodeError, csv.Error, StopIteration, OSError):
        return None
    if not header or len(set(header)) != len(header) or len(header) > MAX_SCHEMA_COLUMNS:
        return None
    if any(len(row) != len(header) for row in rows if row):
        return None
    return [
        {"name": name, "type": _column_type(row[i] for row in rows if row)}
        for i, name in enumerate(header)
    ]


def _column_type(values: Any) -> str:
    kinds = set()
    for value in values:
        if value == "":
            continue
        if value.lower() in ("true", "false"):
            kinds.add("boolean")
            continue
        try:
            int(value)
            kinds.add("integer")
            continue
        except ValueError:
            pass
        try:
            float(value)
            kinds.add("number")
        except ValueError:
            return "string"
    if kinds == {"integer"}:
        return "integer"
    if kinds <= {"integer", "number"} and kinds:
        return "number"
    if kinds == {"boolean"}:
        return "boolean"
    return "string"


class LimitedReader:
    """Reads through to `src`, raising `TooLarge` once more than `limit` bytes came out, so a
    stream is refused while it arrives rather than after it was stored."""

    def __init__(self, src: io.BufferedReader, limit: int, code: str) -> None:
        self._src = src
        self._left = limit
        self._limit = limit
        self._code = code

    def read(self, size: int = -1, /) -> bytes:
        chunk = self._src.read(size if size >= 0 else self._left + 1)
        self._left -= len(chunk)
        if self._left < 0:
            raise TooLarge(f"more than the {self._limit}-byte limit", code=self._code)
        return chunk
