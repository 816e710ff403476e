"""Pure-ASGI edge middleware: request ids, body-size limit, security headers.

Pure ASGI (not BaseHTTPMiddleware) so a streamed body is counted chunk by chunk and a request
over the limit is refused before it is buffered, whether or not it sent Content-Length.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.core.errors import TooLarge
from bastion.core.ids import new_id

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        large_bodies: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # PUT requests under these path prefixes (artifact uploads) stream to disk and may be
        # as large as the given limit; the service enforces its own cumulative limits too.
        self.large_bodies = dict(large_bodies or {})

    def _limit(self, scope: Scope) -> int:
        if scope.get("method") == "PUT":
            path = str(scope.get("path", ""))
            for prefix, limit in self.large_bodies.items():
                if path.startswith(prefix):
                    return limit
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        presented = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = presented if _REQUEST_ID.match(presented) else new_id("req")
        scope.setdefault("state", {})["request_id"] = request_id
        limit = self._limit(scope)

        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _reject(
                    send, 400, "input.bad_content_length", "bad Content-Length", request_id
                )
                return
            if int(declared) > limit:
                await _reject(
                    send,
                    413,
                    "input.too_large",
                    f"request body of {int(declared)} bytes exceeds the {limit}-byte limit",
                    request_id,
                )
                return

        received = 0
        exceeded = False
        replaced = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise TooLarge(
                        f"request body exceeds the {limit}-byte limit", code="input.too_large"
                    )
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return
            if exceeded and message["type"] == "http.response.start":
                # However the app reported the aborted read, the client gets the 413.
                replaced = True
                await _reject(
                    send,
                    413,
                    "input.too_large",
                    f"request body exceeds the {limit}-byte limit",
                    request_id,
                )
                return
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    *_HEADERS,
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        await self.app(scope, limited_receive, send_with_headers)


async def _reject(send: Send, status: int, code: str, message: str, request_id: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *_HEADERS,
        (b"x-request-id", request_id.encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
