"""Reading CSV and Parquet files into columns: types, missing values, and every malformed
file refused with a code and a message naming the file (never a pyarrow exception)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bastion.core.errors import BastionError, InvalidInput, TooLarge
from bastion.monitoring.datafiles import read_table


def refused(path: Path, code: str, kind: type[BastionError] = InvalidInput) -> BastionError:
    with pytest.raises(BastionError) as caught:
        read_table(path)
    assert isinstance(caught.value, kind)
    assert caught.value.code == code, caught.value
    assert str(path) in caught.value.message
    assert "\n" not in caught.value.message
    return caught.value


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


# -- CSV -------------------------------------------------------------------------------------------


def test_csv_numbers_text_and_missing(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "d.csv",
        'num,text,mixed,blank\n1.5,a,1,\n,"b, c",x,\n-2e3,,2,\nnan, d ,3,\n',
    )
    columns = read_table(path)
    assert list(columns) == ["num", "text", "mixed", "blank"]
    num = columns["num"]
    assert num.dtype == np.float64
    np.testing.assert_array_equal(num, [1.5, np.nan, -2000.0, np.nan])  # NaN equals NaN here
    assert columns["text"].dtype == object
    assert list(columns["text"]) == ["a", "b, c", None, " d "]
    assert list(columns["mixed"]) == ["1", "x", "2", "3"]  # one non-number: all text
    assert columns["blank"].dtype == np.float64  # no cell at all: numeric, all missing
    assert np.isnan(columns["blank"]).all()


def test_csv_numbers_with_blanks_and_infinities_are_numeric(tmp_path: Path) -> None:
    columns = read_table(write(tmp_path, "d.csv", "x\n 1 \ninf\n-Inf\n   \n"))
    x = columns["x"]
    assert x.dtype == np.float64
    np.testing.assert_array_equal(x, [1.0, math.inf, -math.inf, np.nan])


def test_csv_dates_and_booleans_stay_text(tmp_path: Path) -> None:
    columns = read_table(write(tmp_path, "d.csv", "day,flag\n2026-01-01,true\n2026-01-02,false\n"))
    assert list(columns["day"]) == ["2026-01-01", "2026-01-02"]
    assert list(columns["flag"]) == ["true", "false"]


def test_csv_with_a_byte_order_mark(tmp_path: Path) -> None:
    columns = read_table(write(tmp_path, "d.csv", b"\xef\xbb\xbfa,b\n1,2\n"))
    assert list(columns) == ["a", "b"]
    assert list(columns["a"]) == [1.0]


def test_csv_header_only_gives_empty_columns(tmp_path: Path) -> None:
    columns = read_table(write(tmp_path, "d.csv", "a,b\n"))
    assert list(columns) == ["a", "b"]
    assert [len(c) for c in columns.values()] == [0, 0]


def test_csv_quoted_newlines_in_cells(tmp_path: Path) -> None:
    columns = read_table(write(tmp_path, "d.csv", 'a,b\n"line\nbreak",1\n'))
    assert list(columns["a"]) == ["line\nbreak"]


def test_csv_ragged_row_is_refused(tmp_path: Path) -> None:
    refused(write(tmp_path, "d.csv", "a,b\n1,2\n3\n"), "drift.bad_file")


def test_csv_duplicate_columns_are_refused(tmp_path: Path) -> None:
    error = refused(write(tmp_path, "d.csv", "a,b,a\n1,2,3\n"), "drift.bad_file")
    assert "duplicate" in error.message


def test_csv_unnamed_column_is_refused(tmp_path: Path) -> None:
    refused(write(tmp_path, "d.csv", "a,,c\n1,2,3\n"), "drift.bad_file")


def test_csv_without_header_is_refused(tmp_path: Path) -> None:
    refused(write(tmp_path, "d.csv", "\n1,2\n"), "drift.bad_file")


def test_empty_file_is_refused(tmp_path: Path) -> None:
    refused(write(tmp_path, "d.csv", ""), "drift.bad_file")


def test_csv_not_utf8_is_refused(tmp_path: Path) -> None:
    refused(write(tmp_path, "d.csv", b"a\n\xff\xfe\n"), "drift.bad_file")


def test_missing_file_is_refused(tmp_path: Path) -> None:
    refused(tmp_path / "nothing.csv", "drift.bad_file")


def test_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.csv").mkdir()
    refused(tmp_path / "dir.csv", "drift.bad_file")


@pytest.mark.parametrize("name", ["data.json", "data", "data.xlsx"])
def test_unknown_extension_is_refused(tmp_path: Path, name: str) -> None:
    refused(write(tmp_path, name, "a\n1\n"), "drift.unsupported_format")


def test_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "a\n" + "1\n" * 100)
    with pytest.raises(TooLarge) as caught:
        read_table(path, max_bytes=50)
    assert caught.value.code == "drift.file_too_large"
    assert len(read_table(path, max_bytes=path.stat().st_size)["a"]) == 100


# -- Parquet ---------------------------------------------------------------------------------------


def test_parquet_types(tmp_path: Path) -> None:
    table = pa.table(
        {
            "i": pa.array([1, None, 3], pa.int32()),
            "f": pa.array([1.5, 2.5, None], pa.float32()),
            "d": pa.array([1, 2, 3], pa.decimal128(5, 2)),
            "b": pa.array([True, False, None]),
            "s": pa.array(["x", None, "z"]),
            "ls": pa.array(["x", "y", None], pa.large_string()),
            "dict": pa.array(["u", "v", "u"]).dictionary_encode(),
            "null": pa.array([None, None, None], pa.null()),
        }
    )
    path = tmp_path / "d.parquet"
    pq.write_table(table, path)
    columns = read_table(path)
    assert list(columns) == ["i", "f", "d", "b", "s", "ls", "dict", "null"]
    np.testing.assert_array_equal(columns["i"], [1.0, np.nan, 3.0])
    assert columns["f"].dtype == np.float64
    np.testing.assert_array_equal(columns["f"], [1.5, 2.5, np.nan])
    assert list(columns["d"]) == [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(columns["b"], [1.0, 0.0, np.nan])
    assert list(columns["s"]) == ["x", None, "z"]
    assert list(columns["ls"]) == ["x", "y", None]
    assert list(columns["dict"]) == ["u", "v", "u"]
    assert np.isnan(columns["null"]).all()


def test_pq_extension_is_parquet(tmp_path: Path) -> None:
    path = tmp_path / "d.pq"
    pq.write_table(pa.table({"a": [1.0, 2.0]}), path)
    assert list(read_table(path)["a"]) == [1.0, 2.0]


@pytest.mark.parametrize(
    "column",
    [
        pa.array([[1, 2], [3]]),
        pa.array([{"a": 1}, {"a": 2}]),
        pa.array([b"x", b"y"]),
        pa.array([0, 1], pa.timestamp("s")),
    ],
    ids=["list", "struct", "binary", "timestamp"],
)
def test_parquet_unsupported_column_is_refused_by_name(tmp_path: Path, column: Any) -> None:
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"ok": [1.0, 2.0], "odd": column}), path)
    error = refused(path, "drift.unsupported_column")
    assert "'odd'" in error.message


def test_parquet_duplicate_columns_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    table = pa.Table.from_arrays([pa.array([1.0]), pa.array([2.0])], names=["a", "a"])
    pq.write_table(table, path)
    refused(path, "drift.bad_file")


def test_not_parquet_is_refused(tmp_path: Path) -> None:
    refused(write(tmp_path, "d.parquet", "a,b\n1,2\n"), "drift.bad_file")


def test_truncated_parquet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"a": list(range(1000))}), path)
    path.write_bytes(path.read_bytes()[:-100])
    refused(path, "drift.bad_file")
