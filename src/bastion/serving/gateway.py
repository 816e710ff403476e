"""The prediction path, in the order a request meets it.

1. **Authenticate and authorize** the bearer token for `predict` on `endpoint:<name>` (tokens
   scoped to other endpoints are refused); failures are counted per endpoint.
2. **Route**: an unknown endpoint is 404, a killed one or one whose stable version failed
   verification 503.
3. **Rate limits**: a token bucket per (endpoint, principal) and one per endpoint — 429 with
   `Retry-After` when empty. In-process, or shared through Redis between replicas.
4. **Parse** the body (orjson: NaN and Infinity tokens are not JSON and are refused) and
   **check the input contract** of the version picked by the canary split: 422 listing every
   violation; unknown fields are refused, never ignored. Out-of-range but well-typed values
   pass and are counted as anomalies.
5. **Predict** (ONNX Runtime inline for small batches — microseconds; other loaders and large
   batches on a worker thread, so the event loop keeps serving).
6. **Receipt**: keyed digests (HMAC-SHA256) of the exact request body and of the outputs,
   queued for the prediction log without waiting (a full queue rejects with 503 or counts a
   dropped receipt, as configured). With `X-Bastion-Receipt: wait` the response waits for the
   receipt's leaf index.
7. **Shadow**: a sampled copy goes to the shadow version off the response path.

Every outcome is counted in the endpoint/version metrics, and in the monitor: the version's
rolling window (status, latency, rows, anomalies, and the columns and predictions binned for
drift) and the endpoint's SLO counters.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool

from bastion.core.clock import Clock
from bastion.core.errors import (
    HTTP_STATUS,
    AuthenticationError,
    BastionError,
    ErrorKind,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from bastion.core.ids import new_id
from bastion.core.settings import Settings
from bastion.deploy import BucketLimit
from bastion.identity import Authorizer, Caller, Permission, TokenService
from bastion.monitoring.metrics import GatewayMetrics
from bastion.monitoring.monitor import Monitor
from bastion.monitoring.samples import anomalous_sample
from bastion.monitoring.windows import VersionWindow
from bastion.registry.contract import Batch
from bastion.serving import v2
from bastion.serving.faults import Fault
from bastion.serving.loaders import Prediction
from bastion.serving.ratelimit import Limit, RateLimiter
from bastion.serving.receipts import Receipt, ReceiptLog
from bastion.serving.router import Route, Router
from bastion.serving.shadow import ShadowRunner
from bastion.serving.verified import LoadedVersion

INLINE_ROWS = 64
RECEIPT_WAIT_SECONDS = 10.0
_NATIVE_KEYS = frozenset({"records", "columns"})


class RateLimited(BastionError):
    default_code = "serving.rate_limited"
    default_kind = ErrorKind.RATE_LIMITED


class Gateway:
    def __init__(
        self,
        *,
        tokens: TokenService,
        authorizer: Authorizer,
        router: Router,
        limiter: RateLimiter,
        metrics: GatewayMetrics,
        receipts: ReceiptLog,
        shadows: ShadowRunner,
        settings: Settings,
        clock: Clock,
        monitor: Monitor | None = None,
        faults: Mapping[tuple[str, int], Fault] | None = None,
    ) -> None:
        self._tokens = tokens
        self._authz = authorizer
        self.router = router
        self._limiter = limiter
        self.metrics = metrics
        self._receipts = receipts
        self.shadows = shadows
        self.monitor = monitor
        self._faults = dict(faults or {})
        self._clock = clock
        self._principal_limit = Limit(
            settings.ratelimit_principal_rate, settings.ratelimit_principal_burst
        )
        self._endpoint_limit = Limit(
            settings.ratelimit_endpoint_rate, settings.ratelimit_endpoint_burst
        )

    # -- the steps --------------------------------------------------------------------------

    def authenticate(self, token: str | None, endpoint: str, request_id: str | None) -> Caller:
        try:
            caller = self._tokens.authenticate(token, request_id=request_id)
            self._authz.authorize(caller, Permission.PREDICT, f"endpoint:{endpoint}")
        except (AuthenticationError, PermissionDenied) as error:
            self.metrics.auth_failure(endpoint, error.code)
            raise
        return caller

    def route(self, endpoint: str) -> Route:
        route = self.router.get(endpoint)
        if route is None:
            raise NotFound(f"no endpoint {endpoint}", code="serving.endpoint_not_found")
        if route.spec.state != "serving":
            raise Unavailable(
                f"endpoint {endpoint} is switched off (kill switch)",
                code="serving.endpoint_disabled",
            )
        if route.stable is None:
            raise Unavailable(
                f"endpoint {endpoint} has no version it can serve ({route.problem})",
                code="serving.version_unavailable",
            )
        return route

    async def limit(self, route: Route, caller: Caller) -> None:
        limits = route.spec.limits
        checks = (
            ("principal", f"p:{route.name}:{caller.principal_id}", limits.principal,
             self._principal_limit),
            ("endpoint", f"e:{route.name}", limits.endpoint, self._endpoint_limit),
        )  # fmt: skip
        for scope, key, override, default in checks:
            verdict = await self._limiter.acquire(key, _limit(override, default))
            if not verdict.allowed:
                self.metrics.rate_limited(route.name, scope)
                retry = max(1, math.ceil(verdict.retry_after))
                raise RateLimited(
                    f"rate limit of endpoint {route.name} ({scope}) exceeded; retry in {retry} s",
                    details={"retry_after": retry, "scope": scope},
                )

    def pick(
        self, route: Route, caller: Caller, route_key: str | None, version: str | None
    ) -> tuple[LoadedVersion, str]:
        if version is not None:
            for role, loaded in (("stable", route.stable), ("canary", route.canary)):
                if loaded is not None and loaded.label == version:
                    return loaded, role
            raise NotFound(
                f"version {version} does not serve endpoint {route.name}",
                code="serving.version_not_deployed",
            )
        key = caller.principal_id if route_key is None else f"{caller.principal_id}/{route_key}"
        chosen, role = route.pick(key)
        assert chosen is not None  # route() refused endpoints without a stable version
        return chosen, role

    def window(self, route: Route, loaded: LoadedVersion) -> VersionWindow | None:
        """The rolling window `loaded`'s requests on `route` are counted in (None without a
        monitor)."""
        if self.monitor is None:
            return None
        window = self.monitor.window(route.name, loaded.label, loaded.version_id, loaded.profile)
        since = route.canary_since if loaded is route.canary else None
        if since is not None and window.started < since:
            # The first request of a new rollout: the canary is judged on it alone, not on
            # what the same version did before (an earlier rollout, or as stable).
            window.reset(since)
        return window

    # -- the whole request ----------------------------------------------------------------

    async def predict(
        self,
        caller: Caller,
        route: Route,
        loaded: LoadedVersion,
        role: str,
        body: bytes,
        *,
        protocol: str,
        request_id: str | None = None,
        client_request_id: str | None = None,
        wait_receipt: bool = False,
    ) -> dict[str, Any]:
        """Check `body` against `loaded`'s contract, predict, queue the receipt, offer the
        shadow a copy; the response body. `request_id` names the receipt (a fresh one when
        None)."""
        metrics = self.metrics.version(route.name, loaded.label)
        window = self.window(route, loaded)
        max_rows = route.spec.limits.max_rows
        try:
            document = _parse(body)
            if protocol == "v2":
                request_id_in, columns = v2.decode_request(document, loaded.contract)
                _check_rows(len(next(iter(columns.values()), [])), max_rows)
                batch = loaded.contract.validate_columns(columns)
            else:
                batch = self._native(document, loaded, max_rows)
                request_id_in = None
        except InvalidInput:
            metrics.violations()
            if window is not None:
                window.violation()
            raise
        if batch.anomalies:
            metrics.anomalies(batch.anomalies)
            if self.monitor is not None:
                sample = anomalous_sample(
                    loaded.contract, batch.columns, batch.anomalies, loaded.profile
                )
                self.monitor.anomalies(route.name, loaded.label, batch.anomalies, sample)
        if self._faults:
            fault = self._faults.get((route.name, loaded.number))
            if fault is not None:
                await fault.apply()
        prediction = await _run(loaded, batch)
        if window is not None:
            window.observe(batch.rows, batch.columns, batch.anomalies, prediction.primary())
        outputs = {name: value.tolist() for name, value in prediction.outputs.items()}
        classes = list(prediction.classes) if prediction.classes is not None else None
        request_id = request_id or new_id("req")
        receipt = Receipt(
            request_id=request_id,
            time=self._clock.now(),
            endpoint=route.name,
            model=loaded.model,
            version=loaded.number,
            version_id=loaded.version_id,
            artifact_digest=loaded.artifact_digest,
            route=role,
            principal=caller.principal_id,
            input_digest=self._receipts.keyed_digest(body, purpose="input"),
            output_digest=self._receipts.keyed_digest(
                orjson.dumps({"classes": classes, "outputs": outputs}, option=orjson.OPT_SORT_KEYS),
                purpose="output",
            ),
            rows=batch.rows,
            client_request_id=client_request_id or request_id_in,
        )
        log_state = await self._log(route.name, receipt, wait_receipt)
        if route.shadow is not None:
            self.shadows.offer(route.name, route.shadow, route.spec.shadow_share, batch, prediction)
        receipt_doc = {**receipt.to_dict(), "log": log_state}
        if protocol == "v2":
            body_out: dict[str, Any] = {
                "model_name": route.name,
                "model_version": loaded.label,
                "id": request_id_in or request_id,
                # `classes` too, so the receipt's output digest can be recomputed from here.
                "parameters": {"receipt": receipt_doc, "route": role, "classes": classes},
                "outputs": [v2.encode_tensor(n, a) for n, a in prediction.outputs.items()],
            }
        else:
            body_out = {
                "request_id": request_id,
                "endpoint": route.name,
                "model": loaded.model,
                "version": loaded.number,
                "route": role,
                "outputs": outputs,
                "classes": classes,
                "receipt": receipt_doc,
            }
        return body_out

    def _native(self, document: Any, loaded: LoadedVersion, max_rows: int | None) -> Batch:
        if not isinstance(document, dict):
            raise InvalidInput(
                'the body must be an object: {"records": [...]} or {"columns": {...}}',
                code="input.bad_body",
            )
        keys = set(document)
        unknown = keys - _NATIVE_KEYS
        if unknown or len(keys) != 1:
            raise InvalidInput(
                'the body must have exactly one of "records" or "columns"'
                + (f"; unknown: {', '.join(sorted(unknown)[:10])}" if unknown else ""),
                code="input.bad_body",
            )
        if "records" in document:
            records = document["records"]
            if isinstance(records, list):
                _check_rows(len(records), max_rows)
            return loaded.contract.validate_records(records)
        columns = document["columns"]
        if isinstance(columns, dict) and columns:
            first = next(iter(columns.values()))
            if isinstance(first, list):
                _check_rows(len(first), max_rows)
        return loaded.contract.validate_columns(columns)

    async def _log(self, endpoint: str, receipt: Receipt, wait: bool) -> dict[str, Any]:
        if not wait:
            if self._receipts.submit(receipt):
                return {"status": "queued", "index": None}
            return {"status": "dropped", "index": None}
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()

        def logged(index: int) -> None:
            loop.call_soon_threadsafe(_resolve, future, index)

        if not self._receipts.submit(receipt, logged):
            return {"status": "dropped", "index": None}
        try:
            index = await asyncio.wait_for(future, RECEIPT_WAIT_SECONDS)
        except TimeoutError:
            return {"status": "queued", "index": None}
        return {"status": "logged", "index": index}

    # -- metadata -----------------------------------------------------------------------------

    def describe(self, route: Route, version: str | None = None) -> dict[str, Any]:
        """Open Inference Protocol model metadata for an endpoint (or one of its versions)."""
        versions = route.versions()
        chosen = route.stable
        if version is not None:
            matches = [v for v in versions if v.label == version]
            if not matches:
                raise NotFound(
                    f"version {version} does not serve endpoint {route.name}",
                    code="serving.version_not_deployed",
                )
            chosen = matches[0]
        assert chosen is not None
        described = chosen.predictor.describe()
        return {
            "name": route.name,
            "versions": [v.label for v in versions],
            "platform": described.get("platform", chosen.predictor.kind),
            "inputs": described.get("inputs", []),
            "outputs": described.get("outputs", []),
            "parameters": {
                "model": chosen.model,
                "artifact_digest": chosen.artifact_digest,
                "contract": chosen.contract.to_json(),
            },
        }


def _resolve(future: asyncio.Future[int], index: int) -> None:
    if not future.done():
        future.set_result(index)


def _limit(override: BucketLimit | None, default: Limit) -> Limit:
    return default if override is None else Limit(override.rate, override.burst)


def _check_rows(rows: int, max_rows: int | None) -> None:
    if max_rows is not None and rows > max_rows:
        raise InvalidInput(
            f"{rows} rows; this endpoint takes at most {max_rows} per request",
            code="contract.too_many_rows",
        )


def _parse(body: bytes) -> Any:
    if not body:
        raise InvalidInput("the request body is empty", code="input.malformed_json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidInput(
            f"the body is not valid JSON: {error.msg} at position {error.pos}",
            code="input.malformed_json",
        ) from None


async def _run(loaded: LoadedVersion, batch: Batch) -> Prediction:
    if loaded.predictor.kind == "onnx" and batch.rows <= INLINE_ROWS:
        return loaded.predictor.predict(batch)
    return await run_in_threadpool(loaded.predictor.predict, batch)


def status_of(error: BaseException) -> int:
    """The HTTP status the edge will send for `error` (for the metrics' status label)."""
    return HTTP_STATUS[error.kind] if isinstance(error, BastionError) else 500
