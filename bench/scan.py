"""Scan throughput on a 500 MB benign pickle, against reading and hashing the same file.

Writes, in a temp dir, a pickle (protocol 5) of a dict of float64 arrays totalling 500 MB and
the same arrays through `joblib.dump` (uncompressed, NumpyArrayWrapper layout), reads each
once so the page cache is warm, then times, median of `repeats` runs after a warm-up:

* baseline: read the file in 8 MiB chunks and SHA-256 it (what any scanner must at least do,
  since the registry seals against the digest of the scanned bytes);
* baseline 2: `pickletools.genops` over the same file, the opcode iterator modelscan and
  picklescan build on (reported only for the pickle; it reads payloads into memory);
* Bastion `Scanner.scan_path`: one pass that hashes, secret-scans every byte and walks every
  opcode against the allow-list.

MB/s is 10^6 bytes per second; the ratio is Bastion / read+sha256 (1.0 means the scan costs
nothing beyond reading and hashing). Target: >= 300 MB/s. Runtime under a minute.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import pickletools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np

from bastion.supplychain.scan import Scanner

MB = 1_000_000
CHUNK = 8 * 1024 * 1024


def _median(run: Callable[[], object], repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _read_and_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _genops(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in pickletools.genops(f))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(3)
    arrays = {f"layer{i}": rng.random(args.mb * MB // 8 // 10) for i in range(10)}
    scanner = Scanner()
    with tempfile.TemporaryDirectory() as tmp:
        files = {"pickle": Path(tmp) / "model.pkl", "joblib": Path(tmp) / "model.joblib"}
        with files["pickle"].open("wb") as f:
            pickle.dump(arrays, f, protocol=5)
        joblib.dump(arrays, files["joblib"])
        del arrays
        for label, path in files.items():
            size = path.stat().st_size
            report = scanner.scan_path(path)
            assert report.clean, report.findings
            base = _median(lambda p=path: _read_and_hash(p), args.repeats)
            scan = _median(lambda p=path: scanner.scan_path(p), args.repeats)
            print(
                f"{label}: {size / MB:.0f} MB, format {report.files[0].format.value}, "
                f"median of {args.repeats}"
            )
            print(f"  read + sha256 (baseline): {size / MB / base:8.0f} MB/s")
            if label == "pickle":
                ops = _median(lambda p=path: _genops(p), args.repeats)
                print(f"  pickletools.genops:       {size / MB / ops:8.0f} MB/s")
            print(
                f"  bastion scan:             {size / MB / scan:8.0f} MB/s "
                f"(ratio to baseline {base / scan:.2f})"
            )


if __name__ == "__main__":
    main()
