"""Time from `rollback` to 100 % of traffic on the previous version, seen by clients.

An endpoint serves version 1 with version 2 as a 50 % canary (non-sticky route keys, so every
request flips a coin) while four client threads send requests back to back. Then the canary
is rolled back, and the figure is the time from the rollback call until the last request
*sent* after it that version 2 still answered (0 when none did): the moment from which all
traffic is on version 1. Two ways, five times each, medians reported:

* through the server's own API (`POST /v1/endpoints/{name}/rollout/rollback`): the routing
  table is swapped right after the change commits;
* through the CLI in another process (as from another replica or an operator's shell): the
  server sees the change on its next poll (`BASTION_DEPLOY_POLL_SECONDS`, default 1 s).

Also printed: the server's own `bastion_deploy_time_to_rollback_seconds` (change recorded →
routing table swapped), the rollback call's latency, and both on an idle server. The load here
saturates the one server process (closed-loop clients), so control calls queue behind
predictions: the idle figures are the mechanism's own cost.
Run: `.venv/bin/python bench/rollback.py`.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sklearn.datasets import load_breast_cancer

from gateway import Processes, build_estimator, feature_names, prepare_bastion_home
from gateway import start_bastion_server as start_server

ROUNDS = 5
THREADS = 4


def _call(port: int, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw.startswith(b"{") else raw.decode()
    finally:
        conn.close()


class Traffic:
    """Client threads recording (sent, version) for every answer."""

    def __init__(self, port: int, token: str, body: bytes) -> None:
        self.port, self.token, self.body = port, token, body
        self.answers: list[tuple[float, int]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(THREADS)]

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _run(self, index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        n = 0
        while not self._stop.is_set():
            n += 1
            sent = time.perf_counter()
            conn.request(
                "POST",
                "/v1/endpoints/bench/predict",
                body=self.body,
                headers={
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": "application/json",
                    "X-Bastion-Route-Key": f"{index}-{n}",
                },
            )
            response = conn.getresponse()
            raw = response.read()
            with self._lock:
                if response.status == 200:
                    self.answers.append((sent, int(json.loads(raw)["version"])))
                else:
                    self.errors += 1
        conn.close()

    def switched_after(self, moment: float) -> float:
        late = [sent for sent, version in self.answers if version == 2 and sent >= moment]
        return max(late) - moment if late else 0.0


def _metric(port: int, token: str, name: str) -> float:
    status, text = _call(port, "GET", "/metrics", token)
    assert status == 200, text
    for line in str(text).splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="bastion-rollback-"))
    procs = Processes()
    try:
        home = work / "home"
        x, y = load_breast_cancer(return_X_y=True)
        fitted = [build_estimator(key).fit(x, y) for key in ("logreg", "forest")]
        client = prepare_bastion_home(home, work, "bench", fitted)
        deployer = (home / "deployer.token").read_text()
        port, _ = start_server(procs, home, work)
        row = x[0]
        body = json.dumps(
            {"records": [dict(zip(feature_names(), map(float, row), strict=True))]}
        ).encode()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
        env.update(BASTION_HOME=str(home), BASTION_TOKEN=deployer)
        results: dict[str, list[float]] = {"api": [], "cli": []}
        calls: dict[str, list[float]] = {"api": [], "cli": []}
        after_commit: dict[str, list[float]] = {"api": [], "cli": []}
        gauges: list[float] = []
        for way in ("api", "cli"):
            for _ in range(ROUNDS):
                status, answer = _call(
                    port,
                    "POST",
                    "/v1/endpoints/bench/deployments",
                    deployer,
                    {"model": "bench", "version": "2", "plan": {"kind": "canary", "weight": 50},
                     "sticky": False},
                )  # fmt: skip
                assert status == 201, answer
                with Traffic(port, client, body) as traffic:
                    time.sleep(1.0)
                    start = time.perf_counter()
                    if way == "api":
                        status, answer = _call(
                            port, "POST", "/v1/endpoints/bench/rollout/rollback", deployer, {}
                        )
                        assert status == 200, answer
                    else:
                        done = subprocess.run(  # noqa: S603 - fixed argv
                            [str(Path(sys.executable).parent / "bastion"), "rollout",
                             "rollback", "bench"],
                            env=env, capture_output=True, text=True, check=False,
                        )  # fmt: skip
                        assert done.returncode == 0, done.stderr
                    end = time.perf_counter()
                    calls[way].append(end - start)
                    time.sleep(2.5)
                before = sum(1 for _, v in traffic.answers if v == 2)
                results[way].append(traffic.switched_after(start))
                after_commit[way].append(traffic.switched_after(end))
                gauges.append(
                    _metric(port, deployer, "bastion_deploy_last_time_to_rollback_seconds")
                )
                assert before > 0, "the canary never answered"
                assert traffic.errors == 0, f"{traffic.errors} failed requests"
        print(f"time to 100 % on the previous version, seen by clients (median of {ROUNDS}):")
        idle_calls, idle_swaps = [], []
        for _ in range(ROUNDS):  # the same through the API with no traffic at all
            status, answer = _call(
                port,
                "POST",
                "/v1/endpoints/bench/deployments",
                deployer,
                {"model": "bench", "version": "2", "plan": {"kind": "canary", "weight": 50}},
            )
            assert status == 201, answer
            start = time.perf_counter()
            status, answer = _call(
                port, "POST", "/v1/endpoints/bench/rollout/rollback", deployer, {}
            )
            idle_calls.append(time.perf_counter() - start)
            assert status == 200, answer
            idle_swaps.append(
                _metric(port, deployer, "bastion_deploy_last_time_to_rollback_seconds")
            )
        for way in ("api", "cli"):
            print(
                f"  rollback through the {way.upper():3}  "
                f"{statistics.median(results[way]) * 1000:8.1f} ms"
                f"   (max {max(results[way]) * 1000:.1f} ms; the rollback call took "
                f"{statistics.median(calls[way]) * 1000:.0f} ms; after it returned: "
                f"{statistics.median(after_commit[way]) * 1000:.1f} ms)"
            )
        print(
            "  server's bastion_deploy_time_to_rollback_seconds (change recorded -> routing "
            f"swapped), median {statistics.median(gauges) * 1000:.1f} ms"
        )
        print(
            f"idle server: the rollback call {statistics.median(idle_calls) * 1000:.1f} ms, "
            f"change recorded -> routing swapped {statistics.median(idle_swaps) * 1000:.1f} ms"
        )
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
