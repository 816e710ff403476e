"""Reference profiles: the compact per-feature summary of a dataset that drift is measured against.

A `ReferenceProfile` is built once, in one pass over each column, from a model's training (or a
reference) dataset and stored with the version. It holds, per feature, the reference counts over
a fixed set of *slots*, so that current data (a batch file or a gateway's rolling window) can be
binned into the same slots and compared count against count (`bastion.monitoring.drift`).

Slot layout (the last slot is always "missing"):

    numeric      len(edges) + 1 bins, then 1 missing slot
                 slot of v = np.searchsorted(edges, v, side="right"), i.e. the bins are
                 (-inf, e0), [e0, e1), ..., [e_last, +inf); -inf and +inf fall in the outer
                 bins; NaN (and None) is missing
    categorical  len(categories) slots (the reference's top-k by count, ties broken by name),
                 then 1 "other" slot (every value not in the top-k, including values never seen
                 in the reference), then 1 missing slot (None or NaN)

Edges (numeric):
- a column with at most `bins` distinct finite values is *discrete*: one bin per value, with an
  edge between each pair of neighbours, plus an empty bin below the smallest and one above the
  largest value (so a value the reference never held below or above its range shows up as a
  slot with no reference mass: the numeric analogue of a new category). A constant column thus
  has three bins: below, the value, above.
- otherwise the edges are the quantiles (np.quantile, linear) at 1/bins, ..., (bins-1)/bins of
  the finite values, de-duplicated (heavy ties merge bins);
- a column with no finite value has no edges (one bin, holding its infinities).
Every edge is then replaced by the number with the fewest significant digits near it: within
(e - gap/10, e] for a quantile edge (gap: to its nearest neighbour edge), within the middle half
of the gap between two values for a discrete one (so it sits strictly between them). The counts
are taken with the rounded edges, so they stay exact, and a 50-feature, 10-bin profile stays a
few kilobytes of JSON (-1.3 rather than -1.2815515655446004).

Categories are strings. A categorical column given as numbers (named in `categorical=`) maps
each value to text: integers and integral floats as the integer ("3" for both 3 and 3.0), other
floats as `repr`, booleans as "True"/"False", NaN and None as missing; the same mapping applies
when binning current data, so a reference read as integers and a current file read as floats
agree. Category strings longer than 200 characters are never kept in the top-k (they count as
"other"), which bounds the profile's size.

Limits: bins in [2, 100], top_k in [1, 1000], at most 10,000 features, names 1..256 characters;
violations and malformed JSON raise `InvalidInput` (code `monitoring.bad_profile`). Values that
cannot be binned (text in a numeric feature) raise `InvalidInput` (`monitoring.bad_values`).

It lives in the registry because the registry computes it at registration
(`bastion.registry.reference`); the monitoring layer measures drift with it. Imports only
`bastion.core`.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from bastion.core.canonical import canonical_json, sha256_digest
from bastion.core.errors import InvalidInput

FORMAT = 1

MIN_BINS = 2
MAX_BINS = 100
MIN_TOP_K = 1
MAX_TOP_K = 1000
MAX_FEATURES = 10_000
MAX_NAME_CHARS = 256
MAX_CATEGORY_CHARS = 200
# A discrete column has at most MAX_BINS values, plus the two outer edges.
MAX_EDGES = MAX_BINS + 1

Kind = Literal["numeric", "categorical"]

_BAD = "monitoring.bad_profile"
_BAD_VALUES = "monitoring.bad_values"
# Strided sample used to guess whether a column is discrete before checking it exactly.
_SAMPLE = 4096
# Up to this many edges, counting with one comparison per edge beats searchsorted + bincount.
_COMPARE_EDGES = 24


def _bad(message: str) -> InvalidInput:
    return InvalidInput(message, code=_BAD)


@dataclass(frozen=True)
class FeatureProfile:
    """One feature's reference distribution over its slots (layout in the module docstring)."""

    name: str
    kind: Kind
    edges: tuple[float, ...]
    categories: tuple[str, ...]
    counts: tuple[int, ...]
    _edges: npt.NDArray[np.float64] = field(init=False, repr=False, compare=False)
    _lookup: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name(self.name, "feature")
        # Tuples of plain Python numbers whatever was passed (lists, numpy scalars).
        for edge in self.edges:
            if isinstance(edge, (bool, np.bool_)) or not isinstance(
                edge, (int, float, np.integer, np.floating)
            ):
                raise _bad(f"feature {self.name!r}: edges must be numbers")
        for count in self.counts:
            if isinstance(count, (bool, np.bool_)) or not isinstance(count, (int, np.integer)):
                raise _bad(f"feature {self.name!r}: counts must be non-negative integers")
        object.__setattr__(self, "edges", tuple(float(e) for e in self.edges))
        object.__setattr__(self, "counts", tuple(int(c) for c in self.counts))
        object.__setattr__(self, "categories", tuple(self.categories))
        if self.kind == "numeric":
            if self.categories:
                raise _bad(f"numeric feature {self.name!r} has categories")
            if len(self.edges) > MAX_EDGES:
                raise _bad(f"feature {self.name!r} has more than {MAX_EDGES} edges")
            if not all(math.isfinite(edge) for edge in self.edges):
                raise _bad(f"feature {self.name!r}: edges must be finite")
            if any(b <= a for a, b in itertools.pairwise(self.edges)):
                raise _bad(f"feature {self.name!r}: edges must be strictly increasing")
        elif self.kind == "categorical":
            if self.edges:
                raise _bad(f"categorical feature {self.name!r} has edges")
            if len(self.categories) > MAX_TOP_K:
                raise _bad(f"feature {self.name!r} has more than {MAX_TOP_K} categories")
            for category in self.categories:
                if not isinstance(category, str) or len(category) > MAX_CATEGORY_CHARS:
                    raise _bad(
                        f"feature {self.name!r}: categories must be strings of at most "
                        f"{MAX_CATEGORY_CHARS} characters"
                    )
            if len(set(self.categories)) != len(self.categories):
                raise _bad(f"feature {self.name!r}: duplicate categories")
        else:
            raise _bad(f"feature {self.name!r}: kind must be numeric or categorical")
        if len(self.counts) != self.slots:
            raise _bad(f"feature {self.name!r}: {len(self.counts)} counts for {self.slots} slots")
        if any(count < 0 for count in self.counts):
            raise _bad(f"feature {self.name!r}: counts must be non-negative integers")
        object.__setattr__(self, "_edges", np.asarray(self.edges, dtype=np.float64))
        object.__setattr__(self, "_lookup", {c: i for i, c in enumerate(self.categories)})

    @property
    def slots(self) -> int:
        """Number of slots: bins (or categories + other) plus the missing slot."""
        if self.kind == "numeric":
            return len(self.edges) + 2
        return len(self.categories) + 2

    @property
    def missing_slot(self) -> int:
        return self.slots - 1

    @property
    def total(self) -> int:
        """Reference rows counted (missing included)."""
        return sum(self.counts)

    @property
    def missing_rate(self) -> float:
        total = self.total
        return self.counts[-1] / total if total else 0.0

    def slot_indices(self, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The slot of every value (int64, vectorised over numeric input).

        Numeric features take anything convertible to float64 (None and NaN are missing);
        categorical features take strings (None or NaN missing, unseen values "other") or
        numbers (mapped to text as the module docstring says). Raises `InvalidInput`
        (`monitoring.bad_values`) for values of the wrong sort.
        """
        if self.kind == "numeric":
            x = _as_float(values, self.name)
            slots = np.searchsorted(self._edges, x, side="right").astype(np.int64)
            slots[np.isnan(x)] = self.missing_slot
            return slots
        keys, inverse = _distinct(values, self.name)
        return np.asarray([self._category_slot(k) for k in keys], dtype=np.int64)[inverse]

    def labels(self) -> list[str]:
        """A human label per slot: the categories then "other", or the numeric bins between
        the edges (`< a`, `[a, b)`, `≥ z`), and "missing" last."""
        return [self.label(slot) for slot in range(self.slots)]

    def label(self, slot: int) -> str:
        """The human label of one slot (see `labels`)."""
        if not 0 <= slot < self.slots:
            raise _bad(f"feature {self.name!r}: no slot {slot}")
        if slot == self.missing_slot:
            return "missing"
        if self.kind == "categorical":
            return self.categories[slot] if slot < len(self.categories) else "other"
        if not self.edges:
            return "all"
        if slot == 0:
            return f"< {self.edges[0]:.4g}"
        if slot == len(self.edges):
            return f"≥ {self.edges[-1]:.4g}"
        return f"[{self.edges[slot - 1]:.4g}, {self.edges[slot]:.4g})"

    def bin(self, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Counts per slot (int64, length `slots`); equal to
        `np.bincount(self.slot_indices(values), minlength=self.slots)`, computed faster."""
        if self.kind == "numeric":
            return _numeric_counts(_as_float(values, self.name), self._edges)
        counts = np.zeros(self.slots, dtype=np.int64)
        for key, count in _tally(values, self.name).items():
            counts[self._category_slot(key)] += count
        return counts

    def _category_slot(self, key: str | None) -> int:
        if key is None:
            return self.missing_slot
        return self._lookup.get(key, len(self.categories))

    def to_json(self) -> dict[str, Any]:
        """`{"edges": [...], "counts": [...]}` or `{"categories": [...], "counts": [...]}`.

        The name is the key it is stored under in the profile; the kind is implied by which
        of `edges`/`categories` is present (both keep the document small)."""
        if self.kind == "numeric":
            return {"edges": list(self.edges), "counts": list(self.counts)}
        return {"categories": list(self.categories), "counts": list(self.counts)}

    @classmethod
    def from_json(cls, name: str, doc: Any) -> FeatureProfile:
        """Parse `to_json()` output strictly; `InvalidInput` (`monitoring.bad_profile`)."""
        if not isinstance(doc, dict):
            raise _bad(f"feature {name!r}: expected an object")
        keys = set(doc)
        if keys == {"edges", "counts"}:
            kind: Kind = "numeric"
            edges = _json_list(doc["edges"], name, "edges")
            categories: list[Any] = []
        elif keys == {"categories", "counts"}:
            kind = "categorical"
            edges = []
            categories = _json_list(doc["categories"], name, "categories")
        else:
            raise _bad(
                f"feature {name!r}: expected keys edges+counts or categories+counts, "
                f"got {sorted(keys)}"
            )
        counts = _json_list(doc["counts"], name, "counts")
        for count in counts:
            if isinstance(count, bool) or not isinstance(count, int):
                raise _bad(f"feature {name!r}: counts must be integers")
        return cls(
            name=name,
            kind=kind,
            edges=tuple(edges),
            categories=tuple(categories),
            counts=tuple(counts),
        )


@dataclass(frozen=True)
class ReferenceProfile:
    """Per-feature profiles (in column order) and the model output's profile, over `rows` rows.

    Every feature's (and the prediction's) counts add up to `rows`."""

    features: Mapping[str, FeatureProfile]
    prediction: FeatureProfile | None
    rows: int

    def __post_init__(self) -> None:
        features = dict(self.features)
        if len(features) > MAX_FEATURES:
            raise _bad(f"more than {MAX_FEATURES} features")
        if not features and self.prediction is None:
            raise _bad("a profile needs at least one feature or a prediction")
        if isinstance(self.rows, bool) or not isinstance(self.rows, int) or self.rows < 1:
            raise _bad("a profile needs a positive number of rows")
        for key, feature in features.items():
            if not isinstance(feature, FeatureProfile) or feature.name != key:
                raise _bad(f"feature {key!r} is stored under another name")
        for feature in [*features.values(), *([self.prediction] if self.prediction else [])]:
            if feature.total != self.rows:
                raise _bad(
                    f"feature {feature.name!r} counts {feature.total} rows, the profile {self.rows}"
                )
        object.__setattr__(self, "features", MappingProxyType(features))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "rows": self.rows,
            "features": {name: f.to_json() for name, f in self.features.items()},
            "prediction": self.prediction.to_json() if self.prediction else None,
        }

    @classmethod
    def from_json(cls, doc: Any) -> ReferenceProfile:
        """Parse `to_json()` output strictly; `InvalidInput` (`monitoring.bad_profile`) for an
        unknown format, wrong types, non-increasing edges, count/slot mismatches."""
        if not isinstance(doc, dict):
            raise _bad("a profile is a JSON object")
        if set(doc) != {"format", "rows", "features", "prediction"}:
            raise _bad(f"unexpected profile keys {sorted(doc)}")
        if type(doc["format"]) is not int or doc["format"] != FORMAT:
            raise _bad(f"unknown profile format {doc['format']!r} (expected {FORMAT})")
        rows = doc["rows"]
        if isinstance(rows, bool) or not isinstance(rows, int):
            raise _bad("rows must be an integer")
        features = doc["features"]
        if not isinstance(features, dict):
            raise _bad("features must be an object")
        if len(features) > MAX_FEATURES:
            raise _bad(f"more than {MAX_FEATURES} features")
        parsed = {name: FeatureProfile.from_json(name, f) for name, f in features.items()}
        prediction = doc["prediction"]
        return cls(
            features=parsed,
            prediction=None
            if prediction is None
            else FeatureProfile.from_json("prediction", prediction),
            rows=rows,
        )

    def digest(self) -> str:
        """`sha256:<hex>` of the RFC 8785 canonical JSON of `to_json()`."""
        return sha256_digest(canonical_json(self.to_json()))


def build_profile(
    columns: Mapping[str, npt.ArrayLike | Sequence[Any]],
    *,
    prediction: npt.ArrayLike | Sequence[Any] | None = None,
    categorical: Collection[str] = (),
    bins: int = 10,
    top_k: int = 20,
    prediction_kind: Literal["auto", "numeric", "categorical"] = "auto",
) -> ReferenceProfile:
    """Profile every column (one pass each) and the prediction, if given.

    A column is numeric when it has a numeric (or bool, as 0/1) dtype and is not named in
    `categorical`; text/object columns are categorical. `prediction_kind="auto"` follows the
    same rule (integer class labels are numeric with one bin per label, which works as well).
    Raises `InvalidInput` (`monitoring.bad_profile`) for limits, unequal column lengths, zero
    rows, unknown names in `categorical`, and dtypes that are neither numbers nor text.
    """
    _check_int(bins, "bins", MIN_BINS, MAX_BINS)
    _check_int(top_k, "top_k", MIN_TOP_K, MAX_TOP_K)
    if len(columns) > MAX_FEATURES:
        raise _bad(f"more than {MAX_FEATURES} features ({len(columns)})")
    unknown = sorted(set(categorical) - set(columns))
    if unknown:
        raise _bad(f"categorical names columns that do not exist: {', '.join(unknown)}")
    arrays = {name: _as_array(values, name) for name, values in columns.items()}
    for name in arrays:
        _check_name(name, "column")
    lengths = {a.shape[0] for a in arrays.values()}
    pred = None if prediction is None else _as_array(prediction, "prediction")
    if pred is not None:
        lengths.add(pred.shape[0])
    if not lengths:
        raise _bad("nothing to profile: no columns and no prediction")
    if len(lengths) > 1:
        raise _bad(f"columns have different lengths: {sorted(lengths)}")
    rows = lengths.pop()
    if rows == 0:
        raise _bad("the reference has no rows")
    wanted = set(categorical)
    features = {
        name: _profile_column(name, array, name in wanted, bins, top_k)
        for name, array in arrays.items()
    }
    predicted = None
    if pred is not None:
        as_category = prediction_kind == "categorical" or (
            prediction_kind == "auto" and pred.dtype.kind in "OUS"
        )
        predicted = _profile_column("prediction", pred, as_category, bins, top_k)
    return ReferenceProfile(features=features, prediction=predicted, rows=rows)


# -- numeric --------------------------------------------------------------------------------------


def _profile_column(
    name: str, values: npt.NDArray[Any], as_category: bool, bins: int, top_k: int
) -> FeatureProfile:
    if as_category or values.dtype.kind in "OUS":
        return _categorical_profile(name, values, top_k)
    if values.dtype.kind not in "biuf":
        raise _bad(f"column {name!r} has unsupported dtype {values.dtype}")
    x = values.astype(np.float64, copy=False)
    edges = _numeric_edges(x, bins)
    counts = _numeric_counts(x, np.asarray(edges, dtype=np.float64))
    return FeatureProfile(
        name=name,
        kind="numeric",
        edges=edges,
        categories=(),
        counts=tuple(int(c) for c in counts),
    )


def _numeric_edges(x: npt.NDArray[np.float64], bins: int) -> tuple[float, ...]:
    finite = x[np.isfinite(x)]  # a copy, so np.quantile may partition it in place
    if finite.size == 0:
        return ()
    distinct = np.unique(finite[:: max(1, finite.size // _SAMPLE)])
    if distinct.size <= bins:
        if not _all_in(finite, distinct):
            distinct = np.unique(finite)  # rare: a value the sample missed; check exactly
        if distinct.size <= bins:
            return _discrete_edges(distinct)
    quantiles = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1], overwrite_input=True)
    raw = np.unique(quantiles)
    if raw.size == 1:
        spread = float(np.max(finite) - np.min(finite))
        tolerances = [spread / (10 * bins)]
    else:
        gaps = np.diff(raw)
        tolerances = list(np.minimum(np.r_[gaps[0], gaps], np.r_[gaps, gaps[-1]]) / 10)
    edges = [
        _shortest_in(float(e) - float(t), float(e)) for e, t in zip(raw, tolerances, strict=True)
    ]
    return tuple(sorted(set(edges)))


def _all_in(finite: npt.NDArray[np.float64], distinct: npt.NDArray[np.float64]) -> bool:
    if distinct.size <= _COMPARE_EDGES:
        found = sum(int(np.count_nonzero(finite == d)) for d in distinct)
        return found == finite.size
    index = np.minimum(np.searchsorted(distinct, finite), distinct.size - 1)
    return bool(np.array_equal(distinct[index], finite))


def _discrete_edges(distinct: npt.NDArray[np.float64]) -> tuple[float, ...]:
    values = [float(v) for v in distinct]
    if len(values) >= 2:
        gap = min(b - a for a, b in itertools.pairwise(values))
    else:
        gap = max(abs(values[0]), 1.0) * 1e-3
    edges: list[float] = []
    low = values[0] - gap / 2
    if math.isfinite(low) and low < values[0]:
        edges.append(_shortest_in(low, values[0]))
    # Between neighbours a < b: the shortest number in the middle half of (a, b], so edges
    # read as midpoints (0.5 between 0 and 1) and never sit on a value.
    edges.extend(_between(a, b) for a, b in itertools.pairwise(values))
    high = values[-1] + gap / 2
    if math.isfinite(high) and high > values[-1]:
        edges.append(_shortest_in(values[-1], high))
    return tuple(edges)


def _between(a: float, b: float) -> float:
    quarter = b / 4 - a / 4  # no overflow for values of opposite sign near the float limits
    low, high = a + quarter, b - quarter
    return _shortest_in(low, high) if a <= low < high <= b else b


def _shortest_in(low: float, high: float) -> float:
    """The number with the fewest significant digits in (low, high]; `high` if none shorter."""
    middle = low / 2 + high / 2
    scale = max(abs(low), abs(high))
    if scale == 0.0 or not math.isfinite(middle):
        return high
    start = -math.floor(math.log10(scale)) - 1
    for digits in range(start, start + 18):
        try:
            candidate = round(middle, digits) + 0.0  # + 0.0 turns -0.0 into 0.0
        except OverflowError:  # near the float limit, rounding up to a power of ten overflows
            continue
        if low < candidate <= high and math.isfinite(candidate):
            return candidate
    return high


def _numeric_counts(
    x: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    missing = int(np.count_nonzero(np.isnan(x)))
    present = x.size - missing
    if edges.size <= _COMPARE_EDGES:
        below = [int(np.count_nonzero(x < e)) for e in edges]  # NaN compares False
        bins = np.diff(np.asarray([0, *below, present], dtype=np.int64))
    else:
        slots = np.searchsorted(edges, x[~np.isnan(x)], side="right")
        bins = np.bincount(slots, minlength=edges.size + 1).astype(np.int64)
    return np.append(bins, missing).astype(np.int64)


def _as_float(values: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidInput(
            f"feature {name!r} is numeric in the reference but holds values that are not numbers",
            code=_BAD_VALUES,
        ) from error
    if x.ndim != 1:
        raise InvalidInput(f"feature {name!r}: expected a 1-D array", code=_BAD_VALUES)
    return x


def _as_array(values: Any, name: str) -> npt.NDArray[Any]:
    array = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    if array.ndim != 1:
        raise _bad(f"column {name!r} is not one-dimensional")
    if not isinstance(values, np.ndarray):
        # A plain list: numbers (and bools) become a numeric array, anything else stays object;
        # None is missing (NaN) there.
        items = array.tolist()
        if items and all(v is None or isinstance(v, (bool, int, float)) for v in items):
            array = np.asarray([np.nan if v is None else v for v in items], dtype=np.float64)
    return array


# -- categorical ----------------------------------------------------------------------------------


def _categorical_profile(name: str, values: npt.NDArray[Any], top_k: int) -> FeatureProfile:
    tally = _tally(values, name)
    missing = tally.pop(None, 0)
    eligible = [k for k in tally if k is not None and len(k) <= MAX_CATEGORY_CHARS]
    eligible.sort(key=lambda k: (-tally[k], k))
    top = eligible[:top_k]
    kept = sum(tally[k] for k in top)
    other = sum(tally.values()) - kept
    return FeatureProfile(
        name=name,
        kind="categorical",
        edges=(),
        categories=tuple(top),
        counts=(*(tally[k] for k in top), other, missing),
    )


def category_key(value: Any) -> str | None:
    """The category text of one value (None for missing), as the module docstring says."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if math.isnan(number):
            return None
        if number.is_integer() and abs(number) < 2**53:
            return str(int(number))
        return repr(number)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _tally(values: npt.ArrayLike, name: str) -> Counter[str | None]:
    """Counts per category key, counting each distinct raw value once (Counter runs in C)."""
    array = _category_array(values, name)
    tally: Counter[str | None] = Counter()
    if array.dtype.kind == "O":
        try:
            raw_counts = Counter(array.tolist())
        except TypeError as error:  # unhashable values (lists, dicts) are not categories
            raise _unhashable(name) from error
        for raw, count in raw_counts.items():
            tally[category_key(raw)] += count
        return tally
    keys, counts = np.unique(array, return_counts=True, equal_nan=True)
    for raw, count in zip(keys.tolist(), counts.tolist(), strict=True):
        tally[category_key(raw)] += count
    return tally


def _distinct(values: npt.ArrayLike, name: str) -> tuple[list[str | None], npt.NDArray[np.intp]]:
    """Distinct category keys and, per value, the index of its key."""
    array = _category_array(values, name)
    if array.dtype.kind != "O":
        uniques, inverse = np.unique(array, return_inverse=True, equal_nan=True)
        return [category_key(u) for u in uniques.tolist()], inverse.reshape(-1)
    index: dict[Any, int] = {}
    keys: list[str | None] = []
    nan_index = -1
    codes = np.empty(array.shape[0], dtype=np.intp)
    for i, raw in enumerate(array.tolist()):
        try:
            position = index.get(raw)
        except TypeError as error:
            raise _unhashable(name) from error
        if position is None:
            if isinstance(raw, float) and math.isnan(raw):
                # Every NaN object is a different dict key; give them one index.
                if nan_index < 0:
                    nan_index = len(keys)
                    keys.append(None)
                codes[i] = nan_index
                continue
            position = index[raw] = len(keys)
            keys.append(category_key(raw))
        codes[i] = position
    return keys, codes


def _unhashable(name: str) -> InvalidInput:
    return InvalidInput(
        f"feature {name!r}: values must be strings, numbers or None", code=_BAD_VALUES
    )


def _category_array(values: npt.ArrayLike, name: str) -> npt.NDArray[Any]:
    array = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    if array.ndim != 1:
        raise InvalidInput(f"feature {name!r}: expected a 1-D array", code=_BAD_VALUES)
    if array.dtype.kind in "US":
        return array.astype(object)
    if array.dtype.kind not in "Obiuf":
        raise InvalidInput(f"feature {name!r}: unsupported dtype {array.dtype}", code=_BAD_VALUES)
    return array


# -- validation -----------------------------------------------------------------------------------


def _check_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS:
        raise _bad(f"{what} names must be strings of 1 to {MAX_NAME_CHARS} characters")


def _check_int(value: Any, what: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"{what} must be an integer in [{low}, {high}], got {value!r}")


def _json_list(value: Any, name: str, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise _bad(f"feature {name!r}: {what} must be a list")
    return value
