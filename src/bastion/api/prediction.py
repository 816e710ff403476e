"""The prediction routes' one implementation, and the ASGI fast path that reaches it.

`serve_prediction` runs a request through the gateway (auth, routing, rate limits, contract,
prediction, receipt, shadow, metrics) and returns the status, body and headers to send. The
FastAPI handlers in `routes/gateway.py` call it, and so does `PredictionFastPath`: a pure-ASGI
layer that answers `POST /v1/endpoints/{name}/predict` and `POST /v2/models/{name}[/versions/
{v}]/infer` before FastAPI's router and dependency injection run. With ~80 routes, matching
and dependency resolution cost more than all of the gateway's controls together (measured in
bench/gateway.py), so the hot path skips them; it still runs inside `EdgeMiddleware` (request
ids, body limits, security headers) and FastAPI's outer error middleware.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.api.deps import parse_bearer
from bastion.core.errors import BastionError, Unavailable
from bastion.monitoring.windows import VersionWindow
from bastion.serving.gateway import status_of
from bastion.serving.runtime import ServingRuntime

log = logging.getLogger("bastion.api")

_NAME = r"([a-z0-9][a-z0-9-]{0,62})"
_PATHS = (
    (re.compile(rf"^/v1/endpoints/{_NAME}/predict$"), "native"),
    (re.compile(rf"^/v2/models/{_NAME}/infer$"), "v2"),
    (re.compile(rf"^/v2/models/{_NAME}/versions/([0-9]{{1,9}})/infer$"), "v2"),
)
_UNKNOWN = "_unknown"
_JSON = b"application/json"


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(error: BastionError, status: int, protocol: str) -> Reply:
    """The API's error body (`{"error": {"code", "message", "details"}}`), or for the Open
    Inference Protocol its own shape (`{"error": "<message>", "code", "details"}`)."""
    if protocol == "v2":
        doc: dict[str, Any] = {"error": error.message, "code": error.code}
        if error.details:
            doc["details"] = error.details
    else:
        doc = {"error": error.to_dict()}
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    elif status == 429 and isinstance(error.details.get("retry_after"), int):
        headers["Retry-After"] = str(error.details["retry_after"])
    return Reply(status, orjson.dumps(doc), headers)


async def serve_prediction(
    runtime: ServingRuntime | None,
    name: str,
    *,
    protocol: str,
    version: str | None,
    headers: Mapping[str, str],
    read_body: Callable[[], Awaitable[bytes]],
    request_id: str | None,
) -> Reply:
    """One prediction request, start to finish; never raises."""
    start = time.perf_counter()
    endpoint_label, version_label, status = _UNKNOWN, "-", 200
    window: VersionWindow | None = None
    try:
        if runtime is None:
            raise Unavailable("this server does not serve predictions", code="serving.disabled")
        gateway = runtime.gateway
        presented = headers.get("x-request-id")
        caller = gateway.authenticate(parse_bearer(headers.get("authorization")), name, request_id)
        route = gateway.route(name)
        endpoint_label = name
        await gateway.limit(route, caller)
        loaded, role = gateway.pick(route, caller, headers.get("x-bastion-route-key"), version)
        version_label = loaded.label
        window = gateway.window(route, loaded)
        body = await gateway.predict(
            caller,
            route,
            loaded,
            role,
            await read_body(),
            protocol=protocol,
            request_id=None if presented else request_id,
            client_request_id=presented,
            wait_receipt=headers.get("x-bastion-receipt") == "wait",
        )
        return Reply(200, orjson.dumps(body))
    except BastionError as error:
        status = status_of(error)
        return error_reply(error, status, protocol)
    except Exception:
        status = 500
        log.exception("prediction request %s failed", request_id)
        return error_reply(BastionError("internal error"), 500, protocol)
    finally:
        if runtime is not None:
            elapsed = time.perf_counter() - start
            runtime.metrics.version(endpoint_label, version_label).request(status, elapsed)
            if window is not None:
                window.request(status, elapsed)
            if endpoint_label != _UNKNOWN and runtime.monitor is not None:
                runtime.monitor.request(endpoint_label, status, elapsed)


class PredictionFastPath:
    """Answer the prediction routes without FastAPI's router; everything else passes on."""

    def __init__(self, app: ASGIApp, *, runtime: ServingRuntime | None) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            for pattern, protocol in _PATHS:
                match = pattern.match(path)
                if match is not None:
                    await self._serve(scope, receive, send, protocol, match.groups())
                    return
        await self.app(scope, receive, send)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, protocol: str, groups: tuple[str, ...]
    ) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}

        async def read_body() -> bytes:
            chunks = []
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            return b"".join(chunks)

        state = scope.get("state") or {}
        reply = await serve_prediction(
            self.runtime,
            groups[0],
            protocol=protocol,
            version=groups[1] if len(groups) > 1 else None,
            headers=headers,
            read_body=read_body,
            request_id=state.get("request_id"),
        )
        raw = [(b"content-type", _JSON), (b"content-length", str(len(reply.body)).encode())]
        raw.extend((k.lower().encode(), v.encode()) for k, v in reply.headers.items())
        await send({"type": "http.response.start", "status": reply.status, "headers": raw})
        await send({"type": "http.response.body", "body": reply.body})
