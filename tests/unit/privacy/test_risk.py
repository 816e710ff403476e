"""Re-identification risk (`bastion.privacy.risk`): k-anonymity, l-diversity and unique share
are exact (checked against a brute-force group-by on random tables), missing values form one
class, every bad declaration is a coded error, and a 1M-row table is measured exactly."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.core.errors import InvalidInput, TooLarge
from bastion.privacy.risk import (
    MAX_QUASI_IDENTIFIERS,
    MAX_SENSITIVE,
    Diversity,
    k_anonymity,
    l_diversity,
    measure,
    measure_records,
)

# The textbook example (Machanavajjhala et al. 2007, table 1 shape): zip, age band, disease.
COLUMNS = ("zip", "age", "nationality", "disease")
ROWS = [
    ("130**", "<30", "*", "heart"),
    ("130**", "<30", "*", "heart"),
    ("130**", "<30", "*", "viral"),
    ("130**", "<30", "*", "viral"),
    ("1485*", ">=40", "*", "cancer"),
    ("1485*", ">=40", "*", "heart"),
    ("1485*", ">=40", "*", "viral"),
    ("1485*", ">=40", "*", "viral"),
    ("130**", "3*", "*", "cancer"),
    ("130**", "3*", "*", "cancer"),
    ("130**", "3*", "*", "cancer"),
    ("130**", "3*", "*", "cancer"),
]


def test_textbook_table_is_4_anonymous_and_homogeneous_in_one_class() -> None:
    report = measure(COLUMNS, ROWS, ["zip", "age"], ["disease"])
    assert (report.rows, report.classes, report.k) == (12, 3, 4)
    assert report.unique_records == 0
    assert report.unique_share == 0.0
    assert report.class_sizes == {4: 3}
    # The "3*" class is all cancer: distinct l = 1, the homogeneity attack.
    assert report.l_diversity == 1
    assert report.diversity["disease"] == Diversity(distinct=1, entropy=1.0)


def test_entropy_l_is_exp_of_the_smallest_class_entropy() -> None:
    rows = [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y"), ("b", "z"), ("b", "z")]
    report = measure(("q", "s"), rows, ["q"], ["s"])
    assert report.l_diversity == 2
    # class a: {x, y} -> H = ln 2; class b: {x, y, z, z} -> H = 1.5 ln 2. exp(min) = 2.
    assert report.l_entropy == pytest.approx(2.0)
    stored = report.to_dict()
    assert stored["l"] == 2
    assert stored["l_entropy"] == pytest.approx(2.0)


def test_unique_records_and_class_size_distribution() -> None:
    rows = [("a",), ("b",), ("c",), ("c",), *[("d",)] * 7, *[("e",)] * 1500]
    report = k_anonymity([{"q": r[0]} for r in rows], "q")
    assert report.k == 1
    assert report.unique_records == 2
    assert report.unique_share == pytest.approx(2 / len(rows))
    assert report.class_sizes == {1: 2, 2: 1, 7: 1, 1500: 1}
    assert report.records_below(5) == 4
    assert report.records_below(1) == 0
    assert report.to_dict()["class_sizes"] == [
        {"size": "1", "classes": 2, "records": 2},
        {"size": "2", "classes": 1, "records": 2},
        {"size": "5-9", "classes": 1, "records": 7},
        {"size": "1000+", "classes": 1, "records": 1500},
    ]


def test_missing_values_are_one_value_of_their_own() -> None:
    records = [
        {"zip": None, "age": 30},
        {"zip": "", "age": 30},
        {"zip": float("nan"), "age": 30},
        {"zip": "0150", "age": 30},
    ]
    report = k_anonymity(records, ["zip", "age"])
    assert report.classes == 2
    assert report.class_sizes == {3: 1, 1: 1}
    # Missing is not a wildcard: it does not merge with "0150".
    assert report.k == 1


def test_values_compare_exactly() -> None:
    report = measure(("q",), [("Oslo",), ("oslo",), (" Oslo",), ("Oslo",)], ["q"])
    assert report.class_sizes == {1: 2, 2: 1}


def test_empty_table_has_k_zero_and_l_zero() -> None:
    report = measure(COLUMNS, [], ["zip"], ["disease"])
    assert (report.rows, report.classes, report.k, report.unique_share) == (0, 0, 0, 0.0)
    assert report.l_diversity == 0
    assert report.to_dict()["class_sizes"] == []
    assert l_diversity([], ["zip"], "disease") == 0


def test_l_diversity_wrapper_and_no_sensitive_attribute() -> None:
    records = [{"zip": r[0], "age": r[1], "disease": r[3]} for r in ROWS]
    assert l_diversity(records, ["zip"], "disease") == 3  # both zips hold all three diseases
    assert l_diversity(records, ["zip", "age"], "disease") == 1
    report = k_anonymity(records, ["zip"])
    assert report.l_diversity is None
    assert report.l_entropy is None
    assert report.to_dict()["l"] is None


def test_several_sensitive_attributes_report_each_and_the_smallest() -> None:
    rows = [("a", "x", "1"), ("a", "y", "1"), ("b", "x", "1"), ("b", "y", "2")]
    report = measure(("q", "s1", "s2"), rows, ["q"], ["s1", "s2"])
    assert report.diversity["s1"].distinct == 2
    assert report.diversity["s2"].distinct == 1
    assert report.l_diversity == 1


@pytest.mark.parametrize(
    ("qis", "sensitive", "code"),
    [
        (["zip", "postcode", "city"], [], "privacy.unknown_column"),
        (["zip"], ["salary"], "privacy.unknown_column"),
        ([], [], "privacy.no_quasi_identifiers"),
        (["zip", "zip"], [], "privacy.bad_columns"),
        (["zip"], ["disease", "disease"], "privacy.bad_columns"),
        (["zip", "disease"], ["disease"], "privacy.bad_columns"),
        ([""], [], "privacy.bad_columns"),
    ],
)
def test_bad_declarations_are_refused(qis: list[str], sensitive: list[str], code: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        measure(COLUMNS, ROWS, qis, sensitive)
    assert caught.value.code == code


def test_unknown_columns_are_all_listed() -> None:
    with pytest.raises(InvalidInput) as caught:
        measure(COLUMNS, ROWS, ["zip", "postcode", "city"], ["salary"])
    assert caught.value.details["unknown"] == ["postcode", "city", "salary"]
    assert "postcode, city, salary" in caught.value.message


def test_limits_on_declared_attributes() -> None:
    columns = [f"c{i}" for i in range(MAX_QUASI_IDENTIFIERS + MAX_SENSITIVE + 2)]
    row = tuple("v" for _ in columns)
    measure(columns, [row], columns[:MAX_QUASI_IDENTIFIERS])
    with pytest.raises(InvalidInput) as caught:
        measure(columns, [row], columns[: MAX_QUASI_IDENTIFIERS + 1])
    assert caught.value.code == "privacy.bad_columns"
    measure(columns, [row], ["c0"], columns[1 : MAX_SENSITIVE + 1])
    with pytest.raises(InvalidInput) as caught:
        measure(columns, [row], ["c0"], columns[1 : MAX_SENSITIVE + 2])
    assert caught.value.code == "privacy.bad_columns"


def test_row_limit() -> None:
    rows = [("a",)] * 10
    assert measure(("q",), rows, ["q"], max_rows=10).k == 10
    with pytest.raises(TooLarge) as caught:
        measure(("q",), rows, ["q"], max_rows=9)
    assert caught.value.code == "privacy.too_many_rows"


def test_a_record_without_a_named_column_is_an_unknown_column() -> None:
    with pytest.raises(InvalidInput) as caught:
        k_anonymity([{"zip": "1", "age": 3}, {"zip": "2"}], ["zip", "age"])
    assert caught.value.code == "privacy.unknown_column"
    assert caught.value.details["unknown"] == ["age"]


# -- exactness against brute force --------------------------------------------------------


def _brute(
    rows: Sequence[Sequence[Hashable]], qi_idx: Sequence[int], s_idx: int | None
) -> tuple[int, int, int, dict[int, int], int | None, float | None]:
    groups: dict[tuple[Hashable, ...], list[Sequence[Hashable]]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[i] for i in qi_idx)].append(row)
    if not groups:
        return 0, 0, 0, {}, (0 if s_idx is not None else None), (0.0 if s_idx is not None else None)
    sizes = [len(g) for g in groups.values()]
    hist = dict(Counter(sizes))
    l_distinct = l_entropy = None
    if s_idx is not None:
        l_distinct = min(len({r[s_idx] for r in g}) for g in groups.values())
        entropies = []
        for g in groups.values():
            counts = Counter(r[s_idx] for r in g)
            entropies.append(-sum(c / len(g) * math.log(c / len(g)) for c in counts.values()))
        l_entropy = math.exp(min(entropies))
    return min(sizes), len(groups), sizes.count(1), hist, l_distinct, l_entropy


VALUE = st.sampled_from(["", "a", "b", "c", "1", "10"])


@settings(max_examples=300, deadline=None)
@given(
    width=st.integers(min_value=2, max_value=5),
    data=st.data(),
)
def test_measure_matches_brute_force(width: int, data: st.DataObject) -> None:
    rows = data.draw(
        st.lists(st.lists(VALUE, min_size=width, max_size=width).map(tuple), max_size=60)
    )
    columns = [f"c{i}" for i in range(width)]
    s_idx = data.draw(st.sampled_from([None, *range(width)]))
    candidates = [i for i in range(width) if i != s_idx]
    qi_idx = data.draw(
        st.lists(st.sampled_from(candidates), min_size=1, max_size=len(candidates), unique=True)
    )
    sensitive = [] if s_idx is None else [columns[s_idx]]
    report = measure(columns, rows, [columns[i] for i in qi_idx], sensitive)
    k, classes, unique, hist, l_distinct, l_entropy = _brute(rows, qi_idx, s_idx)
    assert report.rows == len(rows)
    assert (report.k, report.classes, report.unique_records) == (k, classes, unique)
    assert dict(report.class_sizes) == hist
    assert report.unique_share == (unique / len(rows) if rows else 0.0)
    assert report.l_diversity == l_distinct
    if l_entropy is None:
        assert report.l_entropy is None
    else:
        assert report.l_entropy == pytest.approx(l_entropy, rel=1e-9, abs=1e-12)


def test_one_million_rows_are_measured_exactly() -> None:
    n = 1_000_000
    # 4000 classes of 250 rows (a, b) plus one extra row alone in its class.
    rows = [(str(i % 1000), str((i // 1000) % 4), str(i % 3)) for i in range(n)]
    rows.append(("unique", "0", "0"))
    report = measure(("a", "b", "s"), rows, ["a", "b"], ["s"])
    assert report.rows == n + 1
    assert report.classes == 4001
    assert report.k == 1
    assert report.unique_records == 1
    assert report.class_sizes == {250: 4000, 1: 1}
    assert report.records_below(2) == 1
    assert report.l_diversity == 1  # the lone row
    without = measure(("a", "b", "s"), rows[:n], ["a", "b"], ["s"])
    assert (without.k, without.l_diversity) == (250, 3)


def test_measure_records_normalises_before_grouping() -> None:
    report = measure_records(
        [{"q": None, "s": "x"}, {"q": "", "s": ""}, {"q": "v", "s": None}], ["q"], ["s"]
    )
    assert report.class_sizes == {2: 1, 1: 1}
    assert report.diversity["s"].distinct == 1  # class "v" holds only a missing value
