"""Data files for batch drift: a CSV or Parquet file read into named 1-D numpy columns.

Columns come out in file order as either float64 (numbers; missing values are NaN) or object
arrays of `str | None` (text; missing values are None), which is what
`bastion.registry.profile` profiles and bins.

- CSV (`.csv`): UTF-8 (a BOM is allowed), a header row naming every column (names unique and
  non-empty), then rows of exactly that many cells. An empty cell is missing. A column is
  numeric when every non-empty cell, leading and trailing blanks ignored, parses as a float
  ("1", "-2.5e3", "nan", "inf"); otherwise it is text, cells kept as written. Parsed by
  pyarrow's multi-threaded CSV reader, every column read as text first so that no type
  inference (dates, booleans) changes a cell.
- Parquet (`.parquet`, `.pq`): integer, floating-point and decimal columns become float64 (null
  is NaN); booleans become 0.0/1.0; string and dictionary-of-string columns become text; an
  all-null column is numeric and all missing. Any other type (lists, structs, binary,
  timestamps, ...) is refused, naming the column.

Errors are `InvalidInput` whose message names the file: `drift.unsupported_format` for an
unknown extension, `drift.bad_file` for anything unreadable or malformed (missing, empty, no
header, duplicate or empty column names, ragged rows, bad UTF-8, not Parquet),
`drift.unsupported_column`; `TooLarge` (`drift.file_too_large`) past `max_bytes`. No pyarrow
exception escapes.

Must not import bastion.deploy, bastion.serving, bastion.api, bastion.cli or bastion.platform.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from bastion.core.errors import InvalidInput, TooLarge

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# A header line longer than this is not a header (it bounds what the stdlib csv reader buffers).
MAX_HEADER_BYTES = 1 << 20

Columns = dict[str, npt.NDArray[Any]]


def _bad(path: Path, reason: str) -> InvalidInput:
    return InvalidInput(f"{path}: {reason}", code="drift.bad_file")


def read_table(path: Path, *, max_bytes: int | None = None) -> Columns:
    """Read `path` (CSV or Parquet, chosen by extension) into columns; see the module docstring."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InvalidInput(
            f"{path}: unsupported file type {path.suffix or '(no extension)'!r}; "
            "use .csv, .parquet or .pq",
            code="drift.unsupported_format",
        )
    try:
        stat = path.stat()
    except OSError as error:
        raise _bad(path, f"cannot read: {error.strerror}") from error
    if not path.is_file():
        raise _bad(path, "not a regular file")
    if max_bytes is not None and stat.st_size > max_bytes:
        raise TooLarge(
            f"{path}: {stat.st_size} bytes, more than the limit of {max_bytes}",
            code="drift.file_too_large",
        )
    if stat.st_size == 0:
        raise _bad(path, "the file is empty")
    return _read_csv(path) if kind == "csv" else _read_parquet(path)


# -- CSV ------------------------------------------------------------------------------------------


def _read_csv(path: Path) -> Columns:
    header = _csv_header(path)
    try:
        table = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(use_threads=True),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
                null_values=[""],
            ),
        )
    except (pa.ArrowException, OSError, ValueError) as error:
        raise _bad(path, _first_line(error)) from error
    if table.column_names != header:
        raise _bad(path, "the header does not match the columns read")
    return {name: _text_or_number(table.column(i)) for i, name in enumerate(header)}


def _csv_header(path: Path) -> list[str]:
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            first = handle.readline(MAX_HEADER_BYTES)
            if not first.endswith(("\n", "\r")) and len(first) >= MAX_HEADER_BYTES:
                raise _bad(path, f"the header line is longer than {MAX_HEADER_BYTES} bytes")
            rows = list(csv.reader([first]))
    except UnicodeDecodeError as error:
        raise _bad(path, "the header is not UTF-8 text") from error
    except (OSError, csv.Error) as error:
        raise _bad(path, f"cannot read the header: {error}") from error
    header = rows[0] if rows else []
    if not header or all(not name.strip() for name in header):
        raise _bad(path, "no header row (the first line must name the columns)")
    if any(not name for name in header):
        raise _bad(path, f"column {header.index('') + 1} has no name")
    duplicates = _duplicates(header)
    if duplicates:
        raise _bad(path, f"duplicate column names: {', '.join(map(repr, duplicates))}")
    return header


def _text_or_number(column: pa.ChunkedArray) -> npt.NDArray[Any]:
    trimmed = pc.utf8_trim_whitespace(column)
    # A cell of blanks is as missing as an empty one.
    trimmed = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)
    try:
        numbers = pc.cast(trimmed, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _text(column)
    return _floats(numbers)


# -- Parquet --------------------------------------------------------------------------------------


def _read_parquet(path: Path) -> Columns:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as error:
        raise _bad(path, f"not a readable Parquet file: {_first_line(error)}") from error
    names = table.column_names
    duplicates = _duplicates(names)
    if duplicates:
        raise _bad(path, f"duplicate column names: {', '.join(map(repr, duplicates))}")
    if any(not name for name in names):
        raise _bad(path, "a column has no name")
    columns: Columns = {}
    for index, name in enumerate(names):
        column = table.column(index)
        kind = column.type
        if (
            pa.types.is_integer(kind)
            or pa.types.is_floating(kind)
            or pa.types.is_decimal(kind)
            or pa.types.is_boolean(kind)
        ):
            columns[name] = _floats(pc.cast(column, pa.float64()))
        elif pa.types.is_null(kind):
            columns[name] = np.full(len(column), np.nan)
        elif _is_text(kind):
            columns[name] = _text(column)
        elif pa.types.is_dictionary(kind) and _is_text(kind.value_type):
            columns[name] = _text(pc.cast(column, kind.value_type))
        else:
            raise InvalidInput(
                f"{path}: column {name!r} has type {kind}, which drift cannot profile "
                "(numbers, booleans and strings only)",
                code="drift.unsupported_column",
            )
    return columns


def _is_text(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    )


# -- shared ---------------------------------------------------------------------------------------


def _floats(column: pa.ChunkedArray) -> npt.NDArray[np.float64]:
    filled = pc.fill_null(column, np.nan)
    return np.asarray(filled.to_numpy(), dtype=np.float64)


def _text(column: pa.ChunkedArray) -> npt.NDArray[Any]:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)


def _duplicates(names: list[str]) -> list[str]:
    seen: set[str] = set()
    twice: set[str] = set()
    for name in names:
        (twice if name in seen else seen).add(name)
    return sorted(twice)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
