"""Who is calling, and may they do this? `Caller`, authorization, segregation of duties.

`authorize` is plain Python on precomputed sets (no database, no policy engine) because it runs
on every request. Every denial raises `PermissionDenied` with a stable code and is counted in
`AccessCounters`, which the monitoring layer exports as the unauthorized-access metric.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from bastion.core.errors import InvalidInput, PermissionDenied
from bastion.core.ids import PrincipalId, TokenId
from bastion.identity.roles import SELF_SERVICE, Permission, Role, permissions_of, roles_with
from bastion.ledger.events import Event

# kind:name, where name may end in `*` (prefix match): `endpoint:fraud`, `endpoint:fraud-*`.
_RESOURCE = re.compile(r"^[a-z][a-z0-9-]{0,31}:(\*|[A-Za-z0-9._/-]{1,128}\*?)$")


class PrincipalKind(StrEnum):
    USER = "user"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request's identity: the principal, its token and what they allow."""

    principal_id: PrincipalId
    name: str
    kind: PrincipalKind
    roles: frozenset[Role]
    permissions: frozenset[Permission]
    resources: tuple[str, ...] = ()
    token_id: TokenId | None = None
    expires_at: datetime | None = None
    request_id: str | None = None

    @classmethod
    def system(cls, name: str, roles: Iterable[Role], *, request_id: str | None = None) -> Caller:
        """A non-human actor inside Bastion itself (`system:init`), never reachable by token."""
        role_set = frozenset(roles)
        return cls(
            principal_id=PrincipalId(f"system:{name}"),
            name=f"system:{name}",
            kind=PrincipalKind.SERVICE,
            roles=role_set,
            permissions=permissions_of(role_set),
            request_id=request_id,
        )

    def with_request(self, request_id: str | None) -> Caller:
        return replace(self, request_id=request_id)

    def event(self, type: str, subject: str, data: Mapping[str, object] | None = None) -> Event:
        """A ledger event of `type` on `subject`, done by this caller in this request."""
        return Event(
            type=type,
            actor=self.principal_id,
            subject=subject,
            data=dict(data or {}),
            request_id=self.request_id,
        )


def validate_resource(pattern: str) -> str:
    """Check a resource scope such as `endpoint:fraud` or `endpoint:fraud-*`."""
    if not _RESOURCE.match(pattern):
        raise InvalidInput(
            f"bad resource scope {pattern!r}: use kind:name, optionally ending in *",
            code="auth.bad_scope",
        )
    return pattern


def scope_allows(scopes: Iterable[str], resource: str) -> bool:
    """True when `resource` (kind:name) falls under one of `scopes`."""
    for scope in scopes:
        if scope.endswith("*"):
            if resource.startswith(scope[:-1]):
                return True
        elif scope == resource:
            return True
    return False


@dataclass
class AccessCounters:
    """Thread-safe counts of failed authentications and denied authorizations, by code."""

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def record(self, outcome: str, code: str) -> None:
        with self._lock:
            self._counts[(outcome, code)] += 1

    def snapshot(self) -> dict[tuple[str, str], int]:
        """`{(outcome, code): count}` with outcome `unauthenticated` or `denied`."""
        with self._lock:
            return dict(self._counts)

    def total(self, outcome: str | None = None) -> int:
        with self._lock:
            return sum(n for (o, _), n in self._counts.items() if outcome in (None, o))


class Authorizer:
    """Checks permissions, resource scopes and segregation of duties for a `Caller`."""

    def __init__(self, *, counters: AccessCounters) -> None:
        self._counters = counters

    def authorize(
        self, caller: Caller, permission: Permission, resource: str | None = None
    ) -> None:
        """Return if `caller` may use `permission` (on `resource`); raise `PermissionDenied`.

        A token scoped to resources may act only on matching resources, plus self-service
        calls that name no resource (whoami, its own tokens).
        """
        if permission not in caller.permissions:
            self._deny(
                "auth.denied",
                f"{caller.name} lacks permission {permission.value} "
                f"(granted by: {', '.join(sorted(roles_with(permission))) or 'no role'})",
            )
        if caller.resources:
            if resource is None:
                if permission not in SELF_SERVICE:
                    self._deny(
                        "auth.scope_denied",
                        f"token is scoped to {', '.join(caller.resources)}; "
                        f"{permission.value} needs an unscoped token",
                    )
            elif not scope_allows(caller.resources, resource):
                self._deny(
                    "auth.scope_denied",
                    f"token is scoped to {', '.join(caller.resources)}, not {resource}",
                )

    def require_distinct(
        self, caller: Caller, action: str, others: Mapping[str, str | None]
    ) -> None:
        """Segregation of duties: `caller` may not also be any of `others` for `action`.

        `others` maps a duty to the principal who held it, e.g. `{"author": version.created_by}`.
        Raises `PermissionDenied` (`auth.sod_violation`) naming the duty that clashes.
        """
        for duty, holder in others.items():
            if holder is not None and holder == caller.principal_id:
                self._deny(
                    "auth.sod_violation",
                    f"segregation of duties: {caller.name} is the {duty}, so may not {action}",
                )

    def _deny(self, code: str, message: str) -> None:
        self._counters.record("denied", code)
        raise PermissionDenied(message, code=code)
