"""The column scan (`bastion.privacy.scan`): CSV reading (BOM, dialects, bad input), the
deterministic sample, the sensitivity rules and the proposed classification, name hints,
and the report holding no values. A fake detector pins the rules; the real one
(`bastion.privacy.pii`) is checked on planted PII."""

from __future__ import annotations

import io
import json
import random
import re
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.core.clock import ManualClock
from bastion.core.errors import InvalidInput
from bastion.privacy.scan import (
    HIGH_RISK,
    MAX_COLUMNS,
    MAX_SAMPLE,
    SHARE_THRESHOLD,
    ColumnDetector,
    CsvTable,
    name_hint,
    pii_report,
    read_csv,
    reservoir,
    scan_table,
)


class FakeDetector(ColumnDetector):
    """Finds `@` as EMAIL_ADDRESS, 16 digits as CREDIT_CARD, `2026-` as DATE_TIME, `tok_`
    as a made-up entity; records every value it was asked about."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def scan_values(
        self, values: Iterable[str | None], *, sample: int | None = None
    ) -> dict[str, int]:
        found: dict[str, int] = {}
        for value in values:
            if value is None:
                continue
            self.seen.append(value)
            for entity, pattern in (
                ("EMAIL_ADDRESS", r"\S+@\S+"),
                ("CREDIT_CARD", r"\b\d{16}\b"),
                ("DATE_TIME", r"2026-"),
                ("SHOE_SIZE_ID", r"tok_"),
            ):
                if re.search(pattern, value):
                    found[entity] = found.get(entity, 0) + 1
        return found


def table(text: str) -> CsvTable:
    return read_csv(io.StringIO(text, newline=""))


def scan(text: str, *, sample: int = 10_000, detector: FakeDetector | None = None) -> dict:
    result = scan_table(table(text), detector or FakeDetector(), sample=sample, seed=b"d")
    return pii_report(
        result,
        declared="internal",
        scanned_at=ManualClock().now(),
        detector={"kind": "fake"},
        sample_limit=sample,
    )


# -- reading -------------------------------------------------------------------------------


def test_reads_comma_semicolon_tab_and_quoted_newlines() -> None:
    for sep in (",", ";", "\t", "|"):
        t = table(f'a{sep}b\r\n1{sep}"x\ny"\r\n2{sep}z\r\n')
        assert t.columns == ("a", "b")
        assert list(t.rows) == [["1", "x\ny"], ["2", "z"]]


def test_a_bom_is_tolerated_and_blank_lines_skipped() -> None:
    raw = "\ufeffemail,age\n\nx@y.org,3\n\n".encode()
    text = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8-sig", newline="")
    t = read_csv(text)
    assert t.columns == ("email", "age")
    assert list(t.rows) == [["x@y.org", "3"]]


def test_a_single_column_file_is_a_table() -> None:
    t = table("email\na@b.org\nc@d.org\n")
    assert t.columns == ("email",)
    assert len(list(t.rows)) == 2


def test_header_only_is_an_empty_table() -> None:
    t = table("a,b\n")
    assert list(t.rows) == []


def test_a_long_first_chunk_keeps_rows_whole() -> None:
    body = "".join(f"{i},{'v' * (i % 50)}\n" for i in range(5000))  # > 64 KiB
    t = table("n,text\n" + body)
    rows = list(t.rows)
    assert len(rows) == 5000
    assert all(r[1] == "v" * (int(r[0]) % 50) for r in rows)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("\n\n", "empty"),
        ("a,a\n1,2\n", "duplicate column names in the CSV header: a"),
        ("a,,c\n1,2,3\n", "column 2 of the CSV header has no name"),
    ],
)
def test_bad_headers_are_not_scannable(text: str, needle: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        table(text)
    assert caught.value.code == "privacy.not_scannable"
    assert needle in caught.value.message


def test_too_many_columns_is_not_scannable() -> None:
    header = ",".join(f"c{i}" for i in range(MAX_COLUMNS + 1))
    with pytest.raises(InvalidInput) as caught:
        table(header + "\n")
    assert caught.value.code == "privacy.not_scannable"
    table(",".join(f"c{i}" for i in range(MAX_COLUMNS)) + "\n")


def test_a_ragged_row_is_not_scannable_and_says_where() -> None:
    t = table("a,b\n1,2\n3\n")
    with pytest.raises(InvalidInput) as caught:
        list(t.rows)
    assert caught.value.code == "privacy.not_scannable"
    assert "line 3 has 1 fields where the header has 2" in caught.value.message


def test_non_utf8_is_not_scannable() -> None:
    raw = b"name,city\nx,\xff\xfe\n"
    with pytest.raises(InvalidInput) as caught:
        list(read_csv(io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8-sig", newline="")).rows)
    assert caught.value.code == "privacy.not_scannable"
    assert "not UTF-8" in caught.value.message


def test_malformed_csv_is_not_scannable() -> None:
    # A field over the csv module's size limit is a csv.Error, reported as ours.
    with pytest.raises(InvalidInput) as caught:
        list(table("a\n" + '"' + "x" * 200_000 + '"\n').rows)
    assert caught.value.code == "privacy.not_scannable"


# -- the sample ----------------------------------------------------------------------------


def test_reservoir_is_deterministic_bounded_and_counts_every_row() -> None:
    rows = [[str(i)] for i in range(10_000)]
    kept, seen = reservoir(iter(rows), 100, b"seed")
    again, _ = reservoir(iter(rows), 100, b"seed")
    other, _ = reservoir(iter(rows), 100, b"other")
    assert seen == 10_000
    assert len(kept) == 100
    assert kept == again
    assert kept != other
    assert len({r[0] for r in kept}) == 100
    # Spread over the whole file, not its head.
    assert max(int(r[0]) for r in kept) > 5_000
    small, seen = reservoir(iter(rows[:7]), 100, b"seed")
    assert small == rows[:7]
    assert seen == 7


@settings(max_examples=50, deadline=None)
@given(n=st.integers(min_value=0, max_value=300), size=st.integers(min_value=1, max_value=50))
def test_reservoir_sample_is_a_subset_of_the_right_size(n: int, size: int) -> None:
    rows = [[str(i)] for i in range(n)]
    kept, seen = reservoir(iter(rows), size, b"x")
    assert seen == n
    assert len(kept) == min(n, size)
    assert len({r[0] for r in kept}) == len(kept)


@pytest.mark.parametrize("bad", [0, -1, MAX_SAMPLE + 1, True, 2.5])
def test_sample_limits(bad: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        scan_table(table("a\n1\n"), FakeDetector(), sample=bad)  # type: ignore[arg-type]
    assert caught.value.code == "privacy.bad_sample"


def test_scanned_rows_are_stated() -> None:
    body = "".join(f"u{i}@x.org\n" for i in range(500))
    report = scan("email\n" + body, sample=50)
    assert (report["scanned_rows"], report["total_rows"], report["sample_limit"]) == (50, 500, 50)
    assert report["columns"]["email"]["non_empty"] == 50


# -- the rules -----------------------------------------------------------------------------


def _csv(columns: dict[str, list[str]]) -> str:
    names = list(columns)
    n = len(next(iter(columns.values())))
    lines = [",".join(names)] + [",".join(columns[c][i] for c in names) for i in range(n)]
    return "\n".join(lines) + "\n"


def test_share_threshold_for_ordinary_entities() -> None:
    below = ["a@b.org"] * 9 + ["plain"] * 91  # 9 %
    at = ["a@b.org"] * 10 + ["plain"] * 90  # 10 %
    report = scan(_csv({"below": below, "at": at}))
    assert SHARE_THRESHOLD == 0.1
    assert report["columns"]["below"]["entities"] == {"EMAIL_ADDRESS": 0.09}
    assert report["columns"]["below"]["sensitive"] is False
    assert report["columns"]["at"]["sensitive"] is True
    assert report["sensitive_columns"] == ["at"]
    assert report["proposed_classification"] == "confidential"
    assert report["under_classified"] is True


def test_one_high_risk_value_makes_a_column_sensitive_and_the_data_restricted() -> None:
    assert "CREDIT_CARD" in HIGH_RISK
    notes = ["see card 4111111111111111"] + ["fine"] * 999
    report = scan(_csv({"notes": notes, "email": ["a@b.org"] * 1000}))
    assert report["columns"]["notes"]["sensitive"] is True
    assert report["columns"]["notes"]["counts"] == {"CREDIT_CARD": 1}
    assert report["sensitive_columns"] == ["notes", "email"]
    assert report["proposed_classification"] == "restricted"
    assert report["entities"] == ["CREDIT_CARD", "EMAIL_ADDRESS"]


def test_weak_entities_are_recorded_but_never_sensitive() -> None:
    report = scan(_csv({"when": ["2026-01-02"] * 20}))
    assert report["columns"]["when"]["entities"] == {"DATE_TIME": 1.0}
    assert report["columns"]["when"]["sensitive"] is False
    assert report["proposed_classification"] == "internal"
    assert report["under_classified"] is False


def test_an_unknown_entity_type_counts_as_confidential() -> None:
    report = scan(_csv({"ref": ["tok_1", "tok_2"]}))
    assert report["sensitive_columns"] == ["ref"]
    assert report["proposed_classification"] == "confidential"


def test_nothing_found_proposes_internal_and_is_not_under_classified() -> None:
    report = scan(_csv({"age": ["31", "44"], "city": ["Oslo", "Bergen"]}))
    assert report["sensitive_columns"] == []
    assert report["proposed_classification"] == "internal"
    assert report["declared_classification"] == "internal"
    assert report["under_classified"] is False


def test_declared_above_the_findings_is_kept_and_not_lowered() -> None:
    result = scan_table(table(_csv({"email": ["a@b.org"]})), FakeDetector())
    report = pii_report(
        result,
        declared="restricted",
        scanned_at=ManualClock().now(),
        detector={},
        sample_limit=1,
    )
    assert report["proposed_classification"] == "confidential"
    assert report["declared_classification"] == "restricted"
    assert report["under_classified"] is False


def test_empty_values_do_not_dilute_the_share() -> None:
    report = scan(_csv({"email": ["a@b.org"] * 5 + [""] * 95}))
    column = report["columns"]["email"]
    assert column["non_empty"] == 5
    assert column["entities"] == {"EMAIL_ADDRESS": 1.0}


def test_each_distinct_value_is_analysed_once_and_weighted() -> None:
    detector = FakeDetector()
    values = ["a@b.org"] * 300 + ["c@d.org"] * 2 + ["x"] * 50
    report = scan(_csv({"email": values}), detector=detector)
    assert sorted(detector.seen) == ["a@b.org", "c@d.org", "x"]
    assert report["columns"]["email"]["counts"] == {"EMAIL_ADDRESS": 302}
    assert report["columns"]["email"]["entities"] == {"EMAIL_ADDRESS": round(302 / 352, 4)}


def test_name_hints_are_a_weaker_signal_listed_for_review() -> None:
    report = scan(_csv({"customer_email": ["n/a", "-"], "ssn": ["***", "***"], "v": ["1", "2"]}))
    assert report["columns"]["customer_email"]["name_hint"] == "email"
    assert report["columns"]["ssn"]["name_hint"] == "national_id"
    assert report["columns"]["v"]["name_hint"] is None
    assert report["sensitive_columns"] == []
    assert report["hinted_columns"] == ["customer_email", "ssn"]
    assert report["proposed_classification"] == "internal"


@pytest.mark.parametrize(
    ("column", "hint"),
    [
        ("email", "email"),
        ("customerEmail", "email"),
        ("E-Mail Address", "email"),
        ("phone_number", "phone"),
        ("MobilePhone", "phone"),
        ("ssn", "national_id"),
        ("passport_no", "national_id"),
        ("dob", "date_of_birth"),
        ("birthDate", "date_of_birth"),
        ("home_address", "address"),
        ("zip", "address"),
        ("first_name", "person_name"),
        ("name", "person_name"),
        ("client_ip", "ip_address"),
        ("iban", "bank_account"),
        ("card_number", "payment_card"),
        ("api_key", "secret"),
        ("gender", "special_category"),
        ("product_name", None),
        ("hotel", None),
        ("amount", None),
        ("sin_hour", None),
        ("zipper_size", None),
    ],
)
def test_name_hint(column: str, hint: str | None) -> None:
    assert name_hint(column) == hint


def test_the_report_holds_no_values() -> None:
    secret_values = ["alice.smith@example.org", "4111111111111111", "Oslo-street 12"]
    text = _csv(
        {
            "email": secret_values[:1] * 3,
            "card": secret_values[1:2] * 3,
            "addr": secret_values[2:] * 3,
        }
    )
    blob = json.dumps(scan(text))
    for value in secret_values:
        assert value not in blob


# -- the real detector -----------------------------------------------------------------------


def _luhn(prefix: str, length: int, rng: random.Random) -> str:
    digits = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d)
        if i % 2 == 0:
            n = n * 2 - 9 if n * 2 > 9 else n * 2
        total += n
    return digits + str((10 - total % 10) % 10)


def test_real_detector_finds_planted_pii_columns() -> None:
    pii = pytest.importorskip("bastion.privacy.pii")
    rng = random.Random(7)
    n = 200
    columns = {
        "contact": [f"user{i}.{rng.randrange(10**6)}@mail{i % 7}.example.com" for i in range(n)],
        "card": [_luhn("4", 16, rng) for _ in range(n)],
        "client": [
            f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            for _ in range(n)
        ],
        "age": [str(rng.randrange(18, 90)) for _ in range(n)],
        "city": [rng.choice(["Oslo", "Bergen", "Tromso"]) for _ in range(n)],
    }
    detector = pii.PiiDetector(min_score=0.5)
    result = scan_table(table(_csv(columns)), detector, sample=1000, seed=b"x")
    report = pii_report(
        result, declared="internal", scanned_at=ManualClock().now(), detector={}, sample_limit=1000
    )
    cols = report["columns"]
    assert cols["contact"]["entities"].get("EMAIL_ADDRESS", 0) >= 0.95
    assert cols["card"]["entities"].get("CREDIT_CARD", 0) >= 0.95
    assert cols["client"]["entities"].get("IP_ADDRESS", 0) >= 0.95
    assert "PHONE_NUMBER" not in cols["client"]["entities"]  # IPs are not phone numbers
    assert set(report["sensitive_columns"]) == {"contact", "card", "client"}
    assert not cols["age"]["sensitive"]
    assert not cols["city"]["sensitive"]
    assert report["proposed_classification"] == "restricted"
    assert report["under_classified"] is True
