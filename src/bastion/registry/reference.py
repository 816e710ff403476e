"""The reference profile of a version's training data, computed at registration.

`profile_from_csv` reads the training CSV (the sealed dataset in the version's lineage) with the
same cell parser as contract derivation, keeps the contract's fields (number, integer and
boolean fields become float columns, string fields categorical ones; an empty cell is missing),
and profiles them in one pass (`bastion.registry.profile.build_profile`): quantile bins for
numbers, top-k categories, missing rates. The `target` column, when named, becomes the
profile's label distribution — the distribution a classifier's predictions are held against
(numeric when every label parses as a number, else categorical). Fields the CSV lacks are not
profiled (they are then not watched for drift); that is reported by the caller, not an error.

Imports only `bastion.registry.contract`, `bastion.registry.profile` and below.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import numpy as np

from bastion.core.errors import InvalidInput
from bastion.registry.contract import InputContract, _parse_cell
from bastion.registry.profile import ReferenceProfile, build_profile

MAX_PROFILE_ROWS = 5_000_000


def profile_from_csv(
    text: str, contract: InputContract, *, target: str | None = None
) -> ReferenceProfile:
    """The profile of the contract's fields (and of `target`) in CSV `text`."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise InvalidInput("the training CSV has no header row", code="contract.bad_data")
    index = {name: i for i, name in enumerate(header)}
    fields = [f for f in contract.fields if f.name in index]
    if not fields:
        raise InvalidInput(
            "the training CSV has none of the contract's fields", code="contract.bad_data"
        )
    raw: dict[str, list[Any]] = {f.name: [] for f in fields}
    labels: list[Any] = []
    target_at = index.get(target) if target is not None else None
    rows = 0
    for row in reader:
        if not row:
            continue
        rows += 1
        if rows > MAX_PROFILE_ROWS:
            raise InvalidInput(
                f"the training CSV has more than {MAX_PROFILE_ROWS} rows; profile a sample",
                code="contract.too_many_rows",
            )
        for f in fields:
            i = index[f.name]
            raw[f.name].append(_parse_cell(row[i]) if i < len(row) else None)
        if target_at is not None:
            labels.append(_parse_cell(row[target_at]) if target_at < len(row) else None)
    columns: dict[str, np.ndarray] = {}
    categorical = []
    for f in fields:
        if f.numeric:
            columns[f.name] = np.array([_number(v) for v in raw[f.name]], dtype=np.float64)
        else:
            columns[f.name] = np.array(
                [None if v is None else str(v) for v in raw[f.name]], dtype=object
            )
            categorical.append(f.name)
    prediction = None
    if target_at is not None:
        if all(v is None or isinstance(v, int | float | bool) for v in labels):
            prediction = np.array([_number(v) for v in labels], dtype=np.float64)
        else:
            prediction = np.array([None if v is None else str(v) for v in labels], dtype=object)
    return build_profile(columns, prediction=prediction, categorical=categorical)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        number = float(value)
        return number if not math.isnan(number) else math.nan
    return math.nan
