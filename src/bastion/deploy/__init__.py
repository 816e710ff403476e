"""Rollout: endpoints, deployments of registered versions to them, rollout plans (all at once,
canary, linear with a baking period), promotion, rollback and the kill switch. Every change
passes the `deploy` or `rollout` policy gate and is a ledger entry in the same transaction.

May import `bastion.monitoring`, `bastion.registry` and everything below them.
"""

from bastion.deploy.plans import (
    BucketLimit,
    EndpointLimits,
    EndpointState,
    PlanKind,
    RolloutPlan,
    RolloutState,
    check_endpoint_name,
)
from bastion.deploy.service import (
    DeploymentService,
    Endpoint,
    EndpointEvent,
    Rollout,
    RouteSpec,
    VersionRef,
)

__all__ = [
    "BucketLimit",
    "DeploymentService",
    "Endpoint",
    "EndpointEvent",
    "EndpointLimits",
    "EndpointState",
    "PlanKind",
    "Rollout",
    "RolloutPlan",
    "RolloutState",
    "RouteSpec",
    "VersionRef",
    "check_endpoint_name",
]
