"""Throughput of model signing and verification against `sha256sum`, on a 1 GiB model.

Builds a model directory of 4 files x 256 MiB of random bytes in a temp dir (written in
64 MiB blocks), reads it once so the page cache is warm, then times, median of `repeats` runs
each after that warm-up:

* `sha256sum` over the same four files (a subprocess, one core): the baseline;
* `hashlib.sha256` over the same files in one thread, 4 MiB reads: what one core of
  OpenSSL's SHA-256 does here (coreutils may lack the SHA extensions OpenSSL uses, which is
  why it can trail far behind);
* Bastion `Signer.sign_directory` (hash every file in threads, build and sign the bundle);
* Bastion `Verifier.verify_directory` (check the bundle, re-hash, compare);
* the reference `model-signing` 1.1.1 library, sign and verify with the same key, if the
  dev dependency is installed.

Signing and verifying are dominated by SHA-256 over the files: Bastion reads 4 MiB at a time
into one reused buffer and hashes files in parallel threads (hashlib releases the GIL), so on a
machine with more than one core it can beat single-threaded `sha256sum`. The figures measure
hashing from the page cache, not the disk.

GB/s is 10^9 bytes of model per second; ratios are rate / sha256sum rate (above 1 is faster).
Target: Bastion sign and verify >= 1 GB/s and near or above sha256sum. Runtime about a minute.

Imports `bastion.supplychain.signing` (and `model_signing` if present); nothing here is used at
run time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.supplychain.signing import Signer, Verifier

MiB = 1024 * 1024
BLOCK = 64 * MiB


def _median_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up: page cache, thread pool start-up, imports
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _build_model(root: Path, files: int, file_mib: int) -> list[Path]:
    root.mkdir()
    paths = []
    for index in range(files):
        path = root / f"model-{index:05d}-of-{files:05d}.safetensors"
        with path.open("wb") as handle:
            for _ in range(file_mib * MiB // BLOCK):
                handle.write(os.urandom(BLOCK))
        paths.append(path)
    return paths


def _sha256sum(paths: list[Path]) -> None:
    executable = shutil.which("sha256sum")
    if executable is None:
        raise SystemExit("sha256sum not found: it is the baseline")
    # our own temp files, handed to sha256sum found on PATH: nothing untrusted
    subprocess.run([executable, *map(str, paths)], check=True, stdout=subprocess.DEVNULL)  # noqa: S603


def _hashlib_one_thread(paths: list[Path]) -> None:
    buffer = bytearray(4 * MiB)
    view = memoryview(buffer)
    for path in paths:
        hasher = hashlib.sha256()
        with path.open("rb", buffering=0) as handle:
            while count := handle.readinto(view):
                hasher.update(view[:count])


def bench_signing(files: int = 4, file_mib: int = 256, repeats: int = 3) -> dict[str, float]:
    """Median GB/s for each contender and its ratio to sha256sum (see the module docstring)."""
    size = files * file_mib * MiB
    results: dict[str, float] = {
        "size_gib": size / (1024 * MiB),
        "cpus": float(os.cpu_count() or 1),
    }
    with tempfile.TemporaryDirectory(prefix="bastion-bench-signing-") as tmp:
        work = Path(tmp)
        model = work / "model"
        paths = _build_model(model, files, file_mib)
        key = ec.generate_private_key(ec.SECP256R1())
        key_path = work / "key.pem"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        pub_path = work / "key.pub"
        pub_path.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        signer, verifier = Signer(key), Verifier(key.public_key())
        bundle = signer.sign_directory(model)

        timings = {
            "sha256sum": _median_seconds(lambda: _sha256sum(paths), repeats),
            "hashlib_1thread": _median_seconds(lambda: _hashlib_one_thread(paths), repeats),
            "bastion_sign": _median_seconds(lambda: signer.sign_directory(model), repeats),
            "bastion_verify": _median_seconds(
                lambda: verifier.verify_directory(bundle, model), repeats
            ),
        }
        try:
            import model_signing  # the reference: a dev dependency, absent in production
        except ImportError:
            model_signing = None
        if model_signing is not None:
            signature = work / "reference.sig"

            def reference_sign() -> None:
                model_signing.signing.Config().use_elliptic_key_signer(private_key=key_path).sign(
                    model, signature
                )

            def reference_verify() -> None:
                model_signing.verifying.Config().use_elliptic_key_verifier(
                    public_key=pub_path
                ).verify(model, signature)

            timings["reference_sign"] = _median_seconds(reference_sign, repeats)
            timings["reference_verify"] = _median_seconds(reference_verify, repeats)
            verifier.verify_directory(signature.read_bytes(), model)  # interop, while here

    baseline = size / timings["sha256sum"] / 1e9
    for name, seconds in timings.items():
        rate = size / seconds / 1e9
        results[f"{name}_gb_s"] = rate
        results[f"{name}_ratio"] = rate / baseline
    return results


if __name__ == "__main__":
    result = bench_signing()
    print(
        f"Model signing, {result['size_gib']:.0f} GiB model (4 x 256 MiB random files), "
        f"page cache warm, {result['cpus']:.0f} CPUs, median of 3"
    )
    for name, label in (
        ("sha256sum", "sha256sum (baseline)"),
        ("hashlib_1thread", "hashlib, 1 thread"),
        ("bastion_sign", "Bastion sign"),
        ("bastion_verify", "Bastion verify"),
        ("reference_sign", "reference sign"),
        ("reference_verify", "reference verify"),
    ):
        if f"{name}_gb_s" in result:
            print(
                f"  {label:22} {result[f'{name}_gb_s']:6.2f} GB/s   "
                f"x{result[f'{name}_ratio']:.2f} vs sha256sum"
            )
    target = 1.0
    worst = min(result["bastion_sign_gb_s"], result["bastion_verify_gb_s"])
    print(f"  target Bastion >= {target:.1f} GB/s: {'met' if worst >= target else 'NOT met'}")
