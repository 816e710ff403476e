"""The serving runtime of one server process: metrics, the routing table, the gateway, the
monitor, and the background loop that keeps them current.

`ServingRuntime.start()` loads every deployed endpoint (verifying each version), starts the
receipt writer and the shadow worker, and a loop that every `deploy_poll_seconds`

1. runs one monitoring pass: windows summed, drift computed, SLO burn rates and alerts
   evaluated, canaries judged (`bastion.monitoring.guard`) — and rolls back each canary in
   breach through `DeploymentService.auto_rollback` (as the rollout controller, with the
   evidence in the ledger entry), raises the `CanaryRolledBack` alert and takes a signed
   incident snapshot;
2. runs one pass of the rollout controller (linear steps, baking periods, auto-promotion —
   after the guard, so a breached canary is never promoted in the same pass, and held while
   the canary has answered too few requests to be judged);
3. refreshes routes changed by other replicas;
4. runs the housekeeping chores that are due (`Chore`: retention enforcement, …).

`stop()` ends them and drains the receipt queue. The CLI builds a `Platform` without any of
this; only `bastion server` starts it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from bastion.core.clock import Clock
from bastion.deploy import DeploymentService
from bastion.monitoring.incidents import IncidentService
from bastion.monitoring.metrics import GatewayMetrics
from bastion.monitoring.monitor import CanaryVerdict, Monitor, Watched
from bastion.serving.gateway import Gateway
from bastion.serving.ratelimit import RateLimiter
from bastion.serving.receipts import ReceiptLog
from bastion.serving.router import Router
from bastion.serving.shadow import ShadowRunner

log = logging.getLogger("bastion.serving")


@dataclass
class Chore:
    """Housekeeping the serving loop runs every `every` seconds (retention enforcement, …);
    a failing run is logged and tried again at the next due time."""

    name: str
    every: float
    run: Callable[[], object]
    last: float = float("-inf")


class ServingRuntime:
    def __init__(
        self,
        *,
        gateway: Gateway,
        router: Router,
        deployments: DeploymentService,
        receipts: ReceiptLog,
        shadows: ShadowRunner,
        limiter: RateLimiter,
        metrics: GatewayMetrics,
        clock: Clock,
        poll_seconds: float,
        monitor: Monitor | None = None,
        incidents: IncidentService | None = None,
        guard: bool = True,
        chores: list[Chore] | None = None,
    ) -> None:
        self.gateway = gateway
        self.router = router
        self.metrics = metrics
        self.monitor = monitor
        self.incidents = incidents
        self._deployments = deployments
        self._receipts = receipts
        self._shadows = shadows
        self._limiter = limiter
        self._clock = clock
        self._poll = poll_seconds
        self._guard = guard
        self.chores = list(chores or [])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening = False

    def start(self) -> None:
        if not self._listening:
            self._deployments.add_listener(self.router.on_change)
            self._listening = True
        self._receipts.start()
        self._shadows.start()
        self.router.refresh()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="bastion-serving", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._shadows.close()
        self._receipts.close()
        if self.monitor is not None:
            self.monitor.alerts.close()

    async def aclose(self) -> None:
        """`stop`, then close the rate limiter's connections (on the server's event loop)."""
        self.stop()
        await self._limiter.close()

    def tick(self) -> list[str]:
        """One pass of the background loop (also called by tests). Returns the endpoints whose
        canary was rolled back automatically in this pass."""
        now = self._clock.now()
        # The monitor keeps its own (wall) clock: its windows are stamped by it.
        rolled = self.watch() if self.monitor is not None else []
        hold = self.monitor.hold if self.monitor is not None and self._guard else None
        self._deployments.advance(now, hold=hold)
        self.router.refresh()
        self._run_chores()
        return rolled

    def _run_chores(self) -> None:
        at = time.monotonic()
        for chore in self.chores:
            if chore.every <= 0 or at - chore.last < chore.every:
                continue
            chore.last = at
            try:
                chore.run()
            except Exception:  # logged; tried again when next due
                log.exception("%s failed", chore.name)

    def watch(self, now: float | None = None) -> list[str]:
        """One monitoring pass, rolling back the canaries in breach (when the guard is on)."""
        assert self.monitor is not None
        watched = [
            Watched(
                endpoint=r.name,
                stable_id=r.stable.version_id if r.stable is not None else None,
                canary_id=r.canary.version_id if r.canary is not None else None,
                shadow_id=r.shadow.version_id if r.shadow is not None else None,
                canary_weight=r.spec.canary_weight,
                canary_since=(
                    r.spec.canary_since.timestamp() if r.spec.canary_since is not None else None
                ),
            )
            for r in self.router.routes()
            if r.spec.state == "serving"
        ]
        verdicts = self.monitor.evaluate(watched, now)
        if not self._guard:
            return []
        return [v.endpoint for v in verdicts if self._roll_back(v)]

    def _roll_back(self, verdict: CanaryVerdict) -> bool:
        assert self.monitor is not None
        seen = time.monotonic()
        try:
            endpoint = self._deployments.auto_rollback(
                verdict.endpoint,
                verdict.canary_id,
                reason=f"automatic rollback: {verdict.verdict.reason()}"[:2000],
                evidence=verdict.evidence(),
            )
        except Exception:  # logged; the next pass judges again
            log.exception("automatic rollback of %s failed", verdict.endpoint)
            return False
        if endpoint is None:  # another replica (or a person) changed the endpoint first
            return False
        log.warning(
            "rolled back canary v%s of %s: %s",
            verdict.canary.version,
            verdict.endpoint,
            verdict.verdict.reason(),
        )
        self.monitor.rolled_back(verdict, time.monotonic() - seen)
        if self.incidents is not None:
            live = {verdict.canary_id: verdict.canary}
            if verdict.stable is not None and verdict.stable_id is not None:
                live[verdict.stable_id] = verdict.stable
            try:
                self.incidents.snapshot(
                    self._deployments.controller,
                    verdict.endpoint,
                    trigger="rollback",
                    live=live,
                    anomalies=self.monitor.recent_anomalies(verdict.endpoint),
                    evidence={**verdict.evidence(), "version_ids": list(live)},
                )
            except Exception:  # the rollback stands; the snapshot can be taken by hand
                log.exception("incident snapshot after rolling back %s failed", verdict.endpoint)
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self._poll):
            try:
                self.tick()
            except Exception:  # logged; the next pass tries again
                log.exception("serving loop pass failed")
