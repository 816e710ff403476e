"""Shadow comparison off the response path.

A sampled share of an endpoint's requests is copied to its shadow version after the primary
answer has been computed. One worker thread runs the shadow predictions from a bounded queue;
a full queue drops the copy (counted as `dropped`, never blocking a client). Each comparison
is counted `same`, `different` or `error`; the gateway's `shadow_divergence_ratio` is the
share of answers that differ. Classifier labels must be equal; numeric outputs must agree to
`rtol` (ONNX Runtime computes in float32).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from dataclasses import dataclass

import numpy as np

from bastion.monitoring.metrics import GatewayMetrics
from bastion.monitoring.monitor import Monitor
from bastion.registry.contract import Batch
from bastion.serving.loaders import Prediction
from bastion.serving.verified import LoadedVersion

log = logging.getLogger("bastion.serving")


@dataclass(frozen=True)
class _Job:
    endpoint: str
    shadow: LoadedVersion
    batch: Batch
    primary: Prediction


def same_answers(a: np.ndarray, b: np.ndarray, *, rtol: float = 1e-4) -> bool:
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fc" and b.dtype.kind in "fc":
        return bool(np.allclose(a, b, rtol=rtol, atol=1e-6, equal_nan=True))
    return bool(np.array_equal(a.astype(str), b.astype(str)))


class ShadowRunner:
    def __init__(
        self, *, metrics: GatewayMetrics, queue_size: int, monitor: Monitor | None = None
    ) -> None:
        self._metrics = metrics
        self._monitor = monitor
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="bastion-shadow", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def offer(
        self, endpoint: str, shadow: LoadedVersion, share: float, batch: Batch, primary: Prediction
    ) -> None:
        """Queue a copy for `shadow` with probability `share` %; never blocks."""
        if share < 100 and random.random() * 100 >= share:  # noqa: S311 - sampling
            return
        try:
            self._queue.put_nowait(_Job(endpoint, shadow, batch, primary))
        except queue.Full:
            self._metrics.version(endpoint, shadow.label).shadow("dropped")

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self._compare(job)
            finally:
                self._queue.task_done()

    def _compare(self, job: _Job) -> None:
        metrics = self._metrics.version(job.endpoint, job.shadow.label)
        try:
            answer = job.shadow.predictor.predict(job.batch)
            outcome = (
                "same" if same_answers(job.primary.primary(), answer.primary()) else "different"
            )
        except Exception:  # a broken shadow is counted, never raised to anyone
            log.exception("shadow %s of %s failed", job.shadow.label, job.endpoint)
            outcome = "error"
        metrics.shadow(outcome)
        if self._monitor is not None and outcome != "error":
            shadow = job.shadow
            self._monitor.window(
                job.endpoint, shadow.label, shadow.version_id, shadow.profile
            ).shadow(outcome == "same")
