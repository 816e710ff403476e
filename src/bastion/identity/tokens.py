"""API tokens: issue, authenticate, rotate, revoke.

A token reads `bst_<26-char id><40-char secret><6-char checksum>` (76 characters, base62 after
the prefix). The prefix makes a leaked token easy to recognise; the CRC-32 checksum lets a
secret scanner tell a real token from random text offline; the id lets the server find the row
without comparing against every hash. Only HMAC-SHA256(pepper, id:secret) is stored, where the
pepper is a key-store secret, so a database dump alone cannot confirm a guessed token.

Failures are distinct and coded (`auth.token_missing`, `_malformed`, `_unknown`, `_expired`,
`_revoked`, `auth.principal_disabled`), but expiry and revocation are only reported after the
secret matched, so a guesser learns nothing about other people's tokens.

Verified tokens are cached in-process for `cache_seconds` (default 2 s) so a request costs a
hash and a dictionary lookup, not a database round trip. Changes made through this process
invalidate the cache at once; another replica's revocation is seen within `cache_seconds`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import threading
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from time import monotonic

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bastion.core.clock import Clock
from bastion.core.errors import AuthenticationError, Conflict, InvalidInput, NotFound
from bastion.core.ids import PrincipalId, TokenId, new_id
from bastion.identity.access import (
    AccessCounters,
    Authorizer,
    Caller,
    PrincipalKind,
    scope_allows,
    validate_resource,
)
from bastion.identity.roles import Permission, Role, permissions_of
from bastion.ledger import AuditLog, Event
from bastion.store.db import Database
from bastion.store.tables import PrincipalRoleRow, PrincipalRow, TokenRow

TOKEN_PREFIX = "bst_"  # noqa: S105 - a public prefix, not a secret
_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
_ID_LEN, _SECRET_LEN, _CHECK_LEN = 26, 40, 6
TOKEN_LENGTH = len(TOKEN_PREFIX) + _ID_LEN + _SECRET_LEN + _CHECK_LEN
_BODY = re.compile(rf"^[0-9A-Za-z]{{{_ID_LEN + _SECRET_LEN + _CHECK_LEN}}}$")
_CROCKFORD_ID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
_NAME = re.compile(r"^[\w .@:/-]{0,128}$")


def _base62(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, rem = divmod(value, 62)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def _checksum(text: str) -> str:
    return _base62(zlib.crc32(text.encode("ascii")), _CHECK_LEN)


@dataclass(frozen=True)
class ParsedToken:
    token_id: TokenId
    secret: str


def format_token(token_id: TokenId, secret: str) -> str:
    head = f"{TOKEN_PREFIX}{token_id.removeprefix('tok_')}{secret}"
    return head + _checksum(head)


def parse_token(raw: str) -> ParsedToken:
    """Split a presented token; `AuthenticationError` (`auth.token_malformed`) if it is not one."""
    if (
        len(raw) != TOKEN_LENGTH
        or not raw.startswith(TOKEN_PREFIX)
        or not _BODY.match(raw[len(TOKEN_PREFIX) :])
    ):
        raise AuthenticationError("malformed API token", code="auth.token_malformed")
    head, check = raw[:-_CHECK_LEN], raw[-_CHECK_LEN:]
    id_part = head[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + _ID_LEN]
    if not hmac.compare_digest(_checksum(head), check) or not _CROCKFORD_ID.match(id_part):
        raise AuthenticationError(
            "malformed API token (checksum mismatch)", code="auth.token_malformed"
        )
    return ParsedToken(TokenId(f"tok_{id_part}"), head[len(TOKEN_PREFIX) + _ID_LEN :])


@dataclass(frozen=True)
class TokenInfo:
    """Token metadata as listed and audited. Never contains the secret."""

    id: TokenId
    principal_id: PrincipalId
    name: str
    roles: tuple[Role, ...]
    resources: tuple[str, ...]
    created_at: datetime
    created_by: str
    expires_at: datetime
    revoked_at: datetime | None
    rotated_from: TokenId | None
    replaced_by: TokenId | None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if now >= self.expires_at else "active"


@dataclass(frozen=True)
class IssuedToken:
    """A new token: `secret` is the full token string, shown to its owner exactly once."""

    info: TokenInfo
    secret: str

    def __repr__(self) -> str:
        return f"IssuedToken(info={self.info!r}, secret='<redacted>')"


@dataclass(frozen=True, slots=True)
class _Cached:
    secret_hash: bytes
    caller: Caller
    revoked: bool
    disabled: bool
    loaded_at: float


class TokenService:
    def __init__(
        self,
        *,
        database: Database,
        audit: AuditLog,
        authorizer: Authorizer,
        counters: AccessCounters,
        clock: Clock,
        pepper: bytes,
        default_ttl: timedelta,
        max_ttl: timedelta,
        rotation_grace: timedelta,
        cache_seconds: float = 2.0,
        cache_size: int = 10_000,
    ) -> None:
        if len(pepper) < 32:
            raise ValueError("token pepper must be at least 32 bytes")
        self._db = database
        self._audit = audit
        self._authz = authorizer
        self._counters = counters
        self._clock = clock
        self._pepper = pepper
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl
        self.rotation_grace = rotation_grace
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._cache: OrderedDict[TokenId, _Cached] = OrderedDict()
        self._cache_lock = threading.Lock()

    # -- authentication ---------------------------------------------------------------------

    def authenticate(self, raw: str | None, *, request_id: str | None = None) -> Caller:
        """Turn a presented token into a `Caller`, or raise a coded `AuthenticationError`."""
        try:
            if not raw:
                raise AuthenticationError("no API token presented", code="auth.token_missing")
            parsed = parse_token(raw)
            entry = self._cached(parsed.token_id) or self._load(parsed.token_id)
            if entry is None or not hmac.compare_digest(
                entry.secret_hash, self._hash(parsed.token_id, parsed.secret)
            ):
                raise AuthenticationError("unknown API token", code="auth.token_unknown")
            if entry.revoked:
                raise AuthenticationError("API token has been revoked", code="auth.token_revoked")
            caller = entry.caller
            assert caller.expires_at is not None
            if self._clock.now() >= caller.expires_at:
                raise AuthenticationError("API token has expired", code="auth.token_expired")
            if entry.disabled:
                raise AuthenticationError(
                    f"principal {caller.name} is disabled", code="auth.principal_disabled"
                )
        except AuthenticationError as error:
            self._counters.record("unauthenticated", error.code)
            raise
        return caller.with_request(request_id) if request_id else caller

    def _hash(self, token_id: TokenId, secret: str) -> bytes:
        return hmac.new(self._pepper, f"{token_id}:{secret}".encode(), hashlib.sha256).digest()

    def _cached(self, token_id: TokenId) -> _Cached | None:
        with self._cache_lock:
            entry = self._cache.get(token_id)
            if entry is None:
                return None
            if monotonic() - entry.loaded_at > self._cache_seconds:
                del self._cache[token_id]
                return None
            return entry

    def _load(self, token_id: TokenId) -> _Cached | None:
        with self._db.read() as session:
            row = session.get(TokenRow, token_id)
            if row is None:
                return None
            principal = session.get(PrincipalRow, row.principal_id)
            assert principal is not None  # foreign key
            held = set(
                session.scalars(
                    sa.select(PrincipalRoleRow.role).where(
                        PrincipalRoleRow.principal_id == principal.id
                    )
                )
            )
            # A token never carries more than its principal holds *now*: removing a role from
            # a principal takes it from all of their tokens at once.
            roles = frozenset(Role(r) for r in row.roles if r in held)
            caller = Caller(
                principal_id=PrincipalId(principal.id),
                name=principal.name,
                kind=PrincipalKind(principal.kind),
                roles=roles,
                permissions=permissions_of(roles),
                resources=tuple(row.resources),
                token_id=TokenId(row.id),
                expires_at=row.expires_at,
            )
            entry = _Cached(
                secret_hash=row.secret_hash,
                caller=caller,
                revoked=row.revoked_at is not None,
                disabled=principal.disabled,
                loaded_at=monotonic(),
            )
        with self._cache_lock:
            self._cache[token_id] = entry
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return entry

    def invalidate(self, *, principal_id: str | None = None, token_id: str | None = None) -> None:
        """Drop cached entries (after a local revoke, disable or role change)."""
        with self._cache_lock:
            if token_id is not None:
                self._cache.pop(TokenId(token_id), None)
            if principal_id is not None:
                for key in [
                    k for k, v in self._cache.items() if v.caller.principal_id == principal_id
                ]:
                    del self._cache[key]

    # -- management -------------------------------------------------------------------------

    def create(
        self,
        caller: Caller,
        *,
        principal_id: str | None = None,
        name: str = "",
        roles: Sequence[str] | None = None,
        resources: Sequence[str] = (),
        ttl: timedelta | None = None,
    ) -> IssuedToken:
        """Issue a token for `principal_id` (default: the caller).

        Its roles default to all the principal's roles and may only narrow them. Issuing for
        someone else needs `token.manage`. A token issued to oneself never outlives, out-ranks
        or out-scopes the token that asked for it, so a stolen short-lived token cannot mint
        a long-lived one. Raises `InvalidInput` for a bad lifetime, role or scope.
        """
        target = PrincipalId(principal_id or caller.principal_id)
        self_issued = target == caller.principal_id
        self._authz.authorize(
            caller, Permission.TOKEN_SELF if self_issued else Permission.TOKEN_MANAGE
        )
        ttl = self.default_ttl if ttl is None else ttl
        self._check_ttl(ttl)
        if not _NAME.match(name):
            raise InvalidInput("token name: up to 128 printable characters", code="input.invalid")
        scopes = tuple(sorted({validate_resource(r) for r in resources}))
        expires = self._clock.now() + ttl
        if self_issued and caller.token_id is not None:
            if caller.resources:
                scopes = scopes or caller.resources
                wider = [s for s in scopes if not scope_allows(caller.resources, s.rstrip("*"))]
                if wider:
                    raise InvalidInput(
                        f"scope {wider[0]} is wider than the calling token's", code="auth.bad_scope"
                    )
            if roles is not None and not {_role(r) for r in roles} <= caller.roles:
                raise InvalidInput(
                    "a token may not grant roles its issuing token lacks", code="auth.bad_roles"
                )
            roles = sorted(caller.roles) if roles is None else roles
            if caller.expires_at is not None:
                expires = min(expires, caller.expires_at)
        with self._db.transaction() as session:
            return self._issue(
                session, caller, target, name=name, roles=roles, resources=scopes, expires=expires
            )

    def _check_ttl(self, ttl: timedelta) -> None:
        if not timedelta(seconds=1) <= ttl <= self.max_ttl:
            raise InvalidInput(
                f"token lifetime must be between 1 s and {int(self.max_ttl.total_seconds())} s",
                code="auth.bad_ttl",
            )

    def _issue(
        self,
        session: Session,
        caller: Caller,
        target: PrincipalId,
        *,
        name: str,
        roles: Sequence[str] | None,
        resources: Sequence[str],
        expires: datetime,
        rotated_from: TokenId | None = None,
    ) -> IssuedToken:
        principal = session.get(PrincipalRow, target)
        if principal is None:
            raise NotFound(f"no principal {target}", code="identity.principal_not_found")
        if principal.disabled:
            raise InvalidInput(
                f"principal {principal.name} is disabled", code="identity.principal_disabled"
            )
        held = {
            Role(r)
            for r in session.scalars(
                sa.select(PrincipalRoleRow.role).where(PrincipalRoleRow.principal_id == target)
            )
        }
        wanted = held if roles is None else {_role(r) for r in roles}
        if not wanted or not wanted <= held:
            raise InvalidInput(
                f"token roles {sorted(wanted)} must be a non-empty subset of "
                f"{principal.name}'s roles {sorted(held)}",
                code="auth.bad_roles",
            )
        token_id = TokenId(new_id("tok"))
        secret = "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_LEN))
        row = TokenRow(
            id=token_id,
            principal_id=target,
            name=name,
            secret_hash=self._hash(token_id, secret),
            roles=sorted(wanted),
            resources=list(resources),
            created_at=self._clock.now(),
            created_by=caller.principal_id,
            expires_at=expires,
            rotated_from=rotated_from,
        )
        session.add(row)
        session.flush()
        self._audit.append(
            session,
            Event(
                type="identity.token.rotated" if rotated_from else "identity.token.created",
                actor=caller.principal_id,
                subject=f"token:{token_id}",
                request_id=caller.request_id,
                data={
                    "principal": target,
                    "name": name,
                    "roles": sorted(wanted),
                    "resources": list(resources),
                    "expires_at": expires.isoformat(),
                    "rotated_from": rotated_from,
                },
            ),
        )
        return IssuedToken(info=_info(row), secret=format_token(token_id, secret))

    def issue_bootstrap(
        self, session: Session, actor: Caller, principal_id: PrincipalId, ttl: timedelta
    ) -> IssuedToken:
        """Issue a token inside an open transaction, for `bastion init` (no caller token)."""
        self._check_ttl(ttl)
        return self._issue(
            session,
            actor,
            principal_id,
            name="bootstrap",
            roles=None,
            resources=(),
            expires=self._clock.now() + ttl,
        )

    def list(
        self,
        caller: Caller,
        *,
        principal_id: str | None = None,
        all_principals: bool = False,
        include_inactive: bool = False,
    ) -> list[TokenInfo]:
        """Tokens of `principal_id` (default: the caller); anyone else's need `token.read`."""
        own = not all_principals and principal_id in (None, caller.principal_id)
        self._authz.authorize(caller, Permission.TOKEN_SELF if own else Permission.TOKEN_READ)
        query = sa.select(TokenRow)
        if not all_principals:
            query = query.where(TokenRow.principal_id == (principal_id or caller.principal_id))
        if not include_inactive:
            query = query.where(
                TokenRow.revoked_at.is_(None), TokenRow.expires_at > self._clock.now()
            )
        with self._db.read() as session:
            rows = session.scalars(query.order_by(TokenRow.created_at, TokenRow.id)).all()
            return [_info(r) for r in rows]

    def get(self, caller: Caller, token_id: str) -> TokenInfo:
        with self._db.read() as session:
            row = self._owned(
                caller, session.get(TokenRow, token_id), token_id, Permission.TOKEN_READ
            )
            return _info(row)

    def revoke(self, caller: Caller, token_id: str) -> TokenInfo:
        """Revoke at once. Revoking an already revoked token is a no-op that returns it."""
        with self._db.transaction() as session:
            row = self._owned(
                caller,
                session.get(TokenRow, token_id, with_for_update=True),
                token_id,
                Permission.TOKEN_MANAGE,
            )
            if row.revoked_at is None:
                row.revoked_at = self._clock.now()
                row.revoked_by = caller.principal_id
                self._audit.append(
                    session,
                    Event(
                        type="identity.token.revoked",
                        actor=caller.principal_id,
                        subject=f"token:{token_id}",
                        request_id=caller.request_id,
                        data={"principal": row.principal_id},
                    ),
                )
            info = _info(row)
        self.invalidate(token_id=token_id)
        return info

    def rotate(
        self, caller: Caller, token_id: str, *, grace: timedelta | None = None
    ) -> IssuedToken:
        """Issue a successor with the same principal, roles, scopes and lifetime; the old token
        keeps working for `grace` (default from settings), then expires. One transaction."""
        grace = self.rotation_grace if grace is None else grace
        if not timedelta(0) <= grace <= self.max_ttl:
            raise InvalidInput("bad rotation grace period", code="auth.bad_ttl")
        now = self._clock.now()
        with self._db.transaction() as session:
            old = self._owned(
                caller,
                session.get(TokenRow, token_id, with_for_update=True),
                token_id,
                Permission.TOKEN_MANAGE,
            )
            if old.revoked_at is not None or old.expires_at <= now:
                raise InvalidInput(
                    "only an active token can be rotated", code="auth.token_inactive"
                )
            if old.replaced_by is not None:
                raise Conflict(
                    f"token already rotated to {old.replaced_by}", code="auth.token_rotated"
                )
            issued = self._issue(
                session,
                caller,
                PrincipalId(old.principal_id),
                name=old.name,
                roles=list(old.roles),
                resources=list(old.resources),
                expires=now + min(old.expires_at - old.created_at, self.max_ttl),
                rotated_from=TokenId(token_id),
            )
            old.replaced_by = issued.info.id
            old.expires_at = min(old.expires_at, now + grace)
        self.invalidate(token_id=token_id)
        return issued

    def _owned(
        self, caller: Caller, row: TokenRow | None, token_id: str, other: Permission
    ) -> TokenRow:
        if row is None:
            # Same answer whether it does not exist or belongs to someone we cannot see.
            self._authz.authorize(caller, Permission.TOKEN_SELF)
            raise NotFound(f"no token {token_id}", code="identity.token_not_found")
        self._authz.authorize(
            caller, Permission.TOKEN_SELF if row.principal_id == caller.principal_id else other
        )
        return row


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidInput(
            f"unknown role {value!r}; roles are {', '.join(r.value for r in Role)}",
            code="identity.unknown_role",
        ) from None


def _info(row: TokenRow) -> TokenInfo:
    return TokenInfo(
        id=TokenId(row.id),
        principal_id=PrincipalId(row.principal_id),
        name=row.name,
        roles=tuple(Role(r) for r in row.roles),
        resources=tuple(row.resources),
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        rotated_from=TokenId(row.rotated_from) if row.rotated_from else None,
        replaced_by=TokenId(row.replaced_by) if row.replaced_by else None,
    )
