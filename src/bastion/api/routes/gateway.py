"""The inference gateway's HTTP surface: the native API, the Open Inference Protocol (KServe
V2) and `/metrics`.

* `POST /v1/endpoints/{name}/predict` with `{"records": [{...}, ...]}` or `{"columns": {...}}`
* `POST /v2/models/{name}/infer` and `/v2/models/{name}/versions/{v}/infer` (V2 tensors;
  `{name}` is the endpoint), `GET /v2/models/{name}[/versions/{v}][/ready]`, `GET /v2`,
  `GET /v2/health/live|ready` — so existing V2 clients work. V2 errors are
  `{"error": "<message>", "code": …}` as the protocol specifies.
* `GET /metrics`: Prometheus text, for `monitor.read` tokens.

Handlers read the body themselves (no pydantic model on the hot path) and hand it to
`Gateway`; the declared request schemas below are for the OpenAPI document and its clients.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

import bastion
from bastion.api.deps import PlatformDep, bearer_token, current_caller, permission
from bastion.api.prediction import error_reply, serve_prediction
from bastion.core.errors import BastionError, Unavailable
from bastion.identity import Permission
from bastion.serving.gateway import status_of
from bastion.serving.runtime import ServingRuntime

router = APIRouter(tags=["inference"])

_JSON = "application/json"

_NATIVE_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {
            "type": "object",
            "properties": {
                "records": {
                    "type": "array",
                    "items": {"type": "object"},
                    "description": "one object per row, keyed by the contract's field names",
                }
            },
            "required": ["records"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {
                "columns": {
                    "type": "object",
                    "additionalProperties": {"type": "array"},
                    "description": "one list per field, all of the same length",
                }
            },
            "required": ["columns"],
            "additionalProperties": False,
        },
    ]
}
_V2_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer"}},
                    "datatype": {"type": "string"},
                    "data": {"type": "array"},
                    "parameters": {"type": "object"},
                },
                "required": ["name", "shape", "datatype", "data"],
            },
        },
        "outputs": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["inputs"],
}
_WAIT_HEADER = {
    "name": "X-Bastion-Receipt",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "enum": ["wait"]},
    "description": "`wait`: answer once the receipt is in the prediction log (with its index)",
}


def _body_doc(schema: dict[str, Any], perm: Permission) -> dict[str, Any]:
    return {
        **permission(perm),
        "requestBody": {"required": True, "content": {_JSON: {"schema": schema}}},
        "parameters": [_WAIT_HEADER],
    }


def _runtime(request: Request) -> ServingRuntime:
    runtime: ServingRuntime | None = getattr(request.app.state, "serving", None)
    if runtime is None:  # an app built without serving (tests of the control plane)
        raise Unavailable("this server does not serve predictions", code="serving.disabled")
    return runtime


async def _serve(request: Request, name: str, *, protocol: str, version: str | None) -> Response:
    # Reached only where `PredictionFastPath` is not installed: the same implementation.
    reply = await serve_prediction(
        getattr(request.app.state, "serving", None),
        name,
        protocol=protocol,
        version=version,
        headers={k.lower(): v for k, v in request.headers.items()},
        read_body=request.body,
        request_id=getattr(request.state, "request_id", None),
    )
    return Response(reply.body, reply.status, reply.headers, media_type=_JSON)


def _v2_error(error: BastionError, status: int) -> Response:
    reply = error_reply(error, status, "v2")
    return Response(reply.body, reply.status, reply.headers, media_type=_JSON)


# -- native -----------------------------------------------------------------------------------


@router.post(
    "/v1/endpoints/{name}/predict", openapi_extra=_body_doc(_NATIVE_SCHEMA, Permission.PREDICT)
)
async def predict(name: str, request: Request) -> Response:
    """Predict with the endpoint's model. 422 lists every input-contract violation; the
    response carries the prediction's receipt (keyed digests of input and output, the
    version and artifact digest); `GET /v1/receipts/{request_id}` proves it was logged."""
    return await _serve(request, name, protocol="native", version=None)


# -- Open Inference Protocol (V2) ----------------------------------------------------------------


@router.post("/v2/models/{name}/infer", openapi_extra=_body_doc(_V2_SCHEMA, Permission.PREDICT))
async def v2_infer(name: str, request: Request) -> Response:
    return await _serve(request, name, protocol="v2", version=None)


@router.post(
    "/v2/models/{name}/versions/{version}/infer",
    openapi_extra=_body_doc(_V2_SCHEMA, Permission.PREDICT),
)
async def v2_infer_version(name: str, version: str, request: Request) -> Response:
    return await _serve(request, name, protocol="v2", version=version)


@router.get("/v2")
def v2_server_metadata() -> dict[str, Any]:
    return {"name": "bastion", "version": bastion.__version__, "extensions": []}


@router.get("/v2/health/live")
def v2_live() -> dict[str, Any]:
    return {"live": True}


@router.get("/v2/health/ready")
def v2_ready(request: Request) -> Response:
    runtime: ServingRuntime | None = getattr(request.app.state, "serving", None)
    ready = runtime is not None
    return Response(
        orjson.dumps({"ready": ready}), status_code=200 if ready else 503, media_type=_JSON
    )


def _metadata(request: Request, name: str, version: str | None, *, ready: bool) -> Response:
    runtime = _runtime(request)
    gateway = runtime.gateway
    try:
        gateway.authenticate(bearer_token(request), name, None)
        route = gateway.route(name)
        if ready:
            described = gateway.describe(route, version)
            return Response(
                orjson.dumps({"name": name, "ready": True, "versions": described["versions"]}),
                media_type=_JSON,
            )
        return Response(orjson.dumps(gateway.describe(route, version)), media_type=_JSON)
    except BastionError as error:
        return _v2_error(error, status_of(error))


@router.get("/v2/models/{name}", openapi_extra=permission(Permission.PREDICT))
def v2_model(name: str, request: Request) -> Response:
    return _metadata(request, name, None, ready=False)


@router.get("/v2/models/{name}/ready", openapi_extra=permission(Permission.PREDICT))
def v2_model_ready(name: str, request: Request) -> Response:
    return _metadata(request, name, None, ready=True)


@router.get("/v2/models/{name}/versions/{version}", openapi_extra=permission(Permission.PREDICT))
def v2_model_version(name: str, version: str, request: Request) -> Response:
    return _metadata(request, name, version, ready=False)


@router.get(
    "/v2/models/{name}/versions/{version}/ready", openapi_extra=permission(Permission.PREDICT)
)
def v2_model_version_ready(name: str, version: str, request: Request) -> Response:
    return _metadata(request, name, version, ready=True)


# -- metrics ------------------------------------------------------------------------------------


@router.get("/metrics", openapi_extra=permission(Permission.MONITOR_READ))
def metrics(request: Request, platform: PlatformDep) -> Response:
    """Prometheus exposition of the gateway's metrics (scrape with a `monitor.read` token)."""
    current_caller(request)
    body, content_type = _runtime(request).metrics.render()
    return Response(body, media_type=content_type)
