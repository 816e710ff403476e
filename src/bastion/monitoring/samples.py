"""A redacted sample of an anomalous request, for the debug dashboard and incident snapshots.

The gateway keeps no input values. When a request carries a value outside what training saw
(the contract's anomalies), `anomalous_sample` describes one such row without its values:

* the anomalous field as what it was not — "above the maximum 28.11", "below the minimum 0",
  "a category not seen in training" — the bound is the contract's, the value is never kept;
* every other field as the reference-profile bin it falls in (`[12.3, 14.1)`, a category the
  training data had, "missing") — the same bins the debug view already shows for the
  training data, so a person sees the row's shape, not the person behind it.

Fields are listed anomalous first, then in contract order, at most `MAX_FIELDS`. Without a
reference profile the other fields show as "not profiled".

Imports `bastion.registry` and below only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import numpy as np

from bastion.core.errors import InvalidInput
from bastion.registry.contract import FieldSpec, InputContract
from bastion.registry.profile import ReferenceProfile

MAX_FIELDS: Final = 40
UNSEEN: Final = "a category not seen in training"
NOT_PROFILED: Final = "not profiled"


def anomalous_sample(
    contract: InputContract,
    columns: Mapping[str, np.ndarray],
    anomalies: Mapping[tuple[str, str], int],
    profile: ReferenceProfile | None,
) -> dict[str, str] | None:
    """field → description of the first anomalous row of a validated request (see the module
    docstring); None when no row is outside the contract (nothing to show)."""
    specs = {spec.name: spec for spec in contract.fields}
    flagged = [specs[name] for name, _ in anomalies if name in specs]
    row = _first_row(flagged, columns)
    if row is None:
        return None
    out: dict[str, str] = {}
    outside = {spec.name for spec in flagged if _outside(spec, columns[spec.name][row])}
    ordered = [specs[n] for n in sorted(outside)] + [
        s for s in contract.fields if s.name not in outside
    ]
    for spec in ordered[:MAX_FIELDS]:
        value = columns[spec.name][row]
        if spec.name in outside:
            out[spec.name] = _what_it_was_not(spec, value)
        else:
            out[spec.name] = _bin(spec, value, profile)
    return out


def _first_row(flagged: list[FieldSpec], columns: Mapping[str, np.ndarray]) -> int | None:
    rows = None
    for spec in flagged:
        column = columns.get(spec.name)
        if column is None:
            continue
        if spec.numeric:
            x = np.asarray(column, dtype=np.float64)
            low = -math.inf if spec.minimum is None else spec.minimum
            high = math.inf if spec.maximum is None else spec.maximum
            mask = (x < low) | (x > high)
        else:
            mask = np.fromiter((_outside(spec, v) for v in column), dtype=bool, count=len(column))
        rows = mask if rows is None else rows | mask
    if rows is None or not rows.any():
        return None
    return int(np.argmax(rows))


def _outside(spec: FieldSpec, value: Any) -> bool:
    if value is None:
        return False
    if spec.numeric:
        x = float(value)
        if math.isnan(x):
            return False
        return (spec.minimum is not None and x < spec.minimum) or (
            spec.maximum is not None and x > spec.maximum
        )
    return spec.categories is not None and str(value) not in spec.categories


def _what_it_was_not(spec: FieldSpec, value: Any) -> str:
    if not spec.numeric:
        return UNSEEN
    if spec.maximum is not None and float(value) > spec.maximum:
        return f"above the maximum {spec.maximum:.6g}"
    return f"below the minimum {spec.minimum:.6g}"


def _bin(spec: FieldSpec, value: Any, profile: ReferenceProfile | None) -> str:
    feature = profile.features.get(spec.name) if profile is not None else None
    if feature is None:
        return NOT_PROFILED
    dtype = np.float64 if spec.numeric and feature.kind == "numeric" else object
    try:
        slot = int(feature.slot_indices(np.asarray([value], dtype=dtype))[0])
    except InvalidInput:  # a value the profile cannot bin: say so rather than guess
        return NOT_PROFILED
    return feature.label(slot)
