"""Differentially private statistics on a stored dataset column, paid from its privacy budget.

`DpStatistics.compute(caller, "loans", "income", "mean", epsilon=0.5, lower=0, upper=250_000)`
answers one aggregate question about one column with diffprivlib's tools (IBM), so an analyst
can learn about a dataset they may not read row by row, and the answer's privacy loss is
accounted for in the same ledger as DP training (`bastion.privacy.budget`).

Statistics and mechanisms (all pure ε-DP, δ = 0):

* `count` — the number of rows whose cell is not empty: `diffprivlib.tools.count_nonzero`
  (geometric mechanism, sensitivity 1);
* `sum`, `mean` — Laplace-based `diffprivlib.tools.sum` / `mean`, values clipped to the
  declared bounds;
* `median`, `quantile` — the exponential mechanism over the bounds (`diffprivlib.tools.
  quantile`);
* `histogram` — `bins` equal-width bins over the bounds, geometric noise per bin
  (`diffprivlib.tools.histogram`; disjoint bins compose in parallel).

**Public bounds.** Everything but `count` needs `lower` and `upper` from the caller: bounds
computed from the data would themselves leak (the minimum *is* somebody's value). Values
outside them are clipped (their influence is what the bounds limit). Empty cells are left out
of every statistic; a cell that is not a number is refused (`privacy.bad_data`, with the line,
never the value) before anything is spent.

**Neighbouring relation.** diffprivlib's `mean` treats the number of non-empty values as
public (bounded DP: datasets of one size that differ in one row); `count` and `sum` hold
under adding or removing a row. Said in each result's `mechanism`.

**Order.** Validate arguments, read and parse the column (the read is ledgered as
`privacy.dataset.read`), then spend ε atomically from the dataset's budget (the
`privacy_budget` gate; refused when it would overdraw, nothing spent), then compute with a
`BudgetAccountant` capped at ε. A `PrivacyLeakWarning` fails the call (`privacy.leak`) — after
the spend, which stays spent (errs towards the people in the data). The exact value is never
returned, logged or stored; only the noisy answer is.

Beside `bastion.supplychain` in the layers: imports `bastion.privacy.budget`,
`bastion.identity` and `bastion.core`; diffprivlib lazily (`privacy.extra_missing` without
the `privacy` extra).
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from bastion.core.errors import BastionError, ConfigError, InvalidInput
from bastion.identity import Caller
from bastion.privacy.budget import MAX_EPSILON, PrivacyBudgetService, TrainingData

__all__ = ["MAX_BINS", "STATISTICS", "DpStatistic", "DpStatistics"]

STATISTICS: Final = ("count", "sum", "mean", "median", "quantile", "histogram")
MAX_BINS: Final = 1000
_MECHANISMS: Final = {
    "count": "diffprivlib.tools.count_nonzero (geometric mechanism, sensitivity 1; add/remove "
    "one row)",
    "sum": "diffprivlib.tools.sum (Laplace mechanism, sensitivity max(|lower|, |upper|); "
    "add/remove one row)",
    "mean": "diffprivlib.tools.mean (Laplace mechanism, sensitivity (upper - lower) / n; n "
    "public, replace one row)",
    "median": "diffprivlib.tools.quantile (exponential mechanism over the bounds)",
    "quantile": "diffprivlib.tools.quantile (exponential mechanism over the bounds)",
    "histogram": "diffprivlib.tools.histogram (geometric mechanism per bin; bins compose in "
    "parallel)",
}


@dataclass(frozen=True, slots=True)
class DpStatistic:
    """A noisy answer and what it cost. `value` is a number, or for a histogram the noisy
    counts per bin (`edges` has one more entry than `value`)."""

    dataset: str
    version: int
    digest: str
    column: str
    statistic: str
    value: float | list[int]
    epsilon: float
    mechanism: str
    spend_id: str
    bounds: tuple[float, float] | None = None
    quantile: float | None = None
    edges: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "version": self.version,
            "digest": self.digest,
            "column": self.column,
            "statistic": self.statistic,
            "value": self.value,
            "epsilon": self.epsilon,
            "delta": 0.0,
            "mechanism": self.mechanism,
            "spend_id": self.spend_id,
            "bounds": list(self.bounds) if self.bounds is not None else None,
            "quantile": self.quantile,
            "edges": self.edges or None,
        }


class DpStatistics:
    """One-column DP aggregates over stored datasets, each spending from the budget."""

    def __init__(self, *, budgets: PrivacyBudgetService) -> None:
        self._budgets = budgets

    def compute(
        self,
        caller: Caller,
        dataset: str,
        column: str,
        statistic: str,
        *,
        epsilon: float,
        version: int | None = None,
        lower: float | None = None,
        upper: float | None = None,
        quantile: float | None = None,
        bins: int = 10,
    ) -> DpStatistic:
        """Answer `statistic` over `dataset`'s `column` with ε-DP (see the module docstring).

        Raises `InvalidInput` (`privacy.bad_statistic`, `privacy.bad_amount`,
        `privacy.bad_bounds`, `privacy.unknown_column`, `privacy.bad_data`), whatever
        `PrivacyBudgetService.training_data` and `spend` raise (`PermissionDenied`,
        `privacy.data_deleted`, `PolicyDenied` for an overdraw, ...), `ConfigError`
        (`privacy.extra_missing`), `BastionError` (`privacy.leak`).
        """
        _check_statistic(statistic, epsilon, quantile, bins)
        bounds = _check_bounds(statistic, lower, upper)
        if statistic == "median":
            quantile = 0.5
        tools, accountant_type, leak_type = _diffprivlib()
        data = self._budgets.training_data(caller, dataset, version)
        values, present = _column(data, column, numeric=statistic != "count")
        spend = self._budgets.spend(
            caller,
            data.name,
            epsilon,
            0.0,
            mechanism=_MECHANISMS[statistic],
            purpose=f"DP {statistic} of column {column} of {data.ref}",
            subject=f"statistic:{data.ref}:{column}",
        )
        accountant = accountant_type(epsilon=float(epsilon), delta=0.0)
        edges: list[float] = []
        with warnings.catch_warnings():
            warnings.simplefilter("error", leak_type)
            try:
                value: float | list[int]
                if statistic == "count":
                    value = int(
                        tools.count_nonzero(present, epsilon=epsilon, accountant=accountant)
                    )
                elif statistic in ("sum", "mean"):
                    fn = tools.sum if statistic == "sum" else tools.mean
                    value = float(fn(values, epsilon=epsilon, bounds=bounds, accountant=accountant))
                elif statistic in ("median", "quantile"):
                    value = float(
                        tools.quantile(
                            values, quantile, epsilon=epsilon, bounds=bounds, accountant=accountant
                        )
                    )
                else:
                    counts, bin_edges = tools.histogram(
                        values, epsilon=epsilon, bins=bins, range=bounds, accountant=accountant
                    )
                    value = [int(c) for c in counts]
                    edges = [float(e) for e in bin_edges]
            except leak_type as leak:
                raise BastionError(
                    f"diffprivlib reports a privacy leak; refusing the answer: {leak}",
                    code="privacy.leak",
                ) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(  # a mean or quantile of no values
                f"column {column} of {data.ref} has no values to aggregate",
                code="privacy.bad_data",
            )
        return DpStatistic(
            dataset=data.name,
            version=data.version,
            digest=data.digest,
            column=column,
            statistic=statistic,
            value=value,
            epsilon=float(accountant.total()[0]),
            mechanism=_MECHANISMS[statistic],
            spend_id=spend.id,
            bounds=bounds,
            quantile=quantile if statistic in ("median", "quantile") else None,
            edges=edges,
        )


def _diffprivlib() -> tuple[Any, Any, type[Warning]]:
    try:
        import diffprivlib.tools as tools  # type: ignore[import-untyped,unused-ignore]
        from diffprivlib import BudgetAccountant  # type: ignore[import-untyped,unused-ignore]
        from diffprivlib.utils import PrivacyLeakWarning  # type: ignore[import-untyped,unused-ignore]
    except ImportError as error:
        raise ConfigError(
            f"DP statistics need the privacy extra ({error.name or error}); install it with: "
            "pip install 'bastion[privacy]'",
            code="privacy.extra_missing",
        ) from None
    return tools, BudgetAccountant, PrivacyLeakWarning


def _finite(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _check_statistic(statistic: str, epsilon: float, quantile: float | None, bins: int) -> None:
    if statistic not in STATISTICS:
        raise InvalidInput(
            f"unknown statistic {statistic!r}: use one of {', '.join(STATISTICS)}",
            code="privacy.bad_statistic",
        )
    if not _finite(epsilon) or not 0 < epsilon <= MAX_EPSILON:
        raise InvalidInput(
            f"epsilon must be a finite number in (0, {MAX_EPSILON:g}]", code="privacy.bad_amount"
        )
    if statistic == "quantile":
        if quantile is None or not _finite(quantile) or not 0 <= quantile <= 1:
            raise InvalidInput(
                "a quantile needs --quantile between 0 and 1", code="privacy.bad_statistic"
            )
    elif quantile is not None and statistic != "median":
        raise InvalidInput(
            f"--quantile applies to the quantile statistic, not {statistic}",
            code="privacy.bad_statistic",
        )
    if statistic == "histogram" and (
        isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= MAX_BINS
    ):
        raise InvalidInput(
            f"bins must be a whole number from 1 to {MAX_BINS}", code="privacy.bad_statistic"
        )


def _check_bounds(
    statistic: str, lower: float | None, upper: float | None
) -> tuple[float, float] | None:
    if statistic == "count":
        if lower is not None or upper is not None:
            raise InvalidInput(
                "a count needs no bounds (its sensitivity is 1)", code="privacy.bad_bounds"
            )
        return None
    if lower is None or upper is None:
        raise InvalidInput(
            f"a DP {statistic} needs public bounds --lower and --upper (bounds read from the "
            "data would leak it)",
            code="privacy.bad_bounds",
        )
    if not _finite(lower) or not _finite(upper) or not float(lower) < float(upper):
        raise InvalidInput(
            "the bounds must be finite numbers with lower < upper", code="privacy.bad_bounds"
        )
    return float(lower), float(upper)


def _column(data: TrainingData, column: str, *, numeric: bool) -> tuple[np.ndarray, np.ndarray]:
    """The column's numbers (empty cells left out; only when `numeric`) and a 0/1 array of
    non-empty cells."""
    try:
        text = data.data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{data.ref} is not UTF-8 CSV", code="privacy.bad_data") from None
    reader = csv.reader(io.StringIO(text))
    try:
        header: Sequence[str] | None = next(reader, None)
        if not header:
            raise InvalidInput(f"{data.ref} has no header row", code="privacy.bad_data")
        if column not in header:
            raise InvalidInput(
                f"{data.ref} has no column {column!r}", code="privacy.unknown_column"
            )
        at = list(header).index(column)
        numbers: list[float] = []
        present: list[int] = []
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise InvalidInput(
                    f"{data.ref}: line {reader.line_num} has {len(row)} values; the header has "
                    f"{len(header)}",
                    code="privacy.bad_data",
                )
            cell = row[at].strip()
            if not cell:
                present.append(0)
                continue
            present.append(1)
            if not numeric:
                continue
            try:
                number = float(cell)
            except ValueError:
                number = math.nan
            if not math.isfinite(number):
                raise InvalidInput(
                    f"{data.ref}: line {reader.line_num} of column {column!r} is not a finite "
                    "number",
                    code="privacy.bad_data",
                )
            numbers.append(number)
    except csv.Error as error:
        raise InvalidInput(
            f"{data.ref}: CSV line {reader.line_num}: {error}", code="privacy.bad_data"
        ) from None
    return np.asarray(numbers, dtype=np.float64), np.asarray(present, dtype=np.int64)
