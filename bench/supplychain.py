"""Supply-chain benchmarks: scan throughput, sign+verify throughput, upload→stored latency.

    .venv/bin/python bench/supplychain.py [--skip-scan] [--skip-signing] [--runs N]

Runs `bench/scan.py` (500 MB benign pickle; baseline: read + sha256 of the same file) and
`bench/signing.py` (1 GiB model directory; baseline: `sha256sum`), then measures what a user
waits for when registering a 100 MB model through the same path the CLI and API use: staging
copy with digest, allow-list scan, sealing (AES-256-GCM) into the blob store, ML-BOM, and the
database transaction with its ledger entry. Baseline in the same run: copying the file and
hashing it once (what any upload must at least do). Medians, since the machine is shared.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import runpy
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bastion.core import Settings
from bastion.identity import Caller, Role
from bastion.platform import Platform
from bastion.registry import ModelSpec, VersionSpec

HERE = Path(__file__).parent
MB = 1_000_000


def _model(path: Path, size: int) -> None:
    rng = np.random.default_rng(7)
    arrays = {f"layer{i}": rng.random(size // 8 // 4) for i in range(4)}
    with path.open("wb") as f:
        pickle.dump(arrays, f, protocol=5)


def upload_latency(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = root / "model"
        source.mkdir()
        _model(source / "model.pkl", 100 * MB)
        size = (source / "model.pkl").stat().st_size
        settings = Settings.from_env(home=root / "home")
        with Platform.initialise(settings) as platform:
            caller = Caller.system("bench", [Role.MODEL_DEVELOPER])
            timings, baseline = [], []
            for run in range(runs):
                start = time.perf_counter()
                copy = root / f"copy{run}"
                shutil.copyfile(source / "model.pkl", copy)
                with copy.open("rb") as f:
                    hashlib.file_digest(f, "sha256")
                baseline.append(time.perf_counter() - start)
                copy.unlink()

                start = time.perf_counter()
                upload = platform.staging.create(caller)
                platform.staging.add_tree(caller, upload.id, source)
                platform.models.register_version(
                    caller, "bench", upload.id, VersionSpec(), create=ModelSpec()
                )
                timings.append(time.perf_counter() - start)
        median, base = statistics.median(timings), statistics.median(baseline)
        print(f"upload→stored, {size / MB:.0f} MB model, {runs} runs")
        print(
            f"  bastion register (stage, scan, seal, BOM, ledger): median {median:.2f} s "
            f"({size / MB / median:.0f} MB/s)"
        )
        print(
            f"  baseline copy + sha256:                            median {base:.2f} s "
            f"({size / MB / base:.0f} MB/s)"
        )
        print(f"  ratio register / baseline: {median / base:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-scan", action="store_true")
    parser.add_argument("--skip-signing", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not args.skip_scan:
        print("== scan ==", flush=True)
        sys.argv = [str(HERE / "scan.py")]
        runpy.run_path(str(HERE / "scan.py"), run_name="__main__")
    if not args.skip_signing:
        print("== signing ==", flush=True)
        sys.argv = [str(HERE / "signing.py")]
        runpy.run_path(str(HERE / "signing.py"), run_name="__main__")
    print("== upload ==", flush=True)
    upload_latency(args.runs)


if __name__ == "__main__":
    main()
