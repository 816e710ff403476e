"""`/ui/` (the web dashboards' static files) and `/v1/dashboards/…` (their aggregated data).

The static files need no token — they hold no data — and are served from memory with a
strict Content-Security-Policy (`bastion.ui.assets`); they are not API operations, so they are
left out of the OpenAPI document. Every data call is an ordinary API route with a declared
permission:

* `GET /v1/dashboards/executive?minutes=` (`monitor.read`) — per-minute availability, latency
  and volume, error budgets, the compute-time cost proxy, serving versions' quality;
* `GET /v1/dashboards/oncall?events=` (`monitor.read`) — per endpoint and version: latency
  quantiles, error, anomaly and drift figures, burn rates; recent deployments and rollbacks;
* `GET /v1/dashboards/debug/{name}?features=` (`monitor.read`, and `model.read` for the
  reference bins) — reference vs live bins per feature and for the prediction, shadow
  comparisons, recent anomalies (values redacted);
* `GET /v1/dashboards/governance?limit=` (`model.read`) — versions with scan, signature,
  attestation and approval status, and the lineage graph from dataset to endpoint;
* `GET /v1/dashboards/names?id=` (`model.read`) — principal ids → names, so views show who
  acted by name;
* `POST /v1/dashboards/ledger/verify` (`audit.read`) — replay the audit ledger now, optionally
  against a checkpoint the client kept.

The views also call existing routes (`/v1/auth/whoami`, `/v1/alerts`, `/v1/incidents`,
`/v1/policy/decisions`, `/v1/audit/checkpoint`, the rollback action).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import RedirectResponse
from pydantic import Field

from bastion.api.deps import CurrentCaller, EndpointCaller, PlatformDep, permission
from bastion.api.schemas import Strict
from bastion.core.errors import InvalidInput, NotFound
from bastion.identity import Permission
from bastion.monitoring.metrics import GatewayMetrics
from bastion.monitoring.monitor import Monitor
from bastion.serving.runtime import ServingRuntime
from bastion.ui import views
from bastion.ui.assets import HEADERS, INDEX, assets

router = APIRouter(prefix="/v1/dashboards", tags=["dashboards"])
static = APIRouter(include_in_schema=False)


class VerifyIn(Strict):
    trusted_checkpoint: str | None = Field(
        default=None,
        max_length=views.MAX_NOTE_CHARS,
        description="a signed checkpoint note seen earlier: the log must still extend it",
    )


def _only(*names: str) -> Callable[[Request], None]:
    """A dependency refusing query parameters other than `names` (typos fail loudly)."""
    allowed = frozenset(names)

    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise InvalidInput(
                f"unknown query parameter {unknown[0][:64]!r}",
                code="input.invalid",
                details={"allowed": sorted(allowed)},
            )

    return check


def _runtime(request: Request) -> ServingRuntime | None:
    runtime: ServingRuntime | None = getattr(request.app.state, "serving", None)
    return runtime


def _monitor(request: Request) -> Monitor | None:
    runtime = _runtime(request)
    return runtime.monitor if runtime is not None else None


def _metrics(request: Request) -> GatewayMetrics | None:
    runtime = _runtime(request)
    return runtime.metrics if runtime is not None else None


# -- data -------------------------------------------------------------------------------------


@router.get(
    "/executive",
    openapi_extra=permission(Permission.MONITOR_READ),
    dependencies=[Depends(_only("minutes"))],
)
def executive(
    request: Request,
    caller: CurrentCaller,
    platform: PlatformDep,
    minutes: Annotated[int, Query(ge=1, le=views.MAX_MINUTES)] = 60,
) -> dict[str, Any]:
    """Availability and latency trends (per minute), inference volume and the compute-time
    cost proxy per endpoint, error budgets, and the serving versions' quality."""
    return views.executive(platform, caller, _monitor(request), _metrics(request), minutes=minutes)


@router.get(
    "/oncall",
    openapi_extra=permission(Permission.MONITOR_READ),
    dependencies=[Depends(_only("events"))],
)
def oncall(
    request: Request,
    caller: CurrentCaller,
    platform: PlatformDep,
    events: Annotated[int, Query(ge=1, le=views.MAX_EVENTS)] = 30,
) -> dict[str, Any]:
    """Per endpoint and version: latency p50/p95/p99, error rate, anomaly rate, drift score,
    shadow divergence and burn rates; the recent deployments and rollbacks."""
    return views.oncall(platform, caller, _monitor(request), events=events)


@router.get(
    "/debug/{name}",
    openapi_extra=permission(Permission.MONITOR_READ),
    dependencies=[Depends(_only("features"))],
)
def debug(
    name: str,
    request: Request,
    caller: EndpointCaller,
    platform: PlatformDep,
    features: Annotated[int, Query(ge=1, le=views.MAX_FEATURES)] = 50,
) -> dict[str, Any]:
    """Reference vs live distribution of every feature (most drifted first) and of the
    prediction, shadow comparisons, and recent anomalous inputs (values redacted)."""
    return views.debug(platform, caller, _monitor(request), name, features=features)


@router.get(
    "/governance",
    openapi_extra=permission(Permission.MODEL_READ),
    dependencies=[Depends(_only("limit"))],
)
def governance(
    caller: CurrentCaller,
    platform: PlatformDep,
    limit: Annotated[int, Query(ge=1, le=views.MAX_VERSIONS)] = 100,
) -> dict[str, Any]:
    """Model versions with scan, signature, attestation and approval status, where they
    serve, and the lineage graph from dataset to endpoint."""
    return views.governance(platform, caller, limit=limit)


@router.get(
    "/names",
    openapi_extra=permission(Permission.MODEL_READ),
    dependencies=[Depends(_only("id"))],
)
def names(
    caller: CurrentCaller,
    platform: PlatformDep,
    id: Annotated[list[str], Query(description="a principal id, repeated")] = [],  # noqa: B006
) -> dict[str, Any]:
    """The names of the principals whose ids a view shows (`?id=prn_…&id=prn_…`, at most
    100): unknown ids and actors that are not principals (`system:…`) are left out."""
    return views.names(platform, caller, id)


@router.post(
    "/ledger/verify",
    openapi_extra=permission(Permission.AUDIT_READ),
    dependencies=[Depends(_only())],
)
def verify_ledger(
    caller: CurrentCaller, platform: PlatformDep, body: VerifyIn | None = None
) -> dict[str, Any]:
    """Replay the audit ledger (entries, tree, checkpoint signatures) and, given a
    checkpoint seen earlier, check the log still extends it. `status`: intact | failed."""
    trusted = body.trusted_checkpoint if body is not None else None
    return views.verify_ledger(platform, caller, trusted)


# -- static files -----------------------------------------------------------------------------


@static.get("/ui")
def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=status.HTTP_308_PERMANENT_REDIRECT)


@static.get("/ui/")
def ui_index() -> Response:
    return _asset(INDEX)


@static.get("/ui/{path:path}")
def ui_asset(path: str) -> Response:
    return _asset(path)


def _asset(path: str) -> Response:
    asset = assets().get(path)
    if asset is None:
        raise NotFound("no such dashboard file", code="ui.not_found")
    return Response(asset.body, media_type=asset.content_type, headers=dict(HEADERS))
