"""Deployments: which registered versions serve an endpoint, and how that changes.

Every change runs in one transaction that locks the endpoint row, passes a policy gate and
appends its ledger entry:

* `deploy` (a new version through a `RolloutPlan`) and `set_shadow` pass the `deploy` gate with
  `deployment: {endpoint, kind: stable|canary|shadow, weight}`;
* `promote`, `pause`, `resume`, `rollback`, `kill`, `revive` and the controller's linear steps
  pass the `rollout` gate with `rollout: {endpoint, action, weight}` (the default bundle never
  blocks the safety actions kill, rollback and pause).

A denial rolls the change back and is recorded on its own (`PolicyService.enforcing`). The
endpoint's `generation` grows with every change, so a gateway replica needs one cheap read to
know its routing table is stale; listeners in the same process hear of a change right after
its commit. `advance(now)` is the rollout controller's step: it moves linear rollouts to their
next weight, ends baking periods and auto-promotes canaries whose plan says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bastion.core.clock import Clock
from bastion.core.errors import Conflict, InvalidInput, NotFound
from bastion.core.ids import new_id
from bastion.deploy.plans import (
    OPEN_STATES,
    EndpointLimits,
    EndpointState,
    PlanKind,
    RolloutPlan,
    RolloutState,
    check_endpoint_name,
    check_weight,
)
from bastion.identity import Authorizer, Caller, Permission, Role
from bastion.ledger import AuditLog
from bastion.policy import PolicyService
from bastion.registry import GateChecks
from bastion.registry.models import find_version
from bastion.store.db import Database
from bastion.store.tables import (
    EndpointEventRow,
    EndpointRow,
    ModelRow,
    ModelVersionRow,
    RolloutRow,
)

log = logging.getLogger("bastion.deploy")

CONTROLLER = "rollout-controller"
MAX_HISTORY = 1000


@dataclass(frozen=True)
class VersionRef:
    id: str
    number: int
    artifact_digest: str


@dataclass(frozen=True)
class Rollout:
    id: str
    kind: str
    state: str
    from_version: int | None
    to_version: int
    steps: tuple[float, ...]
    step_index: int
    interval: int
    bake: int
    auto_promote: bool
    next_at: datetime | None
    started_at: datetime
    started_by: str
    finished_at: datetime | None
    reason: str


@dataclass(frozen=True)
class Endpoint:
    id: str
    name: str
    model: str
    description: str
    state: str
    stable: VersionRef | None
    previous: VersionRef | None
    canary: VersionRef | None
    canary_weight: float
    shadow: VersionRef | None
    shadow_share: float
    sticky: bool
    limits: Mapping[str, Any]
    generation: int
    changed_at: datetime
    rollout: Rollout | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class EndpointEvent:
    id: str
    endpoint: str
    action: str
    version: int | None
    weight: float | None
    actor: str
    decision_id: str | None
    reason: str
    at: datetime


@dataclass(frozen=True)
class RouteSpec:
    """What a gateway needs to route an endpoint's requests (ids, weights, state)."""

    name: str
    model: str
    state: str
    stable_version_id: str | None
    canary_version_id: str | None
    canary_weight: float
    shadow_version_id: str | None
    shadow_share: float
    sticky: bool
    limits: EndpointLimits
    generation: int
    changed_at: datetime
    last_action: str | None
    # When the open rollout that put the canary in place started (None without a canary):
    # the canary guard judges only evidence gathered since.
    canary_since: datetime | None = None


Listener = Callable[[RouteSpec], None]
_CHANGED = "bastion.deploy.changed"


class DeploymentService:
    def __init__(
        self,
        *,
        database: Database,
        audit: AuditLog,
        authorizer: Authorizer,
        policy: PolicyService,
        gates: GateChecks,
        clock: Clock,
    ) -> None:
        self._db = database
        self._audit = audit
        self._authz = authorizer
        self._policy = policy
        self._gates = gates
        self._clock = clock
        self._listeners: list[Listener] = []
        # Before the ledger's sequencing hook: a rollback must reach the routing table
        # without waiting for the checkpoint to be signed.
        database.after_commit(self._committed, first=True)
        self.controller = Caller.system(CONTROLLER, [Role.DEPLOYER])

    def add_listener(self, listener: Listener) -> None:
        """`listener(route_spec)` runs right after every committed change in this process,
        with the endpoint's new routing spec (no database read needed to apply it)."""
        self._listeners.append(listener)

    # -- deploying ------------------------------------------------------------------------

    def deploy(
        self,
        caller: Caller,
        endpoint: str,
        model: str,
        ref: str | int,
        *,
        plan: RolloutPlan | None = None,
        description: str | None = None,
        limits: Mapping[str, Any] | None = None,
        sticky: bool | None = None,
    ) -> Endpoint:
        """Deploy version `ref` of `model` to `endpoint` (created on first use) by `plan`.

        The first deployment of an endpoint must be all-at-once (there is nothing to canary
        against). Refused while another rollout of the endpoint is open
        (`deploy.rollout_open`): promote or roll it back first.
        """
        check_endpoint_name(endpoint)
        self._authz.authorize(caller, Permission.DEPLOY_MANAGE, f"endpoint:{endpoint}")
        plan = plan or RolloutPlan()
        parsed_limits = EndpointLimits.from_json(limits) if limits is not None else None
        if description is not None and len(description) > 512:
            raise InvalidInput("description is longer than 512", code="input.invalid")
        now = self._clock.now()
        with self._policy.enforcing(caller), self._db.transaction() as session:
            model_row = session.scalars(sa.select(ModelRow).where(ModelRow.name == model)).first()
            if model_row is None:
                raise NotFound(f"no model {model}", code="registry.model_not_found")
            version = find_version(session, model_row, ref)
            row = self._endpoint_row(session, endpoint, lock=True, missing_ok=True)
            created = row is None
            if row is None:
                row = EndpointRow(
                    id=new_id("ep"),
                    name=endpoint,
                    model_id=model_row.id,
                    description=description or "",
                    state=EndpointState.SERVING.value,
                    canary_weight=0.0,
                    shadow_share=0.0,
                    sticky=True if sticky is None else sticky,
                    limits=(parsed_limits or EndpointLimits()).to_json(),
                    generation=0,
                    changed_at=now,
                    created_at=now,
                    created_by=caller.principal_id,
                    updated_at=now,
                )
                session.add(row)
                session.flush()
            else:
                if row.model_id != model_row.id:
                    raise Conflict(
                        f"endpoint {endpoint} serves another model; one endpoint serves one "
                        "model's versions",
                        code="deploy.model_mismatch",
                    )
                if description is not None:
                    row.description = description
                if parsed_limits is not None:
                    row.limits = parsed_limits.to_json()
                if sticky is not None:
                    row.sticky = sticky
            if self._open_rollout(session, row.id) is not None:
                raise Conflict(
                    f"endpoint {endpoint} has a rollout in progress; promote or roll it back first",
                    code="deploy.rollout_open",
                )
            if row.stable_version_id == version.id and row.state == EndpointState.SERVING:
                raise Conflict(
                    f"{model}@{version.version} already serves {endpoint}",
                    code="deploy.already_serving",
                )
            if plan.kind is not PlanKind.ALL_AT_ONCE and row.stable_version_id is None:
                raise Conflict(
                    f"endpoint {endpoint} has no stable version to {plan.kind.value} against; "
                    "deploy the first version all-at-once",
                    code="deploy.no_stable",
                )
            kind = "stable" if plan.kind is PlanKind.ALL_AT_ONCE else "canary"
            decision_id = self._gates.require(
                session,
                caller,
                "deploy",
                model_row,
                version,
                deployment={"endpoint": endpoint, "kind": kind, "weight": plan.first_weight},
            )
            rollout = RolloutRow(
                id=new_id("ro"),
                endpoint_id=row.id,
                kind=plan.kind.value,
                from_version_id=row.stable_version_id,
                to_version_id=version.id,
                steps=list(plan.steps),
                step_index=0,
                interval_seconds=plan.interval,
                bake_seconds=plan.bake,
                auto_promote=plan.auto_promote,
                started_at=now,
                started_by=caller.principal_id,
                updated_at=now,
                reason="",
            )
            if plan.kind is PlanKind.ALL_AT_ONCE:
                row.previous_version_id = row.stable_version_id
                row.stable_version_id = version.id
                row.canary_version_id = None
                row.canary_weight = 0.0
                if plan.bake > 0 and row.previous_version_id is not None:
                    rollout.state = RolloutState.BAKING.value
                    rollout.next_at = now + timedelta(seconds=plan.bake)
                else:
                    rollout.state = RolloutState.COMPLETED.value
                    rollout.finished_at = now
                action = "deploy"
            else:
                row.canary_version_id = version.id
                row.canary_weight = plan.first_weight
                rollout.state = RolloutState.ACTIVE.value
                if plan.kind is PlanKind.LINEAR:
                    rollout.next_at = now + timedelta(seconds=plan.interval)
                elif plan.auto_promote:
                    rollout.next_at = now + timedelta(seconds=plan.bake)
                action = "canary_start" if plan.kind is PlanKind.CANARY else "linear_start"
            if row.state == EndpointState.KILLED and created:
                row.state = EndpointState.SERVING.value
            session.add(rollout)
            self._changed(
                session,
                caller,
                row,
                action,
                version,
                weight=plan.first_weight,
                decision_id=decision_id,
                rollout=rollout,
                data={"plan": plan.to_json(), "model": model, "created": created},
            )
            result = self._view(session, row)
        return result

    def set_shadow(
        self, caller: Caller, endpoint: str, ref: str | int | None, *, share: float = 100.0
    ) -> Endpoint:
        """Mirror `share` % of the endpoint's requests to version `ref` (None stops it). The
        shadow answers nobody; the gateway compares its answers with the primary's."""
        check_endpoint_name(endpoint)
        self._authz.authorize(caller, Permission.DEPLOY_MANAGE, f"endpoint:{endpoint}")
        share = check_weight(share, "shadow share")
        with self._policy.enforcing(caller), self._db.transaction() as session:
            row = self._endpoint_row(session, endpoint, lock=True)
            model_row = session.get(ModelRow, row.model_id)
            assert model_row is not None
            if ref is None:
                version = None
                decision_id = None
                row.shadow_version_id = None
                row.shadow_share = 0.0
                action = "shadow_clear"
            else:
                version = find_version(session, model_row, ref)
                decision_id = self._gates.require(
                    session,
                    caller,
                    "deploy",
                    model_row,
                    version,
                    deployment={"endpoint": endpoint, "kind": "shadow", "weight": share},
                )
                row.shadow_version_id = version.id
                row.shadow_share = share
                action = "shadow_set"
            self._changed(
                session, caller, row, action, version, weight=share, decision_id=decision_id
            )
            result = self._view(session, row)
        return result

    # -- rollout actions --------------------------------------------------------------------

    def promote(self, caller: Caller, endpoint: str, *, reason: str = "") -> Endpoint:
        """Give the rollout's new version 100 % now (then bake, if the plan says so)."""
        return self._act(caller, endpoint, "promote", reason)

    def pause(self, caller: Caller, endpoint: str, *, reason: str = "") -> Endpoint:
        """Hold a linear or canary rollout at its current weight."""
        return self._act(caller, endpoint, "pause", reason)

    def resume(self, caller: Caller, endpoint: str, *, reason: str = "") -> Endpoint:
        return self._act(caller, endpoint, "resume", reason)

    def rollback(self, caller: Caller, endpoint: str, *, reason: str = "") -> Endpoint:
        """Send all traffic back to the version that served before the latest deployment:
        a canary's weight goes to 0, a promoted or all-at-once version is replaced by its
        predecessor."""
        return self._act(caller, endpoint, "rollback", reason)

    def auto_rollback(
        self, endpoint: str, canary_version_id: str, *, reason: str, evidence: Mapping[str, Any]
    ) -> Endpoint | None:
        """The controller's rollback of a canary its monitor judged in breach: as
        `rollback`, by the rollout controller, with the evidence in the ledger entry. Does
        nothing (None) unless `canary_version_id` is still the endpoint's canary, so a verdict
        about one canary never rolls back the next one."""
        caller = self.controller
        with self._policy.enforcing(caller), self._db.transaction() as session:
            row = self._endpoint_row(session, endpoint, lock=True)
            if row.canary_version_id != canary_version_id:
                return None
            self._apply(
                session,
                caller,
                row,
                "rollback",
                reason,
                data={"automatic": True, "evidence": dict(evidence)},
            )
            return self._view(session, row)

    def kill(self, caller: Caller, endpoint: str, *, reason: str = "") -> Endpoint:
        """The kill switch: the endpoint stops serving (503) in every gateway, at once here
        and within the poll interval elsewhere. `revive` undoes it."""
        return self._act(caller, endpoint, "kill", reason)

    def revive(self, caller: Caller, endpoint: str, *, reason: str = "") -> Endpoint:
        return self._act(caller, endpoint, "revive", reason)

    def _act(self, caller: Caller, endpoint: str, action: str, reason: str) -> Endpoint:
        check_endpoint_name(endpoint)
        if len(reason) > 2000:
            raise InvalidInput("reason is longer than 2000", code="input.invalid")
        self._authz.authorize(caller, Permission.DEPLOY_MANAGE, f"endpoint:{endpoint}")
        with self._policy.enforcing(caller), self._db.transaction() as session:
            row = self._endpoint_row(session, endpoint, lock=True)
            self._apply(session, caller, row, action, reason)
            result = self._view(session, row)
        return result

    def _apply(
        self,
        session: Session,
        caller: Caller,
        row: EndpointRow,
        action: str,
        reason: str,
        *,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        now = self._clock.now()
        rollout = self._open_rollout(session, row.id)
        model_row = session.get(ModelRow, row.model_id)
        assert model_row is not None

        def gate(version_id: str | None, weight: float) -> tuple[ModelVersionRow, str]:
            target = version_id or row.stable_version_id or row.previous_version_id
            if target is None:
                raise Conflict(
                    f"endpoint {row.name} has no version to {action}", code="deploy.nothing"
                )
            version = session.get(ModelVersionRow, target)
            assert version is not None
            gate_action = "resume" if action == "revive" else action
            decision = self._gates.require(
                session,
                caller,
                "rollout",
                model_row,
                version,
                rollout={"endpoint": row.name, "action": gate_action, "weight": weight},
            )
            return version, decision

        if action == "kill":
            if row.state == EndpointState.KILLED:
                raise Conflict(f"endpoint {row.name} is already killed", code="deploy.killed")
            version, decision = gate(row.stable_version_id, 0.0)
            row.state = EndpointState.KILLED.value
            self._changed(session, caller, row, "kill", version, 0.0, decision, reason=reason)
            return
        if action == "revive":
            if row.state != EndpointState.KILLED:
                raise Conflict(f"endpoint {row.name} is not killed", code="deploy.not_killed")
            version, decision = gate(row.stable_version_id, 100.0)
            row.state = EndpointState.SERVING.value
            self._changed(session, caller, row, "revive", version, 100.0, decision, reason=reason)
            return
        if action == "rollback":
            self._rollback(session, caller, row, rollout, reason, gate, now, data=data)
            return
        if rollout is None:
            raise Conflict(f"endpoint {row.name} has no rollout in progress", code="deploy.idle")
        if action == "pause":
            if rollout.state != RolloutState.ACTIVE:
                raise Conflict(f"the rollout is {rollout.state}", code="deploy.bad_state")
            version, decision = gate(rollout.to_version_id, row.canary_weight)
            rollout.state = RolloutState.PAUSED.value
            rollout.updated_at = now
            self._changed(
                session,
                caller,
                row,
                "pause",
                version,
                row.canary_weight,
                decision,
                rollout=rollout,
                reason=reason,
            )
            return
        if action == "resume":
            if rollout.state != RolloutState.PAUSED:
                raise Conflict(f"the rollout is {rollout.state}", code="deploy.bad_state")
            version, decision = gate(rollout.to_version_id, row.canary_weight)
            rollout.state = RolloutState.ACTIVE.value
            rollout.updated_at = now
            if rollout.kind == PlanKind.LINEAR:
                rollout.next_at = now + timedelta(seconds=rollout.interval_seconds)
            self._changed(
                session,
                caller,
                row,
                "resume",
                version,
                row.canary_weight,
                decision,
                rollout=rollout,
                reason=reason,
            )
            return
        if action == "promote":
            if rollout.state == RolloutState.BAKING:
                raise Conflict(
                    "the new version already takes all traffic (baking)", code="deploy.bad_state"
                )
            version, decision = gate(rollout.to_version_id, 100.0)
            self._promote(session, caller, row, rollout, version, decision, reason, now)
            return
        raise InvalidInput(f"unknown rollout action {action!r}", code="deploy.bad_action")

    def _promote(
        self,
        session: Session,
        caller: Caller,
        row: EndpointRow,
        rollout: RolloutRow,
        version: ModelVersionRow,
        decision: str,
        reason: str,
        now: datetime,
    ) -> None:
        row.previous_version_id = row.stable_version_id
        row.stable_version_id = version.id
        row.canary_version_id = None
        row.canary_weight = 0.0
        rollout.updated_at = now
        if rollout.bake_seconds > 0 and rollout.kind == PlanKind.LINEAR:
            rollout.state = RolloutState.BAKING.value
            rollout.next_at = now + timedelta(seconds=rollout.bake_seconds)
        else:
            rollout.state = RolloutState.COMPLETED.value
            rollout.next_at = None
            rollout.finished_at = now
        self._changed(
            session,
            caller,
            row,
            "promote",
            version,
            100.0,
            decision,
            rollout=rollout,
            reason=reason,
        )

    def _rollback(
        self,
        session: Session,
        caller: Caller,
        row: EndpointRow,
        rollout: RolloutRow | None,
        reason: str,
        gate: Callable[[str | None, float], tuple[ModelVersionRow, str]],
        now: datetime,
        *,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        if rollout is not None and rollout.state in (RolloutState.ACTIVE, RolloutState.PAUSED):
            # A canary or linear rollout: the stable version never stopped serving.
            version, decision = gate(row.stable_version_id, 100.0)
            row.canary_version_id = None
            row.canary_weight = 0.0
        else:
            # The new version took all traffic (all-at-once, promoted, or baking): its
            # predecessor comes back.
            target = (
                rollout.from_version_id
                if rollout is not None and rollout.from_version_id
                else row.previous_version_id
            )
            if target is None:
                raise Conflict(
                    f"endpoint {row.name} has no earlier version to roll back to; use "
                    "`kill` to stop it serving",
                    code="deploy.no_previous",
                )
            version, decision = gate(target, 100.0)
            row.previous_version_id = row.stable_version_id
            row.stable_version_id = target
            row.canary_version_id = None
            row.canary_weight = 0.0
        if rollout is not None:
            rollout.state = RolloutState.ROLLED_BACK.value
            rollout.updated_at = now
            rollout.finished_at = now
            rollout.next_at = None
            rollout.reason = reason[:2000]
        self._changed(
            session,
            caller,
            row,
            "rollback",
            version,
            100.0,
            decision,
            rollout=rollout,
            reason=reason,
            data=data,
        )

    # -- the controller -----------------------------------------------------------------------

    def advance(
        self, now: datetime | None = None, *, hold: Callable[[str], str | None] | None = None
    ) -> list[str]:
        """One controller pass: step due linear rollouts, finish baking periods, auto-promote
        canaries. Returns the endpoints changed. Each change is its own transaction (with its
        gate and ledger entry, as the controller); one failing endpoint does not stop others.

        `hold(endpoint)` returning a reason keeps a due step or promotion waiting (it is
        retried on the next pass): the monitor holds a canary that has not yet answered
        enough requests to be judged, so "a clean bake" means clean evidence, not silence."""
        now = now or self._clock.now()
        with self._db.read() as session:
            due = session.execute(
                sa.select(EndpointRow.name)
                .join(RolloutRow, RolloutRow.endpoint_id == EndpointRow.id)
                .where(
                    RolloutRow.state.in_([RolloutState.ACTIVE.value, RolloutState.BAKING.value]),
                    RolloutRow.next_at.is_not(None),
                    RolloutRow.next_at <= now,
                )
            ).all()
        changed = []
        for (name,) in due:
            try:
                if self._advance_one(name, now, hold):
                    changed.append(name)
            except Exception:  # logged; the next pass tries again
                log.exception("rollout controller: advancing %s failed", name)
        return changed

    def _advance_one(
        self, name: str, now: datetime, hold: Callable[[str], str | None] | None = None
    ) -> bool:
        caller = self.controller
        with self._policy.enforcing(caller), self._db.transaction() as session:
            row = self._endpoint_row(session, name, lock=True)
            rollout = self._open_rollout(session, row.id)
            if rollout is None or rollout.next_at is None or rollout.next_at > now:
                return False
            model_row = session.get(ModelRow, row.model_id)
            version = session.get(ModelVersionRow, rollout.to_version_id)
            assert model_row is not None
            assert version is not None
            if rollout.state == RolloutState.BAKING:
                rollout.state = RolloutState.COMPLETED.value
                rollout.finished_at = now
                rollout.next_at = None
                rollout.updated_at = now
                self._changed(
                    session,
                    caller,
                    row,
                    "complete",
                    version,
                    100.0,
                    None,
                    rollout=rollout,
                    reason="baking period passed",
                )
                return True
            if rollout.state != RolloutState.ACTIVE:
                return False
            held = hold(name) if hold is not None else None
            if held:
                log.info("rollout controller: %s waits: %s", name, held)
                return False
            if rollout.kind == PlanKind.CANARY:  # auto_promote after the bake at its weight
                weight = 100.0
            else:
                rollout.step_index += 1
                weight = float(rollout.steps[rollout.step_index])
            decision = self._gates.require(
                session,
                caller,
                "rollout",
                model_row,
                version,
                rollout={"endpoint": name, "action": "promote", "weight": weight},
            )
            if weight >= 100.0:
                self._promote(session, caller, row, rollout, version, decision, "plan", now)
                if rollout.kind == PlanKind.CANARY and rollout.bake_seconds > 0:
                    rollout.state = RolloutState.COMPLETED.value
                    rollout.finished_at = now
                    rollout.next_at = None
                return True
            row.canary_weight = weight
            rollout.next_at = now + timedelta(seconds=rollout.interval_seconds)
            rollout.updated_at = now
            self._changed(
                session,
                caller,
                row,
                "step",
                version,
                weight,
                decision,
                rollout=rollout,
                reason=f"step {rollout.step_index + 1} of {len(rollout.steps)}",
            )
            return True

    # -- reading ------------------------------------------------------------------------------

    def get(self, caller: Caller, endpoint: str) -> Endpoint:
        self._authz.authorize(caller, Permission.DEPLOY_READ, f"endpoint:{endpoint}")
        with self._db.read() as session:
            return self._view(session, self._endpoint_row(session, endpoint))

    def endpoints(self, caller: Caller) -> Sequence[Endpoint]:
        self._authz.authorize(caller, Permission.DEPLOY_READ)
        with self._db.read() as session:
            rows = session.scalars(sa.select(EndpointRow).order_by(EndpointRow.name)).all()
            return [self._view(session, r) for r in rows]

    def history(self, caller: Caller, endpoint: str, *, limit: int = 100) -> list[EndpointEvent]:
        self._authz.authorize(caller, Permission.DEPLOY_READ, f"endpoint:{endpoint}")
        if not 1 <= limit <= MAX_HISTORY:
            raise InvalidInput(f"limit must be 1 to {MAX_HISTORY}", code="input.invalid")
        with self._db.read() as session:
            row = self._endpoint_row(session, endpoint)
            events = session.scalars(
                sa.select(EndpointEventRow)
                .where(EndpointEventRow.endpoint_id == row.id)
                .order_by(EndpointEventRow.at.desc(), EndpointEventRow.id.desc())
                .limit(limit)
            ).all()
            numbers = _numbers(session, [e.version_id for e in events])
            return [
                EndpointEvent(
                    id=e.id,
                    endpoint=row.name,
                    action=e.action,
                    version=numbers.get(e.version_id) if e.version_id else None,
                    weight=e.weight,
                    actor=e.actor,
                    decision_id=e.decision_id,
                    reason=e.reason,
                    at=e.at,
                )
                for e in events
            ]

    def generations(self) -> dict[str, int]:
        """Every endpoint's generation (one small query; gateways poll it)."""
        with self._db.connect() as conn:
            rows = conn.execute(sa.select(EndpointRow.name, EndpointRow.generation)).all()
        return {str(n): int(g) for n, g in rows}

    def routes(self, names: Sequence[str] | None = None) -> list[RouteSpec]:
        """Routing specs for the gateway (an internal read: the gateway is Bastion itself)."""
        with self._db.read() as session:
            query = sa.select(EndpointRow, ModelRow.name).join(
                ModelRow, ModelRow.id == EndpointRow.model_id
            )
            if names is not None:
                query = query.where(EndpointRow.name.in_(list(names)))
            out = []
            for row, model_name in session.execute(query).all():
                last = session.scalar(
                    sa.select(EndpointEventRow.action)
                    .where(EndpointEventRow.endpoint_id == row.id)
                    .order_by(EndpointEventRow.at.desc(), EndpointEventRow.id.desc())
                    .limit(1)
                )
                out.append(_spec(row, model_name, last, self._canary_since(session, row)))
            return out

    # -- internals ----------------------------------------------------------------------------

    def _canary_since(self, session: Session, row: EndpointRow) -> datetime | None:
        if row.canary_version_id is None:
            return None
        rollout = self._open_rollout(session, row.id)
        return rollout.started_at if rollout is not None else row.changed_at

    def _endpoint_row(
        self, session: Session, name: str, *, lock: bool = False, missing_ok: bool = False
    ) -> Any:
        query = sa.select(EndpointRow).where(EndpointRow.name == name)
        if lock:
            query = query.with_for_update()
        row = session.scalars(query).first()
        if row is None and not missing_ok:
            raise NotFound(f"no endpoint {name}", code="deploy.endpoint_not_found")
        return row

    def _open_rollout(self, session: Session, endpoint_id: str) -> RolloutRow | None:
        return session.scalars(
            sa.select(RolloutRow)
            .where(
                RolloutRow.endpoint_id == endpoint_id,
                RolloutRow.state.in_([s.value for s in OPEN_STATES]),
            )
            .order_by(RolloutRow.started_at.desc())
            .limit(1)
        ).first()

    def _changed(
        self,
        session: Session,
        caller: Caller,
        row: EndpointRow,
        action: str,
        version: ModelVersionRow | None,
        weight: float | None,
        decision_id: str | None,
        *,
        rollout: RolloutRow | None = None,
        reason: str = "",
        data: Mapping[str, Any] | None = None,
    ) -> None:
        now = self._clock.now()
        row.generation = (row.generation or 0) + 1
        row.changed_at = now
        row.updated_at = now
        session.add(
            EndpointEventRow(
                id=new_id("epe"),
                endpoint_id=row.id,
                rollout_id=rollout.id if rollout is not None else None,
                action=action,
                version_id=version.id if version is not None else None,
                weight=weight,
                actor=caller.principal_id,
                decision_id=decision_id,
                reason=reason[:2000],
                at=now,
            )
        )
        session.flush()
        model_name = session.scalar(sa.select(ModelRow.name).where(ModelRow.id == row.model_id))
        session.info.setdefault(_CHANGED, {})[row.name] = _spec(
            row, str(model_name), action, self._canary_since(session, row)
        )
        numbers = _numbers(
            session, [row.stable_version_id, row.canary_version_id, row.shadow_version_id]
        )
        self._audit.append(
            session,
            caller.event(
                f"deploy.endpoint.{action}",
                row.id,
                {
                    "endpoint": row.name,
                    "action": action,
                    "version": version.version if version is not None else None,
                    "artifact_digest": version.artifact_digest if version is not None else None,
                    "weight": weight,
                    "state": row.state,
                    "stable": numbers.get(row.stable_version_id or ""),
                    "canary": numbers.get(row.canary_version_id or ""),
                    "canary_weight": row.canary_weight,
                    "shadow": numbers.get(row.shadow_version_id or ""),
                    "rollout_id": rollout.id if rollout is not None else None,
                    "generation": row.generation,
                    "decision_id": decision_id,
                    "reason": reason[:500],
                    **dict(data or {}),
                },
            ),
        )

    def _view(self, session: Session, row: EndpointRow) -> Endpoint:
        model = session.get(ModelRow, row.model_id)
        assert model is not None
        refs = _refs(
            session,
            [
                row.stable_version_id,
                row.previous_version_id,
                row.canary_version_id,
                row.shadow_version_id,
            ],
        )
        rollout_row = session.scalars(
            sa.select(RolloutRow)
            .where(RolloutRow.endpoint_id == row.id)
            .order_by(RolloutRow.started_at.desc(), RolloutRow.id.desc())
            .limit(1)
        ).first()
        rollout = None
        if rollout_row is not None:
            numbers = _numbers(session, [rollout_row.from_version_id, rollout_row.to_version_id])
            rollout = Rollout(
                id=rollout_row.id,
                kind=rollout_row.kind,
                state=rollout_row.state,
                from_version=numbers.get(rollout_row.from_version_id or ""),
                to_version=numbers[rollout_row.to_version_id],
                steps=tuple(rollout_row.steps),
                step_index=rollout_row.step_index,
                interval=rollout_row.interval_seconds,
                bake=rollout_row.bake_seconds,
                auto_promote=rollout_row.auto_promote,
                next_at=rollout_row.next_at,
                started_at=rollout_row.started_at,
                started_by=rollout_row.started_by,
                finished_at=rollout_row.finished_at,
                reason=rollout_row.reason,
            )
        return Endpoint(
            id=row.id,
            name=row.name,
            model=model.name,
            description=row.description,
            state=row.state,
            stable=refs.get(row.stable_version_id or ""),
            previous=refs.get(row.previous_version_id or ""),
            canary=refs.get(row.canary_version_id or ""),
            canary_weight=row.canary_weight,
            shadow=refs.get(row.shadow_version_id or ""),
            shadow_share=row.shadow_share,
            sticky=row.sticky,
            limits=dict(row.limits or {}),
            generation=row.generation,
            changed_at=row.changed_at,
            rollout=rollout,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def _committed(self, info: dict[str, Any]) -> None:
        """After-commit hook: hand each changed endpoint's new spec to the listeners."""
        for spec in info.pop(_CHANGED, {}).values():
            for listener in self._listeners:
                try:
                    listener(spec)
                except Exception:  # a listener never undoes a committed change
                    log.exception("deployment listener failed for %s", spec.name)


def _spec(
    row: EndpointRow, model: str, last_action: str | None, canary_since: datetime | None
) -> RouteSpec:
    return RouteSpec(
        name=row.name,
        model=model,
        state=row.state,
        stable_version_id=row.stable_version_id,
        canary_version_id=row.canary_version_id,
        canary_weight=row.canary_weight,
        shadow_version_id=row.shadow_version_id,
        shadow_share=row.shadow_share,
        sticky=row.sticky,
        limits=EndpointLimits.from_json(row.limits),
        generation=row.generation,
        changed_at=row.changed_at,
        last_action=last_action,
        canary_since=canary_since,
    )


def _refs(session: Session, ids: Sequence[str | None]) -> dict[str, VersionRef]:
    wanted = [i for i in ids if i]
    if not wanted:
        return {}
    rows = session.execute(
        sa.select(
            ModelVersionRow.id, ModelVersionRow.version, ModelVersionRow.artifact_digest
        ).where(ModelVersionRow.id.in_(wanted))
    ).all()
    return {i: VersionRef(i, n, d) for i, n, d in rows}


def _numbers(session: Session, ids: Sequence[str | None]) -> dict[str, int]:
    return {i: ref.number for i, ref in _refs(session, ids).items()}
