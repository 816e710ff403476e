"""`/v1/endpoints…`: deployments, rollouts, shadows and the kill switch.

Each change passes the `deploy` or `rollout` policy gate inside its transaction (403
`policy.denied` with every reason otherwise) and is a ledger entry. Tokens scoped to
`endpoint:<name>` work on that endpoint only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import Field

from bastion.api.deps import CurrentCaller, EndpointCaller, PlatformDep, permission
from bastion.api.schemas import Strict
from bastion.core.errors import NotFound
from bastion.deploy import Endpoint, EndpointEvent, RolloutPlan
from bastion.identity import Permission

router = APIRouter(tags=["deployments"])


class PlanIn(Strict):
    kind: str = Field(default="all-at-once", description="all-at-once | canary | linear")
    weight: float = Field(default=10.0, description="canary: % of requests to the new version")
    steps: list[float] = Field(default_factory=list, max_length=20, description="linear weights")
    interval: int = Field(default=0, description="linear: seconds between steps")
    bake: int = Field(default=0, description="seconds at 100 % before the rollout completes")
    auto_promote: bool = Field(default=False, description="canary: promote after `bake` s")


class DeploymentIn(Strict):
    model: str = Field(max_length=128)
    version: str = Field(max_length=64, description="version number or alias")
    plan: PlanIn = Field(default_factory=PlanIn)
    description: str | None = Field(default=None, max_length=512)
    limits: dict[str, Any] | None = Field(
        default=None,
        description='overrides: {"principal": {"rate", "burst"}, "endpoint": {"rate", "burst"}, '
        '"max_rows": n}',
    )
    sticky: bool | None = Field(
        default=None, description="route one client to one version during a canary"
    )


class ActionIn(Strict):
    reason: str = Field(default="", max_length=2000)


class ShadowIn(Strict):
    version: str | None = Field(
        default=None, max_length=64, description="version number or alias; null stops it"
    )
    share: float = Field(default=100.0, description="% of requests copied to the shadow")


@router.get("/v1/endpoints", openapi_extra=permission(Permission.DEPLOY_READ))
def list_endpoints(caller: CurrentCaller, platform: PlatformDep) -> list[Endpoint]:
    return list(platform.deployments.endpoints(caller))


@router.get("/v1/endpoints/{name}", openapi_extra=permission(Permission.DEPLOY_READ))
def get_endpoint(name: str, caller: EndpointCaller, platform: PlatformDep) -> Endpoint:
    return platform.deployments.get(caller, name)


@router.get("/v1/endpoints/{name}/history", openapi_extra=permission(Permission.DEPLOY_READ))
def endpoint_history(
    name: str,
    caller: EndpointCaller,
    platform: PlatformDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[EndpointEvent]:
    """Deployments, steps, promotions, rollbacks and kills, newest first."""
    return platform.deployments.history(caller, name, limit=limit)


@router.post(
    "/v1/endpoints/{name}/deployments",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=permission(Permission.DEPLOY_MANAGE),
)
def deploy(
    name: str, body: DeploymentIn, caller: EndpointCaller, platform: PlatformDep
) -> Endpoint:
    """Deploy a version to the endpoint (created on first use) by a rollout plan."""
    plan = RolloutPlan.from_json(body.plan.model_dump())
    return platform.deployments.deploy(
        caller,
        name,
        body.model,
        body.version,
        plan=plan,
        description=body.description,
        limits=body.limits,
        sticky=body.sticky,
    )


@router.post(
    "/v1/endpoints/{name}/rollout/{action}", openapi_extra=permission(Permission.DEPLOY_MANAGE)
)
def rollout_action(
    name: str, action: str, body: ActionIn, caller: EndpointCaller, platform: PlatformDep
) -> Endpoint:
    """`promote`, `pause`, `resume` or `rollback` the endpoint's rollout."""
    actions = {
        "promote": platform.deployments.promote,
        "pause": platform.deployments.pause,
        "resume": platform.deployments.resume,
        "rollback": platform.deployments.rollback,
    }
    if action not in actions:
        raise NotFound(
            "rollout actions are promote, pause, resume and rollback", code="deploy.bad_action"
        )
    return actions[action](caller, name, reason=body.reason)


@router.post("/v1/endpoints/{name}/kill", openapi_extra=permission(Permission.DEPLOY_MANAGE))
def kill(name: str, body: ActionIn, caller: EndpointCaller, platform: PlatformDep) -> Endpoint:
    """The kill switch: the endpoint stops serving (503) at once."""
    return platform.deployments.kill(caller, name, reason=body.reason)


@router.post("/v1/endpoints/{name}/revive", openapi_extra=permission(Permission.DEPLOY_MANAGE))
def revive(name: str, body: ActionIn, caller: EndpointCaller, platform: PlatformDep) -> Endpoint:
    return platform.deployments.revive(caller, name, reason=body.reason)


@router.put("/v1/endpoints/{name}/shadow", openapi_extra=permission(Permission.DEPLOY_MANAGE))
def set_shadow(
    name: str, body: ShadowIn, caller: EndpointCaller, platform: PlatformDep
) -> Endpoint:
    """Mirror a share of requests to a version that answers nobody (null stops it)."""
    return platform.deployments.set_shadow(caller, name, body.version, share=body.share)
