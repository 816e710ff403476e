"""The one place that turns errors into HTTP responses."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bastion.core.errors import HTTP_STATUS, BastionError

log = logging.getLogger("bastion.api")


_HTTP_CODES = {404: "http.not_found", 405: "http.method_not_allowed", 413: "input.too_large"}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BastionError)
    async def _bastion(request: Request, exc: BastionError) -> JSONResponse:
        status = HTTP_STATUS[exc.kind]
        headers: dict[str, str] | None = None
        if status == 401:
            headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        elif status == 429 and isinstance(exc.details.get("retry_after"), int):
            headers = {"Retry-After": str(exc.details["retry_after"])}
        if status >= 500:
            log.error("request %s failed: %s", _request_id(request), exc.code)
        return error_response(status, exc.code, exc.message, details=exc.details, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Say where and why, never echo the offending value (it may be a secret).
        problems = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        summary = "; ".join(f"{'.'.join(p['loc'])}: {p['msg']}" for p in problems[:5])
        return error_response(
            422, "input.invalid", f"invalid request: {summary}", details={"errors": problems}
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http.{exc.status_code}")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request %s: unexpected error", _request_id(request))
        return error_response(500, "bastion.internal", "internal error")


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))
