"""Principals (users and service accounts) and their roles.

Rules beyond the permission table:
* nobody changes their own roles or disables themselves (segregation of duties: a second
  admin must do it, and the ledger shows who);
* the last enabled admin cannot be disabled or lose the admin role (no lock-out);
* disabling a principal stops every one of its tokens at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bastion.core.clock import Clock
from bastion.core.errors import Conflict, InvalidInput, NotFound
from bastion.core.ids import PrincipalId, is_id, new_id
from bastion.identity.access import Authorizer, Caller, PrincipalKind
from bastion.identity.roles import Permission, Role
from bastion.identity.tokens import IssuedToken, TokenService, _role
from bastion.ledger import AuditLog
from bastion.store.db import Database
from bastion.store.tables import PrincipalRoleRow, PrincipalRow

_NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,127}$")
MAX_NAME_LOOKUP = 100


@dataclass(frozen=True)
class Principal:
    id: PrincipalId
    name: str
    kind: PrincipalKind
    roles: tuple[Role, ...]
    description: str
    disabled: bool
    created_at: datetime
    created_by: str


class PrincipalService:
    def __init__(
        self,
        *,
        database: Database,
        audit: AuditLog,
        authorizer: Authorizer,
        tokens: TokenService,
        clock: Clock,
    ) -> None:
        self._db = database
        self._audit = audit
        self._authz = authorizer
        self._tokens = tokens
        self._clock = clock

    def add(
        self,
        caller: Caller,
        *,
        name: str,
        kind: str = PrincipalKind.USER,
        roles: Iterable[str] = (),
        description: str = "",
    ) -> Principal:
        """Create a principal. `Conflict` (`identity.principal_exists`) if the name is taken."""
        self._authz.authorize(caller, Permission.PRINCIPAL_MANAGE)
        with self._db.transaction() as session:
            return self._add(
                session, caller, name=name, kind=kind, roles=roles, description=description
            )

    def _add(
        self,
        session: Session,
        caller: Caller,
        *,
        name: str,
        kind: str,
        roles: Iterable[str],
        description: str,
    ) -> Principal:
        if not _NAME.match(name):
            raise InvalidInput(
                f"bad principal name {name!r}: 1-128 of a-z 0-9 . _ @ -, starting alphanumeric",
                code="identity.bad_name",
            )
        try:
            principal_kind = PrincipalKind(kind)
        except ValueError:
            raise InvalidInput(
                f"kind must be user or service, not {kind!r}", code="input.invalid"
            ) from None
        if len(description) > 512:
            raise InvalidInput("description: at most 512 characters", code="input.invalid")
        role_set = sorted({_role(r) for r in roles})
        if session.scalar(sa.select(PrincipalRow.id).where(PrincipalRow.name == name)):
            raise Conflict(f"principal {name} already exists", code="identity.principal_exists")
        now = self._clock.now()
        row = PrincipalRow(
            id=new_id("prn"),
            name=name,
            kind=principal_kind,
            description=description,
            disabled=False,
            created_at=now,
            created_by=caller.principal_id,
            updated_at=now,
        )
        session.add(row)
        session.flush()  # the row must exist before role rows reference it
        session.add_all(PrincipalRoleRow(principal_id=row.id, role=r) for r in role_set)
        session.flush()
        self._record(
            session,
            caller,
            "identity.principal.created",
            row.id,
            {"name": name, "kind": principal_kind.value, "roles": list(role_set)},
        )
        return _principal(row, role_set)

    def bootstrap_admin(self, name: str, *, ttl: timedelta) -> tuple[Principal, IssuedToken]:
        """Create the first admin (or re-issue its token) for `bastion init`; no caller token.

        Only whoever holds the master key and the database can run this (it is the local
        break-glass path). The ledger records it with actor `system:init`. Raises `Conflict`
        if `name` exists but is not an enabled admin.
        """
        actor = Caller.system("init", [Role.ADMIN])
        with self._db.transaction() as session:
            row = _find(session, name)
            if row is None:
                principal = self._add(
                    session,
                    actor,
                    name=name,
                    kind=PrincipalKind.USER,
                    roles=[Role.ADMIN],
                    description="first administrator, created by bastion init",
                )
            else:
                roles = _roles_by_principal(session, [row.id]).get(row.id, [])
                if row.disabled or Role.ADMIN not in roles:
                    raise Conflict(
                        f"principal {name} exists but is not an enabled admin",
                        code="identity.bootstrap_conflict",
                    )
                principal = _principal(row, roles)
            issued = self._tokens.issue_bootstrap(session, actor, principal.id, ttl)
        return principal, issued

    def count(self) -> int:
        with self._db.read() as session:
            return int(session.scalar(sa.select(sa.func.count()).select_from(PrincipalRow)) or 0)

    def list(self, caller: Caller, *, include_disabled: bool = True) -> list[Principal]:
        self._authz.authorize(caller, Permission.PRINCIPAL_READ)
        with self._db.read() as session:
            query = sa.select(PrincipalRow).order_by(PrincipalRow.name)
            if not include_disabled:
                query = query.where(PrincipalRow.disabled.is_(False))
            rows = session.scalars(query).all()
            roles = _roles_by_principal(session, [r.id for r in rows])
            return [_principal(r, roles.get(r.id, [])) for r in rows]

    def names(self, caller: Caller, ids: Iterable[str]) -> dict[str, str]:
        """The names of the principals `ids` (ids unknown or malformed are left out), for
        showing who acted beside a record the caller may already read: needs `model.read`,
        which every role but the inference client holds, not `principal.read` — no roles,
        no listing, and an id (`prn_` + 128 random bits) cannot be guessed."""
        self._authz.authorize(caller, Permission.MODEL_READ)
        wanted = sorted({i for i in ids if is_id(i, "prn")})
        if len(wanted) > MAX_NAME_LOOKUP:
            raise InvalidInput(
                f"at most {MAX_NAME_LOOKUP} principal ids at a time", code="input.invalid"
            )
        if not wanted:
            return {}
        with self._db.read() as session:
            rows = session.execute(
                sa.select(PrincipalRow.id, PrincipalRow.name).where(PrincipalRow.id.in_(wanted))
            )
            return {str(pid): str(name) for pid, name in rows}

    def get(self, caller: Caller, ref: str) -> Principal:
        """Look up by id (`prn_…`) or by name; one's own record needs no extra permission."""
        with self._db.read() as session:
            row = _find(session, ref)
            if row is None or row.id != caller.principal_id:
                self._authz.authorize(caller, Permission.PRINCIPAL_READ)
            if row is None:
                raise NotFound(f"no principal {ref}", code="identity.principal_not_found")
            return _principal(row, _roles_by_principal(session, [row.id]).get(row.id, []))

    def set_roles(self, caller: Caller, ref: str, roles: Iterable[str]) -> Principal:
        """Replace a principal's roles. Not one's own; never removing the last admin."""
        self._authz.authorize(caller, Permission.PRINCIPAL_MANAGE)
        role_set = sorted({_role(r) for r in roles})
        with self._db.transaction() as session:
            row = self._target(session, caller, ref, action="change their own roles")
            before = _roles_by_principal(session, [row.id]).get(row.id, [])
            if Role.ADMIN in before and Role.ADMIN not in role_set and not row.disabled:
                self._require_other_admin(session, row.id)
            session.execute(
                sa.delete(PrincipalRoleRow).where(PrincipalRoleRow.principal_id == row.id)
            )
            session.add_all(PrincipalRoleRow(principal_id=row.id, role=r) for r in role_set)
            row.updated_at = self._clock.now()
            self._record(
                session,
                caller,
                "identity.principal.roles_changed",
                row.id,
                {"name": row.name, "before": list(before), "after": list(role_set)},
            )
            result = _principal(row, role_set)
        self._tokens.invalidate(principal_id=row.id)
        return result

    def set_disabled(self, caller: Caller, ref: str, *, disabled: bool) -> Principal:
        """Disable (every token stops at once) or re-enable a principal."""
        self._authz.authorize(caller, Permission.PRINCIPAL_MANAGE)
        with self._db.transaction() as session:
            row = self._target(
                session,
                caller,
                ref,
                action="disable themselves" if disabled else "enable themselves",
            )
            roles = _roles_by_principal(session, [row.id]).get(row.id, [])
            if row.disabled != disabled:
                if disabled and Role.ADMIN in roles:
                    self._require_other_admin(session, row.id)
                row.disabled = disabled
                row.updated_at = self._clock.now()
                self._record(
                    session,
                    caller,
                    "identity.principal.disabled" if disabled else "identity.principal.enabled",
                    row.id,
                    {"name": row.name},
                )
            result = _principal(row, roles)
        self._tokens.invalidate(principal_id=row.id)
        return result

    def _target(self, session: Session, caller: Caller, ref: str, *, action: str) -> PrincipalRow:
        row = _find(session, ref)
        if row is None:
            raise NotFound(f"no principal {ref}", code="identity.principal_not_found")
        self._authz.require_distinct(caller, action, {"target principal": row.id})
        return row

    def _require_other_admin(self, session: Session, principal_id: str) -> None:
        # Lock the enabled admins' rows (FOR UPDATE on PostgreSQL; SQLite writers are already
        # serialised by BEGIN IMMEDIATE) so two admins removing each other at the same moment
        # cannot both see the other one still standing.
        admins = session.scalars(
            sa.select(PrincipalRow.id)
            .join(PrincipalRoleRow, PrincipalRow.id == PrincipalRoleRow.principal_id)
            .where(PrincipalRoleRow.role == Role.ADMIN, PrincipalRow.disabled.is_(False))
            .with_for_update()
        ).all()
        if not [a for a in admins if a != principal_id]:
            raise Conflict(
                "that would leave no enabled admin; add another admin first",
                code="identity.last_admin",
            )

    def _record(
        self,
        session: Session,
        caller: Caller,
        kind: str,
        principal_id: str,
        data: dict[str, object],
    ) -> None:
        self._audit.append(session, caller.event(kind, f"principal:{principal_id}", data))


def _find(session: Session, ref: str) -> PrincipalRow | None:
    if is_id(ref, "prn"):
        return session.get(PrincipalRow, ref)
    return session.scalar(sa.select(PrincipalRow).where(PrincipalRow.name == ref))


def _roles_by_principal(session: Session, ids: list[str]) -> dict[str, list[Role]]:
    result: dict[str, list[Role]] = {}
    if not ids:
        return result
    for pid, role in session.execute(
        sa.select(PrincipalRoleRow.principal_id, PrincipalRoleRow.role)
        .where(PrincipalRoleRow.principal_id.in_(ids))
        .order_by(PrincipalRoleRow.role)
    ):
        result.setdefault(pid, []).append(Role(role))
    return result


def _principal(row: PrincipalRow, roles: Iterable[Role]) -> Principal:
    return Principal(
        id=PrincipalId(row.id),
        name=row.name,
        kind=PrincipalKind(row.kind),
        roles=tuple(sorted(roles)),
        description=row.description,
        disabled=row.disabled,
        created_at=row.created_at,
        created_by=row.created_by,
    )
