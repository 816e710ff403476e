"""`create_app(platform)`: the FastAPI application for one `Platform`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

import bastion
from bastion.api.deps import PERMISSION_KEY
from bastion.api.errors import install_error_handlers
from bastion.api.middleware import EdgeMiddleware
from bastion.api.prediction import PredictionFastPath
from bastion.api.routes import audit, auth, deploy, gateway, health, keys, policy, registry
from bastion.api.routes import monitoring as monitoring_routes
from bastion.api.routes import privacy as privacy_routes
from bastion.api.routes import privacy_tokens as privacy_token_routes
from bastion.api.routes import receipts as receipt_routes
from bastion.api.routes import ui as ui_routes
from bastion.platform import Platform

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/v2", "/v2/health/live", "/v2/health/ready"})


def create_app(platform: Platform, *, serving: bool = True) -> FastAPI:
    """Build the app. Raises `RuntimeError` if a non-public route declares no permission.

    With `serving`, the app carries a `ServingRuntime` (the inference gateway) that its
    lifespan starts and stops: routes are loaded and verified at start-up."""
    runtime = platform.serving_runtime() if serving else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if runtime is not None:
            runtime.start()
        try:
            yield
        finally:
            if runtime is not None:
                await runtime.aclose()

    app = FastAPI(
        lifespan=lifespan,
        title="Bastion",
        version=bastion.__version__,
        description="Secure machine-learning deployment under data governance and privacy "
        "controls. Authenticate with `Authorization: Bearer bst_…`.",
    )
    app.state.platform = platform
    app.state.serving = runtime
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(audit.router)
    app.include_router(keys.router)
    app.include_router(registry.router)
    app.include_router(policy.router)
    app.include_router(deploy.router)
    app.include_router(gateway.router)
    app.include_router(receipt_routes.router)
    app.include_router(monitoring_routes.router)
    app.include_router(privacy_token_routes.router)
    app.include_router(privacy_routes.router)
    app.include_router(ui_routes.router)
    # The dashboards' static files: public (they hold no data), not API operations, so they
    # are not in the OpenAPI document that `_check_routes` reads; every data call they make is.
    app.include_router(ui_routes.static)
    _document_security(app)
    _check_routes(app)
    app.add_middleware(PredictionFastPath, runtime=runtime)
    app.add_middleware(
        EdgeMiddleware,
        max_body_bytes=platform.settings.max_request_bytes,
        large_bodies={"/v1/uploads/": platform.settings.max_artifact_bytes},
    )
    return app


def _check_routes(app: FastAPI) -> None:
    """Fail closed at build time: every non-public operation must name its permission.

    Checked on the generated OpenAPI document, FastAPI's public flattened view of all
    routes (routers are included lazily, so `app.routes` does not list them). The runtime
    dependency denies an undeclared route as well.
    """
    for path, operations in app.openapi()["paths"].items():
        if path in PUBLIC_PATHS:
            continue
        for method, operation in operations.items():
            if PERMISSION_KEY not in operation:
                raise RuntimeError(f"route {method.upper()} {path} declares no permission")


def _document_security(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["BastionToken"] = {"type": "http", "scheme": "bearer", "bearerFormat": "bst_"}
            for operations in schema["paths"].values():
                for operation in operations.values():
                    if PERMISSION_KEY in operation:
                        operation["security"] = [{"BastionToken": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
