"""Rollout plans and endpoint settings: validated values, no database.

A plan says how traffic moves from the stable version to a new one:

* `all-at-once`: the new version takes 100 % at once; the old one stays the rollback target
  for the baking period (and after, until the next deployment).
* `canary`: the new version takes `weight` % next to the stable one until someone (or, with
  `auto_promote`, the controller after a clean baking period) promotes it.
* `linear`: the new version's weight walks through `steps` (e.g. 10, 25, 50, 100), one step
  every `interval` seconds, then bakes for `bake` seconds before the rollout completes.

Weights are percentages of requests (0-100, at most two decimals).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bastion.core.errors import InvalidInput

ENDPOINT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
MAX_STEPS = 20
MAX_SECONDS = 30 * 24 * 3600
MAX_ROWS_CAP = 100_000


class PlanKind(StrEnum):
    ALL_AT_ONCE = "all-at-once"
    CANARY = "canary"
    LINEAR = "linear"


class RolloutState(StrEnum):
    ACTIVE = "active"  # canary or linear steps in progress
    PAUSED = "paused"  # linear steps held; weights unchanged
    BAKING = "baking"  # the new version has 100 %; the previous one is the rollback target
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"


OPEN_STATES = frozenset({RolloutState.ACTIVE, RolloutState.PAUSED, RolloutState.BAKING})


class EndpointState(StrEnum):
    SERVING = "serving"
    KILLED = "killed"


def check_endpoint_name(name: str) -> str:
    if not isinstance(name, str) or not ENDPOINT_NAME.match(name):
        raise InvalidInput(
            f"bad endpoint name {name!r}: 1-63 of a-z, 0-9 and '-', starting with a letter "
            "or digit",
            code="deploy.bad_endpoint_name",
        )
    return name


def check_weight(value: float, what: str = "weight") -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= 100
    ):
        raise InvalidInput(f"{what} must be a number from 0 to 100", code="deploy.bad_weight")
    return round(float(value), 2)


def _seconds(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SECONDS:
        raise InvalidInput(
            f"{what} must be a whole number of seconds from 0 to {MAX_SECONDS}",
            code="deploy.bad_plan",
        )
    return value


@dataclass(frozen=True)
class RolloutPlan:
    kind: PlanKind = PlanKind.ALL_AT_ONCE
    weight: float = 10.0  # canary
    steps: tuple[float, ...] = ()  # linear
    interval: int = 0  # linear: seconds between steps
    bake: int = 0  # seconds at 100 % before the rollout completes
    auto_promote: bool = False  # canary: promote by itself after `bake` seconds at `weight`

    def __post_init__(self) -> None:
        kind = PlanKind(self.kind)
        object.__setattr__(self, "kind", kind)
        _seconds(self.bake, "bake")
        _seconds(self.interval, "interval")
        if kind is PlanKind.CANARY:
            weight = check_weight(self.weight, "canary weight")
            if not 0 < weight < 100:
                raise InvalidInput(
                    "a canary weight must be above 0 and below 100 (use all-at-once for 100)",
                    code="deploy.bad_plan",
                )
            object.__setattr__(self, "weight", weight)
        if kind is PlanKind.LINEAR:
            steps = tuple(check_weight(s, "linear step") for s in self.steps)
            if not steps or len(steps) > MAX_STEPS:
                raise InvalidInput(
                    f"a linear plan needs 1 to {MAX_STEPS} steps", code="deploy.bad_plan"
                )
            if any(b <= a for a, b in itertools.pairwise(steps)) or steps[0] <= 0:
                raise InvalidInput(
                    "linear steps must be positive and strictly increasing",
                    code="deploy.bad_plan",
                )
            if steps[-1] != 100:
                steps = (*steps, 100.0)
            if self.interval <= 0:
                raise InvalidInput(
                    "a linear plan needs an interval of at least 1 second", code="deploy.bad_plan"
                )
            object.__setattr__(self, "steps", steps)
        elif self.steps:
            raise InvalidInput("only a linear plan has steps", code="deploy.bad_plan")
        if self.auto_promote and kind is not PlanKind.CANARY:
            raise InvalidInput("auto_promote applies to canary plans", code="deploy.bad_plan")

    @property
    def first_weight(self) -> float:
        if self.kind is PlanKind.CANARY:
            return self.weight
        if self.kind is PlanKind.LINEAR:
            return self.steps[0]
        return 100.0

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> RolloutPlan:
        allowed = {"kind", "weight", "steps", "interval", "bake", "auto_promote"}
        unknown = set(doc) - allowed
        if unknown:
            raise InvalidInput(
                f"unknown plan fields: {', '.join(sorted(unknown))}", code="deploy.bad_plan"
            )
        try:
            kind = PlanKind(doc.get("kind", PlanKind.ALL_AT_ONCE))
        except ValueError:
            raise InvalidInput(
                "plan kind must be all-at-once, canary or linear", code="deploy.bad_plan"
            ) from None
        steps = doc.get("steps", ())
        if not isinstance(steps, Sequence) or isinstance(steps, str):
            raise InvalidInput("steps must be a list of weights", code="deploy.bad_plan")
        auto = doc.get("auto_promote", False)
        if not isinstance(auto, bool):
            raise InvalidInput("auto_promote must be a boolean", code="deploy.bad_plan")
        return cls(
            kind=kind,
            weight=doc.get("weight", 10.0),
            steps=tuple(steps),
            interval=doc.get("interval", 0),
            bake=doc.get("bake", 0),
            auto_promote=auto,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "weight": self.weight if self.kind is PlanKind.CANARY else None,
            "steps": list(self.steps),
            "interval": self.interval,
            "bake": self.bake,
            "auto_promote": self.auto_promote,
        }


@dataclass(frozen=True)
class BucketLimit:
    rate: float
    burst: int

    def __post_init__(self) -> None:
        if (
            isinstance(self.rate, bool)
            or not isinstance(self.rate, int | float)
            or not math.isfinite(self.rate)
            or not 0 < self.rate <= 1e6
        ):
            raise InvalidInput(
                "a rate limit's rate must be above 0 and at most 1e6 per second",
                code="deploy.bad_limits",
            )
        if (
            isinstance(self.burst, bool)
            or not isinstance(self.burst, int)
            or not (1 <= self.burst <= 10**7)
        ):
            raise InvalidInput(
                "a rate limit's burst must be a whole number from 1 to 10^7",
                code="deploy.bad_limits",
            )


@dataclass(frozen=True)
class EndpointLimits:
    """Per-endpoint overrides of the gateway's defaults (None = use the default)."""

    principal: BucketLimit | None = None
    endpoint: BucketLimit | None = None
    max_rows: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> EndpointLimits:
        if not doc:
            return cls()
        if not isinstance(doc, Mapping):
            raise InvalidInput("limits must be an object", code="deploy.bad_limits")
        unknown = set(doc) - {"principal", "endpoint", "max_rows"}
        if unknown:
            raise InvalidInput(
                f"unknown limit fields: {', '.join(sorted(unknown))}", code="deploy.bad_limits"
            )

        def bucket(value: Any, what: str) -> BucketLimit | None:
            if value is None:
                return None
            if not isinstance(value, Mapping) or set(value) != {"rate", "burst"}:
                raise InvalidInput(
                    f"limits.{what} must be {{rate, burst}}", code="deploy.bad_limits"
                )
            return BucketLimit(rate=value["rate"], burst=value["burst"])

        max_rows = doc.get("max_rows")
        if max_rows is not None and (
            isinstance(max_rows, bool)
            or not isinstance(max_rows, int)
            or not 1 <= max_rows <= MAX_ROWS_CAP
        ):
            raise InvalidInput(
                f"limits.max_rows must be a whole number from 1 to {MAX_ROWS_CAP}",
                code="deploy.bad_limits",
            )
        return cls(
            principal=bucket(doc.get("principal"), "principal"),
            endpoint=bucket(doc.get("endpoint"), "endpoint"),
            max_rows=max_rows,
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.principal:
            doc["principal"] = {"rate": self.principal.rate, "burst": self.principal.burst}
        if self.endpoint:
            doc["endpoint"] = {"rate": self.endpoint.rate, "burst": self.endpoint.burst}
        if self.max_rows is not None:
            doc["max_rows"] = self.max_rows
        return doc
