"""`bastion drift REF CUR` on CSV and Parquet files written here with pyarrow: exit 0 when
nothing drifts, 1 when something does, 2 with one line on stderr when the input is unusable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

ROWS = 3000


def frame(seed: int, *, shift: float = 0.0, flip: bool = False) -> pa.Table:
    rng = np.random.default_rng(seed)
    ones = 0.3 if flip else 0.7
    return pa.table(
        {
            "amount": rng.normal(shift, 1, ROWS),
            "age": rng.integers(18, 80, ROWS),
            "country": rng.choice(["fr", "de", "it"], ROWS),
            "label": (rng.random(ROWS) < ones).astype(np.int64),
        }
    )


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "ref": tmp_path / "ref.parquet",
        "same": tmp_path / "same.csv",
        "shifted": tmp_path / "shifted.csv",
        "flipped": tmp_path / "flipped.pq",
    }
    pq.write_table(frame(1), paths["ref"])
    pa_csv.write_csv(frame(2), paths["same"])
    pa_csv.write_csv(frame(3, shift=0.5), paths["shifted"])
    pq.write_table(frame(4, flip=True), paths["flipped"])
    return paths


def test_unchanged_data_exits_0_with_a_readable_report(cli: Any, files: dict[str, Path]) -> None:
    result = cli("drift", str(files["ref"]), str(files["same"]))
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith(f"Compared {ROWS} current rows with {ROWS} reference rows: 0 of 4")
    assert lines[1].split() == ["feature", "kind", "PSI", "JS", "p", "n", "status"]
    assert sorted(line.split()[0] for line in lines[2:]) == ["age", "amount", "country", "label"]
    assert all(line.split()[-1] == "ok" for line in lines[2:])
    assert result.err == ""


def test_a_shifted_feature_exits_1_and_is_listed_first(cli: Any, files: dict[str, Path]) -> None:
    result = cli("drift", str(files["ref"]), str(files["shifted"]))
    assert result.code == 1, result.err
    first = result.out.splitlines()[2].split()
    assert first[0] == "amount"
    assert first[1] == "numeric"
    assert first[-1] == "DRIFT"


def test_json_report_shape(cli: Any, files: dict[str, Path]) -> None:
    result = cli("drift", str(files["ref"]), str(files["shifted"]), "--json")
    assert result.code == 1, result.err
    doc = result.json()
    assert doc["drift"] is True
    assert doc["drifted"] == ["amount"]
    assert doc["reference_rows"] == ROWS
    assert doc["current_rows"] == ROWS
    assert doc["prediction"] is None
    by_name = {f["name"]: f for f in doc["features"]}
    assert set(by_name) == {"amount", "age", "country", "label"}
    assert by_name["country"]["kind"] == "categorical"
    assert set(by_name["amount"]) == {
        "name", "kind", "status", "psi", "js", "chi2", "p_value", "n_reference", "n_current",
        "missing_reference", "missing_current", "thresholds",
    }  # fmt: skip
    assert by_name["amount"]["status"] == "drift"
    assert by_name["age"]["status"] == "ok"


def test_prediction_column_label_flip_exits_1(cli: Any, files: dict[str, Path]) -> None:
    result = cli(
        "drift", str(files["ref"]), str(files["flipped"]), "--prediction", "label", "--json"
    )
    assert result.code == 1, result.err
    doc = result.json()
    assert doc["drifted"] == []
    assert doc["prediction_drifted"] is True
    assert doc["prediction"]["name"] == "prediction"
    assert [f["name"] for f in doc["features"]] == ["amount", "age", "country"]


def test_thresholds_options_and_file(cli: Any, files: dict[str, Path], tmp_path: Path) -> None:
    lenient = tmp_path / "thresholds.json"
    lenient.write_text(json.dumps({"amount": {"psi": 10, "js": 0.99}}))
    result = cli("drift", str(files["ref"]), str(files["shifted"]), "--thresholds", str(lenient))
    assert result.code == 0, result.out
    # A stricter global JS threshold makes noise look like drift only if it is significant:
    # the alpha option is what then lets it through.
    strict = cli(
        "drift", str(files["ref"]), str(files["same"]), "--js", "0.001", "--psi", "0.001",
        "--alpha", "1", "--json",
    )  # fmt: skip
    assert strict.code == 1
    assert strict.json()["features"][0]["thresholds"] == {
        "psi": 0.001, "js": 0.001, "alpha": 1.0, "min_rows": 100,
    }  # fmt: skip


def test_min_rows_option_makes_everything_insufficient(cli: Any, files: dict[str, Path]) -> None:
    result = cli("drift", str(files["ref"]), str(files["shifted"]), "--min-rows", "100000")
    assert result.code == 0, result.err
    assert all(line.split()[-1] == "insufficient" for line in result.out.splitlines()[2:])


def test_categorical_option_treats_numbers_as_labels(cli: Any, files: dict[str, Path]) -> None:
    result = cli("drift", str(files["ref"]), str(files["same"]), "--categorical", "age", "--json")
    assert result.code == 0, result.err
    kinds = {f["name"]: f["kind"] for f in result.json()["features"]}
    assert kinds["age"] == "categorical"


def unusable(result: Any, *needles: str) -> None:
    assert result.code == 2, (result.out, result.err)
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_file_exits_2(cli: Any, files: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    unusable(cli("drift", str(files["ref"]), str(missing)), str(missing), "drift.bad_file")


def test_bad_extension_exits_2(cli: Any, files: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "data.json"
    other.write_text("{}")
    unusable(cli("drift", str(other), str(files["same"])), "drift.unsupported_format")


def test_different_column_sets_exit_2(cli: Any, files: dict[str, Path], tmp_path: Path) -> None:
    fewer = tmp_path / "fewer.csv"
    pa_csv.write_csv(frame(5).drop_columns(["age"]), fewer)
    unusable(cli("drift", str(files["ref"]), str(fewer)), "'age'", "drift.missing_feature")
    more = tmp_path / "more.csv"
    pa_csv.write_csv(frame(5).append_column("extra", pa.array([1.0] * ROWS)), more)
    unusable(cli("drift", str(files["ref"]), str(more)), "'extra'", "drift.unknown_feature")


def test_text_where_the_reference_has_numbers_exits_2(
    cli: Any, files: dict[str, Path], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    table = frame(6).set_column(0, "amount", pa.array(["n/a"] * ROWS))
    pa_csv.write_csv(table, bad)
    unusable(cli("drift", str(files["ref"]), str(bad)), "'amount'", "monitoring.bad_values")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--bins", "1"], "monitoring.bad_profile"),
        (["--js", "2"], "drift.bad_threshold"),
        (["--categorical", "nope"], "nope"),
        (["--prediction", "nope"], "nope"),
    ],
)
def test_bad_options_exit_2(cli: Any, files: dict[str, Path], args: list[str], needle: str) -> None:
    unusable(cli("drift", str(files["ref"]), str(files["same"]), *args), needle)


def test_bad_thresholds_file_exits_2(cli: Any, files: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text("{not json")
    unusable(cli("drift", str(files["ref"]), str(files["same"]), "--thresholds", str(path)), "JSON")
    path.write_text(json.dumps({"amount": {"spi": 1}}))
    unusable(
        cli("drift", str(files["ref"]), str(files["same"]), "--thresholds", str(path)),
        "drift.bad_threshold",
    )
    path.write_text(json.dumps({"typo": {"psi": 1}}))
    unusable(
        cli("drift", str(files["ref"]), str(files["same"]), "--thresholds", str(path)),
        "drift.unknown_feature",
    )


def test_real_process_exit_codes(proc: Any, files: dict[str, Path], tmp_path: Path) -> None:
    assert proc("drift", str(files["ref"]), str(files["same"])).code == 0
    assert proc("drift", str(files["ref"]), str(files["shifted"])).code == 1
    assert proc("drift", str(files["ref"]), str(tmp_path / "missing.csv")).code == 2
