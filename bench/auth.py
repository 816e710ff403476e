"""Benchmark: authenticate + authorize one request in-process, and envelope encryption speed.

Prints medians (these machines are shared and noisy) and ratios against baselines measured in
the same run:
* auth, cached: `TokenService.authenticate` + `Authorizer.authorize` with the default 2 s
  token cache (steady state of a busy gateway, reloads included). Target <= 50 us.
* auth, uncached: the same with the cache disabled (one database read per request), SQLite.
* baseline: the irreducible work, one HMAC-SHA256 of the token secret plus a dict lookup.
* HTTP: `GET /v1/auth/whoami` through the whole ASGI stack (TestClient), for context.
* envelope: 256 MiB through `EnvelopeCipher` vs raw AES-GCM on the same chunks (bench/envelope.py).

Usage: python bench/auth.py [--quick]   (--quick: 16 MiB envelope, fewer iterations)
"""

from __future__ import annotations

import hashlib
import hmac
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bastion.core import Settings
from bastion.identity import Permission
from bastion.platform import Platform
from envelope import bench_envelope


def _median_us(fn: Callable[[], object], *, rounds: int, per_round: int) -> float:
    for _ in range(per_round):  # warm-up
        fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(per_round):
            fn()
        samples.append((time.perf_counter_ns() - start) / per_round / 1000)
    return statistics.median(samples)


def bench_auth(rounds: int, per_round: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as home:
        results: dict[str, float] = {}
        for label, cache_seconds in (("cached", 2.0), ("uncached", 0.0)):  # 2 s: the default
            settings = Settings.from_env(home=Path(home), auth_cache_seconds=cache_seconds)
            with Platform.initialise(settings) as platform:
                _, issued = platform.bootstrap_admin("bench-admin")
                token = issued.secret

                def request(platform: Platform = platform, token: str = token) -> None:
                    caller = platform.tokens.authenticate(token, request_id="req-bench")
                    platform.authorizer.authorize(caller, Permission.PRINCIPAL_READ)

                n = per_round if label == "cached" else max(per_round // 20, 10)
                results[label] = _median_us(request, rounds=rounds, per_round=n)
                if label == "cached":
                    from starlette.testclient import TestClient

                    from bastion.api import create_app

                    client = TestClient(create_app(platform))
                    headers = {"Authorization": f"Bearer {token}"}
                    results["http"] = _median_us(
                        lambda c=client, h=headers: c.get("/v1/auth/whoami", headers=h),
                        rounds=rounds,
                        per_round=max(per_round // 50, 10),
                    )

        key, table = b"k" * 32, {"tok_x": b"h" * 32}
        secret = "s" * 40

        def baseline() -> None:
            digest = hmac.new(key, f"tok_x:{secret}".encode(), hashlib.sha256).digest()
            hmac.compare_digest(digest, table["tok_x"])

        results["baseline"] = _median_us(baseline, rounds=rounds, per_round=per_round)
        return results


def main() -> None:
    quick = "--quick" in sys.argv
    auth = bench_auth(rounds=7 if quick else 15, per_round=2000 if quick else 10000)
    print("auth (authenticate + authorize, in-process, median of rounds)")
    print(f"  cached token record      {auth['cached']:9.2f} us   (target <= 50 us)")
    print(f"  uncached (SQLite read)   {auth['uncached']:9.2f} us")
    print(f"  baseline HMAC + lookup   {auth['baseline']:9.2f} us")
    print(f"  ratio cached / baseline  {auth['cached'] / auth['baseline']:9.1f} x")
    print(f"  HTTP GET whoami (ASGI)   {auth['http']:9.2f} us")
    size = 16 if quick else 256
    env = bench_envelope(size_mib=size, repeats=3)
    print(f"envelope encryption, {size} MiB (median of 3)")
    for key in sorted(env):
        print(f"  {key:28s} {env[key]:9.1f}")


if __name__ == "__main__":
    main()
