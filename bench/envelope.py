"""Throughput of `EnvelopeCipher` against raw AES-256-GCM, on one core.

Streams a random blob memory-to-memory through `encrypt_stream` and `decrypt_stream` with
the default 1 MiB chunks. Source: `io.BytesIO` over the bytes. Sink: an `io.BytesIO` already
sized to the output and rewound, so the figure is the cipher's and not the cost of a growing
BytesIO (which reallocates and page-faults its way to 256 MiB and can halve the rate). The
envelope figures include everything a real call does: creating and storing the data key (with
fsync) in a `LocalKeyStore` in a temp dir, reading and writing the streams, the STREAM framing,
and the SHA-256 plaintext digest.

The baseline is `cryptography`'s `AESGCM` alone over the same data in 1 MiB chunks (counter
nonces, outputs discarded, no framing, hashing or I/O), so `*_ratio` = envelope / baseline
shows what everything around the AEAD costs. SHA-256 alone is shown too: the digest, not the
cipher, is the ceiling on CPUs with AES and carry-less multiply instructions, so the
`*_framing_share` figures give the part of envelope time spent on neither (framing, copies,
key creation).

MB/s is 10^6 bytes of plaintext per second; each figure is the median of `repeats` timed runs
after one untimed warm-up run. Target: encrypt and decrypt >= 500 MB/s on one core.

Imports `bastion.crypto` only; nothing here is used at run time.
"""

from __future__ import annotations

import hashlib
import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.crypto.envelope import EnvelopeCipher
from bastion.crypto.keystore import LocalKeyStore
from bastion.crypto.masterkey import MasterKey

MiB = 1024 * 1024


def _median_rate(run: Callable[[], None], nbytes: int, repeats: int) -> float:
    run()  # warm-up: first-touch page faults and allocator growth are not steady state
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return nbytes / statistics.median(times) / 1e6


def _sink(size: int) -> io.BytesIO:
    sink = io.BytesIO(bytes(size))
    sink.seek(0)
    return sink


def bench_envelope(size_mib: int = 256, repeats: int = 3) -> dict[str, float]:
    """Median MB/s for envelope encrypt/decrypt of a `size_mib` blob, plus the raw-AESGCM
    baseline and SHA-256 for comparison (see the module docstring for what each includes)."""
    size = size_mib * MiB
    data = os.urandom(size)
    view = memoryview(data)
    with tempfile.TemporaryDirectory() as tmp:
        keystore = LocalKeyStore.create(Path(tmp) / "keys", MasterKey.generate())
        cipher = EnvelopeCipher(keystore)
        first = io.BytesIO()
        info = cipher.encrypt_stream(io.BytesIO(data), first)
        sealed = first.getvalue()
        del first
        enc_sink = _sink(info.ciphertext_size)
        dec_sink = _sink(size)

        def encrypt() -> None:
            enc_sink.seek(0)
            cipher.encrypt_stream(io.BytesIO(data), enc_sink)

        def decrypt() -> None:
            dec_sink.seek(0)
            cipher.decrypt_stream(io.BytesIO(sealed), dec_sink)

        enc = _median_rate(encrypt, size, repeats)
        dec = _median_rate(decrypt, size, repeats)
        if dec_sink.getbuffer() != view:
            raise AssertionError("decryption did not reproduce the plaintext")

    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    chunks = [view[i : i + MiB] for i in range(0, size, MiB)]
    nonces = [i.to_bytes(12, "big") for i in range(len(chunks))]
    sealed_chunks = [aead.encrypt(n, c, None) for n, c in zip(nonces, chunks, strict=True)]

    def raw_encrypt() -> None:
        for nonce, chunk in zip(nonces, chunks, strict=True):
            aead.encrypt(nonce, chunk, None)

    def raw_decrypt() -> None:
        for nonce, chunk in zip(nonces, sealed_chunks, strict=True):
            aead.decrypt(nonce, chunk, None)

    def sha256() -> None:
        hashlib.sha256(view).digest()

    base_enc = _median_rate(raw_encrypt, size, repeats)
    base_dec = _median_rate(raw_decrypt, size, repeats)
    sha = _median_rate(sha256, size, repeats)

    def framing_share(envelope: float, aead_only: float) -> float:
        # Fraction of envelope time spent on neither the AEAD nor the digest: framing, stream
        # copies, key creation. Rates are inverted to per-byte times so they add up.
        return max(0.0, 1 - (1 / aead_only + 1 / sha) / (1 / envelope))

    return {
        "size_mib": float(size_mib),
        "encrypt_mb_s": enc,
        "decrypt_mb_s": dec,
        "baseline_encrypt_mb_s": base_enc,
        "baseline_decrypt_mb_s": base_dec,
        "encrypt_ratio": enc / base_enc,
        "decrypt_ratio": dec / base_dec,
        "sha256_mb_s": sha,
        "encrypt_framing_share": framing_share(enc, base_enc),
        "decrypt_framing_share": framing_share(dec, base_dec),
    }


if __name__ == "__main__":
    result = bench_envelope()
    print(
        f"EnvelopeCipher, {result['size_mib']:.0f} MiB blob, memory -> memory "
        "(BytesIO, presized sink), 1 MiB chunks, one core"
    )
    print(f"  encrypt            {result['encrypt_mb_s']:9.0f} MB/s")
    print(f"  decrypt            {result['decrypt_mb_s']:9.0f} MB/s")
    print(f"  raw AESGCM encrypt {result['baseline_encrypt_mb_s']:9.0f} MB/s")
    print(f"  raw AESGCM decrypt {result['baseline_decrypt_mb_s']:9.0f} MB/s")
    print(f"  SHA-256 alone      {result['sha256_mb_s']:9.0f} MB/s")
    print(
        f"  envelope/baseline  encrypt {result['encrypt_ratio']:.2f}  "
        f"decrypt {result['decrypt_ratio']:.2f}"
    )
    print(
        "  time not in AEAD or SHA-256 (framing, copies, key creation): "
        f"encrypt {result['encrypt_framing_share']:.0%}  "
        f"decrypt {result['decrypt_framing_share']:.0%}"
    )
    target = 500.0
    ok = min(result["encrypt_mb_s"], result["decrypt_mb_s"]) >= target
    print(f"  target >= {target:.0f} MB/s: {'met' if ok else 'NOT met'}")
