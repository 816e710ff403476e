"""Input contracts: the schema a model version declares for its prediction requests.

A contract is a small versioned JSON document stored on the model version
(`input_contract`)::

    {"contract_version": 1, "max_rows": 1000,
     "fields": [{"name": "age", "type": "number", "min": 18, "max": 95},
                {"name": "region", "type": "string", "categories": ["n", "s"], "closed": false}]}

The gateway checks every request against it. What breaks the contract is a *violation*
(the request is refused with 422 and every violation is listed): a missing or unknown field, a
value of the wrong JSON type (a boolean is never a number), null where it is not allowed,
NaN or infinity, a string over `max_length`, a category outside a *closed* set, too many rows.
What is merely unusual is an *anomaly* (counted, not refused): a number outside the range seen
in training (`min`/`max`), a category not seen in training in an open set. Monitoring uses the
counts.

Design, for speed (the whole gateway path must stay well under a millisecond):

* `InputContract.__post_init__` validates the contract once and compiles, per field, the
  bounds, category set and messages into closures and tuples. Nothing is looked up per request.
* Small batches (fewer than `VECTOR_MIN_ROWS` rows: the usual single prediction) go through
  one fused loop over rows and fields that only recognises the common, clean case; larger
  batches are checked column by column, vectorised (the set of Python types in the column, one
  numpy conversion, `isfinite`, range counts). Either path falls back, on the first doubt, to
  per-value checkers that name every violation with its row.
* Numeric fields (number, integer, boolean) land in one read-only float64 block of
  (rows, numeric fields); the columns are views into it and `Batch.matrix()` is one copy.

Semantics worth knowing: `required: false` means an absent field is null (NaN/None) even when
`nullable` is false; `nullable` is about an explicit JSON `null`. NaN and infinity are never
valid values (JSON has no such tokens; Python's `json` accepts them, the contract does not);
a null number becomes NaN in the batch. Values are never echoed in messages (they may be
personal data); field names are.

Imports only `bastion.core`, numpy and the standard library.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from itertools import islice
from operator import itemgetter
from types import MappingProxyType
from typing import Any, Final, NoReturn

import numpy as np

from bastion.core.errors import InvalidInput

CONTRACT_VERSION: Final = 1
DEFAULT_MAX_ROWS: Final = 1000
MAX_ROWS_CAP: Final = 100_000
MAX_FIELDS: Final = 1024
DEFAULT_MAX_LENGTH: Final = 256
MAX_STRING_LENGTH: Final = 1_048_576
MAX_DOC_CATEGORIES: Final = 10_000
MAX_REPORTED: Final = 1000
VECTOR_MIN_ROWS: Final = 16
_CSV_CHUNK: Final = 8192

_NAME: Final = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_NUMERIC_TYPES: Final = frozenset({int, float})
_DOC_KEYS: Final = frozenset({"contract_version", "max_rows", "fields"})
_FIELD_KEYS: Final = frozenset(
    {"name", "type", "required", "nullable", "min", "max", "categories", "closed", "max_length"}
)

NOT_ROWS: Final = "contract.not_rows"
EMPTY: Final = "contract.empty"
TOO_MANY_ROWS: Final = "contract.too_many_rows"
MISSING_FIELD: Final = "contract.missing_field"
UNKNOWN_FIELD: Final = "contract.unknown_field"
WRONG_TYPE: Final = "contract.wrong_type"
NULL: Final = "contract.null"
NOT_FINITE: Final = "contract.not_finite"
UNKNOWN_CATEGORY: Final = "contract.unknown_category"
TOO_LONG: Final = "contract.too_long"
RAGGED: Final = "contract.ragged"

OUT_OF_RANGE: Final = "out_of_range"
UNSEEN_CATEGORY: Final = "unseen_category"


class FieldType(StrEnum):
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    STRING = "string"


class _Missing(Enum):
    """Marks a field absent from a row (distinct from an explicit null)."""

    MISSING = 0


_MISSING: Final = _Missing.MISSING


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    type: FieldType
    required: bool = True
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] | None = None
    closed: bool = False
    max_length: int = DEFAULT_MAX_LENGTH

    @property
    def numeric(self) -> bool:
        """True for the fields that become float64 columns (number, integer, boolean)."""
        return self.type is not FieldType.STRING

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "type": self.type.value,
            "required": self.required,
            "nullable": self.nullable,
        }
        if self.minimum is not None:
            doc["min"] = _json_number(self.minimum)
        if self.maximum is not None:
            doc["max"] = _json_number(self.maximum)
        if self.type is FieldType.STRING:
            if self.categories is not None:
                doc["categories"] = list(self.categories)
                doc["closed"] = self.closed
            doc["max_length"] = self.max_length
        return doc


@dataclass(frozen=True)
class Violation:
    """One way a request breaks the contract. `row` is 0-based; None for request-level."""

    row: int | None
    field: str | None
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "code": self.code, "message": self.message}


class ContractViolation(InvalidInput):
    """The request breaks the contract; `violations` lists every problem found (→ 422)."""

    default_code = "contract.violation"

    def __init__(self, violations: Sequence[Violation]) -> None:
        found = tuple(violations)
        shown = "; ".join(_describe(v) for v in found[:3])
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        super().__init__(
            f"request breaks the input contract in {len(found)} place(s): {shown}{more}",
            details={
                "violations": [v.to_dict() for v in found[:MAX_REPORTED]],
                "total": len(found),
            },
        )
        self.violations = found


def _describe(v: Violation) -> str:
    where = []
    if v.row is not None:
        where.append(f"row {v.row}")
    if v.field is not None:
        where.append(f"field {v.field!r}")
    return f"{', '.join(where)}: {v.message}" if where else v.message


@dataclass(frozen=True, eq=False)
class Batch:
    """A validated request: one numpy column per contract field, in contract order.

    Number, integer and boolean columns are float64 (NaN = null; booleans are 0.0/1.0);
    string columns are object arrays of `str | None`. `anomalies` counts well-typed values
    outside what training saw, keyed by (field, "out_of_range" | "unseen_category").
    """

    rows: int
    columns: Mapping[str, np.ndarray]
    anomalies: Mapping[tuple[str, str], int]
    _block: np.ndarray | None = field(default=None, repr=False)

    def matrix(self, dtype: np.dtype[Any] | type = np.float32) -> np.ndarray:
        """The (rows, n_fields) feature matrix in contract order: a fresh C-contiguous copy."""
        if self._block is not None:
            return np.array(self._block, dtype=dtype, order="C")
        strings = [name for name, col in self.columns.items() if col.dtype == object]
        if strings:
            raise InvalidInput(
                f"the contract has string fields ({', '.join(strings[:5])}); "
                "they cannot form a numeric matrix",
                code="contract.not_numeric",
                details={"fields": strings[:MAX_REPORTED]},
            )
        if not self.columns:
            return np.empty((self.rows, 0), dtype=dtype)
        return np.ascontiguousarray(np.stack(list(self.columns.values()), axis=1), dtype=dtype)


class _BlockColumns(Mapping[str, np.ndarray]):
    """The columns of an all-numeric batch: views into its (rows, fields) block, made on
    access (a dict of views would cost ~0.15 µs per field on every request)."""

    __slots__ = ("_block", "_index")

    def __init__(self, block: np.ndarray, index: Mapping[str, int]) -> None:
        self._block = block
        self._index = index

    def __getitem__(self, name: str) -> np.ndarray:
        return self._block[:, self._index[name]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        return repr(dict(self))


# A checker takes one column (a sequence of Python values, `_MISSING` for absent) and the
# violation list to append to; it returns the converted values and the anomaly count.
_Checker = Callable[[Sequence[Any], list[Violation]], tuple[Any, int]]


@dataclass(frozen=True, slots=True)
class _Plan:
    name: str
    numeric: bool
    anomaly: str
    scalar: _Checker
    vector: _Checker


@dataclass(frozen=True)
class InputContract:
    fields: tuple[FieldSpec, ...]
    max_rows: int = DEFAULT_MAX_ROWS
    _plans: tuple[_Plan, ...] = field(init=False, repr=False, compare=False)
    _known: frozenset[str] = field(init=False, repr=False, compare=False)
    _getter: Callable[[Any], Any] = field(init=False, repr=False, compare=False)
    _all_numeric: bool = field(init=False, repr=False, compare=False)
    _quick_specs: tuple[_Quick, ...] = field(init=False, repr=False, compare=False)
    _index: Mapping[str, int] = field(init=False, repr=False, compare=False)
    _numeric_at: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        specs = tuple(_normalise(spec, i) for i, spec in enumerate(_as_tuple(self.fields)))
        if not specs or len(specs) > MAX_FIELDS:
            _bad(f"a contract has 1 to {MAX_FIELDS} fields, not {len(specs)}", "fields")
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            _bad(f"duplicate field name {dup!r}", "fields")
        if type(self.max_rows) is not int or not 1 <= self.max_rows <= MAX_ROWS_CAP:
            _bad(f"max_rows must be an integer from 1 to {MAX_ROWS_CAP}", "max_rows")
        object.__setattr__(self, "fields", specs)
        object.__setattr__(self, "_plans", tuple(_compile(s) for s in specs))
        object.__setattr__(self, "_known", frozenset(names))
        object.__setattr__(self, "_getter", itemgetter(*names))
        object.__setattr__(self, "_all_numeric", all(s.numeric for s in specs))
        object.__setattr__(self, "_quick_specs", tuple(_quick_spec(s) for s in specs))
        object.__setattr__(self, "_index", MappingProxyType({n: j for j, n in enumerate(names)}))
        numeric_at = tuple(j for j, s in enumerate(specs) if s.numeric)
        object.__setattr__(self, "_numeric_at", numeric_at)

    # ------------------------------------------------------------------ the document

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> InputContract:
        """Parse a contract document strictly; `InvalidInput(code="contract.invalid")`."""
        if not isinstance(doc, Mapping):
            _bad("a contract must be a JSON object", "")
        _no_unknown_keys(doc, _DOC_KEYS, "")
        if "contract_version" not in doc:
            _bad("contract_version is required", "contract_version")
        if _strict_int(doc["contract_version"]) != CONTRACT_VERSION:
            _bad(f"contract_version must be {CONTRACT_VERSION}", "contract_version")
        max_rows = doc.get("max_rows", DEFAULT_MAX_ROWS)
        if _strict_int(max_rows) is None:
            _bad("max_rows must be an integer", "max_rows")
        fields = doc.get("fields")
        if not isinstance(fields, list):
            _bad("fields must be a list", "fields")
        if len(fields) > MAX_FIELDS:
            _bad(f"a contract has at most {MAX_FIELDS} fields", "fields")
        return cls(
            fields=tuple(_parse_field(f, i) for i, f in enumerate(fields)), max_rows=max_rows
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "contract_version": CONTRACT_VERSION,
            "max_rows": self.max_rows,
            "fields": [spec.to_json() for spec in self.fields],
        }

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.fields)

    # ------------------------------------------------------------------ requests

    def validate_records(self, records: Any) -> Batch:
        """Check a list of JSON objects (one per row); `ContractViolation` lists every problem."""
        if type(records) is not list and type(records) is not tuple:
            raise ContractViolation(
                [Violation(None, None, NOT_ROWS, "expected a list of JSON objects, one per row")]
            )
        n = len(records)
        self._check_row_count(n)
        violations: list[Violation] = []
        plans = self._plans
        width = len(plans)
        cols: list[Sequence[Any]] | None = None
        # Fast path: every row is a dict with exactly the contract's keys.
        if set(map(type, records)) == {dict} and set(map(len, records)) == {width}:
            try:
                picked = list(map(self._getter, records))
            except KeyError:
                pass
            else:
                if width == 1:
                    picked = [(v,) for v in picked]
                if n < VECTOR_MIN_ROWS:
                    batch = self._quick(picked)
                    if batch is not None:
                        return batch
                cols = list(zip(*picked, strict=True))
        if cols is None:
            bad = [i for i, r in enumerate(records) if not isinstance(r, Mapping)]
            if bad:
                raise ContractViolation(
                    [Violation(i, None, NOT_ROWS, "row is not a JSON object") for i in bad]
                )
            cols = [[r.get(p.name, _MISSING) for r in records] for p in plans]
            violations.extend(self._unknown_in_rows(records))
        return self._check(cols, n, violations)

    def validate_columns(self, columns: Any) -> Batch:
        """Check `{field: [values...]}` (lists, tuples or 1-D numpy arrays of equal length)."""
        if not isinstance(columns, Mapping):
            raise ContractViolation(
                [Violation(None, None, NOT_ROWS, "expected a JSON object of columns")]
            )
        violations: list[Violation] = []
        lengths: dict[str, int] = {}
        for key, col in columns.items():
            if key not in self._known:
                violations.append(
                    Violation(None, _clip(str(key)), UNKNOWN_FIELD, "unknown field (column)")
                )
            elif isinstance(col, (list, tuple)) or (isinstance(col, np.ndarray) and col.ndim == 1):
                lengths[key] = len(col)
            else:
                violations.append(
                    Violation(None, key, NOT_ROWS, "a column must be a list of values")
                )
        if lengths and max(lengths.values()) > self.max_rows:
            self._check_row_count(max(lengths.values()))
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{k}={v}" for k, v in list(lengths.items())[:10])
            violations.append(
                Violation(None, None, RAGGED, f"columns have different lengths ({shown})")
            )
        n = next(iter(lengths.values()), 0)
        cols: list[Sequence[Any] | None] = []
        for plan, spec in zip(self._plans, self.fields, strict=True):
            if plan.name in lengths:
                cols.append(columns[plan.name])
            elif plan.name in columns:  # present but not a list: already reported
                cols.append(None)
            elif spec.required:
                violations.append(Violation(None, plan.name, MISSING_FIELD, "missing field"))
                cols.append(None)
            else:
                cols.append([_MISSING] * n)
        if any(v.code in (NOT_ROWS, RAGGED) for v in violations):
            raise ContractViolation(_ordered(violations))
        if n == 0:
            violations.append(Violation(None, None, EMPTY, "the request has no rows"))
            raise ContractViolation(_ordered(violations))
        if n < VECTOR_MIN_ROWS and not violations:
            batch = self._quick(list(zip(*cols, strict=True)))
            if batch is not None:
                return batch
        return self._check(cols, n, violations)

    # ------------------------------------------------------------------ derivation

    @classmethod
    def derive(
        cls,
        columns: Mapping[str, Sequence[Any] | np.ndarray],
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_categories: int = 50,
    ) -> InputContract:
        """Infer a contract from training columns (Python sequences or 1-D numpy arrays)."""
        if not isinstance(columns, Mapping) or not columns:
            raise InvalidInput(
                "training data must be a non-empty mapping of columns", code="contract.bad_data"
            )
        lengths = {len(values) for values in columns.values()}
        if len(lengths) > 1:
            raise InvalidInput("training columns have different lengths", code="contract.bad_data")
        specs = []
        for name, values in columns.items():
            stats = _ColumnStats(max_categories)
            if isinstance(values, np.ndarray):
                stats.add_array(values)
            else:
                stats.add(values)
            specs.append(stats.spec(name))
        return cls(fields=tuple(specs), max_rows=max_rows)

    # ------------------------------------------------------------------ internals

    def _check_row_count(self, n: int) -> None:
        if n == 0:
            raise ContractViolation([Violation(None, None, EMPTY, "the request has no rows")])
        if n > self.max_rows:
            raise ContractViolation(
                [
                    Violation(
                        None,
                        None,
                        TOO_MANY_ROWS,
                        f"{n} rows; this model accepts at most {self.max_rows} per request",
                    )
                ]
            )

    def _unknown_in_rows(self, records: Sequence[Mapping[str, Any]]) -> list[Violation]:
        known = self._known
        counts: dict[str, int] = {}
        for r in records:
            if not known.issuperset(r):
                for key in r:
                    if key not in known:
                        counts[key] = counts.get(key, 0) + 1
        return [
            Violation(None, _clip(str(key)), UNKNOWN_FIELD, f"unknown field (in {count} row(s))")
            for key, count in counts.items()
        ]

    def _check(
        self, cols: Sequence[Sequence[Any] | None], n: int, violations: list[Violation]
    ) -> Batch:
        vector = n >= VECTOR_MIN_ROWS
        numeric: list[Any] = []
        strings: dict[str, Any] = {}
        anomalies: dict[tuple[str, str], int] = {}
        for plan, col in zip(self._plans, cols, strict=True):
            if col is None:
                continue
            values, count = (plan.vector if vector else plan.scalar)(col, violations)
            if count:
                anomalies[(plan.name, plan.anomaly)] = count
            if plan.numeric:
                numeric.append(values)
            else:
                strings[plan.name] = values
        if violations:
            raise ContractViolation(_ordered(violations))
        # (n_numeric, rows) C-order, so each column is contiguous; the batch keeps its
        # transpose, a (rows, n_numeric) view. Read-only, like the batch.
        block = _frozen(np.array(numeric, dtype=np.float64).T) if numeric else None
        if self._all_numeric:
            assert block is not None
            return Batch(
                rows=n, columns=_BlockColumns(block, self._index), anomalies=anomalies, _block=block
            )
        columns: dict[str, np.ndarray] = {}
        j = 0
        for plan in self._plans:
            if plan.numeric:
                assert block is not None
                columns[plan.name] = block[:, j]
                j += 1
            else:
                columns[plan.name] = _frozen(_object_array(strings[plan.name]))
        return Batch(rows=n, columns=columns, anomalies=anomalies)

    def _quick(self, rows: Sequence[Sequence[Any]]) -> Batch | None:
        """One fused loop for small, clean batches (the single-prediction case).

        Returns None as soon as any value needs more than the common case (a wrong type,
        null, NaN, a closed-set miss...): the per-field checkers then name every violation.
        """
        flagged: list[tuple[str, str]] = []
        flag = flagged.append
        isfinite = math.isfinite
        for row in rows:
            for (kind, lo, hi, max_length, categories, closed, key), v in zip(
                self._quick_specs, row, strict=True
            ):
                if kind == _Q_NUMBER:
                    t = type(v)
                    if t is float:
                        if not isfinite(v):
                            return None
                    elif t is not int:
                        return None
                    if v < lo or v > hi:
                        flag(key)
                elif kind == _Q_INTEGER:
                    t = type(v)
                    if t is float:
                        if not v.is_integer():
                            return None
                    elif t is not int:
                        return None
                    if v < lo or v > hi:
                        flag(key)
                elif kind == _Q_BOOLEAN:
                    if v is not True and v is not False:
                        return None
                else:
                    if type(v) is not str or len(v) > max_length:
                        return None
                    if categories is not None and v not in categories:
                        if closed:
                            return None
                        flag(key)
        anomalies: dict[tuple[str, str], int] = {}
        for key in flagged:
            anomalies[key] = anomalies.get(key, 0) + 1
        columns: dict[str, np.ndarray] = {}
        try:
            if self._all_numeric:
                block = _frozen(np.array(rows, dtype=np.float64))
                return Batch(
                    rows=len(rows),
                    columns=_BlockColumns(block, self._index),
                    anomalies=anomalies,
                    _block=block,
                )
            numeric = self._numeric_at
            block = _frozen(
                np.array([[row[j] for j in numeric] for row in rows], dtype=np.float64)
                if numeric
                else np.empty((len(rows), 0))
            )
            k = 0
            for j, spec in enumerate(self.fields):
                if spec.numeric:
                    columns[spec.name] = block[:, k]
                    k += 1
                else:
                    columns[spec.name] = _frozen(_object_array([row[j] for row in rows]))
        except OverflowError:  # an int beyond float64: let the checkers say so
            return None
        return Batch(rows=len(rows), columns=columns, anomalies=anomalies)


def derive_from_csv(
    text_lines: Iterable[str],
    *,
    exclude: Collection[str] = (),
    max_rows: int = DEFAULT_MAX_ROWS,
    max_categories: int = 50,
    sample_rows: int = 1_000_000,
) -> InputContract:
    """Infer a contract from CSV text: a header row, then values (`""` → null, `true`/`false`
    → boolean, integers, floats, else strings). Columns in `exclude` (the label) are left out;
    at most `sample_rows` data rows are read."""
    reader = csv.reader(text_lines)
    try:
        header = next(reader, None)
        if not header:
            raise InvalidInput(
                "CSV has no header row (line 1)",
                code="contract.bad_data",
                details={"line": max(reader.line_num, 1)},
            )
        if len(set(header)) != len(header):
            dup = next(h for h in header if header.count(h) > 1)
            raise InvalidInput(
                f"CSV header repeats column {_clip(dup)!r} (line 1)",
                code="contract.bad_data",
                details={"line": 1},
            )
        missing = [name for name in exclude if name not in header]
        if missing:
            raise InvalidInput(
                f"excluded column(s) not in the CSV header: {', '.join(map(repr, missing))}",
                code="contract.bad_data",
            )
        keep = [i for i, name in enumerate(header) if name not in exclude]
        if not keep:
            raise InvalidInput("CSV has no columns left to describe", code="contract.bad_data")
        width = len(header)
        stats = [_ColumnStats(max_categories) for _ in keep]
        pick = itemgetter(*keep)
        read = 0
        while read < sample_rows:
            chunk: list[Any] = []
            for row in islice(reader, min(_CSV_CHUNK, sample_rows - read)):
                if not row:
                    continue
                if len(row) != width:
                    raise InvalidInput(
                        f"CSV line {reader.line_num} has {len(row)} values; the header has {width}",
                        code="contract.bad_data",
                        details={"line": reader.line_num},
                    )
                chunk.append(pick(row))
            if not chunk:
                break
            read += len(chunk)
            columns = list(zip(*chunk, strict=True)) if len(keep) > 1 else [chunk]
            for stat, column in zip(stats, columns, strict=True):
                stat.add(list(map(_parse_cell, column)))
    except csv.Error as exc:
        raise InvalidInput(
            f"CSV line {reader.line_num}: {exc}",
            code="contract.bad_data",
            details={"line": reader.line_num},
        ) from exc
    return InputContract(
        fields=tuple(stat.spec(header[i]) for stat, i in zip(stats, keep, strict=True)),
        max_rows=max_rows,
    )


# ---------------------------------------------------------------------- contract documents


def _bad(message: str, path: str) -> NoReturn:
    where = f"{path}: " if path else ""
    raise InvalidInput(
        f"invalid input contract: {where}{message}",
        code="contract.invalid",
        details={"path": path} if path else None,
    )


def _strict_int(value: Any) -> int | None:
    return value if type(value) is int else None


def _no_unknown_keys(doc: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
    unknown = [str(k) for k in doc if k not in allowed]
    if unknown:
        shown = ", ".join(repr(_clip(k)) for k in unknown[:5])
        _bad(f"unknown key(s) {shown}; allowed: {', '.join(sorted(allowed))}", path)


def _parse_field(doc: Any, i: int) -> FieldSpec:
    path = f"fields[{i}]"
    if not isinstance(doc, Mapping):
        _bad("a field must be a JSON object", path)
    _no_unknown_keys(doc, _FIELD_KEYS, path)
    for key in ("name", "type"):
        if key not in doc:
            _bad(f"{key} is required", f"{path}.{key}")
    if not isinstance(doc["name"], str):
        _bad("name must be a string", f"{path}.name")
    try:
        kind = FieldType(doc["type"])
    except (ValueError, TypeError):
        _bad(f"type must be one of {', '.join(t.value for t in FieldType)}", f"{path}.type")
    flags = {}
    for key, default in (("required", True), ("nullable", False), ("closed", False)):
        value = doc.get(key, default)
        if type(value) is not bool:
            _bad(f"{key} must be true or false", f"{path}.{key}")
        flags[key] = value
    bounds: dict[str, float | None] = {}
    for key in ("min", "max"):
        value = doc.get(key)
        if value is not None and (type(value) not in (int, float)):
            _bad(f"{key} must be a number", f"{path}.{key}")
        bounds[key] = value
    categories = doc.get("categories")
    if categories is not None:
        if not isinstance(categories, list) or not all(type(c) is str for c in categories):
            _bad("categories must be a list of strings", f"{path}.categories")
        categories = tuple(categories)
    max_length = doc.get("max_length", DEFAULT_MAX_LENGTH)
    if type(max_length) is not int:
        _bad("max_length must be an integer", f"{path}.max_length")
    if kind is not FieldType.STRING:
        for key in ("categories", "closed", "max_length"):
            if key in doc:
                _bad(f"{key} applies only to string fields", f"{path}.{key}")
    return FieldSpec(
        name=doc["name"],
        type=kind,
        required=flags["required"],
        nullable=flags["nullable"],
        minimum=bounds["min"],
        maximum=bounds["max"],
        categories=categories,
        closed=flags["closed"],
        max_length=max_length,
    )


def _as_tuple(fields: Any) -> tuple[Any, ...]:
    if isinstance(fields, (list, tuple)):
        return tuple(fields)
    _bad("fields must be a sequence of FieldSpec", "fields")


def _normalise(spec: Any, i: int) -> FieldSpec:
    """Validate one field's settings together; coerce list categories and int bounds."""
    if not isinstance(spec, FieldSpec):
        _bad("not a FieldSpec", f"fields[{i}]")
    name = spec.name
    path = f"fields[{i}]"
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        _bad(
            f"field name {_clip(str(name))!r} must be 1-128 characters of A-Z a-z 0-9 _ . : -",
            f"{path}.name",
        )
    try:
        kind = FieldType(spec.type)
    except ValueError:
        _bad(f"unknown type {spec.type!r}", f"{path}.type")
    for attr in ("required", "nullable", "closed"):
        if type(getattr(spec, attr)) is not bool:
            _bad(f"{attr} must be a boolean", f"{path}.{attr}")
    numeric_range = kind in (FieldType.NUMBER, FieldType.INTEGER)
    bounds: list[float | None] = []
    for attr, key in (("minimum", "min"), ("maximum", "max")):
        value = getattr(spec, attr)
        if value is None:
            bounds.append(None)
            continue
        if not numeric_range:
            _bad(f"{key} applies only to number and integer fields", f"{path}.{key}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _bad(f"{key} must be a number", f"{path}.{key}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            _bad(f"{key} must be finite", f"{path}.{key}")
        bounds.append(number)
    lo, hi = bounds
    if lo is not None and hi is not None and lo > hi:
        _bad(f"min ({_json_number(lo)}) is greater than max ({_json_number(hi)})", path)
    categories = spec.categories
    if categories is not None:
        if kind is not FieldType.STRING:
            _bad("categories apply only to string fields", f"{path}.categories")
        categories = tuple(categories)
        if not all(isinstance(c, str) for c in categories):
            _bad("categories must be strings", f"{path}.categories")
        if len(categories) > MAX_DOC_CATEGORIES:
            _bad(f"at most {MAX_DOC_CATEGORIES} categories", f"{path}.categories")
        if len(set(categories)) != len(categories):
            _bad("categories repeat a value", f"{path}.categories")
    if spec.closed and categories is None:
        _bad("closed needs categories", f"{path}.closed")
    max_length = spec.max_length
    if type(max_length) is not int or not 1 <= max_length <= MAX_STRING_LENGTH:
        _bad(f"max_length must be an integer from 1 to {MAX_STRING_LENGTH}", f"{path}.max_length")
    if kind is not FieldType.STRING and max_length != DEFAULT_MAX_LENGTH:
        _bad("max_length applies only to string fields", f"{path}.max_length")
    if categories is not None and any(len(c) > max_length for c in categories):
        _bad("a category is longer than max_length", f"{path}.categories")
    return FieldSpec(
        name=name,
        type=kind,
        required=spec.required,
        nullable=spec.nullable,
        minimum=lo,
        maximum=hi,
        categories=categories,
        closed=spec.closed,
        max_length=max_length,
    )


def _json_number(value: float) -> int | float:
    """Integral floats print as integers (18, not 18.0) when exactly representable."""
    if value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


def _clip(text: str, limit: int = 128) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _ordered(violations: list[Violation]) -> list[Violation]:
    """Request-level first, then by row; stable, so fields stay in contract order."""
    return sorted(violations, key=lambda v: -1 if v.row is None else v.row)


def _object_array(values: Any) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _json_type(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "boolean"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


# ---------------------------------------------------------------------- compiled checkers

# kind, low, high, max_length, categories, closed, anomaly key: one field for `_quick`.
# Kinds are small ints: reading an enum member off its class costs ~0.1 µs on 3.11.
_Quick = tuple[int, float, float, int, frozenset[str] | None, bool, tuple[str, str]]
_Q_NUMBER: Final = 0
_Q_INTEGER: Final = 1
_Q_BOOLEAN: Final = 2
_Q_STRING: Final = 3
_Q_KINDS: Final[Mapping[FieldType, int]] = {
    FieldType.NUMBER: _Q_NUMBER,
    FieldType.INTEGER: _Q_INTEGER,
    FieldType.BOOLEAN: _Q_BOOLEAN,
    FieldType.STRING: _Q_STRING,
}


def _quick_spec(spec: FieldSpec) -> _Quick:
    return (
        _Q_KINDS[spec.type],
        -math.inf if spec.minimum is None else spec.minimum,
        math.inf if spec.maximum is None else spec.maximum,
        spec.max_length,
        frozenset(spec.categories) if spec.categories is not None else None,
        spec.closed,
        (spec.name, OUT_OF_RANGE if spec.numeric else UNSEEN_CATEGORY),
    )


def _compile(spec: FieldSpec) -> _Plan:
    if spec.type is FieldType.STRING:
        scalar, vector = _string_checkers(spec)
        return _Plan(spec.name, False, UNSEEN_CATEGORY, scalar, vector)
    if spec.type is FieldType.BOOLEAN:
        scalar, vector = _boolean_checkers(spec)
    else:
        scalar, vector = _number_checkers(spec)
    return _Plan(spec.name, True, OUT_OF_RANGE, scalar, vector)


def _absent(
    spec: FieldSpec, value: Any, i: int, out: list[Violation], null: Any
) -> tuple[bool, Any]:
    """Handle None / missing; (handled, replacement value or _MISSING on violation)."""
    if value is None:
        if spec.nullable:
            return True, null
        out.append(Violation(i, spec.name, NULL, "null is not allowed"))
        return True, _MISSING
    if value is _MISSING:
        if not spec.required:
            return True, null
        out.append(Violation(i, spec.name, MISSING_FIELD, "missing field"))
        return True, _MISSING
    return False, None


def _number_checkers(spec: FieldSpec) -> tuple[_Checker, _Checker]:
    name = spec.name
    integer = spec.type is FieldType.INTEGER
    expected = "an integer" if integer else "a number"
    lo = -math.inf if spec.minimum is None else spec.minimum
    hi = math.inf if spec.maximum is None else spec.maximum
    bounded = spec.minimum is not None or spec.maximum is not None
    isfinite = math.isfinite
    nan = math.nan

    def scalar(col: Sequence[Any], out: list[Violation]) -> tuple[Any, int]:
        values: list[float] = []
        append = values.append
        anomalies = 0
        for i, v in enumerate(col):
            t = type(v)
            if t is float:
                if not isfinite(v):
                    out.append(Violation(i, name, NOT_FINITE, "NaN and infinity are not allowed"))
                    continue
                if integer and not v.is_integer():
                    out.append(
                        Violation(i, name, WRONG_TYPE, "expected an integer, got a fraction")
                    )
                    continue
                f = v
            elif t is int:
                try:
                    f = float(v)
                except OverflowError:
                    out.append(Violation(i, name, NOT_FINITE, "number is outside float64 range"))
                    continue
            else:
                handled, replacement = _absent(spec, v, i, out, nan)
                if handled:
                    if replacement is not _MISSING:
                        append(replacement)
                    continue
                f = _other_number(v, i, name, integer, expected, out)
                if f is None:
                    continue
            if f < lo or f > hi:
                anomalies += 1
            append(f)
        return values, anomalies

    def vector(col: Sequence[Any], out: list[Violation]) -> tuple[Any, int]:
        if isinstance(col, np.ndarray):
            if col.dtype.kind not in "iuf":
                return scalar(col.tolist(), out)
            array = col.astype(np.float64)
            has_float = col.dtype.kind == "f"
        else:
            types = set(map(type, col))
            if not types <= _NUMERIC_TYPES:
                return scalar(col, out)
            try:
                array = np.array(col, dtype=np.float64)
            except OverflowError:
                return scalar(col, out)
            has_float = float in types
        if not np.isfinite(array).all():
            return scalar(col.tolist() if isinstance(col, np.ndarray) else list(col), out)
        if integer and has_float and not (array == np.trunc(array)).all():
            return scalar(col.tolist() if isinstance(col, np.ndarray) else list(col), out)
        anomalies = 0
        if bounded:
            anomalies = int(np.count_nonzero((array < lo) | (array > hi)))
        return array, anomalies

    return scalar, vector


def _other_number(
    v: Any, i: int, name: str, integer: bool, expected: str, out: list[Violation]
) -> float | None:
    """Slow path for values that are not exactly int or float (subclasses, numpy scalars)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        out.append(Violation(i, name, WRONG_TYPE, f"expected {expected}, got {_json_type(v)}"))
        return None
    try:
        f = float(v)
    except OverflowError:
        out.append(Violation(i, name, NOT_FINITE, "number is outside float64 range"))
        return None
    if not math.isfinite(f):
        out.append(Violation(i, name, NOT_FINITE, "NaN and infinity are not allowed"))
        return None
    if integer and not f.is_integer():
        out.append(Violation(i, name, WRONG_TYPE, "expected an integer, got a fraction"))
        return None
    return f


def _boolean_checkers(spec: FieldSpec) -> tuple[_Checker, _Checker]:
    name = spec.name
    nan = math.nan

    def scalar(col: Sequence[Any], out: list[Violation]) -> tuple[Any, int]:
        values: list[float] = []
        append = values.append
        for i, v in enumerate(col):
            if v is True:
                append(1.0)
            elif v is False:
                append(0.0)
            elif isinstance(v, np.bool_):
                append(1.0 if v else 0.0)
            else:
                handled, replacement = _absent(spec, v, i, out, nan)
                if handled:
                    if replacement is not _MISSING:
                        append(replacement)
                    continue
                out.append(
                    Violation(i, name, WRONG_TYPE, f"expected a boolean, got {_json_type(v)}")
                )
        return values, 0

    def vector(col: Sequence[Any], out: list[Violation]) -> tuple[Any, int]:
        if isinstance(col, np.ndarray):
            if col.dtype.kind == "b":
                return col.astype(np.float64), 0
            return scalar(col.tolist(), out)
        if set(map(type, col)) == {bool}:
            return np.array(col, dtype=np.float64), 0
        return scalar(col, out)

    return scalar, vector


def _string_checkers(spec: FieldSpec) -> tuple[_Checker, _Checker]:
    name = spec.name
    max_length = spec.max_length
    categories = frozenset(spec.categories) if spec.categories is not None else None
    closed = spec.closed

    def scalar(col: Sequence[Any], out: list[Violation]) -> tuple[Any, int]:
        values: list[str | None] = []
        append = values.append
        anomalies = 0
        for i, v in enumerate(col):
            if isinstance(v, str):
                if len(v) > max_length:
                    out.append(Violation(i, name, TOO_LONG, f"longer than {max_length} characters"))
                    continue
                if categories is not None and v not in categories:
                    if closed:
                        out.append(
                            Violation(i, name, UNKNOWN_CATEGORY, "not one of the allowed values")
                        )
                        continue
                    anomalies += 1
                append(v)
            else:
                handled, replacement = _absent(spec, v, i, out, None)
                if handled:
                    if replacement is not _MISSING:
                        append(replacement)
                    continue
                out.append(
                    Violation(i, name, WRONG_TYPE, f"expected a string, got {_json_type(v)}")
                )
        return values, anomalies

    def vector(col: Sequence[Any], out: list[Violation]) -> tuple[Any, int]:
        if isinstance(col, np.ndarray):
            col = col.tolist()
        if set(map(type, col)) != {str} or max(map(len, col)) > max_length:
            return scalar(col, out)
        anomalies = 0
        if categories is not None:
            seen = sum(map(categories.__contains__, col))
            if seen < len(col):
                if closed:
                    return scalar(col, out)
                anomalies = len(col) - seen
        return _object_array(col), anomalies

    return scalar, vector


# ---------------------------------------------------------------------- derivation


class _ColumnStats:
    """Streaming summary of one training column (fed in chunks of Python values)."""

    __slots__ = (
        "categories",
        "has_bool",
        "has_float",
        "has_int",
        "has_other",
        "hi",
        "lo",
        "longest",
        "max_categories",
        "nullable",
    )

    def __init__(self, max_categories: int) -> None:
        self.max_categories = max_categories
        self.has_bool = self.has_int = self.has_float = self.has_other = False
        self.nullable = False
        self.lo = math.inf
        self.hi = -math.inf
        self.categories: set[str] | None = set()
        self.longest = 0

    def add_array(self, values: np.ndarray) -> None:
        if values.ndim != 1:
            raise InvalidInput("training columns must be 1-D", code="contract.bad_data")
        kind = values.dtype.kind
        if kind not in "biuf":
            self.add(values.tolist())
            return
        if kind == "b":
            self.has_bool = self.has_bool or values.size > 0
            self._categories(map(str, np.unique(values).tolist()))
            return
        numbers = values.astype(np.float64)
        if kind == "f":
            nan = np.isnan(numbers)
            if nan.any():
                self.nullable = True
                numbers = numbers[~nan]
            self.has_float = self.has_float or numbers.size > 0
        else:
            self.has_int = self.has_int or numbers.size > 0
        self._range(numbers)
        if self.categories is not None:
            distinct = np.unique(values[~np.isnan(values)] if kind == "f" else values)
            self._categories(map(str, distinct.tolist()))

    def add(self, values: Sequence[Any]) -> None:
        values = [v.item() if isinstance(v, np.generic) else v for v in values]
        types = set(map(type, values))
        if type(None) in types:
            self.nullable = True
            values = [v for v in values if v is not None]
            types.discard(type(None))
        if float in types:
            nan = [v for v in values if type(v) is float and v != v]
            if nan:
                self.nullable = True
                values = [v for v in values if not (type(v) is float and v != v)]
        if bool in types:
            self.has_bool = True
        if int in types:
            self.has_int = True
        if float in types:
            self.has_float = True
        if types - {bool, int, float}:
            self.has_other = True
        numbers = [v for v in values if type(v) is float or type(v) is int]
        if numbers:
            try:
                array = np.array(numbers, dtype=np.float64)
            except OverflowError:
                array = np.array([_float_or_inf(v) for v in numbers], dtype=np.float64)
            self._range(array)
        strings = [v for v in values if type(v) is str]
        if strings:
            self.longest = max(self.longest, max(map(len, strings)))
        if self.categories is not None:
            self._categories(set(map(str, values)))

    def _range(self, numbers: np.ndarray) -> None:
        finite = numbers[np.isfinite(numbers)]
        if finite.size:
            self.lo = min(self.lo, float(finite.min()))
            self.hi = max(self.hi, float(finite.max()))

    def _categories(self, values: Iterable[str]) -> None:
        assert self.categories is not None
        self.categories.update(values)
        if len(self.categories) > self.max_categories:
            self.categories = None

    def spec(self, name: str) -> FieldSpec:
        if self.has_other or (self.has_bool and (self.has_int or self.has_float)):
            kind = FieldType.STRING
        elif self.has_bool:
            kind = FieldType.BOOLEAN
        elif self.has_float:
            kind = FieldType.NUMBER
        elif self.has_int:
            kind = FieldType.INTEGER
        else:
            kind = FieldType.NUMBER
        seen = self.lo <= self.hi
        numeric = kind in (FieldType.NUMBER, FieldType.INTEGER)
        string = kind is FieldType.STRING
        longest = max(self.longest, *(len(c) for c in self.categories or ()), 0)
        return FieldSpec(
            name=name,
            type=kind,
            nullable=self.nullable,
            minimum=self.lo if numeric and seen else None,
            maximum=self.hi if numeric and seen else None,
            categories=tuple(sorted(self.categories))
            if string and self.categories is not None
            else None,
            max_length=min(MAX_STRING_LENGTH, max(DEFAULT_MAX_LENGTH, longest))
            if string
            else DEFAULT_MAX_LENGTH,
        )


def _float_or_inf(value: float) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _parse_cell(text: str) -> Any:
    """One CSV cell as a JSON-ish value: "" → None, true/false, int, float, else the string."""
    if not text:
        return None
    stripped = text.strip()
    if stripped.lstrip("+-").isdigit():
        try:
            return int(stripped)
        except ValueError:
            pass
    if len(stripped) in (4, 5):
        lowered = stripped.lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
    try:
        return float(stripped)
    except ValueError:
        return text


__all__ = [
    "CONTRACT_VERSION",
    "DEFAULT_MAX_ROWS",
    "MAX_FIELDS",
    "MAX_ROWS_CAP",
    "Batch",
    "ContractViolation",
    "FieldSpec",
    "FieldType",
    "InputContract",
    "Violation",
    "derive_from_csv",
]
