"""A sampled anomalous row carries no values: the anomalous field as the bound it crossed,
the others as their reference bins."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.core.errors import InvalidInput
from bastion.monitoring.samples import MAX_FIELDS, NOT_PROFILED, UNSEEN, anomalous_sample
from bastion.registry.contract import FieldSpec, FieldType, InputContract
from bastion.registry.profile import build_profile

CONTRACT = InputContract(
    fields=(
        FieldSpec("age", FieldType.NUMBER, minimum=18.0, maximum=95.0),
        FieldSpec("income", FieldType.NUMBER, minimum=0.0, maximum=250_000.0),
        FieldSpec("city", FieldType.STRING, categories=("paris", "oslo"), closed=False),
    )
)
PROFILE = build_profile(
    {
        "age": np.linspace(18, 95, 400),
        "income": np.linspace(0, 250_000, 400),
        "city": ["paris", "oslo"] * 200,
    },
    bins=4,
)


def _batch(records: list[dict[str, object]]):
    return CONTRACT.validate_records(records)


def test_the_first_anomalous_row_is_described_without_its_values() -> None:
    batch = _batch(
        [
            {"age": 40, "income": 1000, "city": "paris"},  # fine
            {"age": 131.5, "income": 52_000, "city": "oslo"},  # age above the range
            {"age": 10, "income": 10, "city": "lima"},
        ]
    )
    sample = anomalous_sample(CONTRACT, batch.columns, batch.anomalies, PROFILE)
    assert sample is not None
    assert list(sample) == ["age", "income", "city"]  # the anomalous field first
    assert sample["age"] == "above the maximum 95"
    income = PROFILE.features["income"]
    assert sample["income"] == income.labels()[int(income.slot_indices([52_000.0])[0])]
    assert sample["city"] == "oslo"  # a category the training data had (the view shows it)
    text = repr(sample)
    assert "131" not in text
    assert "52000" not in text
    assert "52,000" not in text


def test_below_the_minimum_and_unseen_categories() -> None:
    batch = _batch([{"age": 3, "income": 5, "city": "lima"}])
    sample = anomalous_sample(CONTRACT, batch.columns, batch.anomalies, PROFILE)
    assert sample is not None
    assert sample["age"] == "below the minimum 18"
    assert sample["city"] == UNSEEN
    assert "lima" not in repr(sample)
    assert "3" not in sample["age"].replace("18", "")


def test_no_profile_and_no_anomaly() -> None:
    batch = _batch([{"age": 120, "income": 5, "city": "paris"}])
    sample = anomalous_sample(CONTRACT, batch.columns, batch.anomalies, None)
    assert sample == {"age": "above the maximum 95", "income": NOT_PROFILED, "city": NOT_PROFILED}
    fine = _batch([{"age": 30, "income": 5, "city": "paris"}])
    assert fine.anomalies == {}
    assert anomalous_sample(CONTRACT, fine.columns, fine.anomalies, PROFILE) is None


def test_wide_contracts_are_cut_to_max_fields() -> None:
    fields = tuple(
        FieldSpec(f"f{i:03d}", FieldType.NUMBER, minimum=0.0, maximum=1.0) for i in range(100)
    )
    contract = InputContract(fields=fields)
    batch = contract.validate_records(
        [{f"f{i:03d}": (5.0 if i == 70 else 0.5) for i in range(100)}]
    )
    sample = anomalous_sample(contract, batch.columns, batch.anomalies, None)
    assert sample is not None
    assert len(sample) == MAX_FIELDS
    assert next(iter(sample)) == "f070"


def test_one_slot_label_is_the_labels_entry_and_bad_slots_are_refused() -> None:
    for feature in PROFILE.features.values():
        assert [feature.label(i) for i in range(feature.slots)] == feature.labels()
        for bad in (-1, feature.slots):
            with pytest.raises(InvalidInput):
                feature.label(bad)
