"""Batch drift on 1M rows x 50 numeric features, in memory: Bastion against Evidently.

Data (seeded numpy): 50 columns cycling through normal, lognormal, uniform and exponential
shapes with different locations and scales; the current data has the same shapes except 10
columns (f0, f5, ..., f45), moved by `--shift` standard deviations (default 0.5) and scaled by
1.3 around their mean. Both tools must flag exactly those 10.

Why 0.5 sd: Evidently's normalised Wasserstein distance of 0.1 flags a mean shift of 0.1 sd;
Bastion's JS distance of 0.1 (10 bins) takes about 0.27 sd for a normal column. With 0.25 sd
and x1.3 the exponential columns sit at JS ~0.097, just under the threshold, so Bastion does
not flag them (and agrees with Evidently only by chance); at 0.5 sd every drifted column has
JS 0.18..0.32 and every other one below 0.02 at 20k rows (`--shift 0.25` shows the difference).

Bastion: `batch_drift` on the numpy columns (profile the reference: quantile bins, counts;
bin the current; PSI, JS and chi-squared per feature), median of `--runs` runs, with the
profile/bin/compare split of one run.

Evidently 0.7.23 `DataDriftPreset` (defaults: normalised Wasserstein distance, threshold 0.1,
for numeric columns above 1,000 rows), in its own throwaway virtualenv at
`.bench/evidently` (created on first use with `pandas<3`: Evidently 0.7.23 does not import
with pandas 3), in a subprocess with telemetry off, fed the same arrays through `.npy` files
under `.bench/monitoring/`; timed from the DataFrames to the finished report (one run: it
takes minutes). The ratio is taken at the same row count (Bastion is re-timed at
`--evidently-rows` when that differs from `--rows`).

Run: `.venv/bin/python bench/monitoring_batch.py [--rows N] [--cols N] [--evidently-rows N]
[--skip-evidently] [--runs N] [--shift SD]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bastion.monitoring.drift import DriftThresholds, compare
from bastion.registry.profile import build_profile

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / ".bench"
EVIDENTLY_ENV = BENCH / "evidently"
DATA = BENCH / "monitoring"
SCALE = 1.3
DRIFT_EVERY = 5  # f0, f5, ...: 10 of 50

EVIDENTLY_SCRIPT = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd
from evidently import Dataset, DataDefinition, Report
from evidently.presets import DataDriftPreset

rows = int(sys.argv[3])
ref = np.load(sys.argv[1], mmap_mode="r")[:rows]
cur = np.load(sys.argv[2], mmap_mode="r")[:rows]
names = [f"f{i}" for i in range(ref.shape[1])]
ref = pd.DataFrame(np.ascontiguousarray(ref), columns=names)
cur = pd.DataFrame(np.ascontiguousarray(cur), columns=names)
start = time.perf_counter()
definition = DataDefinition(numerical_columns=names)
snapshot = Report([DataDriftPreset()]).run(
    Dataset.from_pandas(cur, data_definition=definition),  # current first in Evidently 0.7
    Dataset.from_pandas(ref, data_definition=definition),
)
doc = snapshot.dict()
seconds = time.perf_counter() - start
DISTANCES = ("wasserstein", "jensen", "psi", "hellinger", "kl", "distance")
drifted, methods = [], set()
for metric in doc["metrics"]:
    config = metric.get("config", {})
    if not config.get("type", "").endswith("ValueDrift"):
        continue
    method = str(config.get("method", ""))
    methods.add(method)
    value, threshold = float(metric["value"]), float(config["threshold"])
    is_distance = any(word in method.lower() for word in DISTANCES)
    if (value >= threshold) if is_distance else (value < threshold):
        drifted.append(config["column"])
print(json.dumps({"seconds": seconds, "drifted": drifted, "methods": sorted(methods)}))
"""


def make_data(
    rows: int, cols: int, shift: float, seed: int = 8
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(reference, current) as rows x cols float64 (C order) and the drifted column indices."""
    rng = np.random.default_rng(seed)
    reference = np.empty((rows, cols))
    current = np.empty((rows, cols))
    drifted = list(range(0, cols, DRIFT_EVERY))
    for j in range(cols):
        loc, scale = float(j), 1.0 + j / 10
        for target in (reference, current):
            shape = j % 4
            if shape == 0:
                column = rng.normal(loc, scale, rows)
            elif shape == 1:
                column = loc + rng.lognormal(0.0, 0.5, rows) * scale
            elif shape == 2:
                column = rng.uniform(loc - scale, loc + scale, rows)
            else:
                column = loc + rng.exponential(scale, rows)
            target[:, j] = column
        if j in drifted:
            column = current[:, j]
            mean, sd = float(column.mean()), float(column.std())
            current[:, j] = mean + (column - mean) * SCALE + shift * sd
    return reference, current, drifted


def columns(matrix: np.ndarray) -> dict[str, np.ndarray]:
    # Contiguous 1-D columns, as a file reader or a DataFrame would hand them over.
    return {f"f{j}": np.ascontiguousarray(matrix[:, j]) for j in range(matrix.shape[1])}


def time_bastion(
    reference: dict[str, np.ndarray], current: dict[str, np.ndarray], runs: int
) -> tuple[float, dict[str, float], list[str]]:
    totals: list[float] = []
    split: dict[str, float] = {}
    drifted: list[str] = []
    for _ in range(runs):
        start = time.perf_counter()
        profile = build_profile(reference)
        profiled = time.perf_counter()
        counts = {name: f.bin(current[name]) for name, f in profile.features.items()}
        binned = time.perf_counter()
        report = compare(profile, counts, thresholds=DriftThresholds())
        done = time.perf_counter()
        totals.append(done - start)
        split = {"profile": profiled - start, "bin": binned - profiled, "compare": done - binned}
        drifted = list(report.drifted)
    return statistics.median(totals), split, drifted


def evidently_python() -> Path:
    python = EVIDENTLY_ENV / "bin" / "python"
    probe = [
        str(python),
        "-c",
        "import evidently, pandas; assert evidently.__version__ == '0.7.23'",
    ]
    if python.exists():
        found = subprocess.run(probe, capture_output=True, check=False)  # noqa: S603 - fixed argv
        if found.returncode == 0:
            return python
    print(f"creating {EVIDENTLY_ENV} (evidently 0.7.23, pandas<3) ...", flush=True)
    venv = [sys.executable, "-m", "venv", "--clear", str(EVIDENTLY_ENV)]
    subprocess.run(venv, check=True)  # noqa: S603 - fixed argv
    subprocess.run(  # noqa: S603 - fixed argv
        [str(python), "-m", "pip", "install", "--quiet", "evidently==0.7.23", "pandas<3"],
        check=True,
    )
    return python


def run_evidently(reference: np.ndarray, current: np.ndarray, rows: int) -> dict[str, Any]:
    python = evidently_python()
    DATA.mkdir(parents=True, exist_ok=True)
    ref_path, cur_path = DATA / "reference.npy", DATA / "current.npy"
    np.save(ref_path, reference)
    np.save(cur_path, current)
    env = {**os.environ, "DO_NOT_TRACK": "1", "EVIDENTLY_DISABLE_TELEMETRY": "1"}
    done = subprocess.run(  # noqa: S603 - argv built here from fixed parts and paths
        [str(python), "-c", EVIDENTLY_SCRIPT, str(ref_path), str(cur_path), str(rows)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"Evidently failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=50)
    parser.add_argument("--evidently-rows", type=int, default=1_000_000)
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--runs", type=int, default=3, help="Bastion runs (median reported)")
    parser.add_argument(
        "--shift", type=float, default=0.5, help="mean shift of drifted columns, sd"
    )
    args = parser.parse_args()
    data_rows = max(args.rows, 0 if args.skip_evidently else args.evidently_rows)

    start = time.perf_counter()
    reference, current, drifted_columns = make_data(data_rows, args.cols, args.shift)
    expected = [f"f{j}" for j in drifted_columns]
    print(
        f"data: {data_rows:,} rows x {args.cols} numeric features, "
        f"{len(expected)} drifted (shift {args.shift} sd, scale {SCALE}), "
        f"generated in {time.perf_counter() - start:.1f} s"
    )

    ref_cols, cur_cols = columns(reference[: args.rows]), columns(current[: args.rows])
    seconds, split, drifted = time_bastion(ref_cols, cur_cols, args.runs)
    print(
        f"Bastion  {args.rows:>9,} x {args.cols}: {seconds:7.2f} s (median of {args.runs}; "
        + ", ".join(f"{k} {v:.2f} s" for k, v in split.items())
        + f"), flags {len(drifted)}: {', '.join(drifted)}"
    )
    ok = drifted == expected
    print(f"  Bastion flags exactly the drifted columns: {'yes' if ok else 'NO'}")
    if args.skip_evidently:
        return

    rows = args.evidently_rows
    bastion_at_rows = seconds
    if rows != args.rows:
        ref_e, cur_e = columns(reference[:rows]), columns(current[:rows])
        bastion_at_rows, _, drifted = time_bastion(ref_e, cur_e, args.runs)
        print(
            f"Bastion  {rows:>9,} x {args.cols}: {bastion_at_rows:7.2f} s (for the ratio), "
            f"flags {len(drifted)}: {', '.join(drifted)}"
        )
    result = run_evidently(reference, current, rows)
    flagged = sorted(result["drifted"], key=lambda name: int(name[1:]))
    print(
        f"Evidently {rows:>8,} x {args.cols}: {result['seconds']:7.2f} s "
        f"(DataDriftPreset, {', '.join(result['methods'])}), "
        f"flags {len(flagged)}: {', '.join(flagged)}"
    )
    print(
        f"  ratio Evidently / Bastion at {rows:,} rows: {result['seconds'] / bastion_at_rows:.0f}x"
    )
    same = flagged == drifted == expected
    print(f"  same verdicts (both flag exactly the {len(expected)} drifted columns): "
          f"{'yes' if same else 'NO'}")  # fmt: skip
    for path in DATA.glob("*.npy"):
        path.unlink()


if __name__ == "__main__":
    main()
