"""Monitoring costs and the automatic rollback's speed.

1. **Window overhead per row** on the request path: what the gateway adds per request for the
   monitor — `VersionWindow.request` + `VersionWindow.observe` (the columns queued, binned
   in one pass per `pending_rows`) + `SloTracker.record` — for a 30-feature contract, at 1, 10
   and 100 rows per request, against the baseline of the gateway's existing Prometheus
   observation (`VersionMetrics.request`) measured in the same run. Target: ≤ 20 µs per row.
2. **Time to rollback from breach onset at 50 requests/s**: a real `bastion server` with
   `BASTION_FAULT_INJECTION` making version 2 fail every request (or answer 300 ms late); an
   open-loop client sends 50 requests/s (one every 20 ms, whatever the answers) to an endpoint
   serving version 1; a canary of version 2 is deployed at 10 % and at 50 %. Onset: the canary
   deployment returning (it serves at once). Figures: until the last request *sent* that the
   canary still answered (all traffic back on version 1, as clients see it), and until the
   rollback's ledger time. Three rounds each; medians.

Batch drift against Evidently is `bench/monitoring_batch.py`.
Run: `.venv/bin/python bench/monitoring.py [--rounds N] [--skip-rollback]`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer

from gateway import Processes, build_estimator, feature_names, prepare_bastion_home
from gateway import start_bastion_server as start_server

RATE = 50.0  # requests per second
ONE_ROUND_LIMIT_S = 60.0


# -- 1. per-row overhead ------------------------------------------------------------------------


def overhead() -> None:
    from bastion.monitoring.metrics import GatewayMetrics
    from bastion.monitoring.slo import SloTracker
    from bastion.monitoring.windows import VersionWindow
    from bastion.registry.profile import build_profile

    x = load_breast_cancer().data
    names = feature_names()
    profile = build_profile({n: x[:, i] for i, n in enumerate(names)}, prediction=np.zeros(len(x)))
    print("Per-request monitoring overhead (30 features), median of 5 runs:")
    print(f"{'rows/request':>12} {'monitor µs/req':>15} {'µs/row':>8} {'baseline µs/req':>16}")
    for rows in (1, 10, 100):
        batch = x[:rows]
        columns = {n: batch[:, i].copy() for i, n in enumerate(names)}
        prediction = np.zeros(rows, dtype=np.int64)
        n = 20_000 if rows < 100 else 4_000
        monitor_runs, base_runs = [], []
        for _ in range(5):
            window = VersionWindow("bench", "1", "mv_1", profile)
            slo = SloTracker()
            start = time.perf_counter()
            for _ in range(n):
                window.request(200, 0.001)
                window.observe(rows, columns, {}, prediction)
                slo.record("bench", 200, 0.001)
            window.summary()  # the last fold is part of the cost
            monitor_runs.append((time.perf_counter() - start) / n)
            metrics = GatewayMetrics().version("bench", "1")
            start = time.perf_counter()
            for _ in range(n):
                metrics.request(200, 0.001)
            base_runs.append((time.perf_counter() - start) / n)
        per_request = statistics.median(monitor_runs) * 1e6
        base = statistics.median(base_runs) * 1e6
        print(f"{rows:>12} {per_request:>15.2f} {per_request / rows:>8.2f} {base:>16.2f}")


# -- 2. time to rollback ------------------------------------------------------------------------


def _call(port: int, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(
            method,
            path,
            body=data,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode()
    finally:
        conn.close()


class OpenLoop:
    """Requests sent every 1/RATE s on a schedule, whatever the answers (a pool of workers,
    each with its own connection); records (sent, status, version)."""

    def __init__(self, port: int, token: str, body: bytes) -> None:
        self.port, self.token, self.body = port, token, body
        self.answers: list[tuple[float, int, int | None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=32)
        self._thread = threading.Thread(target=self._schedule)
        self.n = 0

    def __enter__(self) -> OpenLoop:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)

    def _schedule(self) -> None:
        start = time.perf_counter()
        i = 0
        while not self._stop.is_set():
            due = start + i / RATE
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self._pool.submit(self._send, i)
            i += 1

    def _send(self, i: int) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self._local.conn = conn
        sent = time.perf_counter()
        try:
            conn.request(
                "POST",
                "/v1/endpoints/bench/predict",
                body=self.body,
                headers={
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": "application/json",
                    "X-Bastion-Route-Key": f"k{i}",
                },
            )
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            self._local.conn = None
            return
        version = int(json.loads(raw)["version"]) if response.status == 200 else None
        with self._lock:
            self.answers.append((sent, response.status, version))


def rollback_rounds(fault: dict[str, Any], label: str, rounds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bastion-monitoring-"))
    procs = Processes()
    try:
        home = work / "home"
        x, y = load_breast_cancer(return_X_y=True)
        fitted = [build_estimator(key).fit(x, y) for key in ("logreg", "logreg")]
        client = prepare_bastion_home(home, work, "bench", fitted)
        deployer = (home / "deployer.token").read_text()
        port, _ = start_server(
            procs,
            home,
            work,
            BASTION_FAULT_INJECTION=json.dumps([{"endpoint": "bench", "version": 2, **fault}]),
            BASTION_DEPLOY_POLL_SECONDS="0.2",
        )
        body = json.dumps(
            {"records": [dict(zip(feature_names(), map(float, x[0]), strict=True))]}
        ).encode()
        for weight in (10.0, 50.0):
            clients, ledgers, seen = [], [], []
            for _ in range(rounds):
                with OpenLoop(port, client, body) as traffic:
                    time.sleep(1.0)  # stable-only traffic first: the stable window fills
                    status, answer = _call(
                        port, "POST", "/v1/endpoints/bench/deployments", deployer,
                        {"model": "bench", "version": "2",
                         "plan": {"kind": "canary", "weight": weight}},
                    )  # fmt: skip
                    onset = time.perf_counter()
                    onset_wall = time.time()
                    assert status == 201, answer
                    deadline = onset + ONE_ROUND_LIMIT_S
                    while time.perf_counter() < deadline:
                        _, state = _call(port, "GET", "/v1/endpoints/bench", deployer)
                        if state["canary"] is None:
                            break
                        time.sleep(0.05)
                    else:
                        raise SystemExit(f"{label} at {weight}%: never rolled back")
                    time.sleep(1.0)  # requests in flight at the switch are answered
                canary = [
                    sent
                    for sent, status, version in traffic.answers
                    if sent >= onset and (version == 2 or (status >= 500 and version is None))
                ]
                clients.append(max(canary) - onset if canary else 0.0)
                seen.append(len(canary))
                _, history = _call(port, "GET", "/v1/endpoints/bench/history", deployer)
                at = datetime.fromisoformat(history[0]["at"]).timestamp()
                assert history[0]["action"] == "rollback", history[0]
                ledgers.append(at - onset_wall)
            print(
                f"{label:<22} canary {weight:>4.0f}% ({weight * RATE / 100:>4.1f} req/s to it): "
                f"clients back on v1 after {statistics.median(clients):6.2f} s, "
                f"rollback recorded after {statistics.median(ledgers):6.2f} s "
                f"(median of {rounds}; canary answered {statistics.median(seen):.0f} requests)"
            )
    finally:
        procs.stop_all()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-rollback", action="store_true")
    args = parser.parse_args()
    overhead()
    if args.skip_rollback:
        return 0
    print(f"\nTime to automatic rollback at {RATE:.0f} requests/s (open loop):")
    rollback_rounds({"error_rate": 1.0}, "every request fails", args.rounds)
    rollback_rounds({"latency_ms": 300}, "+300 ms per request", args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
