"""`/v1/endpoints/{name}/monitoring`, `/v1/alerts`, `/v1/incidents…`: what the monitor sees.

* `GET /v1/endpoints/{name}/monitoring` — per version: the rolling window's headline figures
  (this server's live window plus what other replicas published), the drift report against the
  version's reference profile, and the endpoint's SLO burn rates and error budget.
* `GET /v1/alerts` — the alerts firing in this server.
* `POST /v1/endpoints/{name}/incidents` — take a signed incident snapshot now (`deploy.manage`);
  `GET /v1/incidents`, `GET /v1/incidents/{id}` (the bundle and its signature),
  `GET /v1/incidents/{id}/report` (Markdown) and `GET /v1/incidents/key` (the verifier key).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import PlainTextResponse
from pydantic import Field

from bastion.api.deps import (
    AuthenticatedCaller,
    CurrentCaller,
    EndpointCaller,
    PlatformDep,
    permission,
)
from bastion.api.schemas import Strict
from bastion.identity import Permission
from bastion.monitoring.incidents import render_markdown
from bastion.monitoring.monitor import Monitor, endpoint_windows, reference_profiles
from bastion.serving.runtime import ServingRuntime

router = APIRouter(tags=["monitoring"])


class SnapshotIn(Strict):
    note: str = Field(default="", max_length=2000)


def _monitor(request: Request) -> Monitor | None:
    runtime: ServingRuntime | None = getattr(request.app.state, "serving", None)
    return runtime.monitor if runtime is not None else None


@router.get("/v1/endpoints/{name}/monitoring", openapi_extra=permission(Permission.MONITOR_READ))
def endpoint_monitoring(
    name: str, request: Request, caller: EndpointCaller, platform: PlatformDep
) -> dict[str, Any]:
    """Windows, drift and SLO state of one endpoint's versions."""
    endpoint = platform.deployments.get(caller, name)  # 404 for an unknown endpoint
    monitor = _monitor(request)
    windows = endpoint_windows(monitor, platform.database, name)
    profiles = reference_profiles(platform.database, list(windows))
    versions = []
    for version_id, summary in sorted(windows.items(), key=lambda kv: kv[1].version):
        profile = profiles.get(version_id)
        drift = summary.drift(profile).to_json() if profile is not None else None
        versions.append({"version_id": version_id, **summary.overview(), "drift": drift})
    slo: dict[str, Any] = {}
    if monitor is not None:
        slo = {
            "burn_rates": {
                kind: {str(int(w)): rate for w, rate in rates.items()}
                for kind, rates in monitor.slo.burn_rates(name).items()
            },
            "budget": {k: asdict(v) for k, v in monitor.slo.budget(name).items()},
        }
    return {
        "endpoint": name,
        "state": endpoint.state,
        "stable": endpoint.stable.number if endpoint.stable else None,
        "canary": endpoint.canary.number if endpoint.canary else None,
        "canary_weight": endpoint.canary_weight,
        "versions": versions,
        "slo": slo,
        "source": "live" if monitor is not None else "published",
    }


@router.get("/v1/alerts", openapi_extra=permission(Permission.MONITOR_READ))
def alerts(request: Request, caller: CurrentCaller) -> list[dict[str, Any]]:
    """The alerts firing in this server, oldest first."""
    monitor = _monitor(request)
    return [a.to_json() for a in monitor.alerts.active()] if monitor is not None else []


@router.post(
    "/v1/endpoints/{name}/incidents",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=permission(Permission.DEPLOY_MANAGE),
)
def snapshot(
    name: str, body: SnapshotIn, request: Request, caller: EndpointCaller, platform: PlatformDep
) -> dict[str, Any]:
    """Take a signed incident snapshot of the endpoint now."""
    monitor = _monitor(request)
    live = endpoint_windows(monitor, platform.database, name) if monitor is not None else None
    incident = platform.incidents.snapshot(
        caller,
        name,
        trigger="manual",
        live=live,
        anomalies=monitor.recent_anomalies(name) if monitor is not None else (),
        note=body.note,
    )
    return incident.to_json()


@router.get("/v1/incidents", openapi_extra=permission(Permission.MONITOR_READ))
def list_incidents(
    caller: CurrentCaller,
    platform: PlatformDep,
    endpoint: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Incident snapshots, newest first (without their bundles)."""
    return [
        {k: v for k, v in i.to_json().items() if k != "bundle"}
        for i in platform.incidents.list(caller, endpoint, limit)
    ]


# Declared before `/{incident_id}` so the literal path is matched first.
@router.get("/v1/incidents/key", openapi_extra=permission(Permission.MONITOR_READ))
def incident_key(caller: CurrentCaller, platform: PlatformDep) -> dict[str, str]:
    """The verifier key of incident signatures (signed-note format)."""
    return {"verifier_key": platform.incidents.verifier_key()}


@router.get("/v1/incidents/{incident_id}", openapi_extra=permission(Permission.MONITOR_READ))
def get_incident(
    incident_id: str, caller: AuthenticatedCaller, platform: PlatformDep
) -> dict[str, Any]:
    return platform.incidents.get(caller, incident_id).to_json()


@router.get(
    "/v1/incidents/{incident_id}/report",
    openapi_extra=permission(Permission.MONITOR_READ),
    response_class=PlainTextResponse,
)
def incident_report(
    incident_id: str, caller: AuthenticatedCaller, platform: PlatformDep
) -> PlainTextResponse:
    """The incident as Markdown, for the post-incident review."""
    incident = platform.incidents.get(caller, incident_id)
    return PlainTextResponse(render_markdown(incident), media_type="text/markdown")
