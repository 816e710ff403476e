"""Benchmark the transparency log on SQLite and PostgreSQL.

Prints medians and ratios against a baseline measured in the same run (a bare transaction
inserting the same row with no sequencing):
* durable appends/s, single writer: one event per committed transaction, each sequenced and
  checkpointed by the post-commit hook, exactly as services do;
* durable appends/s, 8 concurrent writers (threads);
* batched: 100 events per transaction, sequenced after each commit;
* inclusion-proof latency at N entries (default 1,000,000; the log is built with bulk inserts
  of real canonical events, then sequenced by the real sequencer in 5,000-entry batches);
* full `verify()` of the N-entry log.
Targets (2-core machine): >= 2,000 batched durable appends/s on SQLite, inclusion proof
<= 1 ms at 1M entries, full verify of 1M entries <= 30 s.

Usage: python bench/ledger.py [--quick] [--entries N] [--backend sqlite|postgres|both]
PostgreSQL comes from BASTION_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1/test),
in a throw-away schema.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa

from bastion.core import Settings, canonical_json
from bastion.ledger import Event
from bastion.platform import Platform
from bastion.store.tables import LedgerEntryRow

PG = os.environ.get("BASTION_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def _platform(backend: str) -> Iterator[Platform]:
    with tempfile.TemporaryDirectory() as home:
        if backend == "sqlite":
            url = None
            schema = None
        else:
            schema = f"bench_{secrets.token_hex(4)}"
            admin = sa.create_engine(PG.replace("postgresql://", "postgresql+psycopg://", 1))
            with admin.begin() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            url = f"{PG}{'&' if '?' in PG else '?'}options={quote(f'-csearch_path={schema}')}"
        settings = Settings.from_env(home=Path(home), database_url=url)
        try:
            with Platform.initialise(settings) as platform:
                yield platform
        finally:
            if schema is not None:
                with admin.begin() as conn:
                    conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
                admin.dispose()


def _event(i: int, actor: str = "bench") -> Event:
    return Event(type="bench.appended", actor=actor, subject=f"thing:{i}", data={"i": i})


def _rate(fn: object, count: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def bench_appends(backend: str, n: int, repeats: int) -> dict[str, float]:
    with _platform(backend) as p:

        def single() -> None:
            for i in range(n):
                with p.database.transaction() as s:
                    p.ledger.append(s, _event(i))

        baseline_table = sa.Table(
            "bench_baseline",
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("body", sa.LargeBinary),
        )
        baseline_table.create(p.database.engine)

        def baseline() -> None:
            # The same durable commit of a canonical-JSON row, with no log around it.
            for i in range(n):
                with p.database.transaction() as s:
                    s.execute(sa.insert(baseline_table), [{"body": canonical_json({"i": i})}])

        def concurrent() -> None:
            def writer(w: int) -> None:
                for i in range(n // 8):
                    with p.database.transaction() as s:
                        p.ledger.append(s, _event(i, f"w{w}"))

            threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        def batched() -> None:
            for b in range(n * 10 // 100):
                with p.database.transaction() as s:
                    for i in range(100):
                        p.ledger.append(s, _event(b * 100 + i))

        return {
            "baseline_tx_per_s": _rate(baseline, n, repeats),
            "single_appends_per_s": _rate(single, n, repeats),
            "concurrent8_appends_per_s": _rate(concurrent, n // 8 * 8, repeats),
            "batched100_appends_per_s": _rate(batched, n * 10, repeats),
        }


def bench_large(backend: str, entries: int) -> dict[str, float]:
    with _platform(backend) as p:
        start = time.perf_counter()
        now = p.clock.now()
        for block in range(0, entries, 20_000):
            rows = []
            for i in range(block, min(entries, block + 20_000)):
                body = canonical_json(
                    {
                        "v": 1,
                        "id": f"evt_{i}",
                        "type": "bench.bulk",
                        "actor": "bench",
                        "subject": f"thing:{i}",
                        "time": "2026-11-22T00:00:00Z",
                        "request_id": None,
                        "data": {"i": i},
                    }
                )
                rows.append(
                    {
                        "event_id": f"evt_{i:012d}",
                        "event_type": "bench.bulk",
                        "actor": "bench",
                        "subject": f"thing:{i}",
                        "request_id": None,
                        "created_at": now,
                        "body": body,
                    }
                )
            with p.database.transaction() as s:
                s.execute(sa.insert(LedgerEntryRow), rows)
        p.ledger.sequence_all()
        build = time.perf_counter() - start
        size = p.ledger.size()
        samples = []
        for _ in range(300):
            index = secrets.randbelow(size)
            t0 = time.perf_counter()
            p.ledger.inclusion_proof(index, size)
            samples.append(time.perf_counter() - t0)
        consistency = []
        for _ in range(100):
            first = secrets.randbelow(size)
            t0 = time.perf_counter()
            p.ledger.consistency_proof(first, size)
            consistency.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        report = p.ledger.verify()
        verify = time.perf_counter() - t0
        assert report.size == size
        return {
            "entries": float(size),
            "build_and_sequence_s": build,
            "sequenced_per_s": size / build,
            "inclusion_proof_ms_median": statistics.median(samples) * 1000,
            "inclusion_proof_ms_p99": sorted(samples)[int(len(samples) * 0.99) - 1] * 1000,
            "consistency_proof_ms_median": statistics.median(consistency) * 1000,
            "verify_s": verify,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--entries", type=int, default=None)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    n = 100 if args.quick else 400
    entries = args.entries or (20_000 if args.quick else 1_000_000)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    for backend in backends:
        print(f"== {backend}")
        appends = bench_appends(backend, n, repeats=3)
        for key, value in appends.items():
            print(f"  {key:32s} {value:12.1f}")
        ratio = appends["single_appends_per_s"] / appends["baseline_tx_per_s"]
        print(f"  {'single / baseline':32s} {ratio:12.2f}")
        for key, value in bench_large(backend, entries).items():
            print(f"  {key:32s} {value:12.3f}")


if __name__ == "__main__":
    main()
