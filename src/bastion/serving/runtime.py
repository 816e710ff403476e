"""The serving runtime of one server process: metrics, the routing table, the gateway, and the
background loop that keeps them current.

`ServingRuntime.start()` loads every deployed endpoint (verifying each version), starts the
receipt writer and the shadow worker, and a loop that every `deploy_poll_seconds` refreshes
routes changed by other replicas and runs one pass of the rollout controller (linear steps,
baking periods, auto-promotion). `stop()` ends them and drains the receipt queue. The CLI
builds a `Platform` without any of this; only `bastion server` starts it.
"""

from __future__ import annotations

import logging
import threading

from bastion.core.clock import Clock
from bastion.deploy import DeploymentService
from bastion.monitoring.metrics import GatewayMetrics
from bastion.serving.gateway import Gateway
from bastion.serving.ratelimit import RateLimiter
from bastion.serving.receipts import ReceiptLog
from bastion.serving.router import Router
from bastion.serving.shadow import ShadowRunner

log = logging.getLogger("bastion.serving")


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
    ) -> None:
        self.gateway = gateway
        self.router = router
        self.metrics = metrics
        self._deployments = deployments
        self._receipts = receipts
        self._shadows = shadows
        self._limiter = limiter
        self._clock = clock
        self._poll = poll_seconds
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

    async def aclose(self) -> None:
        """`stop`, then close the rate limiter's connections (on the server's event loop)."""
        self.stop()
        await self._limiter.close()

    def tick(self) -> None:
        """One pass of the background loop (also called by tests)."""
        self._deployments.advance(self._clock.now())
        self.router.refresh()

    def _loop(self) -> None:
        while not self._stop.wait(self._poll):
            try:
                self.tick()
            except Exception:  # logged; the next pass tries again
                log.exception("serving loop pass failed")
