"""Column-level PII scan of a stored dataset: which columns hold personal data, how much,
and what classification the findings call for, recorded in the inventory.

A dataset's sealed CSV is decrypted as a stream (bounded memory, no plaintext on disk), a
deterministic reservoir sample of at most `sample` rows is taken (seeded from the dataset's
digest, so the same bytes give the same sample), and a detector reports, per column, the
share of non-empty values in which it found each entity. The result goes to
`datasets.pii_report` with a `privacy.dataset.scanned` ledger entry. Neither holds a value:
only column names, entity types, shares and counts.

Rules (documented in the report itself as `rules`):

* A column is **sensitive** when a high-risk entity (payment card, national id, bank
  account, key or token; `HIGH_RISK`) is found in at least one value, or any other
  identifying entity in at least `SHARE_THRESHOLD` (10 %) of its non-empty values. Weak
  entities (`WEAK`: dates, URLs) are recorded but never make a column sensitive.
* The **proposed classification** is `restricted` if a sensitive column holds a high-risk
  entity, `confidential` if it holds any other identifying entity (contact data, IPs,
  unknown entity types), and `internal` when nothing sensitive was found (a scan cannot
  prove data public). The declared classification is never changed: the report states
  both and `under_classified` when the findings call for more than was declared.
* Column **names** that suggest personal data (email, phone, ssn, dob, address, name …)
  are a weaker signal: recorded as `name_hint` and listed in `hinted_columns` (named like
  PII, yet no values matched) for a human to review; they change neither `sensitive` nor
  the proposal.

Beside `bastion.supplychain` in the layers: imports `bastion.identity`, `bastion.ledger`,
`bastion.store`, `bastion.core` and the standard library (the detector, `bastion.privacy.pii`,
lazily); never `bastion.registry` or anything above.
"""

from __future__ import annotations

import csv
import hashlib
import io
import queue
import random
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO, Protocol, cast

import bastion
from bastion.core.clock import Clock
from bastion.core.errors import BastionError, InvalidInput, NotFound
from bastion.identity import Authorizer, Caller, Permission
from bastion.ledger import AuditLog
from bastion.store.datasets import find_dataset
from bastion.store.db import Database
from bastion.store.sealed import SealedBlobStore
from bastion.store.tables import DatasetRow

DEFAULT_SAMPLE = 10_000
MAX_SAMPLE = 1_000_000
MAX_COLUMNS = 4096  # as the registry's schema limit
SHARE_THRESHOLD = 0.1
SNIFF_BYTES = 64 * 1024
DELIMITERS = ",;\t|"
LEVELS: tuple[str, ...] = ("public", "internal", "confidential", "restricted")
RANK: Mapping[str, int] = {level: i for i, level in enumerate(LEVELS)}
GONE = frozenset({"deleting", "deleted"})  # dataset statuses of retention's deletion

# Entities one occurrence of which makes a column sensitive and the data restricted:
# payment data, national identifiers, credentials. Names are Presidio's and
# `bastion.privacy.pii`'s own recognizers'.
HIGH_RISK: frozenset[str] = frozenset(
    {
        "CREDIT_CARD",
        "IBAN_CODE",
        "US_BANK_NUMBER",
        "US_SSN",
        "US_ITIN",
        "US_PASSPORT",
        "US_DRIVER_LICENSE",
        "UK_NHS",
        "UK_NINO",
        "ES_NIF",
        "ES_NIE",
        "IT_FISCAL_CODE",
        "IT_DRIVER_LICENSE",
        "IT_VAT_CODE",
        "IT_PASSPORT",
        "IT_IDENTITY_CARD",
        "PL_PESEL",
        "SG_NRIC_FIN",
        "SG_UEN",
        "AU_ABN",
        "AU_ACN",
        "AU_TFN",
        "AU_MEDICARE",
        "IN_PAN",
        "IN_AADHAAR",
        "IN_VEHICLE_REGISTRATION",
        "IN_VOTER",
        "IN_PASSPORT",
        "FI_PERSONAL_IDENTITY_CODE",
        "KR_RRN",
        "NATIONAL_ID",
        "MEDICAL_LICENSE",
        "API_KEY",
        "JWT",
        "SECRET",
        "PRIVATE_KEY",
        "PASSWORD",
        "AWS_ACCESS_KEY",
        "URL_CREDENTIALS",
    }
)
# Recorded, but not identifying on their own.
WEAK: frozenset[str] = frozenset({"DATE_TIME", "URL"})

# Column-name hints: (label, pattern over the name's lower-case `_`-joined tokens; the
# alternatives match whole tokens, and a plain `name` only as the whole column name).
_HINTS: tuple[tuple[str, str], ...] = (
    ("secret", r"password|passwd|pwd|secret|api_?key|apikey|access_?key|token|private_?key"),
    ("payment_card", r"credit_?card|card_?(?:no|num|number)|cc_?(?:no|num|number)|pan|cvv|cvc"),
    ("bank_account", r"iban|bic|swift|account_?(?:no|num|number)|acct|routing_?number"),
    (
        "national_id",
        r"ssn|social_security(?:_number)?|nino|national_?id|passport(?:_?(?:no|number))?"
        r"|tax_?id|itin|nhs(?:_?number)?|aadhaar|pesel|bsn|nif|nie|cpf|driver_?licen[cs]e"
        r"|licen[cs]e_?(?:no|number)|id_?card",
    ),
    ("email", r"e_?mail(?:_?address)?|mail_?address"),
    ("phone", r"phone(?:_?(?:no|num|number))?|telephone|tel|mobile|cell_?phone|fax|msisdn"),
    ("ip_address", r"ip|ip_?address|ipv4|ipv6|client_?ip|remote_?addr"),
    ("date_of_birth", r"dob|birth_?date|date_of_birth|birthday|birth_?day"),
    ("address", r"address|street|addr|post_?code|zip_?code|zip|postal_?code"),
    ("geolocation", r"lat|lon|lng|latitude|longitude|geo_?location"),
    (
        "person_name",
        r"first_?name|last_?name|surname|given_?name|family_?name|full_?name|forename"
        r"|middle_?name|maiden_?name|(?:customer|patient|person|contact|holder|employee)_name",
    ),
    ("username", r"user_?name|login|user_?id"),
    (
        "special_category",
        r"gender|sex|race|ethnicity|religion|diagnosis|health|disability|sexual_?orientation",
    ),
)
_NAME_HINTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("person_name", re.compile(r"^name$")),
    *((label, re.compile(rf"(?:^|_)(?:{pattern})(?:_|$)")) for label, pattern in _HINTS),
)


class ColumnDetector(Protocol):
    """What the scan needs of a PII detector (`bastion.privacy.pii.PiiDetector`)."""

    def scan_values(
        self, values: Iterable[str | None], *, sample: int | None = None
    ) -> dict[str, int]:
        """`{entity: number of values containing it}` over `values` (None values skipped)."""
        ...


# -- reading a CSV -------------------------------------------------------------------------


def not_scannable(message: str) -> InvalidInput:
    return InvalidInput(message, code="privacy.not_scannable")


@dataclass(frozen=True, slots=True)
class CsvTable:
    """A CSV being read: its header and an iterator over its rows (each as long as the
    header; blank lines skipped). Iterating raises `InvalidInput` (`privacy.not_scannable`)
    on a ragged row, a decoding error or malformed CSV."""

    columns: tuple[str, ...]
    rows: Iterator[list[str]]


def read_csv(text: io.TextIOBase) -> CsvTable:
    """Parse CSV text (the delimiter chosen among `, ; TAB |` from the first 64 KiB, a
    comma when unsure; `"` quotes).

    Raises `InvalidInput` (`privacy.not_scannable`) for an empty file, a header with empty
    or duplicate names or more than `MAX_COLUMNS` columns, text that is not UTF-8 (when
    `text` decodes) or is not CSV.
    """
    try:
        sample = text.read(SNIFF_BYTES)
        if sample and not sample.endswith(("\n", "\r")):
            sample += text.readline()  # the delimiter choice and the reader need whole lines
        delimiter = _delimiter(sample)
        reader = csv.reader(_chain(io.StringIO(sample, newline=""), text), delimiter=delimiter)
        header = next((row for row in reader if row), None)
    except UnicodeDecodeError as error:
        raise not_scannable(f"the data is not UTF-8 text ({error.reason})") from None
    except csv.Error as error:
        raise not_scannable(f"the data is not CSV: {error}") from None
    if header is None:
        raise not_scannable("the data is empty: no CSV header")
    if len(header) > MAX_COLUMNS:
        raise not_scannable(f"more than {MAX_COLUMNS} columns")
    for position, name in enumerate(header, start=1):
        if not name.strip():
            raise not_scannable(f"column {position} of the CSV header has no name")
    duplicates = sorted(name for name, n in Counter(header).items() if n > 1)
    if duplicates:
        raise not_scannable(f"duplicate column names in the CSV header: {', '.join(duplicates)}")
    return CsvTable(tuple(header), _rows(reader, len(header)))


def _delimiter(sample: str) -> str:
    """The candidate delimiter that splits the sample's rows into the most columns, all rows
    alike (the last may be cut short by the sample's end); a comma when none does."""
    best, widest = ",", 1
    for candidate in DELIMITERS:
        try:
            rows = [
                r for r in csv.reader(io.StringIO(sample, newline=""), delimiter=candidate) if r
            ]
        except csv.Error:
            continue
        whole = rows[:-1] if len(rows) > 1 else rows
        width = len(rows[0]) if rows else 0
        if width > widest and all(len(r) == width for r in whole):
            best, widest = candidate, width
    return best


def _chain(first: io.StringIO, rest: io.TextIOBase) -> Iterator[str]:
    yield from first
    yield from rest


def _rows(reader: Iterator[list[str]], width: int) -> Iterator[list[str]]:
    try:
        for row in reader:
            if len(row) == width:
                yield row
            elif row:
                line = getattr(reader, "line_num", "?")
                raise not_scannable(
                    f"line {line} has {len(row)} fields where the header has {width}"
                )
    except UnicodeDecodeError as error:
        raise not_scannable(f"the data is not UTF-8 text ({error.reason})") from None
    except csv.Error as error:
        raise not_scannable(f"the data is not CSV: {error}") from None


class _Cancelled(Exception):
    """The reader went away; the decrypting thread stops."""


class _QueueSink:
    def __init__(self, chunks: queue.Queue[bytes | BaseException | None], cancel: threading.Event):
        self._chunks = chunks
        self._cancel = cancel

    def write(self, data: bytes) -> int:
        _put(self._chunks, self._cancel, bytes(data))
        return len(data)


def _put(
    chunks: queue.Queue[bytes | BaseException | None],
    cancel: threading.Event,
    item: bytes | BaseException | None,
) -> None:
    while True:
        if cancel.is_set():
            raise _Cancelled
        try:
            chunks.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


class SealedBlobReader(io.RawIOBase):
    """The plaintext of a sealed blob as a stream, decrypted chunk by chunk in a worker
    thread, so a large dataset is read in bounded memory and never lands on disk in clear.

    Chunks are authenticated one by one; truncation is only detected at the end. So
    nothing read may be acted on until `read` returned end-of-file without raising. Errors
    of the decryption (`crypto.integrity`, `crypto.key_shredded`, `store.blob_not_found`)
    are raised by `read`. Always `close` it (it is a context manager).
    """

    def __init__(self, blobs: SealedBlobStore, key: str, *, depth: int = 4) -> None:
        super().__init__()
        self._chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=depth)
        self._cancel = threading.Event()
        self._pending = memoryview(b"")
        self._finished = False
        self._thread = threading.Thread(
            target=self._decrypt, args=(blobs, key), name="bastion-sealed-reader", daemon=True
        )
        self._thread.start()

    def _decrypt(self, blobs: SealedBlobStore, key: str) -> None:
        try:
            blobs.open_verified(key, cast(BinaryIO, _QueueSink(self._chunks, self._cancel)))
            _put(self._chunks, self._cancel, None)
        except _Cancelled:
            return
        except BaseException as error:  # noqa: BLE001 - handed to the reading thread
            try:
                _put(self._chunks, self._cancel, error)
            except _Cancelled:
                return

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            if self._finished:
                return 0
            item = self._chunks.get()
            if item is None:
                self._finished = True
                return 0
            if isinstance(item, BaseException):
                self._finished = True
                raise item
            self._pending = memoryview(item)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._cancel.set()
            while self._thread.is_alive():
                with suppress(queue.Empty):
                    self._chunks.get(timeout=0.05)
            self._thread.join()
            self._pending = memoryview(b"")
        super().close()


def is_gone(row: DatasetRow) -> bool:
    """Deleted, or being deleted by retention (its data key is being shredded)."""
    return row.deleted_at is not None or row.status in GONE


@contextmanager
def open_dataset_csv(blobs: SealedBlobStore, row: DatasetRow) -> Iterator[CsvTable]:
    """The stored CSV of dataset `row`, read as a stream (see `SealedBlobReader`: act on it
    only after its rows were exhausted without an error).

    Raises `InvalidInput` (`privacy.not_scannable`) if the dataset has no stored copy, was
    deleted (also when its data key turns out to be shredded) or is not CSV; `IntegrityError`
    if the ciphertext was tampered with.
    """
    ref = f"{row.name}@{row.version}"
    if is_gone(row):
        raise not_scannable(f"dataset {ref} was deleted; there is nothing left to read")
    if row.blob_key is None:
        raise not_scannable(
            f"dataset {ref} has no stored copy in Bastion (registered by digest only); "
            "register it with --file to scan it"
        )
    raw = SealedBlobReader(blobs, row.blob_key)
    buffered = io.BufferedReader(raw, buffer_size=1024 * 1024)
    text = io.TextIOWrapper(buffered, encoding="utf-8-sig", newline="")
    try:
        yield read_csv(text)
    except BastionError as error:
        if error.code == "crypto.key_shredded":
            raise not_scannable(
                f"dataset {ref} was crypto-shredded; there is nothing left to read"
            ) from None
        raise
    finally:
        text.close()


# -- the scan ------------------------------------------------------------------------------


def name_hint(column: str) -> str | None:
    """The kind of personal data a column's name suggests (`email`, `phone`, `national_id`,
    `person_name` …), or None."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", column)
    tokens = "_".join(t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t)
    for label, pattern in _NAME_HINTS:
        if pattern.search(tokens):
            return label
    return None


def entity_level(entity: str) -> str | None:
    """The classification an entity type calls for (None for weak entities)."""
    if entity in HIGH_RISK:
        return "restricted"
    if entity in WEAK:
        return None
    return "confidential"  # contact data, IPs, names, and entity types we do not know


@dataclass(frozen=True, slots=True)
class ColumnScan:
    name: str
    non_empty: int
    counts: Mapping[str, int]  # entity -> sampled values containing it
    name_hint: str | None

    def share(self, entity: str) -> float:
        return self.counts.get(entity, 0) / self.non_empty if self.non_empty else 0.0

    @property
    def qualifying(self) -> tuple[str, ...]:
        """The entities that make this column sensitive (see the module docstring)."""
        return tuple(
            sorted(
                e
                for e, n in self.counts.items()
                if n > 0 and e not in WEAK and (e in HIGH_RISK or self.share(e) >= SHARE_THRESHOLD)
            )
        )

    @property
    def sensitive(self) -> bool:
        return bool(self.qualifying)


@dataclass(frozen=True, slots=True)
class TableScan:
    """A scan's findings (no values). `required` is the classification the findings call
    for, None when no column is sensitive."""

    total_rows: int
    scanned_rows: int
    columns: tuple[ColumnScan, ...]
    required: str | None = field(init=False)

    def __post_init__(self) -> None:
        levels = [entity_level(e) for c in self.columns for e in c.qualifying]
        found = [lv for lv in levels if lv is not None]
        object.__setattr__(self, "required", max(found, key=RANK.__getitem__) if found else None)

    @property
    def sensitive_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.sensitive]

    @property
    def proposed(self) -> str:
        return self.required or "internal"


def reservoir(rows: Iterable[list[str]], size: int, seed: bytes) -> tuple[list[list[str]], int]:
    """A uniform sample of at most `size` rows (Algorithm R, seeded: the same rows and seed
    give the same sample) and the number of rows seen."""
    # Not for secrecy: a reproducible sample.
    rng = random.Random(int.from_bytes(hashlib.sha256(seed).digest()[:8], "big"))  # noqa: S311
    kept: list[list[str]] = []
    seen = 0
    for seen, row in enumerate(rows, start=1):
        if seen <= size:
            kept.append(row)
        else:
            j = rng.randrange(seen)
            if j < size:
                kept[j] = row
    return kept, seen


def scan_table(
    table: CsvTable, detector: ColumnDetector, *, sample: int = DEFAULT_SAMPLE, seed: bytes = b""
) -> TableScan:
    """Scan every column of `table` over a deterministic sample of at most `sample` rows.

    Each distinct value is analysed once: values are grouped by how often they occur in the
    sample, and a group's counts are multiplied by that multiplicity.
    """
    check_sample(sample)
    kept, total = reservoir(table.rows, sample, seed)
    columns = []
    for i, name in enumerate(table.columns):
        occurrences = Counter(row[i] for row in kept if row[i].strip())
        by_multiplicity: dict[int, list[str]] = defaultdict(list)
        for value, n in occurrences.items():
            by_multiplicity[n].append(value)
        counts: Counter[str] = Counter()
        for multiplicity, values in by_multiplicity.items():
            for entity, n in detector.scan_values(values).items():
                if n > 0:
                    counts[entity] += n * multiplicity
        columns.append(
            ColumnScan(
                name=name,
                non_empty=sum(occurrences.values()),
                counts=dict(sorted(counts.items())),
                name_hint=name_hint(name),
            )
        )
    return TableScan(total_rows=total, scanned_rows=len(kept), columns=tuple(columns))


def check_sample(sample: int) -> int:
    if isinstance(sample, bool) or not isinstance(sample, int) or not 1 <= sample <= MAX_SAMPLE:
        raise InvalidInput(
            f"the sample is between 1 and {MAX_SAMPLE} rows, not {sample!r}",
            code="privacy.bad_sample",
        )
    return sample


RULES: Mapping[str, Any] = {
    "share_threshold": SHARE_THRESHOLD,
    "high_risk_any_value": True,
    "weak_entities": sorted(WEAK),
    "sample": "reservoir (Algorithm R) seeded from the dataset digest",
}


def pii_report(
    scan: TableScan,
    *,
    declared: str,
    scanned_at: datetime,
    detector: Mapping[str, Any],
    sample_limit: int,
) -> dict[str, Any]:
    """The JSON stored in `datasets.pii_report` (no values, only names, types and shares)."""
    sensitive = scan.sensitive_columns
    return {
        "scanned_rows": scan.scanned_rows,
        "total_rows": scan.total_rows,
        "sample_limit": sample_limit,
        "columns": {
            c.name: {
                "entities": {e: round(c.share(e), 4) for e in c.counts},
                "counts": dict(c.counts),
                "non_empty": c.non_empty,
                "sensitive": c.sensitive,
                "name_hint": c.name_hint,
            }
            for c in scan.columns
        },
        "sensitive_columns": sensitive,
        "hinted_columns": [c.name for c in scan.columns if c.name_hint and not c.sensitive],
        "entities": sorted({e for c in scan.columns for e in c.qualifying}),
        "proposed_classification": scan.proposed,
        "declared_classification": declared,
        "under_classified": scan.required is not None
        and RANK[scan.required] > RANK.get(declared, -1),
        "scanned_at": scanned_at.isoformat(),
        "detector": dict(detector),
        "rules": dict(RULES),
    }


# -- the service ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatasetScan:
    """A stored scan: the dataset it is about and the report written to the inventory."""

    dataset_id: str
    name: str
    version: int
    report: Mapping[str, Any]


def _default_detector(min_score: float) -> ColumnDetector:
    # Imported on first use: Presidio takes a while to import, and most commands that build
    # a Platform never scan.
    from bastion.privacy.pii import PiiDetector

    return PiiDetector(min_score=min_score)


def _presidio_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("presidio-analyzer")
    except metadata.PackageNotFoundError:
        return None


class DatasetScanService:
    """Scans stored datasets for PII and records the findings in the inventory.

    `detector` builds the detector on first use (default: `bastion.privacy.pii.PiiDetector`
    with `min_score`); it is shared by concurrent scans, so it must be thread-safe.
    """

    def __init__(
        self,
        *,
        database: Database,
        audit: AuditLog,
        authorizer: Authorizer,
        blobs: SealedBlobStore,
        clock: Clock,
        min_score: float = 0.5,
        detector: Callable[[], ColumnDetector] | None = None,
    ) -> None:
        self._db = database
        self._audit = audit
        self._authz = authorizer
        self._blobs = blobs
        self._clock = clock
        self._min_score = min_score
        self._factory = detector or (lambda: _default_detector(min_score))
        self._detector: ColumnDetector | None = None
        self._lock = threading.Lock()

    def _detector_instance(self) -> ColumnDetector:
        with self._lock:
            if self._detector is None:
                self._detector = self._factory()
            return self._detector

    def scan(
        self, caller: Caller, name: str, version: int | None = None, *, sample: int = DEFAULT_SAMPLE
    ) -> DatasetScan:
        """Scan dataset `name@version` (latest when None) and store the report.

        Raises `PermissionDenied` without DATASET_WRITE, `NotFound`, `InvalidInput`
        (`privacy.bad_sample`, `privacy.not_scannable`), `IntegrityError` for a tampered blob.
        """
        self._authz.authorize(caller, Permission.DATASET_WRITE)
        check_sample(sample)
        with self._db.read() as session:
            row = find_dataset(session, name, version)
        detector = self._detector_instance()
        with open_dataset_csv(self._blobs, row) as table:
            scan = scan_table(table, detector, sample=sample, seed=row.digest.encode())
        info = {
            "kind": type(detector).__name__,
            "min_score": getattr(detector, "min_score", self._min_score),
            "presidio": _presidio_version(),
            "bastion": bastion.__version__,
        }
        with self._db.transaction() as session:
            current = find_dataset(session, row.name, row.version, lock=True)
            if current.id != row.id or current.digest != row.digest:
                raise NotFound(
                    f"dataset {row.name}@{row.version} changed during the scan",
                    code="registry.dataset_not_found",
                )
            if is_gone(current):
                raise not_scannable(f"dataset {row.name}@{row.version} was deleted during the scan")
            report = pii_report(
                scan,
                declared=current.classification,
                scanned_at=self._clock.now(),
                detector=info,
                sample_limit=sample,
            )
            current.pii_report = report
            self._audit.append(
                session,
                caller.event(
                    "privacy.dataset.scanned",
                    current.id,
                    {
                        "name": current.name,
                        "version": current.version,
                        "digest": current.digest,
                        "scanned_rows": scan.scanned_rows,
                        "total_rows": scan.total_rows,
                        "columns": len(scan.columns),
                        "sensitive_columns": report["sensitive_columns"][:200],
                        "entities": report["entities"],
                        "proposed_classification": report["proposed_classification"],
                        "declared_classification": report["declared_classification"],
                        "under_classified": report["under_classified"],
                        "detector": info,
                    },
                ),
            )
            return DatasetScan(current.id, current.name, current.version, report)

    def report(self, caller: Caller, name: str, version: int | None = None) -> DatasetScan | None:
        """The last stored scan of `name@version`, or None if it was never scanned."""
        self._authz.authorize(caller, Permission.DATASET_READ)
        with self._db.read() as session:
            row = find_dataset(session, name, version)
            if row.pii_report is None:
                return None
            return DatasetScan(row.id, row.name, row.version, dict(row.pii_report))
