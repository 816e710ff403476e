"""`bastion drift REF CUR`: batch drift between two local data files (CSV or Parquet).

Profiles REF (the reference: training or another trusted dataset), bins CUR with that profile
and prints one line per feature (PSI, JS distance, chi-squared p-value, verdict), drifted
features first; `--json` prints the whole `DriftReport`. Runs offline with no Bastion home and
no token: nothing here touches the platform.

Exit codes: 0 nothing drifted; 1 at least one feature (or the prediction column) drifted;
2 unusable input (unreadable or malformed file, unsupported column, different column sets, a
bad option or thresholds file), with one line on stderr.

Exits go through `sys.exit` rather than `typer.Exit` (see `cli/signature.py`: `main()` runs
click without standalone mode, which would lose an explicit exit code).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from bastion.cli.common import JsonFlag, exit_unusable, print_json
from bastion.core.errors import BastionError
from bastion.monitoring.datafiles import read_table
from bastion.monitoring.drift import DriftThresholds, batch_drift, parse_thresholds

EXIT_DRIFT = 1
MAX_FILE_BYTES = 8 << 30  # each data file; a larger one is refused rather than read into memory
MAX_THRESHOLDS_BYTES = 1 << 20


def register(app: typer.Typer) -> None:
    """Add the `drift` command to `app`."""
    app.command("drift")(drift)


def drift(
    reference: Annotated[
        Path, typer.Argument(metavar="REF", help="Reference data (.csv, .parquet or .pq).")
    ],
    current: Annotated[
        Path, typer.Argument(metavar="CUR", help="Current data, same columns as REF.")
    ],
    as_json: JsonFlag = False,
    bins: Annotated[int, typer.Option("--bins", help="Quantile bins per numeric column.")] = 10,
    top_k: Annotated[
        int, typer.Option("--top-k", help="Categories kept per text column (rest: other).")
    ] = 20,
    categorical: Annotated[
        str,
        typer.Option("--categorical", help="Comma-separated numeric columns to treat as labels."),
    ] = "",
    prediction: Annotated[
        str | None,
        typer.Option("--prediction", help="A column holding the model's output (judged apart)."),
    ] = None,
    psi: Annotated[float, typer.Option("--psi", help="PSI threshold.")] = DriftThresholds.psi,
    js: Annotated[
        float, typer.Option("--js", help="Jensen-Shannon distance threshold (0..1).")
    ] = DriftThresholds.js,
    alpha: Annotated[
        float, typer.Option("--alpha", help="Significance of the chi-squared test.")
    ] = DriftThresholds.alpha,
    min_rows: Annotated[
        int, typer.Option("--min-rows", help="Fewer current rows: insufficient.")
    ] = DriftThresholds.min_rows,
    thresholds_file: Annotated[
        Path | None,
        typer.Option(
            "--thresholds",
            metavar="FILE.json",
            help='Per-feature overrides: {"feature": {"psi": 0.3, "js": 0.15}}.',
        ),
    ] = None,
) -> None:
    """Compare CUR with REF column by column: exit 0 no drift, 1 drift, 2 unusable input."""
    try:
        base = DriftThresholds(psi=psi, js=js, alpha=alpha, min_rows=min_rows)
        per_feature = (
            parse_thresholds(_read_json(thresholds_file), base=base) if thresholds_file else None
        )
        ref = read_table(reference, max_bytes=MAX_FILE_BYTES)
        cur = read_table(current, max_bytes=MAX_FILE_BYTES)
        names = [n.strip() for n in categorical.split(",") if n.strip()]
        ref_prediction = cur_prediction = None
        if prediction is not None:
            if prediction not in ref or prediction not in cur:
                exit_unusable(f"--prediction {prediction!r} is not a column of both files")
            ref_prediction, cur_prediction = ref.pop(prediction), cur.pop(prediction)
        kind: Literal["auto", "categorical"] = "auto"
        if prediction in names:
            kind = "categorical"
            names.remove(prediction)
        report = batch_drift(
            ref,
            cur,
            categorical=names,
            bins=bins,
            top_k=top_k,
            thresholds=base,
            per_feature=per_feature,
            reference_prediction=ref_prediction,
            current_prediction=cur_prediction,
            prediction_kind=kind,
        )
    except BastionError as error:
        exit_unusable(f"{error.message} [{error.code}]")
    if as_json:
        print_json(report.to_json())
    else:
        typer.echo(report.render())
    if report.any_drift:
        sys.exit(EXIT_DRIFT)


def _read_json(path: Path) -> object:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_THRESHOLDS_BYTES + 1)
    except OSError as error:
        exit_unusable(f"cannot read thresholds file {path}: {error.strerror}")
    if len(data) > MAX_THRESHOLDS_BYTES:
        exit_unusable(f"thresholds file {path} is larger than {MAX_THRESHOLDS_BYTES} bytes")
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        exit_unusable(f"thresholds file {path} is not JSON: {error}")
