"""Input contracts: the document, every violation code, anomalies, derivation, batches."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_breast_cancer, load_iris

from bastion.core.errors import ErrorKind, InvalidInput
from bastion.registry.contract import (
    MAX_FIELDS,
    MAX_ROWS_CAP,
    VECTOR_MIN_ROWS,
    Batch,
    ContractViolation,
    FieldSpec,
    FieldType,
    InputContract,
    Violation,
    derive_from_csv,
)

DOC: dict[str, Any] = {
    "contract_version": 1,
    "max_rows": 1000,
    "fields": [
        {
            "name": "age",
            "type": "number",
            "required": True,
            "nullable": False,
            "min": 18,
            "max": 95,
        },
        {"name": "n_items", "type": "integer", "min": 0, "max": 40},
        {"name": "member", "type": "boolean"},
        {
            "name": "region",
            "type": "string",
            "categories": ["n", "s", "e", "w"],
            "closed": False,
            "max_length": 64,
        },
    ],
}
GOOD = {"age": 30.5, "n_items": 3, "member": True, "region": "n"}
# 1 row takes the fused small-batch path; VECTOR_MIN_ROWS + 4 the vectorised per-column one.
SIZES = [1, 3, VECTOR_MIN_ROWS + 4]


@pytest.fixture
def contract() -> InputContract:
    return InputContract.from_json(DOC)


def rows_with(n: int, bad_row: int | None = None, **changes: Any) -> list[dict[str, Any]]:
    """n good rows; `changes` applied to row `bad_row` (default: the last). `...` deletes."""
    rows = [dict(GOOD) for _ in range(n)]
    target = rows[n - 1 if bad_row is None else bad_row]
    for key, value in changes.items():
        if value is ...:
            del target[key]
        else:
            target[key] = value
    return rows


def violations_of(call: Any, *args: Any) -> list[Violation]:
    with pytest.raises(ContractViolation) as info:
        call(*args)
    err = info.value
    assert err.code == "contract.violation"
    assert err.kind is ErrorKind.INVALID
    assert isinstance(err, InvalidInput)
    assert err.details["total"] == len(err.violations)
    return list(err.violations)


def codes(violations: list[Violation]) -> list[tuple[int | None, str | None, str]]:
    return [(v.row, v.field, v.code) for v in violations]


def as_columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {key: [r[key] for r in rows] for key in rows[0]}


# ---------------------------------------------------------------------- the document


def test_example_document_parses_and_round_trips(contract: InputContract) -> None:
    assert contract.names == ("age", "n_items", "member", "region")
    assert contract.max_rows == 1000
    age, n_items, member, region = contract.fields
    assert age == FieldSpec("age", FieldType.NUMBER, minimum=18.0, maximum=95.0)
    assert n_items.type is FieldType.INTEGER
    assert n_items.required
    assert not n_items.nullable
    assert member.type is FieldType.BOOLEAN
    assert region.categories == ("n", "s", "e", "w")
    assert region.max_length == 64
    doc = contract.to_json()
    assert json.loads(json.dumps(doc)) == doc
    assert InputContract.from_json(doc) == contract
    assert doc["fields"][0] == DOC["fields"][0]  # integral bounds print as integers
    assert "max_length" not in doc["fields"][0]
    assert "categories" not in doc["fields"][1]


def test_defaults() -> None:
    c = InputContract.from_json(
        {"contract_version": 1, "fields": [{"name": "s", "type": "string"}]}
    )
    (s,) = c.fields
    assert (c.max_rows, s.required, s.nullable, s.max_length, s.categories, s.closed) == (
        1000,
        True,
        False,
        256,
        None,
        False,
    )


def _doc_with(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(DOC)
    for path, value in changes.items():
        target: Any = doc
        *parents, last = path.split("__")
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        key: Any = int(last) if isinstance(target, list) else last
        if value is ...:
            del target[key]
        else:
            target[key] = value
    return doc


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        pytest.param([], "JSON object", id="not-an-object"),
        pytest.param(_doc_with(extra=1), "unknown key", id="unknown-top-key"),
        pytest.param(_doc_with(contract_version=...), "contract_version", id="no-version"),
        pytest.param(_doc_with(contract_version=2), "contract_version", id="version-2"),
        pytest.param(_doc_with(contract_version=True), "contract_version", id="version-bool"),
        pytest.param(_doc_with(max_rows="10"), "max_rows", id="max-rows-string"),
        pytest.param(_doc_with(max_rows=1.5), "max_rows", id="max-rows-float"),
        pytest.param(_doc_with(max_rows=0), "max_rows", id="max-rows-zero"),
        pytest.param(_doc_with(max_rows=MAX_ROWS_CAP + 1), "max_rows", id="max-rows-over-cap"),
        pytest.param(_doc_with(fields=...), "fields", id="no-fields"),
        pytest.param(_doc_with(fields={"a": 1}), "fields", id="fields-not-list"),
        pytest.param(_doc_with(fields=[]), "1 to", id="fields-empty"),
        pytest.param(
            _doc_with(fields=[{"name": f"f{i}", "type": "number"} for i in range(MAX_FIELDS + 1)]),
            "at most",
            id="too-many-fields",
        ),
        pytest.param(_doc_with(fields__0="age"), "JSON object", id="field-not-object"),
        pytest.param(_doc_with(fields__0__unit="years"), "unknown key", id="unknown-field-key"),
        pytest.param(_doc_with(fields__0__name=...), "name is required", id="no-name"),
        pytest.param(_doc_with(fields__0__type=...), "type is required", id="no-type"),
        pytest.param(_doc_with(fields__0__name=7), "name must be a string", id="name-not-str"),
        pytest.param(_doc_with(fields__0__name=""), "field name", id="name-empty"),
        pytest.param(_doc_with(fields__0__name="a b"), "field name", id="name-space"),
        pytest.param(_doc_with(fields__0__name="x" * 129), "field name", id="name-too-long"),
        pytest.param(_doc_with(fields__1__name="age"), "duplicate", id="duplicate-name"),
        pytest.param(_doc_with(fields__0__type="float"), "type must be", id="bad-type"),
        pytest.param(_doc_with(fields__0__type=["number"]), "type must be", id="type-list"),
        pytest.param(_doc_with(fields__0__required="yes"), "required", id="required-str"),
        pytest.param(_doc_with(fields__0__nullable=1), "nullable", id="nullable-int"),
        pytest.param(_doc_with(fields__3__closed=None), "closed", id="closed-null"),
        pytest.param(_doc_with(fields__0__min="18"), "min must be a number", id="min-str"),
        pytest.param(_doc_with(fields__0__max=True), "max must be a number", id="max-bool"),
        pytest.param(_doc_with(fields__0__min=math.nan), "finite", id="min-nan"),
        pytest.param(_doc_with(fields__0__max=math.inf), "finite", id="max-inf"),
        pytest.param(_doc_with(fields__0__min=10**400), "finite", id="min-huge-int"),
        pytest.param(_doc_with(fields__0__min=96), "greater than max", id="min-over-max"),
        pytest.param(_doc_with(fields__2__min=0), "only to number", id="min-on-boolean"),
        pytest.param(_doc_with(fields__3__max=3), "only to number", id="max-on-string"),
        pytest.param(_doc_with(fields__0__categories=["a"]), "only to string", id="cats-number"),
        pytest.param(_doc_with(fields__2__closed=False), "only to string", id="closed-boolean"),
        pytest.param(_doc_with(fields__0__max_length=5), "only to string", id="maxlen-number"),
        pytest.param(_doc_with(fields__3__categories="nsew"), "list of strings", id="cats-str"),
        pytest.param(_doc_with(fields__3__categories=["n", 1]), "list of strings", id="cats-int"),
        pytest.param(_doc_with(fields__3__categories=["n", "n"]), "repeat", id="cats-duplicate"),
        pytest.param(
            _doc_with(fields__3__categories=..., fields__3__closed=True),
            "closed needs",
            id="closed-no-cats",
        ),
        pytest.param(_doc_with(fields__3__max_length="64"), "max_length", id="maxlen-str"),
        pytest.param(_doc_with(fields__3__max_length=0), "max_length", id="maxlen-zero"),
        pytest.param(_doc_with(fields__3__max_length=2**21), "max_length", id="maxlen-huge"),
        pytest.param(
            _doc_with(fields__3__categories=["long"], fields__3__max_length=3),
            "longer than max_length",
            id="category-too-long",
        ),
    ],
)
def test_document_errors(doc: Any, needle: str) -> None:
    with pytest.raises(InvalidInput) as info:
        InputContract.from_json(doc)
    assert info.value.code == "contract.invalid"
    assert needle in info.value.message


def test_constructor_checks_specs_too() -> None:
    with pytest.raises(InvalidInput, match="greater than max") as info:
        InputContract(fields=(FieldSpec("a", FieldType.NUMBER, minimum=2, maximum=1),))
    assert info.value.code == "contract.invalid"
    with pytest.raises(InvalidInput, match="not a FieldSpec"):
        InputContract(fields=({"name": "a"},))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="unknown type"):
        InputContract(fields=(FieldSpec("a", "float"),))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="max_rows"):
        InputContract(fields=(FieldSpec("a", FieldType.NUMBER),), max_rows=True)
    # Lists and plain strings are normalised, so equal contracts compare equal.
    c = InputContract(
        fields=[FieldSpec("s", "string", categories=["a"])],  # type: ignore[arg-type]
    )
    assert c.fields[0].categories == ("a",)
    assert c.fields[0].type is FieldType.STRING
    assert hash(c) == hash(InputContract.from_json(c.to_json()))


# ---------------------------------------------------------------------- clean requests


@pytest.mark.parametrize("n", SIZES)
def test_clean_rows_validate(contract: InputContract, n: int) -> None:
    rows = rows_with(n)
    for batch in (contract.validate_records(rows), contract.validate_columns(as_columns(rows))):
        assert batch.rows == n
        assert list(batch.columns) == list(contract.names)
        assert batch.columns["age"].dtype == np.float64
        np.testing.assert_array_equal(batch.columns["n_items"], [3.0] * n)
        np.testing.assert_array_equal(batch.columns["member"], [1.0] * n)
        assert batch.columns["region"].dtype == object
        assert batch.columns["region"].tolist() == ["n"] * n
        assert batch.anomalies == {}


@pytest.mark.parametrize("n", SIZES)
def test_string_only_and_single_field_contracts(n: int) -> None:
    strings = InputContract(fields=(FieldSpec("s", FieldType.STRING),))
    batch = strings.validate_records([{"s": f"v{i}"} for i in range(n)])
    assert batch.columns["s"].tolist() == [f"v{i}" for i in range(n)]
    one = InputContract(fields=(FieldSpec("s", FieldType.STRING), FieldSpec("x", FieldType.NUMBER)))
    batch = one.validate_records([{"s": "a", "x": i} for i in range(n)])
    assert batch.columns["x"].tolist() == [float(i) for i in range(n)]
    assert batch.columns["s"].tolist() == ["a"] * n


@pytest.mark.parametrize("n", SIZES)
def test_integral_floats_are_integers(contract: InputContract, n: int) -> None:
    rows = rows_with(n, n_items=7.0)
    assert contract.validate_records(rows).columns["n_items"][-1] == 7.0
    (v,) = violations_of(contract.validate_records, rows_with(n, n_items=7.5))
    assert codes([v]) == [(n - 1, "n_items", "contract.wrong_type")]


def test_matrix_numeric_contract() -> None:
    c = InputContract(
        fields=(
            FieldSpec("a", FieldType.NUMBER),
            FieldSpec("b", FieldType.INTEGER),
            FieldSpec("c", FieldType.BOOLEAN, nullable=True),
        )
    )
    for n in SIZES:
        rows = [{"a": i + 0.5, "b": i, "c": [True, False, None][i % 3]} for i in range(n)]
        expected = np.array(
            [[i + 0.5, i, [1.0, 0.0, math.nan][i % 3]] for i in range(n)], dtype=np.float64
        )
        for batch in (c.validate_records(rows), c.validate_columns(as_columns(rows))):
            m = batch.matrix()
            assert m.dtype == np.float32
            assert m.shape == (n, 3)
            assert m.flags.c_contiguous
            np.testing.assert_array_equal(batch.matrix(np.float64), expected)
            np.testing.assert_array_equal(batch.columns["b"], expected[:, 1])
            # The batch is read-only; matrix() is the caller's own copy.
            with pytest.raises(ValueError, match="read-only"):
                batch.columns["a"][0] = 99.0
            mine = batch.matrix(np.float64)
            mine[0, 0] = 99.0
            assert batch.columns["a"][0] == 0.5
    # A Batch built by hand (no precomputed block) gives the same matrix.
    hand = Batch(
        rows=2, columns={"x": np.array([1.0, 2.0]), "y": np.array([3.0, 4.0])}, anomalies={}
    )
    np.testing.assert_array_equal(hand.matrix(np.float64), [[1.0, 3.0], [2.0, 4.0]])


def test_matrix_refuses_string_fields(contract: InputContract) -> None:
    batch = contract.validate_records([GOOD])
    with pytest.raises(InvalidInput) as info:
        batch.matrix()
    assert info.value.code == "contract.not_numeric"
    assert "region" in info.value.message


@pytest.mark.parametrize("n", SIZES)
def test_nullable_and_optional_fields(n: int) -> None:
    c = InputContract(
        fields=(
            FieldSpec("x", FieldType.NUMBER, nullable=True),
            FieldSpec("k", FieldType.INTEGER, required=False),
            FieldSpec("s", FieldType.STRING, nullable=True),
        )
    )
    rows: list[dict[str, Any]] = [{"x": None, "s": None} for _ in range(n)]
    batch = c.validate_records(rows)
    assert np.isnan(batch.columns["x"]).all()
    assert np.isnan(batch.columns["k"]).all()
    assert batch.columns["s"].tolist() == [None] * n
    batch = c.validate_columns({"x": [1.5] * n, "s": ["a"] * n})  # optional column absent
    assert np.isnan(batch.columns["k"]).all()
    assert batch.columns["x"].tolist() == [1.5] * n
    # null is still refused where not nullable, and a required field must be present.
    strict = InputContract(fields=(FieldSpec("x", FieldType.NUMBER),))
    found = violations_of(strict.validate_records, [{"x": 1.0}] * (n - 1) + [{"x": None}])
    assert codes(found) == [(n - 1, "x", "contract.null")]


@pytest.mark.parametrize("n", SIZES)
def test_anomalies_are_counted_not_rejected(contract: InputContract, n: int) -> None:
    rows = rows_with(n)
    rows[0].update(age=120.0, region="north")  # above max, unseen category
    rows[-1].update(n_items=-1)  # below min (row 0 again when n == 1)
    batch = contract.validate_records(rows)
    assert batch.anomalies == {
        ("age", "out_of_range"): 1,
        ("n_items", "out_of_range"): 1,
        ("region", "unseen_category"): 1,
    }
    assert batch.columns["age"][0] == 120.0
    assert batch.columns["region"][0] == "north"
    assert contract.validate_columns(as_columns(rows)).anomalies == batch.anomalies
    # Boundary values are in range.
    assert contract.validate_records(rows_with(n, age=18, n_items=40)).anomalies == {}


def test_numpy_columns(contract: InputContract) -> None:
    n = VECTOR_MIN_ROWS + 1
    batch = contract.validate_columns(
        {
            "age": np.full(n, 50.0),
            "n_items": np.arange(n, dtype=np.int64) % 40,
            "member": np.ones(n, dtype=bool),
            "region": np.array(["n"] * n),
        }
    )
    assert batch.rows == n
    assert batch.columns["member"].tolist() == [1.0] * n
    bad = np.full(n, 50.0)
    bad[3] = np.nan
    found = violations_of(
        contract.validate_columns,
        {"age": bad, "n_items": np.full(n, 1.5), "member": np.ones(n), "region": ["n"] * n},
    )
    assert (3, "age", "contract.not_finite") in codes(found)
    assert (0, "n_items", "contract.wrong_type") in codes(found)
    assert (0, "member", "contract.wrong_type") in codes(found)  # floats, not booleans


# ---------------------------------------------------------------------- every violation code


def test_not_rows(contract: InputContract) -> None:
    for body in ({"age": 1}, "rows", 5, None):
        assert codes(violations_of(contract.validate_records, body)) == [
            (None, None, "contract.not_rows")
        ]
    found = violations_of(contract.validate_records, [GOOD, [1, 2], GOOD, "x"])
    assert codes(found) == [(1, None, "contract.not_rows"), (3, None, "contract.not_rows")]
    bodies: list[Any] = [[GOOD], "x"]
    for body in bodies:
        assert codes(violations_of(contract.validate_columns, body)) == [
            (None, None, "contract.not_rows")
        ]
    cols = as_columns([GOOD])
    cols["age"] = 30.5  # type: ignore[assignment]
    assert ("contract.not_rows", "age") in {
        (v.code, v.field) for v in violations_of(contract.validate_columns, cols)
    }


def test_empty(contract: InputContract) -> None:
    assert codes(violations_of(contract.validate_records, [])) == [(None, None, "contract.empty")]
    empty_cols: dict[str, list[Any]] = {name: [] for name in contract.names}
    assert codes(violations_of(contract.validate_columns, empty_cols)) == [
        (None, None, "contract.empty")
    ]


def test_too_many_rows_is_one_violation_before_rows_are_read() -> None:
    c = InputContract(fields=(FieldSpec("x", FieldType.NUMBER),), max_rows=5)
    assert c.validate_records([{"x": 1.0}] * 5).rows == 5
    garbage: list[Any] = ["not a row"] * 6
    found = violations_of(c.validate_records, garbage)
    assert codes(found) == [(None, None, "contract.too_many_rows")]
    assert "at most 5" in found[0].message
    found = violations_of(c.validate_columns, {"x": ["nope"] * 6})
    assert codes(found) == [(None, None, "contract.too_many_rows")]


@pytest.mark.parametrize("n", SIZES)
def test_missing_field(contract: InputContract, n: int) -> None:
    found = violations_of(contract.validate_records, rows_with(n, member=...))
    assert codes(found) == [(n - 1, "member", "contract.missing_field")]
    cols = as_columns(rows_with(n))
    del cols["member"]
    assert codes(violations_of(contract.validate_columns, cols)) == [
        (None, "member", "contract.missing_field")
    ]


@pytest.mark.parametrize("n", SIZES)
def test_unknown_field_reported_once_per_name(contract: InputContract, n: int) -> None:
    rows = [dict(GOOD, extra=1) for _ in range(n)]
    rows[0]["other"] = 2
    found = violations_of(contract.validate_records, rows)
    assert codes(found) == [
        (None, "extra", "contract.unknown_field"),
        (None, "other", "contract.unknown_field"),
    ]
    assert f"in {n} row(s)" in found[0].message
    assert "in 1 row(s)" in found[1].message
    cols = dict(as_columns(rows_with(n)), extra=[1] * n)
    assert codes(violations_of(contract.validate_columns, cols)) == [
        (None, "extra", "contract.unknown_field")
    ]


def test_unknown_field_names_are_clipped(contract: InputContract) -> None:
    (v,) = violations_of(contract.validate_records, [dict(GOOD, **{"k" * 10_000: 1})])
    assert v.field is not None
    assert len(v.field) < 200


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize(
    ("field", "value", "got"),
    [
        ("age", True, "boolean"),  # bool is never a number
        ("age", "30", "string"),
        ("age", [30], "array"),
        ("age", {"v": 30}, "object"),
        ("n_items", False, "boolean"),
        ("n_items", 2.5, None),
        ("member", 1, "number"),
        ("member", "true", "string"),
        ("region", 5, "number"),
        ("region", ["n"], "array"),
    ],
)
def test_wrong_type(
    contract: InputContract, n: int, field: str, value: Any, got: str | None
) -> None:
    for call, body in (
        (contract.validate_records, rows_with(n, **{field: value})),
        (contract.validate_columns, as_columns(rows_with(n, **{field: value}))),
    ):
        (v,) = violations_of(call, body)
        assert codes([v]) == [(n - 1, field, "contract.wrong_type")]
        if got:
            assert v.message.endswith(f"got {got}")


@pytest.mark.parametrize("n", SIZES)
def test_null(contract: InputContract, n: int) -> None:
    for field in contract.names:
        (v,) = violations_of(contract.validate_records, rows_with(n, **{field: None}))
        assert codes([v]) == [(n - 1, field, "contract.null")]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, 10**400],
    ids=["nan", "inf", "-inf", "huge-int"],
)
@pytest.mark.parametrize("field", ["age", "n_items"])
def test_not_finite(contract: InputContract, n: int, value: Any, field: str) -> None:
    (v,) = violations_of(contract.validate_records, rows_with(n, **{field: value}))
    assert codes([v]) == [(n - 1, field, "contract.not_finite")]
    (v,) = violations_of(contract.validate_columns, as_columns(rows_with(n, **{field: value})))
    assert codes([v]) == [(n - 1, field, "contract.not_finite")]


def test_json_nan_tokens_are_rejected(contract: InputContract) -> None:
    body = json.loads('[{"age": NaN, "n_items": 1, "member": true, "region": "n"}]')
    assert math.isnan(body[0]["age"])  # Python's json accepts the token ...
    (v,) = violations_of(contract.validate_records, body)  # ... the contract does not
    assert v.code == "contract.not_finite"
    body = json.loads('[{"age": Infinity, "n_items": -Infinity, "member": true, "region": "n"}]')
    assert [x.code for x in violations_of(contract.validate_records, body)] == [
        "contract.not_finite"
    ] * 2


@pytest.mark.parametrize("n", SIZES)
def test_unknown_category_when_closed(n: int) -> None:
    c = InputContract(
        fields=(FieldSpec("r", FieldType.STRING, categories=("a", "b"), closed=True),)
    )
    assert c.validate_records([{"r": "a"}] * n).anomalies == {}
    found = violations_of(c.validate_records, [{"r": "a"}] * (n - 1) + [{"r": "z"}])
    assert codes(found) == [(n - 1, "r", "contract.unknown_category")]
    found = violations_of(c.validate_columns, {"r": ["a"] * (n - 1) + ["z"]})
    assert codes(found) == [(n - 1, "r", "contract.unknown_category")]


@pytest.mark.parametrize("n", SIZES)
def test_too_long(contract: InputContract, n: int) -> None:
    assert contract.validate_records(rows_with(n, region="x" * 64)).rows == n
    (v,) = violations_of(contract.validate_records, rows_with(n, region="x" * 65))
    assert codes([v]) == [(n - 1, "region", "contract.too_long")]
    (v,) = violations_of(contract.validate_columns, as_columns(rows_with(n, region="x" * 65)))
    assert codes([v]) == [(n - 1, "region", "contract.too_long")]


def test_ragged_columns(contract: InputContract) -> None:
    cols = as_columns(rows_with(3))
    cols["age"] = cols["age"][:2]
    found = violations_of(contract.validate_columns, cols)
    assert codes(found) == [(None, None, "contract.ragged")]
    assert "age=2" in found[0].message


@pytest.mark.parametrize("n", SIZES)
def test_all_violations_are_collected(contract: InputContract, n: int) -> None:
    rows = rows_with(n, bad_row=0, age="old", member=..., region="x" * 100)
    found = violations_of(contract.validate_records, rows)
    assert codes(found) == [
        (0, "age", "contract.wrong_type"),
        (0, "member", "contract.missing_field"),
        (0, "region", "contract.too_long"),
    ]
    # Spread over rows and fields, request-level problems first, then by row.
    rows = rows_with(n)
    rows[-1].update(age=None, n_items=1.5, surprise=1)
    rows[0].update(member="yes")
    found = violations_of(contract.validate_records, rows)
    problems = [
        (0, "member", "contract.wrong_type"),
        (n - 1, "age", "contract.null"),
        (n - 1, "n_items", "contract.wrong_type"),
    ]
    order = list(contract.names)
    problems.sort(key=lambda p: (p[0], order.index(p[1])))
    assert codes(found) == [(None, "surprise", "contract.unknown_field"), *problems]


def test_error_details_are_capped_and_do_not_echo_values() -> None:
    c = InputContract(
        fields=(FieldSpec("a", FieldType.NUMBER), FieldSpec("b", FieldType.NUMBER)),
        max_rows=1000,
    )
    secret = "4111-1111-1111-1111"
    rows = [{"a": secret, "b": secret} for _ in range(1000)]
    with pytest.raises(ContractViolation) as info:
        c.validate_records(rows)
    err = info.value
    assert len(err.violations) == 2000
    assert err.details["total"] == 2000
    assert len(err.details["violations"]) == 1000
    assert err.details["violations"][0] == {
        "row": 0,
        "field": "a",
        "code": "contract.wrong_type",
        "message": "expected a number, got string",
    }
    assert secret not in json.dumps(err.to_dict())
    assert "2000 place(s)" in err.message
    assert "(and 1997 more)" in err.message


# ---------------------------------------------------------------------- derivation


def test_derive_infers_types_ranges_nulls_and_categories() -> None:
    c = InputContract.derive(
        {
            "flag": [True, False, True, None],
            "count": [1, 5, 3, 2],
            "price": [1, 2.5, math.nan, 4],
            "colour": ["red", "blue", "red", "green"],
            "ident": [f"id{i}" for i in range(4)],
            "mixed": [1, "a", True, None],
            "void": [None, None, None, None],
        },
        max_rows=10,
        max_categories=3,
    )
    spec = {f.name: f for f in c.fields}
    assert spec["flag"] == FieldSpec("flag", FieldType.BOOLEAN, nullable=True)
    assert spec["count"] == FieldSpec("count", FieldType.INTEGER, minimum=1, maximum=5)
    assert spec["price"] == FieldSpec(
        "price", FieldType.NUMBER, nullable=True, minimum=1, maximum=4
    )
    assert spec["colour"] == FieldSpec(
        "colour", FieldType.STRING, categories=("blue", "green", "red")
    )
    assert spec["ident"].type is FieldType.STRING
    assert spec["ident"].categories is None
    assert spec["mixed"].type is FieldType.STRING
    assert spec["mixed"].nullable
    assert spec["void"] == FieldSpec("void", FieldType.NUMBER, nullable=True)
    assert c.max_rows == 10
    assert InputContract.from_json(json.loads(json.dumps(c.to_json()))) == c


def test_derive_long_strings_raise_max_length() -> None:
    c = InputContract.derive({"text": ["x" * 300, "y"]})
    assert c.fields[0].max_length == 300
    assert c.validate_records([{"text": "z" * 300}]).anomalies == {("text", "unseen_category"): 1}


def test_derive_rejects_bad_columns() -> None:
    for columns in ({}, {"a": [1, 2], "b": [1]}):
        with pytest.raises(InvalidInput) as info:
            InputContract.derive(columns)
        assert info.value.code == "contract.bad_data"
    with pytest.raises(InvalidInput) as info:
        InputContract.derive({"mean radius": [1.0]})
    assert info.value.code == "contract.invalid"


def test_derive_from_breast_cancer_arrays() -> None:
    data = load_breast_cancer(as_frame=False)
    x: np.ndarray = data.data
    names = [str(n).replace(" ", "_") for n in data.feature_names]
    c = InputContract.derive({n: x[:, j] for j, n in enumerate(names)})
    assert len(c.fields) == 30
    assert all(f.type is FieldType.NUMBER and not f.nullable for f in c.fields)
    assert [f.minimum for f in c.fields] == x.min(axis=0).tolist()
    assert [f.maximum for f in c.fields] == x.max(axis=0).tolist()
    rows = [dict(zip(names, row, strict=True)) for row in x[:500].tolist()]
    batch = c.validate_records(rows)
    assert batch.anomalies == {}
    np.testing.assert_array_equal(batch.matrix(np.float64), x[:500])
    # Python lists of numpy scalars derive the same contract.
    listed = InputContract.derive({n: list(x[:, j]) for j, n in enumerate(names)})
    assert listed == c


def test_derive_from_csv_written_from_iris(tmp_path: Path) -> None:
    iris = load_iris(as_frame=False)
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    path = tmp_path / "iris.csv"
    lines = [",".join([*names, "species", "label"])]
    for row, target in zip(iris.data.tolist(), iris.target.tolist(), strict=True):
        lines.append(",".join([*map(repr, row), str(iris.target_names[target]), str(target)]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with path.open(encoding="utf-8", newline="") as text:
        c = derive_from_csv(text, exclude={"label"}, max_rows=50)
    assert c.names == (*names, "species")
    assert c.max_rows == 50
    for j, spec in enumerate(c.fields[:4]):
        assert spec.type is FieldType.NUMBER
        assert (spec.minimum, spec.maximum) == (iris.data[:, j].min(), iris.data[:, j].max())
    assert c.fields[4].categories == ("setosa", "versicolor", "virginica")
    assert not c.fields[4].closed


def test_derive_from_csv_parses_values(tmp_path: Path) -> None:
    text = (
        "a,b,c,d,e,f\n"
        "1,1.5,true,x,,7\n"
        "\n"  # blank lines are skipped
        "-2,2,FALSE,y,,8\n"
        '3,NaN,True,"x, quoted",,9\n'
    )
    c = derive_from_csv(text.splitlines(keepends=True), sample_rows=3)
    spec = {f.name: f for f in c.fields}
    assert spec["a"] == FieldSpec("a", FieldType.INTEGER, minimum=-2, maximum=3)
    assert spec["b"] == FieldSpec("b", FieldType.NUMBER, nullable=True, minimum=1.5, maximum=2)
    assert spec["c"] == FieldSpec("c", FieldType.BOOLEAN)
    assert spec["d"].categories == ("x", "x, quoted", "y")
    assert spec["e"] == FieldSpec("e", FieldType.NUMBER, nullable=True)
    # sample_rows: only the first data row is read.
    first = derive_from_csv(text.splitlines(keepends=True), sample_rows=1)
    assert {f.name: f.maximum for f in first.fields}["f"] == 7


@pytest.mark.parametrize(
    ("text", "exclude", "needle", "line"),
    [
        ("", (), "no header", 1),
        ("\n1,2\n", (), "no header", 1),
        ("a,b\n1,2\n3\n", (), "line 3", 3),
        ("a,b\n1,2\n3,4,5\n", (), "line 3", 3),
        ("a,a\n1,2\n", (), "repeats", 1),
        ("a,b\n1,2\n", ("label",), "not in the CSV header", None),
        ("a\n1\n", ("a",), "no columns left", None),
    ],
)
def test_derive_from_csv_bad_data(
    text: str, exclude: tuple[str, ...], needle: str, line: int | None
) -> None:
    with pytest.raises(InvalidInput) as info:
        derive_from_csv(text.splitlines(keepends=True), exclude=exclude)
    assert info.value.code == "contract.bad_data"
    assert needle in info.value.message
    if line is not None:
        assert info.value.details["line"] == line


# ---------------------------------------------------------------------- property


_FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)


@st.composite
def contract_and_rows(draw: st.DrawFn) -> tuple[InputContract, list[dict[str, Any]]]:
    kinds = draw(
        st.lists(st.sampled_from(["number", "integer", "boolean"]), min_size=1, max_size=8)
    )
    specs = []
    for i, kind in enumerate(kinds):
        lo = hi = None
        if kind != "boolean" and draw(st.booleans()):
            lo, hi = sorted([draw(_FINITE), draw(_FINITE)])
        specs.append(
            FieldSpec(
                f"f{i}",
                FieldType(kind),
                nullable=draw(st.booleans()),
                minimum=lo,
                maximum=hi,
            )
        )
    contract = InputContract(fields=tuple(specs), max_rows=64)
    n = draw(st.integers(1, 2 * VECTOR_MIN_ROWS))
    rows = []
    for _ in range(n):
        row: dict[str, Any] = {}
        for spec in specs:
            if spec.nullable and draw(st.integers(0, 5)) == 0:
                row[spec.name] = None
            elif spec.type is FieldType.BOOLEAN:
                row[spec.name] = draw(st.booleans())
            elif spec.type is FieldType.INTEGER:
                row[spec.name] = draw(
                    st.integers(-(2**53), 2**53) | st.integers(-(2**40), 2**40).map(float)
                )
            else:
                row[spec.name] = draw(_FINITE | st.integers(-(2**53), 2**53))
        rows.append(row)
    return contract, rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contract_and_rows())
def test_rows_within_the_contract_always_validate(
    case: tuple[InputContract, list[dict[str, Any]]],
) -> None:
    contract, rows = case
    expected = np.array(
        [[math.nan if r[n] is None else float(r[n]) for n in contract.names] for r in rows],
        dtype=np.float64,
    )
    out_of_range = 0
    for spec in contract.fields:
        lo = -math.inf if spec.minimum is None else spec.minimum
        hi = math.inf if spec.maximum is None else spec.maximum
        values = [r[spec.name] for r in rows if r[spec.name] is not None]
        out_of_range += sum(not lo <= v <= hi for v in values if not isinstance(v, bool))
    for batch in (contract.validate_records(rows), contract.validate_columns(as_columns(rows))):
        assert batch.rows == len(rows)
        np.testing.assert_array_equal(batch.matrix(np.float64), expected)
        assert sum(batch.anomalies.values()) == out_of_range


def test_timing_smoke(contract: InputContract) -> None:
    """Not a benchmark (speed is measured in bench/, never asserted): the sizes the gateway
    sees run through both entry points and both code paths."""
    for n in (1, 10, 1000):
        rows = rows_with(n)
        assert contract.validate_records(rows).rows == n
        assert contract.validate_columns(as_columns(rows)).rows == n
