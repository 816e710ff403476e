"""The routing table: which loaded version answers a request to an endpoint.

`Router.refresh` reads the endpoints whose `generation` changed since it last looked, loads
(through `VerifiedLoader`) any version they name that is not loaded yet, and swaps each
endpoint's `Route` in one assignment, so a request sees the old table or the new one, never a
mix. Versions stay cached while any route names them, and a few more (the latest rollback
targets) so that a rollback to the previous version needs no load. A change made in this
process arrives as a `RouteSpec` right after its commit (`on_change`, a `DeploymentService`
listener) and is applied without a database read; `refresh` runs every `deploy_poll_seconds`
for changes made by other replicas.

A version that fails verification is not served: if it was the stable version, the endpoint
answers 503 (`serving.version_unavailable`) until a deployment fixes it; a canary or shadow
that fails is left out and the stable version takes its traffic.

`Route.pick` splits traffic: with a canary at weight w %, a request goes to the canary with
probability w/100 — by a stable hash of (endpoint, principal, route key) when the endpoint is
sticky, so one client sees one version, else at random.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bastion.core.clock import Clock
from bastion.core.errors import BastionError
from bastion.deploy import DeploymentService, RouteSpec
from bastion.monitoring.metrics import GatewayMetrics
from bastion.serving.verified import LoadedVersion

log = logging.getLogger("bastion.serving")

KEEP_UNUSED = 4


@dataclass(frozen=True)
class Route:
    spec: RouteSpec
    stable: LoadedVersion | None
    canary: LoadedVersion | None
    shadow: LoadedVersion | None
    problem: str | None  # why the stable version is not served, if it is not

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def canary_since(self) -> float | None:
        """When the canary's rollout started (unix seconds), if there is a canary."""
        since = self.spec.canary_since
        return since.timestamp() if since is not None else None

    def pick(self, key: str) -> tuple[LoadedVersion | None, str]:
        """The version that answers, and its role (`stable` or `canary`)."""
        canary, weight = self.canary, self.spec.canary_weight
        if canary is not None and weight > 0:
            if self.spec.sticky:
                digest = hashlib.blake2b(
                    f"{self.spec.name}\x00{key}".encode(), digest_size=8
                ).digest()
                bucket = int.from_bytes(digest, "big") % 10_000
            else:
                bucket = random.randrange(10_000)  # noqa: S311 - traffic split, not security
            if bucket < weight * 100:
                return canary, "canary"
        return self.stable, "stable"

    def versions(self) -> list[LoadedVersion]:
        return [v for v in (self.stable, self.canary) if v is not None]


class Router:
    def __init__(
        self,
        *,
        deployments: DeploymentService,
        load: Callable[[str], LoadedVersion],
        metrics: GatewayMetrics,
        clock: Clock,
    ) -> None:
        self._deployments = deployments
        self._load = load
        self._metrics = metrics
        self._clock = clock
        self._routes: dict[str, Route] = {}
        self._seen: dict[str, int] = {}
        self._cache: OrderedDict[str, LoadedVersion] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> Route | None:
        return self._routes.get(name)

    def routes(self) -> list[Route]:
        return list(self._routes.values())

    def refresh(self, names: Sequence[str] | None = None) -> list[str]:
        """Reload the routes of endpoints that changed (all of them when `names` is None);
        the names refreshed."""
        with self._lock:
            generations = self._deployments.generations()
            stale = [
                n
                for n, g in generations.items()
                if (names is None or n in names) and self._seen.get(n) != g
            ]
            for gone in set(self._routes) - set(generations):
                del self._routes[gone]
                self._seen.pop(gone, None)
            if not stale:
                return []
            for spec in self._deployments.routes(stale):
                known = spec.name in self._seen
                self._routes[spec.name] = self._build(spec)
                self._seen[spec.name] = spec.generation
                self._observe(spec, known=known)
            self._evict()
            return stale

    def on_change(self, spec: RouteSpec) -> None:
        """`DeploymentService` listener: apply a change committed in this process at once,
        from the spec it hands over (no database read; versions come from the cache, or
        are loaded and verified if new)."""
        with self._lock:
            if self._seen.get(spec.name, -1) >= spec.generation:
                return
            known = spec.name in self._seen
            self._routes[spec.name] = self._build(spec)
            self._seen[spec.name] = spec.generation
            self._observe(spec, known=known)
            self._evict()

    def _build(self, spec: RouteSpec) -> Route:
        stable, problem = self._version(spec.name, spec.stable_version_id)
        canary, _ = self._version(spec.name, spec.canary_version_id)
        shadow, _ = self._version(spec.name, spec.shadow_version_id)
        if spec.stable_version_id is None:
            problem = "serving.no_version"
        return Route(spec=spec, stable=stable, canary=canary, shadow=shadow, problem=problem)

    def _version(
        self, endpoint: str, version_id: str | None
    ) -> tuple[LoadedVersion | None, str | None]:
        if version_id is None:
            return None, None
        cached = self._cache.get(version_id)
        if cached is not None:
            self._cache.move_to_end(version_id)
            return cached, None
        try:
            loaded = self._load(version_id)
        except BastionError as error:
            log.error(
                "endpoint %s: version %s refused: [%s] %s",
                endpoint,
                version_id,
                error.code,
                error.message,
            )
            self._metrics.version(endpoint, version_id).model_load("refused")
            return None, error.code
        self._cache[version_id] = loaded
        self._metrics.version(endpoint, loaded.label).model_load("ok")
        return loaded, None

    def _evict(self) -> None:
        used = {
            v.version_id
            for r in self._routes.values()
            for v in (r.stable, r.canary, r.shadow)
            if v is not None
        }
        unused = [vid for vid in self._cache if vid not in used]
        for vid in unused[: max(0, len(unused) - KEEP_UNUSED)]:
            del self._cache[vid]

    def _observe(self, spec: RouteSpec, *, known: bool) -> None:
        self._metrics.endpoint_state(spec.name, spec.state == "serving")
        route = self._routes[spec.name]
        weight = spec.canary_weight if route.canary is not None else 0.0
        if route.stable is not None:
            self._metrics.set_weight(spec.name, route.stable.label, "stable", 100.0 - weight)
        if route.canary is not None:
            self._metrics.set_weight(spec.name, route.canary.label, "canary", weight)
        if route.shadow is not None:
            self._metrics.set_weight(spec.name, route.shadow.label, "shadow", spec.shadow_share)
        # Only a rollback this process saw happen (not one found at start-up) is timed.
        if known and spec.last_action == "rollback":
            elapsed = (self._clock.now() - spec.changed_at).total_seconds()
            self._metrics.rollback(spec.name, max(elapsed, 0.0))
