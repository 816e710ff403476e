"""Re-identification risk, measured exactly: k-anonymity, l-diversity and the share of unique
records over declared quasi-identifiers, and the `data_release` gate that uses them.

Definitions (Sweeney 2002, k-anonymity; Machanavajjhala et al. 2007, l-diversity):

* Rows are grouped into **equivalence classes** by the exact tuple of their
  quasi-identifier values. Values compare by equality, untrimmed and case-sensitive; a
  missing value (None, the empty string, NaN) is one value of its own, equal to every other
  missing value (not a wildcard).
* **k** is the size of the smallest class; **unique_share** the share of rows that are alone
  in their class (`classes of size 1 / rows`); the class-size distribution is reported too.
* **distinct l** of a sensitive attribute is the smallest number of distinct sensitive values
  within a class; **entropy l** is `exp(min over classes of H)`, H the Shannon entropy (nats)
  of the class's sensitive values: a class is entropy-l-diverse iff H >= log l. With
  several sensitive attributes, `l` is the smallest over them.
* A dataset with **no rows** has no classes: k = 0 and l = 0 by convention, so it satisfies
  no `k >= K` requirement (fail closed), and unique_share = 0.

The computation is exact (no sampling): one pass assigns integer class ids through a dict
keyed by the quasi-identifier tuple, and numpy counts classes and (class, value) pairs.

Release: `ReidentificationService.release_check` evaluates the `data_release` policy gate,
which requires k >= `data.bastion.config.release.k_min` (the policy bundle's config, so K is
changed by applying a bundle, gated and ledgered) before data leaves its classification level
for a lower one. Copying the data out is not Bastion's job; this is the
check and the record a release process calls.

Beside `bastion.supplychain` in the layers: imports `bastion.policy`, `bastion.identity`,
`bastion.ledger`, `bastion.store`, `bastion.core`; never `bastion.registry` or above.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

import numpy as np

from bastion.core.clock import Clock
from bastion.core.errors import InvalidInput, NotFound, TooLarge
from bastion.identity import Authorizer, Caller, Permission
from bastion.ledger import AuditLog
from bastion.policy import PolicyDenied, PolicyService
from bastion.privacy.scan import LEVELS, is_gone, not_scannable, open_dataset_csv
from bastion.store.datasets import find_dataset
from bastion.store.db import Database
from bastion.store.sealed import SealedBlobStore
from bastion.store.tables import DatasetRow

MAX_QUASI_IDENTIFIERS = 64
MAX_SENSITIVE = 16
DEFAULT_MAX_ROWS = 20_000_000
MAX_REASON = 1000
# Class-size buckets of the stored distribution: [begin, end) in rows.
SIZE_BUCKETS: tuple[tuple[int, int | None], ...] = (
    (1, 2),
    (2, 3),
    (3, 4),
    (4, 5),
    (5, 10),
    (10, 20),
    (20, 50),
    (50, 100),
    (100, 1000),
    (1000, None),
)


@dataclass(frozen=True, slots=True)
class Diversity:
    """l-diversity of one sensitive attribute."""

    distinct: int  # min over classes of the number of distinct values
    entropy: float  # exp(min over classes of the entropy in nats)


@dataclass(frozen=True, slots=True)
class RiskReport:
    """Exact re-identification risk of a table over its quasi-identifiers."""

    quasi_identifiers: tuple[str, ...]
    sensitive: tuple[str, ...]
    rows: int
    classes: int
    k: int
    unique_records: int
    class_sizes: Mapping[int, int]  # class size -> number of classes of that size
    diversity: Mapping[str, Diversity]

    @property
    def unique_share(self) -> float:
        return self.unique_records / self.rows if self.rows else 0.0

    @property
    def l_diversity(self) -> int | None:
        """Distinct l, the smallest over the sensitive attributes (None without any)."""
        if not self.sensitive:
            return None
        return min(d.distinct for d in self.diversity.values())

    @property
    def l_entropy(self) -> float | None:
        if not self.sensitive:
            return None
        return min(d.entropy for d in self.diversity.values())

    def records_below(self, k: int) -> int:
        """How many rows are in classes smaller than `k`."""
        return sum(size * n for size, n in self.class_sizes.items() if size < k)

    def size_distribution(self) -> list[dict[str, Any]]:
        """Classes and rows per class-size bucket (`SIZE_BUCKETS`), empty buckets left out."""
        out = []
        for begin, end in SIZE_BUCKETS:
            inside = [
                (s, n)
                for s, n in self.class_sizes.items()
                if s >= begin and (end is None or s < end)
            ]
            if inside:
                label = (
                    str(begin)
                    if end == begin + 1
                    else f"{begin}+"
                    if end is None
                    else f"{begin}-{end - 1}"
                )
                out.append(
                    {
                        "size": label,
                        "classes": sum(n for _, n in inside),
                        "records": sum(s * n for s, n in inside),
                    }
                )
        return out

    def to_dict(self, measured_at: datetime | None = None) -> dict[str, Any]:
        """The JSON stored in `datasets.privacy_report`."""
        return {
            "quasi_identifiers": list(self.quasi_identifiers),
            "sensitive": list(self.sensitive),
            "k": self.k,
            "l": self.l_diversity,
            "l_entropy": None if self.l_entropy is None else round(self.l_entropy, 6),
            "l_by_attribute": {
                name: {"distinct": d.distinct, "entropy": round(d.entropy, 6)}
                for name, d in self.diversity.items()
            },
            "unique_share": round(self.unique_share, 6),
            "unique_records": self.unique_records,
            "classes": self.classes,
            "rows": self.rows,
            "class_sizes": self.size_distribution(),
            "method": "exact",
            "measured_at": None if measured_at is None else measured_at.isoformat(),
        }


def _names(given: Sequence[str] | str, what: str, limit: int) -> tuple[str, ...]:
    if isinstance(given, str):
        given = [given]
    names = tuple(given)
    if any(not isinstance(n, str) or not n for n in names):
        raise InvalidInput(f"{what} are column names", code="privacy.bad_columns")
    if len(names) > limit:
        raise InvalidInput(f"at most {limit} {what}", code="privacy.bad_columns")
    if len(set(names)) != len(names):
        raise InvalidInput(f"{what} are named twice", code="privacy.bad_columns")
    return names


def check_attributes(
    columns: Sequence[str], quasi_identifiers: Sequence[str] | str, sensitive: Sequence[str] | str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Validate the declared attributes against the table's columns.

    Raises `InvalidInput`: `privacy.no_quasi_identifiers`, `privacy.bad_columns` (duplicates,
    too many, a sensitive attribute that is also a quasi-identifier) or
    `privacy.unknown_column` (details: `unknown`, the names not in the table).
    """
    qis = _names(quasi_identifiers, "quasi-identifiers", MAX_QUASI_IDENTIFIERS)
    if not qis:
        raise InvalidInput(
            "declare at least one quasi-identifier", code="privacy.no_quasi_identifiers"
        )
    sens = _names(sensitive, "sensitive attributes", MAX_SENSITIVE)
    both = sorted(set(qis) & set(sens))
    if both:
        raise InvalidInput(
            f"{', '.join(both)}: an attribute is either a quasi-identifier or sensitive",
            code="privacy.bad_columns",
        )
    known = set(columns)
    unknown = [c for c in (*qis, *sens) if c not in known]
    if unknown:
        raise InvalidInput(
            f"unknown column(s): {', '.join(unknown)}",
            code="privacy.unknown_column",
            details={"unknown": unknown, "columns": list(columns)[:100]},
        )
    return qis, sens


def measure(
    columns: Sequence[str],
    rows: Iterable[Sequence[Hashable]],
    quasi_identifiers: Sequence[str] | str,
    sensitive: Sequence[str] | str = (),
    *,
    max_rows: int | None = None,
) -> RiskReport:
    """k, l and unique share of `rows` (sequences aligned with `columns`), exactly.

    Values are taken as they are (a CSV's empty string is its missing value). Raises as
    `check_attributes`, and `TooLarge` (`privacy.too_many_rows`) past `max_rows`.
    """
    qis, sens = check_attributes(columns, quasi_identifiers, sensitive)
    index = {c: i for i, c in enumerate(columns)}
    key_of = itemgetter(*(index[c] for c in qis))
    value_of = [itemgetter(index[s]) for s in sens]
    classes: dict[Any, int] = {}
    class_ids = array("q")
    value_maps: list[dict[Any, int]] = [{} for _ in sens]
    value_ids = [array("q") for _ in sens]
    limit = max_rows if max_rows is not None else -1
    for n, row in enumerate(rows, start=1):
        if n == limit + 1:
            raise TooLarge(
                f"more than {max_rows} rows: too large to measure here",
                code="privacy.too_many_rows",
            )
        class_ids.append(classes.setdefault(key_of(row), len(classes)))
        for get, codes, ids in zip(value_of, value_maps, value_ids, strict=True):
            ids.append(codes.setdefault(get(row), len(codes)))
    return _report(qis, sens, class_ids, value_maps, value_ids)


def _report(
    qis: tuple[str, ...],
    sens: tuple[str, ...],
    class_ids: array[int],
    value_maps: list[dict[Any, int]],
    value_ids: list[array[int]],
) -> RiskReport:
    rows = len(class_ids)
    if rows == 0:
        return RiskReport(qis, sens, 0, 0, 0, 0, {}, {s: Diversity(0, 0.0) for s in sens})
    ids = np.frombuffer(class_ids, dtype=np.int64)
    sizes = np.bincount(ids)
    count = len(sizes)
    values, frequency = np.unique(sizes, return_counts=True)
    diversity: dict[str, Diversity] = {}
    for name, codes, vids in zip(sens, value_maps, value_ids, strict=True):
        width = max(len(codes), 1)
        pairs, pair_counts = np.unique(
            ids * width + np.frombuffer(vids, dtype=np.int64), return_counts=True
        )
        owner = pairs // width
        distinct = np.bincount(owner, minlength=count)
        p = pair_counts / sizes[owner]
        entropy = np.bincount(owner, weights=-p * np.log(p), minlength=count)
        diversity[name] = Diversity(
            distinct=int(distinct.min()), entropy=float(math.exp(max(float(entropy.min()), 0.0)))
        )
    return RiskReport(
        quasi_identifiers=qis,
        sensitive=sens,
        rows=rows,
        classes=count,
        k=int(sizes.min()),
        unique_records=int((sizes == 1).sum()),
        class_sizes={int(v): int(f) for v, f in zip(values, frequency, strict=True)},
        diversity=diversity,
    )


def _missing(value: object) -> object:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def measure_records(
    records: Iterable[Mapping[str, object]],
    quasi_identifiers: Sequence[str] | str,
    sensitive: Sequence[str] | str = (),
) -> RiskReport:
    """`measure` over mappings (None, "" and NaN are the one missing value). A record
    without one of the named columns raises `InvalidInput` (`privacy.unknown_column`)."""
    qis = (quasi_identifiers,) if isinstance(quasi_identifiers, str) else tuple(quasi_identifiers)
    sens = (sensitive,) if isinstance(sensitive, str) else tuple(sensitive)
    needed = tuple(dict.fromkeys((*qis, *sens)))

    def rows() -> Iterable[tuple[object, ...]]:
        for record in records:
            try:
                yield tuple(_missing(record[c]) for c in needed)
            except KeyError:
                unknown = [c for c in needed if c not in record]
                raise InvalidInput(
                    f"unknown column(s): {', '.join(unknown)}",
                    code="privacy.unknown_column",
                    details={"unknown": unknown},
                ) from None

    return measure(needed, rows(), qis, sens)


def k_anonymity(
    records: Iterable[Mapping[str, object]], quasi_identifiers: Sequence[str] | str
) -> RiskReport:
    """The k-anonymity report (k, unique share, class sizes) of `records`."""
    return measure_records(records, quasi_identifiers)


def l_diversity(
    records: Iterable[Mapping[str, object]],
    quasi_identifiers: Sequence[str] | str,
    sensitive: str,
) -> int:
    """Distinct l-diversity of `sensitive` over the classes of `quasi_identifiers` (0 for
    no records)."""
    report = measure_records(records, quasi_identifiers, (sensitive,))
    return report.diversity[sensitive].distinct


# -- the service ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RiskMeasurement:
    """A stored measurement: the dataset and the report written to the inventory."""

    dataset_id: str
    name: str
    version: int
    report: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ReleaseCheck:
    """An allowed release check (a denied one raises `PolicyDenied`)."""

    dataset_id: str
    name: str
    version: int
    from_classification: str
    to_classification: str
    allow: bool
    decision_id: str
    bundle_digest: str
    k: int | None


def release_report(report: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the `data_release` gate sees of a stored privacy report."""
    if report is None:
        return None
    keys = (
        "quasi_identifiers",
        "sensitive",
        "k",
        "l",
        "l_entropy",
        "unique_share",
        "classes",
        "rows",
        "measured_at",
    )
    return {key: report.get(key) for key in keys}


def dataset_input(row: DatasetRow) -> dict[str, Any]:
    """The `dataset` object of a `data_release` input."""
    return {
        "id": row.id,
        "name": row.name,
        "version": row.version,
        "digest": row.digest,
        "classification": row.classification,
        "status": "deleted" if row.deleted_at is not None else row.status,  # deleting: not active
        "privacy_report": release_report(row.privacy_report),
    }


class ReidentificationService:
    """Measures and stores re-identification risk of stored datasets; checks releases."""

    def __init__(
        self,
        *,
        database: Database,
        audit: AuditLog,
        authorizer: Authorizer,
        blobs: SealedBlobStore,
        policy: PolicyService,
        clock: Clock,
        max_rows: int = DEFAULT_MAX_ROWS,
    ) -> None:
        self._db = database
        self._audit = audit
        self._authz = authorizer
        self._blobs = blobs
        self._policy = policy
        self._clock = clock
        self._max_rows = max_rows

    def measure(
        self,
        caller: Caller,
        name: str,
        version: int | None = None,
        *,
        quasi_identifiers: Sequence[str],
        sensitive: Sequence[str] = (),
    ) -> RiskMeasurement:
        """Measure `name@version` (latest when None) over its stored CSV, store the report in
        `datasets.privacy_report` and record `privacy.dataset.risk_measured`.

        Raises `PermissionDenied` without DATASET_WRITE, `NotFound`, `InvalidInput`
        (`privacy.not_scannable`, `privacy.unknown_column`, `privacy.bad_columns`,
        `privacy.no_quasi_identifiers`), `TooLarge` (`privacy.too_many_rows`),
        `IntegrityError` for a tampered blob. Nothing is stored unless all rows were read.
        """
        self._authz.authorize(caller, Permission.DATASET_WRITE)
        with self._db.read() as session:
            row = find_dataset(session, name, version)
        with open_dataset_csv(self._blobs, row) as table:
            report = measure(
                table.columns,
                table.rows,
                quasi_identifiers,
                sensitive,
                max_rows=self._max_rows,
            )
        with self._db.transaction() as session:
            current = find_dataset(session, row.name, row.version, lock=True)
            if current.id != row.id or current.digest != row.digest:
                raise NotFound(
                    f"dataset {row.name}@{row.version} changed during the measurement",
                    code="registry.dataset_not_found",
                )
            if is_gone(current):
                raise not_scannable(
                    f"dataset {row.name}@{row.version} was deleted during the measurement"
                )
            stored = report.to_dict(self._clock.now())
            current.privacy_report = stored
            self._audit.append(
                session,
                caller.event(
                    "privacy.dataset.risk_measured",
                    current.id,
                    {
                        "name": current.name,
                        "version": current.version,
                        "digest": current.digest,
                        "quasi_identifiers": stored["quasi_identifiers"],
                        "sensitive": stored["sensitive"],
                        "k": stored["k"],
                        "l": stored["l"],
                        "l_entropy": stored["l_entropy"],
                        "unique_share": stored["unique_share"],
                        "classes": stored["classes"],
                        "rows": stored["rows"],
                    },
                ),
            )
            return RiskMeasurement(current.id, current.name, current.version, stored)

    def report(
        self, caller: Caller, name: str, version: int | None = None
    ) -> RiskMeasurement | None:
        """The last stored measurement of `name@version`, or None."""
        self._authz.authorize(caller, Permission.DATASET_READ)
        with self._db.read() as session:
            row = find_dataset(session, name, version)
            if row.privacy_report is None:
                return None
            return RiskMeasurement(row.id, row.name, row.version, dict(row.privacy_report))

    def release_check(
        self,
        caller: Caller,
        name: str,
        to_classification: str,
        reason: str,
        *,
        version: int | None = None,
    ) -> ReleaseCheck:
        """May `name@version` be released at `to_classification`? Evaluates the
        `data_release` gate, records the decision and a `privacy.dataset.release_checked`
        ledger entry (for a denial too), and returns the allowed check.

        Raises `PermissionDenied` without PRIVACY_MANAGE, `PolicyDenied` when the gate
        denies (reasons in its details), `NotFound`, `InvalidInput`
        (`privacy.bad_classification`, `privacy.bad_reason`).
        """
        self._authz.authorize(caller, Permission.PRIVACY_MANAGE)
        if to_classification not in LEVELS:
            raise InvalidInput(
                f"--to is one of {', '.join(LEVELS)}, not {to_classification!r}",
                code="privacy.bad_classification",
            )
        reason = reason.strip() if isinstance(reason, str) else ""
        if not reason or len(reason) > MAX_REASON:
            raise InvalidInput(
                f"a release needs a reason of 1-{MAX_REASON} characters",
                code="privacy.bad_reason",
            )
        seen: dict[str, Any] = {}
        try:
            with self._policy.enforcing(caller), self._db.transaction() as session:
                row = find_dataset(session, name, version)
                doc = dataset_input(row)
                seen.update(doc)
                document = self._policy.envelope(
                    "data_release",
                    caller,
                    dataset=doc,
                    release={"to_classification": to_classification, "reason": reason},
                )
                decision, decision_id = self._policy.decide(
                    session, caller, "data_release", row.id, document
                )
                self._audit.append(
                    session,
                    caller.event(
                        "privacy.dataset.release_checked",
                        row.id,
                        self._event(doc, to_classification, reason, True, [], decision_id),
                    ),
                )
                k = doc["privacy_report"]["k"] if doc["privacy_report"] else None
                return ReleaseCheck(
                    dataset_id=row.id,
                    name=row.name,
                    version=row.version,
                    from_classification=row.classification,
                    to_classification=to_classification,
                    allow=True,
                    decision_id=decision_id,
                    bundle_digest=decision.bundle_digest,
                    k=k,
                )
        except PolicyDenied as denied:
            if seen:
                with self._db.transaction() as session:
                    self._audit.append(
                        session,
                        caller.event(
                            "privacy.dataset.release_checked",
                            str(seen["id"]),
                            self._event(
                                seen,
                                to_classification,
                                reason,
                                False,
                                list(denied.decision.reasons),
                                None,
                            ),
                        ),
                    )
            raise

    @staticmethod
    def _event(
        doc: Mapping[str, Any],
        to: str,
        reason: str,
        allow: bool,
        reasons: list[str],
        decision_id: str | None,
    ) -> dict[str, Any]:
        report = doc["privacy_report"]
        return {
            "name": doc["name"],
            "version": doc["version"],
            "digest": doc["digest"],
            "from_classification": doc["classification"],
            "to_classification": to,
            "reason": reason,
            "allow": allow,
            "reasons": reasons[:50],
            "decision_id": decision_id,
            "k": report["k"] if report else None,
            "quasi_identifiers": report["quasi_identifiers"] if report else None,
        }
